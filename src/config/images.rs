//! `[images.<alias>]`: the allowlist, each image with its floating tags, approvers, Docker Hub
//! banner, and `[[images.<alias>.checks]]` health checks.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use serde::Deserialize;

use super::checks::{CheckKind, CheckSpec};
use super::read::{Checked, HumanDuration, Problems, H, MS};
use super::ConfigProblem;
use crate::domain::command::RESERVED;
use crate::domain::model::{ImageRef, Repository, Tag};
use crate::domain::policy::Approver;

#[derive(Debug, Clone)]
pub struct ImageSettings {
    pub alias: String,
    pub image: ImageRef,
    /// Floating tags to move; `None` means the global `rollback.tags`.
    pub tags: Option<Vec<Tag>>,
    pub checks: Vec<CheckSpec>,
    /// Who may approve rollbacks of this image; `None` means `approvals.approvers`.
    pub approvers: Option<Vec<Approver>>,
    /// Approvals needed; `None` means `approvals.required`.
    pub required_approvals: Option<u32>,
    /// `namespace/repository` on Docker Hub whose description gets the rollback banner.
    pub dockerhub: Option<String>,
    /// The scratch repository of this image's drills; `None`: the image's repository with
    /// `rollback.drill_repository_suffix` appended. Never the image's own repository.
    pub drill_repository: Option<Repository>,
}

/// `[images]` as written: alias → entry.
pub(super) type ImagesSection = Option<BTreeMap<String, Checked<ImageSection>>>;

/// One `[images.<alias>]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ImageSection {
    image: Checked<String>,
    tags: Checked<Vec<String>>,
    checks: Checked<Vec<Checked<CheckSection>>>,
    approvers: Checked<Vec<String>>,
    required_approvals: Checked<i64>,
    dockerhub: Checked<bool>,
    drill_repository: Checked<String>,
}

/// One `[[images.<alias>.checks]]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct CheckSection {
    name: Checked<String>,
    command: Checked<Vec<String>>,
    http: Checked<String>,
    expect_status: Checked<i64>,
    timeout: Checked<HumanDuration>,
    attempts: Checked<i64>,
    interval: Checked<HumanDuration>,
}

/// The allowlist; a check without its own timeout gets `check_timeout`.
pub(super) fn validate(
    section: ImagesSection,
    check_timeout: Duration,
) -> Result<BTreeMap<String, ImageSettings>, Vec<ConfigProblem>> {
    let mut problems = Problems::default();
    let mut images = BTreeMap::new();
    for (alias, entry) in section.unwrap_or_default() {
        if RESERVED.contains(&alias.as_str()) {
            problems.add(
                &entry,
                format!("'{alias}' is a /rollback subcommand and cannot be an alias"),
            );
            continue;
        }
        let alias_ok = !alias.is_empty()
            && alias.len() <= 64
            && alias
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
        if !alias_ok {
            // Lowercase only: environment overrides arrive lowercased and must hit the same key.
            problems.add(
                &entry,
                "an alias is 1-64 lowercase letters, digits, '-' or '_'",
            );
            continue;
        }
        let Some(section) = problems.get(&entry) else {
            continue;
        };
        if let Some(settings) = image(alias.clone(), section, check_timeout, &mut problems) {
            images.insert(alias, settings);
        }
    }
    let mut seen: HashMap<&ImageRef, &str> = HashMap::new();
    let mut duplicates = Vec::new();
    for (alias, entry) in &images {
        if let Some(first) = seen.insert(&entry.image, alias) {
            duplicates.push(ConfigProblem {
                path: format!("images.{alias}.image"),
                message: format!("{} is already configured as images.{first}", entry.image),
                origin: None,
            });
        }
    }
    for duplicate in duplicates {
        problems.push(duplicate);
    }
    problems.finish(Some(images))
}

fn image(
    alias: String,
    entry: &ImageSection,
    check_timeout: Duration,
    problems: &mut Problems,
) -> Option<ImageSettings> {
    let image = problems.parse(&entry.image, |text| {
        ImageRef::parse(&text).map_err(|error| error.to_string())
    });
    let tags = entry.tags.is_set().then(|| problems.tags(&entry.tags));
    if matches!(&tags, Some(Some(tags)) if tags.is_empty()) {
        problems.add(
            &entry.tags,
            "leave tags out to use rollback.tags, or name at least one",
        );
    }
    let approvers = entry
        .approvers
        .is_set()
        .then(|| problems.approvers(&entry.approvers));
    let dockerhub = match (problems.optional(&entry.dockerhub), &image) {
        (Some(true), Some(image)) if image.registry.is_docker_hub() => {
            Some(image.repository.to_string())
        }
        (Some(true), Some(image)) => {
            problems.add(
                &entry.dockerhub,
                format!("{image} is not on Docker Hub; only docker.io/… images have a Docker Hub description"),
            );
            None
        }
        _ => None,
    };
    let drill_repository = entry.drill_repository.is_set().then(|| {
        problems.parse(&entry.drill_repository, |text| {
            let repository = Repository::parse(&text).map_err(|error| error.to_string())?;
            match &image {
                Some(image) if image.repository == repository => Err(format!(
                    "'{text}' is the image's own repository; a drill needs a scratch repository it may write to and delete from"
                )),
                _ => Ok(repository),
            }
        })
    });
    let required_approvals = entry
        .required_approvals
        .is_set()
        .then(|| problems.number(&entry.required_approvals, 1, 100));
    let checks = match entry.checks.is_set() {
        true => problems
            .get(&entry.checks)
            .map(|checks| self::checks(checks, check_timeout, problems))
            .unwrap_or_default(),
        false => Vec::new(),
    };
    Some(ImageSettings {
        alias,
        image: image?,
        tags: tags.flatten(),
        checks,
        approvers: approvers.flatten(),
        required_approvals: required_approvals.flatten(),
        dockerhub,
        drill_repository: drill_repository.flatten(),
    })
}

fn checks(
    entries: &[Checked<CheckSection>],
    default_timeout: Duration,
    problems: &mut Problems,
) -> Vec<CheckSpec> {
    let mut checks: Vec<CheckSpec> = Vec::new();
    let mut names: Vec<String> = Vec::new();
    for entry in entries {
        let Some(check) = problems.get(entry) else {
            continue;
        };
        let name = problems.required(&check.name);
        let command = problems.optional(&check.command);
        let http = problems.optional(&check.http);
        let expect_status = check.expect_status.is_set().then(|| {
            problems.parse(&check.expect_status, |n| match u16::try_from(n) {
                Ok(status) if (100..=599).contains(&status) => Ok(status),
                _ => Err(format!("{n} is not an HTTP status (100-599)")),
            })
        });
        let timeout = match check.timeout.is_set() {
            true => problems.duration(&check.timeout, 100 * MS, H),
            false => Some(default_timeout),
        };
        let attempts = match check.attempts.is_set() {
            true => problems.number(&check.attempts, 1, 100),
            false => Some(1),
        };
        let interval = match check.interval.is_set() {
            true => problems.duration(&check.interval, 10 * MS, H),
            false => Some(Duration::from_secs(5)),
        };
        let kind = match (command, http) {
            (Some(argv), None) => {
                if check.expect_status.is_set() {
                    problems.add(&check.expect_status, "only used with http checks");
                }
                if argv.is_empty() {
                    problems.add(&check.command, "needs at least the program to run");
                    continue;
                }
                CheckKind::Command { argv }
            }
            (None, Some(url)) => CheckKind::Http {
                url,
                expect_status: expect_status.flatten().unwrap_or(200),
            },
            (Some(_), Some(_)) => {
                problems.add(entry, "a check has either command or http, not both");
                continue;
            }
            (None, None) => {
                if !check.command.is_set() && !check.http.is_set() {
                    problems.add(
                        entry,
                        "a check needs command = [\"program\", \"arg\", …] or http = \"https://…\"",
                    );
                }
                continue;
            }
        };
        let Some(name) = name else { continue };
        if names.contains(&name) {
            problems.add(
                &check.name,
                format!("another check is already named '{name}'"),
            );
            continue;
        }
        names.push(name.clone());
        let (Some(timeout), Some(attempts), Some(interval)) = (timeout, attempts, interval) else {
            continue;
        };
        let spec = CheckSpec {
            name,
            kind,
            timeout,
            attempts,
            interval,
            hidden_env: Vec::new(),
            redact: Vec::new(),
        };
        if let Err(message) = spec.validate() {
            problems.add(entry, message);
            continue;
        }
        checks.push(spec);
    }
    checks
}
