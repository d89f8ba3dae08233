//! `[github]`: the repository (`owner/name`) and Discussion category, the token (by the
//! config's one secret rule), the API URL, when the Discussion is created, whether failed
//! checks' output is published.

use serde::Deserialize;

use crate::config::{Checked, ConfigProblem, Layers, Problems, Secrets};
use crate::secret::Secret;

/// When the Discussion is created.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AnnounceOn {
    Approved,
    Succeeded,
}

#[derive(Debug, Clone)]
pub struct GitHubSettings {
    pub owner: String,
    pub name: String,
    /// The Discussion category, by name.
    pub category: String,
    pub token: Secret,
    /// `https://api.github.com/graphql`
    pub api_url: String,
    pub announce_on: AnnounceOn,
    /// Whether what failed health checks printed goes into the (public) Discussion.
    pub publish_check_output: bool,
}

/// `[github]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct GitHubSection {
    enabled: Checked<bool>,
    repository: Checked<String>,
    category: Checked<String>,
    token_env: Checked<String>,
    token_file: Checked<String>,
    api_url: Checked<String>,
    announce_on: Checked<AnnounceOn>,
    publish_check_output: Checked<bool>,
}

impl GitHubSettings {
    /// Reads `[github]`: `None` when GitHub Discussions are not enabled (then only its keys'
    /// names are judged).
    ///
    /// # Errors
    /// Every problem of the section.
    pub fn read(layers: &Layers) -> Result<Option<GitHubSettings>, Vec<ConfigProblem>> {
        let secrets = layers.secrets();
        layers.read("github", |section| validate(section, secrets))
    }
}

fn validate(
    section: GitHubSection,
    secrets: Secrets<'_>,
) -> Result<Option<GitHubSettings>, Vec<ConfigProblem>> {
    let mut problems = Problems::default();
    match problems.required(&section.enabled) {
        Some(true) => {}
        Some(false) => return Ok(None),
        None => return problems.finish(None),
    }
    let repository = problems.parse(&section.repository, |text| {
        owner_and_name(&text).ok_or_else(|| format!("'{text}' is not owner/name"))
    });
    let category = problems.required(&section.category);
    let token = secrets.read(&section.token_env, &section.token_file, &mut problems);
    let api_url = problems.api_url(&section.api_url);
    let announce_on = problems.required(&section.announce_on);
    let publish_check_output = problems.required(&section.publish_check_output);
    let settings = || {
        let (owner, name) = repository?;
        Some(Some(GitHubSettings {
            owner,
            name,
            category: category?,
            token: token?.secret,
            api_url: api_url?,
            announce_on: announce_on?,
            publish_check_output: publish_check_output?,
        }))
    };
    problems.finish(settings())
}

/// `owner/name`, each part letters, digits, `-`, `_` or `.`.
fn owner_and_name(text: &str) -> Option<(String, String)> {
    let valid = |part: &str| {
        !part.is_empty()
            && part
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
    };
    match text.split('/').collect::<Vec<_>>().as_slice() {
        [owner, name] if valid(owner) && valid(name) => {
            Some(((*owner).to_owned(), (*name).to_owned()))
        }
        _ => None,
    }
}
