//! `[rollback]` (the RTO, the default floating tags, timeouts, the drills' scratch repository
//! name) and `[log]`.

use std::time::Duration;

use serde::Deserialize;

use super::read::{Checked, HumanDuration, Problems, DAY, H, MIN, MS, S};
use super::ConfigProblem;
use crate::domain::model::{Repository, Tag};

#[derive(Debug, Clone)]
pub struct RollbackSettings {
    /// Recovery-time objective: the budget every report is measured against.
    pub rto: Duration,
    /// Floating tags moved when neither the image entry nor `--tag` names any.
    pub tags: Vec<Tag>,
    /// Timeout of one registry request (connect + answer).
    pub registry_timeout: Duration,
    /// Timeout of a health check that does not set its own.
    pub check_timeout: Duration,
    /// Appended to an image's repository to name its drills' scratch repository (unless the
    /// image entry names one): never empty, so a drill never works on the image itself.
    pub drill_repository_suffix: String,
}

#[derive(Debug, Clone)]
pub struct LogSettings {
    /// A `tracing` filter such as `warn` or `rollbot=debug,info`.
    pub level: String,
    /// One JSON object per line instead of text.
    pub json: bool,
}

/// `[rollback]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RollbackSection {
    rto: Checked<HumanDuration>,
    tags: Checked<Vec<String>>,
    registry_timeout: Checked<HumanDuration>,
    check_timeout: Checked<HumanDuration>,
    drill_repository_suffix: Checked<String>,
}

impl RollbackSection {
    pub(super) fn validate(self) -> Result<RollbackSettings, Vec<ConfigProblem>> {
        let mut problems = Problems::default();
        let rto = problems.duration(&self.rto, S, 7 * DAY);
        let tags = problems.tags(&self.tags);
        if tags.as_ref().is_some_and(Vec::is_empty) {
            problems.add(&self.tags, "at least one floating tag is needed");
        }
        let registry_timeout = problems.duration(&self.registry_timeout, 100 * MS, 10 * MIN);
        let check_timeout = problems.duration(&self.check_timeout, 100 * MS, H);
        let drill_repository_suffix =
            problems.parse(&self.drill_repository_suffix, check_drill_suffix);
        let settings = || {
            Some(RollbackSettings {
                rto: rto?,
                tags: tags?,
                registry_timeout: registry_timeout?,
                check_timeout: check_timeout?,
                drill_repository_suffix: drill_repository_suffix?,
            })
        };
        problems.finish(settings())
    }
}

/// A drill suffix: 1-64 characters that keep any repository name valid when appended
/// (`-rollbot-drill`, `_drill`, `/drill`).
fn check_drill_suffix(suffix: String) -> Result<String, String> {
    let rule = "a suffix of 1-64 characters that keeps a repository name valid when appended (like \"-rollbot-drill\" or \"/drill\"): lowercase letters, digits, '.', '_', '-', '/', ending in a letter or digit";
    // Every repository ends in a letter or digit, so "a" + suffix stands for them all.
    if suffix.is_empty() || suffix.len() > 64 || Repository::parse(&format!("a{suffix}")).is_err() {
        return Err(format!("'{suffix}' is not {rule}"));
    }
    Ok(suffix)
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "lowercase")]
enum LogFormat {
    Text,
    Json,
}

/// `[log]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct LogSection {
    level: Checked<String>,
    format: Checked<LogFormat>,
}

impl LogSection {
    pub(super) fn validate(self) -> Result<LogSettings, Vec<ConfigProblem>> {
        let mut problems = Problems::default();
        let level = problems.parse(&self.level, |level| match check_log_filter(&level) {
            Ok(()) => Ok(level),
            Err(why) => Err(format!("'{level}' is not a log filter: {why}; use error, warn, info, debug or trace (or rollbot=debug,warn)")),
        });
        let json = problems
            .optional(&self.format)
            .map(|format| matches!(format, LogFormat::Json));
        problems.finish(level.map(|level| LogSettings {
            level,
            json: json.unwrap_or(false),
        }))
    }
}

/// A `tracing` filter of the kinds the docs promise: a level (`error`, `warn`, `info`,
/// `debug`, `trace`, `off`), or comma-separated `target=level` directives. `tracing`'s own
/// parser takes any word as a target name, so `"nonsense"` would pass it and log nothing useful.
fn check_log_filter(filter: &str) -> Result<(), String> {
    const LEVELS: &[&str] = &["error", "warn", "info", "debug", "trace", "off"];
    let is_level = |text: &str| LEVELS.contains(&text.to_ascii_lowercase().as_str());
    if filter.trim().is_empty() {
        return Err("is empty".to_owned());
    }
    for directive in filter.split(',').map(str::trim) {
        let ok = match directive.split_once('=') {
            Some((target, level)) => {
                !target.is_empty()
                    && target
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
                    && is_level(level)
            }
            None => is_level(directive),
        };
        if !ok {
            return Err(format!(
                "'{directive}' is neither a level ({}) nor target=level",
                LEVELS.join(", ")
            ));
        }
    }
    Ok(())
}
