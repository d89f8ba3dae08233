//! `[registries."<host>"]`: plain HTTP or not, where credentials come from, another endpoint.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::de::IgnoredAny;
use serde::Deserialize;

use super::read::{Checked, Problems};
use super::secrets::Secrets;
use super::ConfigProblem;
use crate::domain::model::RegistryHost;
use crate::secret::Secret;

#[derive(Debug, Clone, PartialEq)]
pub struct RegistrySettings {
    /// Plain HTTP instead of HTTPS.
    pub insecure: bool,
    pub auth: AuthSettings,
    /// `host:port` to connect to instead of the image's registry host (a mirror, or a test
    /// registry standing in for `docker.io`).
    pub endpoint: Option<String>,
}

/// Where the credentials for one registry come from.
#[derive(Debug, Clone, PartialEq)]
pub enum AuthSettings {
    /// The Docker credentials file if it has an entry for the host, else anonymous.
    Auto {
        docker_config: Option<PathBuf>,
    },
    Anonymous,
    /// User name and password, the password read from an environment variable or a file.
    Basic {
        username: String,
        password: Secret,
        /// Where the password came from, for error messages (never the password itself).
        source: String,
    },
    /// The Docker credentials file (`auths`, `credHelpers`, `credsStore`); it must have an entry.
    DockerConfig {
        path: Option<PathBuf>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
enum AuthMode {
    Auto,
    Anonymous,
    Basic,
    DockerConfig,
}

impl AuthMode {
    fn word(self) -> &'static str {
        match self {
            AuthMode::Auto => "auto",
            AuthMode::Anonymous => "anonymous",
            AuthMode::Basic => "basic",
            AuthMode::DockerConfig => "docker-config",
        }
    }
}

/// `[registries]` as written: host → entry.
pub(super) type RegistriesSection = Option<BTreeMap<String, Checked<RegistrySection>>>;

/// One `[registries."<host>"]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RegistrySection {
    insecure: Checked<bool>,
    auth: Checked<AuthMode>,
    username: Checked<String>,
    password_env: Checked<String>,
    password_file: Checked<String>,
    docker_config: Checked<String>,
    endpoint: Checked<String>,
    /// Refused with its own message rather than "unknown key": a likely, dangerous mistake.
    password: Checked<IgnoredAny>,
}

pub(super) fn validate(
    section: RegistriesSection,
    secrets: Secrets<'_>,
) -> Result<BTreeMap<RegistryHost, RegistrySettings>, Vec<ConfigProblem>> {
    let mut problems = Problems::default();
    let mut registries = BTreeMap::new();
    for (key, entry) in section.unwrap_or_default() {
        let host = match RegistryHost::parse(&key) {
            Ok(host) => host,
            Err(error) => {
                problems.add(&entry, error.to_string());
                continue;
            }
        };
        let Some(table) = problems.get(&entry) else {
            continue;
        };
        let Some(settings) = registry(table, secrets, &mut problems) else {
            continue;
        };
        if registries.insert(host.clone(), settings).is_some() {
            problems.add(
                &entry,
                format!("{host} is configured twice (host names are case-insensitive)"),
            );
        }
    }
    problems.finish(Some(registries))
}

fn registry(
    entry: &RegistrySection,
    secrets: Secrets<'_>,
    problems: &mut Problems,
) -> Option<RegistrySettings> {
    if entry.password.is_set() {
        problems.add(
            &entry.password,
            "plain-text passwords are not accepted in config; use password_env (name of an environment variable) or password_file",
        );
    }
    let insecure = problems.optional(&entry.insecure).unwrap_or(false);
    let endpoint = entry.endpoint.is_set().then(|| {
        problems.parse(&entry.endpoint, |text| {
            RegistryHost::parse(&text)
                .map(|host| host.as_str().to_owned())
                .map_err(|error| error.to_string())
        })
    });
    let username = problems.optional(&entry.username);
    let docker_config = problems.optional(&entry.docker_config).map(PathBuf::from);
    let mode = match entry.auth.is_set() {
        true => problems.required(&entry.auth)?,
        false if username.is_some() => AuthMode::Basic,
        false => AuthMode::Auto,
    };
    if mode != AuthMode::Basic {
        for key in [&entry.username, &entry.password_env, &entry.password_file] {
            if key.is_set() {
                problems.add(
                    key,
                    format!(
                        "only used with auth = \"basic\" (auth is \"{}\")",
                        mode.word()
                    ),
                );
            }
        }
    }
    if matches!(mode, AuthMode::Anonymous | AuthMode::Basic) && entry.docker_config.is_set() {
        problems.add(
            &entry.docker_config,
            format!("not used with auth = \"{}\"", mode.word()),
        );
    }
    let auth = match mode {
        AuthMode::Auto => AuthSettings::Auto { docker_config },
        AuthMode::DockerConfig => AuthSettings::DockerConfig {
            path: docker_config,
        },
        AuthMode::Anonymous => AuthSettings::Anonymous,
        AuthMode::Basic => {
            if username.is_none() && !entry.username.is_set() {
                problems.add(&entry.username, "required with auth = \"basic\"");
            }
            let password = secrets.read(&entry.password_env, &entry.password_file, problems);
            let (username, password) = (username?, password?);
            AuthSettings::Basic {
                username,
                password: password.secret,
                source: password.source,
            }
        }
    };
    Some(RegistrySettings {
        insecure,
        auth,
        endpoint: endpoint.flatten(),
    })
}
