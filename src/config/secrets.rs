//! The one secret reader. Every secret (registry passwords; Slack, GitHub and Docker Hub
//! tokens) comes from a pair of keys, `<name>_env` (the name of an environment variable) and
//! `<name>_file` (a file, e.g. a mounted secret), read by one rule (also in
//! `config/default.toml` and the README):
//!
//! - Set one of the two. Setting both is an error; a `<name>_env` from the compiled-in
//!   defaults counts only when you set neither, so `token_file = "…"` alone just works.
//! - Trailing line breaks (`\n`, `\r\n`) are removed, from a file and from a variable alike
//!   (`echo token > file` ends with one); nothing else is: a password may begin or end with
//!   a space.
//! - An unset or empty variable, an unreadable file or one that is empty is an error naming
//!   the key. No error ever shows a secret's value.
//!
//! Every secret read and every variable named is remembered, so health-check commands never
//! see those variables and their output never shows those values ([`crate::config::Settings`]
//! hands both to each check).

use std::cell::RefCell;
use std::collections::HashMap;

use super::read::{Checked, Problems};
use crate::secret::Secret;

/// Reads secrets from the environment and from files; see the module docs for the rule.
#[derive(Debug, Clone, Copy)]
pub struct Secrets<'l> {
    env: &'l HashMap<String, String>,
    log: &'l RefCell<SecretLog>,
}

/// What has been read so far.
#[derive(Debug, Default)]
pub(super) struct SecretLog {
    pub values: Vec<Secret>,
    /// Environment variables named as holding a secret, sorted, each once.
    pub variables: Vec<String>,
}

/// A secret and where it came from.
#[derive(Debug)]
pub struct SecretRead<'k> {
    pub secret: Secret,
    /// The key it was read through (`…_env` or `…_file`), for problems about its value.
    pub key: &'k Checked<String>,
    /// "file /run/secrets/x" or "environment variable X", for messages (never the value).
    pub source: String,
}

impl<'l> Secrets<'l> {
    pub(super) fn new(env: &'l HashMap<String, String>, log: &'l RefCell<SecretLog>) -> Self {
        Secrets { env, log }
    }

    /// The secret `env_key` / `file_key` point at, by the rule in the module docs.
    pub fn read<'k>(
        &self,
        env_key: &'k Checked<String>,
        file_key: &'k Checked<String>,
        problems: &mut Problems,
    ) -> Option<SecretRead<'k>> {
        let variable = problems.optional(env_key);
        let file = problems.optional(file_key);
        if let Some(variable) = &variable {
            // Named as holding a secret: hidden from health checks even when the file is read.
            let mut log = self.log.borrow_mut();
            if let Err(at) = log.variables.binary_search(variable) {
                log.variables.insert(at, variable.clone());
            }
        }
        let (text, key, source) = match (variable, file) {
            (Some(_), Some(_)) if env_key.is_chosen() => {
                problems.add(
                    file_key,
                    format!(
                        "set either {} or {}, not both",
                        env_key.key(),
                        file_key.key()
                    ),
                );
                return None;
            }
            (_, Some(file)) => match std::fs::read_to_string(&file) {
                Ok(text) => (text, file_key, format!("file {file}")),
                Err(error) => {
                    problems.add(file_key, format!("cannot read {file}: {error}"));
                    return None;
                }
            },
            (Some(variable), None) => match self.env.get(&variable) {
                Some(text) => (
                    text.clone(),
                    env_key,
                    format!("environment variable {variable}"),
                ),
                None => {
                    problems.add(
                        env_key,
                        format!("environment variable {variable} is not set or empty"),
                    );
                    return None;
                }
            },
            (None, None) => {
                if !env_key.is_set() && !file_key.is_set() {
                    problems.add(
                        env_key,
                        format!(
                            "set {} (the name of an environment variable) or {} (a file)",
                            env_key.key(),
                            file_key.key()
                        ),
                    );
                }
                return None;
            }
        };
        let text = text.trim_end_matches(['\n', '\r']);
        if text.is_empty() {
            let what = if std::ptr::eq(key, env_key) {
                "is not set or empty"
            } else {
                "is empty"
            };
            problems.add(key, format!("{source} {what}"));
            return None;
        }
        let secret = Secret::new(text);
        self.log.borrow_mut().values.push(secret.clone());
        Some(SecretRead {
            secret,
            key,
            source,
        })
    }
}
