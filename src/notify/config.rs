//! The notification sinks' settings, each section read beside its sink: `[github]`
//! (`github/config.rs`), `[dockerhub]` (`dockerhub/config.rs`), and here `[notify]` (how
//! deliveries retry) and `[templates]` (your own templates, by [`TemplateName`]).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::dockerhub::DockerHubSettings;
use super::github::GitHubSettings;
use super::templates::TemplateName;
use crate::config::{unknown, Checked, ConfigProblem, HumanDuration, Layers, Problems, DAY, H, MS};

/// Everything the notification sinks read.
#[derive(Debug, Clone)]
pub struct NotifySettings {
    /// `None` when GitHub Discussions are not enabled.
    pub github: Option<GitHubSettings>,
    /// `None` when the Docker Hub banner is not enabled.
    pub dockerhub: Option<DockerHubSettings>,
    pub retries: RetrySettings,
    /// Your own templates, replacing built-in ones.
    pub templates: Vec<(TemplateName, PathBuf)>,
}

/// Retries of notification deliveries (GitHub, Docker Hub): `[notify]`.
#[derive(Debug, Clone)]
pub struct RetrySettings {
    pub max_attempts: u32,
    pub retry_base: Duration,
    pub retry_max: Duration,
}

/// `[notify]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RetrySection {
    max_attempts: Checked<i64>,
    retry_base: Checked<HumanDuration>,
    retry_max: Checked<HumanDuration>,
}

/// `[templates]` as written: template name → file ("" for the built-in one).
type TemplatesSection = BTreeMap<String, Checked<String>>;

impl NotifySettings {
    /// Reads `[github]`, `[dockerhub]`, `[notify]` and `[templates]`.
    ///
    /// # Errors
    /// Every problem of the four sections.
    pub fn read(layers: &Layers) -> Result<NotifySettings, Vec<ConfigProblem>> {
        let mut problems = Problems::default();
        let github = problems.section(GitHubSettings::read(layers));
        let dockerhub = problems.section(DockerHubSettings::read(layers));
        let retries = problems.section(layers.read("notify", validate_retries));
        let templates = problems.section(layers.read("templates", validate_templates));
        let settings = || {
            Some(NotifySettings {
                github: github?,
                dockerhub: dockerhub?,
                retries: retries?,
                templates: templates?,
            })
        };
        problems.finish(settings())
    }
}

fn validate_retries(section: RetrySection) -> Result<RetrySettings, Vec<ConfigProblem>> {
    let mut problems = Problems::default();
    let max_attempts = problems.number(&section.max_attempts, 1, 100);
    let retry_base = problems.duration(&section.retry_base, 10 * MS, H);
    let retry_max = problems.duration(&section.retry_max, 100 * MS, DAY);
    if let (Some(base), Some(max)) = (retry_base, retry_max) {
        if max < base {
            problems.add(
                &section.retry_max,
                format!(
                    "must not be shorter than notify.retry_base ({})",
                    humantime::format_duration(base)
                ),
            );
        }
    }
    let settings = || {
        Some(RetrySettings {
            max_attempts: max_attempts?,
            retry_base: retry_base?,
            retry_max: retry_max?,
        })
    };
    problems.finish(settings())
}

fn validate_templates(
    section: TemplatesSection,
) -> Result<Vec<(TemplateName, PathBuf)>, Vec<ConfigProblem>> {
    let mut problems = Problems::default();
    let mut templates = Vec::new();
    for (key, path) in &section {
        let Some(name) = TemplateName::ALL.into_iter().find(|name| name.key() == key) else {
            let known = TemplateName::ALL.map(TemplateName::key);
            problems.add(path, unknown("key", key, &known));
            continue;
        };
        match problems.required(path) {
            Some(path) if !path.is_empty() => templates.push((name, PathBuf::from(path))),
            _ => {}
        }
    }
    templates.sort_by_key(|(name, _)| TemplateName::ALL.iter().position(|n| n == name));
    problems.finish(Some(templates))
}
