//! The merged layers: `config/default.toml` (compiled in) → `--config FILE` →
//! `ROLLBOT__SECTION__KEY` variables, merged by the `config` crate into one tree whose values
//! remember their layer. Sections are read from it by name ([`Layers::read`]); a top-level key
//! that no reader asked for is an unknown section ([`Layers::unknown_sections`]).

use std::cell::RefCell;
use std::collections::HashMap;
use std::path::Path;

use config::{Config, Environment, File, FileFormat, Value, ValueKind};
use serde::de::DeserializeOwned;

use super::de;
use super::problem::{unknown, ConfigError, ConfigProblem};
use super::secrets::{SecretLog, Secrets};
use super::DEFAULT_TOML;

/// The merged configuration tree, the environment, and what has been read from them.
#[derive(Debug)]
pub struct Layers {
    root: config::Map<String, Value>,
    env: HashMap<String, String>,
    /// The sections read so far, by name.
    asked: RefCell<Vec<&'static str>>,
    secrets: RefCell<SecretLog>,
}

impl Layers {
    /// Merges defaults, then `file`, then the `ROLLBOT__…` variables of `env`. `env` is also
    /// where secrets' variables, `DOCKER_CONFIG` and `HOME` are looked up, so tests can pass
    /// their own environment.
    ///
    /// # Errors
    /// An unreadable or malformed file (one problem: nothing else can be judged).
    pub fn load(file: Option<&Path>, env: &HashMap<String, String>) -> Result<Layers, ConfigError> {
        let json_from_env = env
            .get("ROLLBOT__LOG__FORMAT")
            .is_some_and(|format| format == "json");
        let mut builder =
            Config::builder().add_source(File::from_str(DEFAULT_TOML, FileFormat::Toml));
        if let Some(path) = file {
            if let Err(error) = std::fs::metadata(path) {
                return Err(ConfigError::single(
                    "--config",
                    format!("cannot read {}: {error}", path.display()),
                    json_from_env,
                ));
            }
            builder = builder.add_source(File::from(path).format(FileFormat::Toml).required(true));
        }
        // Only ROLLBOT__… is config; ROLLBOT_SOMETHING (one underscore) stays free for secrets
        // that *_env keys point at. See api-facts.md §6.2 on the prefix separator.
        let overrides: config::Map<String, String> = env
            .iter()
            .filter(|(key, _)| key.starts_with("ROLLBOT__"))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        builder = builder.add_source(
            Environment::with_prefix("ROLLBOT")
                .prefix_separator("__")
                .separator("__")
                .source(Some(overrides)),
        );
        let merged = builder
            .build()
            .map_err(|error| ConfigError::single("config", error.to_string(), json_from_env))?;
        let root = match merged.cache.kind {
            ValueKind::Table(root) => root,
            _ => config::Map::new(),
        };
        Ok(Layers {
            root,
            env: env.clone(),
            asked: RefCell::new(Vec::new()),
            secrets: RefCell::new(SecretLog::default()),
        })
    }

    /// Reads section `name` into its serde type `S` and hands it to `validate`.
    ///
    /// # Errors
    /// Every problem of the section: its unknown keys, and what `validate` found (a section
    /// whose `validate` does not look at a value, such as a disabled adapter's, has only its
    /// unknown keys judged).
    pub fn read<S: DeserializeOwned, T>(
        &self,
        name: &'static str,
        validate: impl FnOnce(S) -> Result<T, Vec<ConfigProblem>>,
    ) -> Result<T, Vec<ConfigProblem>> {
        self.asked.borrow_mut().push(name);
        let mut problems = Vec::new();
        let section = de::read::<S>(name, self.root.get(name), &mut problems);
        match section.map(validate) {
            Some(Ok(settings)) if problems.is_empty() => Ok(settings),
            Some(Ok(_)) | None => Err(problems),
            Some(Err(more)) => {
                problems.extend(more);
                Err(problems)
            }
        }
    }

    /// A top-level key no reader asked for, with "did you mean". Only a composition that reads
    /// every section can ask this.
    pub fn unknown_sections(&self) -> Vec<ConfigProblem> {
        let asked = self.asked.borrow();
        let mut keys: Vec<(&String, &Value)> = self
            .root
            .iter()
            .filter(|(key, _)| !asked.contains(&key.as_str()))
            .collect();
        keys.sort_by_key(|(key, _)| *key);
        keys.into_iter()
            .map(|(key, value)| ConfigProblem {
                path: de::join("", key),
                message: unknown("section", key, &asked),
                origin: de::origin(value),
            })
            .collect()
    }

    /// The secret reader (which remembers what it read).
    pub fn secrets(&self) -> Secrets<'_> {
        Secrets::new(&self.env, &self.secrets)
    }

    /// Every secret read so far, and the variables named as holding one (sorted).
    pub(super) fn secrets_read(&self) -> (Vec<crate::secret::Secret>, Vec<String>) {
        let log = self.secrets.borrow();
        (log.values.clone(), log.variables.clone())
    }

    /// An environment variable (`DOCKER_CONFIG`, `HOME`).
    pub fn env(&self, name: &str) -> Option<&str> {
        self.env.get(name).map(String::as_str)
    }

    /// Whether `log.format` is `json` as far as it can be read.
    pub(super) fn json_logs(&self) -> bool {
        let Some(ValueKind::Table(log)) = self.root.get("log").map(|v| &v.kind) else {
            return false;
        };
        matches!(log.get("format").map(|v| &v.kind), Some(ValueKind::String(f)) if f == "json")
    }
}
