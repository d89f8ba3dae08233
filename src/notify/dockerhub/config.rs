//! `[dockerhub]`: the Docker Hub user and token (by the config's one secret rule) that keep
//! the rollback banner on images' descriptions, and the API URL.

use serde::Deserialize;

use crate::config::{Checked, ConfigProblem, Layers, Problems, Secrets};
use crate::secret::Secret;

#[derive(Debug, Clone)]
pub struct DockerHubSettings {
    pub username: String,
    pub token: Secret,
    /// `https://hub.docker.com`
    pub api_url: String,
}

/// `[dockerhub]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DockerHubSection {
    enabled: Checked<bool>,
    username: Checked<String>,
    token_env: Checked<String>,
    token_file: Checked<String>,
    api_url: Checked<String>,
}

impl DockerHubSettings {
    /// Reads `[dockerhub]`: `None` when the banner is not enabled (then only its keys' names
    /// are judged).
    ///
    /// # Errors
    /// Every problem of the section.
    pub fn read(layers: &Layers) -> Result<Option<DockerHubSettings>, Vec<ConfigProblem>> {
        let secrets = layers.secrets();
        layers.read("dockerhub", |section| validate(section, secrets))
    }
}

fn validate(
    section: DockerHubSection,
    secrets: Secrets<'_>,
) -> Result<Option<DockerHubSettings>, Vec<ConfigProblem>> {
    let mut problems = Problems::default();
    match problems.required(&section.enabled) {
        Some(true) => {}
        Some(false) => return Ok(None),
        None => return problems.finish(None),
    }
    let username = problems.parse(&section.username, |username| {
        if username.is_empty() {
            Err(
                "the Docker Hub user (or organization, for an organization access token) is needed"
                    .to_owned(),
            )
        } else {
            Ok(username)
        }
    });
    let token = secrets.read(&section.token_env, &section.token_file, &mut problems);
    let api_url = problems.api_url(&section.api_url);
    let settings = || {
        Some(Some(DockerHubSettings {
            username: username?,
            token: token?.secret,
            api_url: api_url?,
        }))
    };
    problems.finish(settings())
}
