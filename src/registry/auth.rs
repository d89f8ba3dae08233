//! Registry credentials and the two auth schemes registries use: HTTP Basic and Bearer tokens.
//!
//! Credentials come from config (user + password from env or file), or from the Docker
//! credentials file that `docker login`, crane and skopeo share (`auths`, `credHelpers`,
//! `credsStore`). Challenges are parsed from `WWW-Authenticate`; tokens are fetched from the
//! realm the registry names and cached per scope until shortly before they expire.

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde::Deserialize;

use crate::config::AuthSettings;
use crate::domain::model::RegistryHost;
use crate::secret::Secret;

/// The credentials used for one registry host.
#[derive(Debug, Clone, PartialEq)]
pub enum Credentials {
    Anonymous,
    Basic {
        username: String,
        password: Secret,
        /// Where they came from, for error messages: "environment variable X",
        /// "/root/.docker/config.json".
        source: String,
    },
}

impl Credentials {
    /// `user 'bot' (from environment variable X)`, or `no credentials`.
    pub fn describe(&self) -> String {
        match self {
            Credentials::Anonymous => "no credentials".to_owned(),
            Credentials::Basic {
                username, source, ..
            } => format!("user '{username}' (from {source})"),
        }
    }
}

/// Why credentials could not be loaded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct CredentialError(String);

/// Resolves the configured auth mode into credentials for `host`.
///
/// `Auto` uses the Docker credentials file when it has an entry for the host and is anonymous
/// otherwise, like `docker`, `skopeo` and `crane` do.
///
/// # Errors
/// `docker-config` mode without an entry for the host, an unreadable or malformed credentials
/// file, or a failing credential helper.
pub fn resolve(
    host: &RegistryHost,
    settings: &AuthSettings,
    default_docker_config: Option<&Path>,
) -> Result<Credentials, CredentialError> {
    match settings {
        AuthSettings::Anonymous => Ok(Credentials::Anonymous),
        AuthSettings::Basic {
            username,
            password,
            source,
        } => Ok(Credentials::Basic {
            username: username.clone(),
            password: password.clone(),
            source: source.clone(),
        }),
        AuthSettings::Auto { docker_config } => {
            let path = docker_config.as_deref().or(default_docker_config);
            match path {
                Some(path) if path.exists() => {
                    Ok(from_docker_config(host, path)?.unwrap_or(Credentials::Anonymous))
                }
                Some(path) if docker_config.is_some() => Err(CredentialError(format!(
                    "docker credentials file {} does not exist",
                    path.display()
                ))),
                _ => Ok(Credentials::Anonymous),
            }
        }
        AuthSettings::DockerConfig { path } => {
            let Some(path) = path.as_deref().or(default_docker_config) else {
                return Err(CredentialError(
                    "auth = \"docker-config\" but neither DOCKER_CONFIG nor HOME is set; set docker_config".to_owned(),
                ));
            };
            if !path.exists() {
                return Err(CredentialError(format!(
                    "docker credentials file {} does not exist (run docker login {host}, or set docker_config)",
                    path.display()
                )));
            }
            from_docker_config(host, path)?.ok_or_else(|| {
                CredentialError(format!(
                    "{} has no credentials for {host} (run docker login {host})",
                    path.display()
                ))
            })
        }
    }
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct DockerConfigFile {
    #[serde(default)]
    auths: HashMap<String, DockerAuthEntry>,
    #[serde(default)]
    cred_helpers: HashMap<String, String>,
    creds_store: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "lowercase")]
struct DockerAuthEntry {
    auth: Option<String>,
    username: Option<String>,
    password: Option<String>,
    identitytoken: Option<String>,
}

/// The keys a Docker credentials file may use for `host`.
fn docker_config_keys(host: &RegistryHost) -> Vec<String> {
    if host.is_docker_hub() {
        vec![
            "https://index.docker.io/v1/".to_owned(),
            "index.docker.io".to_owned(),
            "docker.io".to_owned(),
            "registry-1.docker.io".to_owned(),
        ]
    } else {
        vec![host.as_str().to_owned()]
    }
}

/// `https://host/v1/` → `host`, for comparing entry keys.
fn normalise_key(key: &str) -> String {
    let without_scheme = key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"))
        .unwrap_or(key);
    without_scheme
        .split('/')
        .next()
        .unwrap_or("")
        .to_ascii_lowercase()
}

fn from_docker_config(
    host: &RegistryHost,
    path: &Path,
) -> Result<Option<Credentials>, CredentialError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| CredentialError(format!("cannot read {}: {e}", path.display())))?;
    let file: DockerConfigFile = serde_json::from_str(&text)
        .map_err(|e| CredentialError(format!("{} is not valid JSON: {e}", path.display())))?;
    let wanted: Vec<String> = docker_config_keys(host)
        .iter()
        .map(|k| normalise_key(k))
        .collect();
    let matches = |key: &String| wanted.contains(&normalise_key(key));

    // Docker's order: a per-registry helper wins, then the file's own entry, then the store.
    if let Some((key, helper)) = file.cred_helpers.iter().find(|(k, _)| matches(k)) {
        return credential_helper(helper, key).map(Some);
    }
    if let Some((key, entry)) = file.auths.iter().find(|(k, _)| matches(k)) {
        if entry.identitytoken.is_some() {
            return Err(CredentialError(format!(
                "{} holds an identity token for {key}; rollbot needs a user name and password or access token (docker login -u … {host})",
                path.display()
            )));
        }
        let source = path.display().to_string();
        if let Some(encoded) = &entry.auth {
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(encoded.trim())
                .ok()
                .and_then(|bytes| String::from_utf8(bytes).ok())
                .ok_or_else(|| {
                    CredentialError(format!(
                        "{}: the auth entry for {key} is not base64 of user:password",
                        path.display()
                    ))
                })?;
            let Some((username, password)) = decoded.split_once(':') else {
                return Err(CredentialError(format!(
                    "{}: the auth entry for {key} is not user:password",
                    path.display()
                )));
            };
            return Ok(Some(Credentials::Basic {
                username: username.to_owned(),
                password: Secret::new(password),
                source,
            }));
        }
        if let (Some(username), Some(password)) = (&entry.username, &entry.password) {
            return Ok(Some(Credentials::Basic {
                username: username.clone(),
                password: Secret::new(password.clone()),
                source,
            }));
        }
        // An empty entry next to a credsStore is how Docker records "this host is in the store".
    }
    if let Some(store) = &file.creds_store {
        let key = if host.is_docker_hub() {
            "https://index.docker.io/v1/".to_owned()
        } else {
            host.as_str().to_owned()
        };
        return match credential_helper(store, &key) {
            Ok(credentials) => Ok(Some(credentials)),
            // The store answers "credentials not found" for hosts it does not know.
            Err(CredentialError(message)) if message.contains("not found") => Ok(None),
            Err(other) => Err(other),
        };
    }
    Ok(None)
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct HelperAnswer {
    username: String,
    secret: String,
}

/// Runs `docker-credential-<helper> get` with the server URL on stdin (Docker's protocol).
fn credential_helper(helper: &str, server: &str) -> Result<Credentials, CredentialError> {
    use std::io::Write as _;
    let program = format!("docker-credential-{helper}");
    let mut child = std::process::Command::new(&program)
        .arg("get")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| CredentialError(format!("cannot run credential helper {program}: {e}")))?;
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(server.as_bytes());
    }
    let output = child
        .wait_with_output()
        .map_err(|e| CredentialError(format!("credential helper {program} failed: {e}")))?;
    if !output.status.success() {
        let said = String::from_utf8_lossy(&output.stdout);
        let said = said.trim();
        return Err(CredentialError(format!(
            "credential helper {program} found no credentials for {server}: {}",
            if said.is_empty() {
                "credentials not found"
            } else {
                said
            }
        )));
    }
    let answer: HelperAnswer = serde_json::from_slice(&output.stdout).map_err(|e| {
        CredentialError(format!(
            "credential helper {program} answered something else than JSON credentials: {e}"
        ))
    })?;
    if answer.username == "<token>" {
        return Err(CredentialError(format!(
            "credential helper {program} holds an identity token for {server}; rollbot needs a user name and password or access token"
        )));
    }
    Ok(Credentials::Basic {
        username: answer.username,
        password: Secret::new(answer.secret),
        source: format!("credential helper {program}"),
    })
}

/// What a registry asked for in `WWW-Authenticate`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Challenge {
    Basic,
    Bearer {
        realm: String,
        service: Option<String>,
    },
}

impl Challenge {
    /// Parses `Basic realm="…"` or `Bearer realm="…",service="…",scope="…"`.
    pub fn parse(header: &str) -> Option<Challenge> {
        let header = header.trim();
        let (scheme, rest) = header.split_once(' ').unwrap_or((header, ""));
        if scheme.eq_ignore_ascii_case("basic") {
            return Some(Challenge::Basic);
        }
        if !scheme.eq_ignore_ascii_case("bearer") {
            return None;
        }
        let params = parse_params(rest);
        Some(Challenge::Bearer {
            realm: params.get("realm")?.clone(),
            service: params.get("service").cloned(),
        })
    }
}

/// `a="x, y",b=z` → {a: "x, y", b: "z"}.
fn parse_params(text: &str) -> HashMap<String, String> {
    let mut params = HashMap::new();
    let mut rest = text.trim();
    while !rest.is_empty() {
        let Some((key, after)) = rest.split_once('=') else {
            break;
        };
        let key = key
            .trim()
            .trim_start_matches(',')
            .trim()
            .to_ascii_lowercase();
        let after = after.trim_start();
        let (value, remaining) = if let Some(quoted) = after.strip_prefix('"') {
            let mut value = String::new();
            let mut chars = quoted.char_indices();
            let mut end = quoted.len();
            while let Some((i, c)) = chars.next() {
                match c {
                    '\\' => {
                        if let Some((_, escaped)) = chars.next() {
                            value.push(escaped);
                        }
                    }
                    '"' => {
                        end = i + 1;
                        break;
                    }
                    other => value.push(other),
                }
            }
            (value, &quoted[end.min(quoted.len())..])
        } else {
            let end = after.find(',').unwrap_or(after.len());
            (after[..end].trim().to_owned(), &after[end..])
        };
        params.insert(key, value);
        rest = remaining.trim_start().trim_start_matches(',').trim_start();
    }
    params
}

/// A token server's answer (distribution's token spec).
#[derive(Deserialize)]
pub(crate) struct TokenAnswer {
    token: Option<String>,
    access_token: Option<String>,
    expires_in: Option<u64>,
}

/// A bearer token and when to stop using it.
#[derive(Debug, Clone)]
pub struct Token {
    pub value: Secret,
    pub expires: Instant,
}

impl TokenAnswer {
    /// The token, valid until 10 s before the server's expiry (default 60 s, per the spec).
    pub(crate) fn into_token(self, now: Instant) -> Option<Token> {
        let value = self.token.or(self.access_token).filter(|t| !t.is_empty())?;
        let lifetime = Duration::from_secs(self.expires_in.unwrap_or(60).max(20));
        Some(Token {
            value: Secret::new(value),
            expires: now + lifetime - Duration::from_secs(10),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenges_parse_as_registries_send_them() {
        assert_eq!(
            Challenge::parse("Basic realm=\"basic-realm\""),
            Some(Challenge::Basic)
        );
        assert_eq!(
            Challenge::parse(
                "Bearer realm=\"https://auth.docker.io/token\",service=\"registry.docker.io\",scope=\"repository:samalba/my-app:pull,push\""
            ),
            Some(Challenge::Bearer {
                realm: "https://auth.docker.io/token".into(),
                service: Some("registry.docker.io".into())
            })
        );
        assert_eq!(Challenge::parse("Negotiate abc"), None);
        assert_eq!(Challenge::parse("Bearer service=x"), None);
    }

    #[test]
    fn docker_config_entries_are_found_by_host() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("config.json");
        let encoded = base64::engine::general_purpose::STANDARD.encode("bot:s3cret");
        std::fs::write(
            &path,
            format!(r#"{{"auths": {{"https://index.docker.io/v1/": {{"auth": "{encoded}"}}, "registry.example.com:5000": {{"auth": "{encoded}"}}}}}}"#),
        )
        .expect("write");
        for host in ["docker.io", "registry.example.com:5000"] {
            let host = RegistryHost::parse(host).expect("host");
            let credentials = resolve(
                &host,
                &AuthSettings::DockerConfig {
                    path: Some(path.clone()),
                },
                None,
            )
            .expect("found");
            assert!(
                matches!(credentials, Credentials::Basic { ref username, ref password, .. } if username == "bot" && password.expose() == "s3cret")
            );
        }
        let other = RegistryHost::parse("ghcr.io").expect("host");
        assert_eq!(
            resolve(
                &other,
                &AuthSettings::Auto {
                    docker_config: Some(path.clone())
                },
                None
            ),
            Ok(Credentials::Anonymous)
        );
        let error = resolve(
            &other,
            &AuthSettings::DockerConfig { path: Some(path) },
            None,
        )
        .expect_err("no entry");
        assert!(
            error.to_string().contains("has no credentials for ghcr.io"),
            "{error}"
        );
    }
}
