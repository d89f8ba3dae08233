//! Layered, strict configuration: `config/default.toml` → `--config FILE` → `ROLLBOT__…` env.
//!
//! How a load goes:
//!
//! 1. [`Layers`] merges the layers (the `config` crate) into one tree whose values remember
//!    the file or variable that set them.
//! 2. Each section is read by its owner with serde into its own `…Section` type
//!    (`deny_unknown_fields`), through this module's deserializer (`de.rs`), which reports
//!    *every* unknown key (with "did you mean", from serde's own field list) and lets no bad
//!    value end the read: each field is a [`Checked`] that keeps its value or what is wrong
//!    with it, with its key path and origin.
//! 3. The section's `validate` turns that into settings (ranges, cross-key rules, secrets by
//!    the one rule in [`Secrets`]) or returns every problem.
//! 4. A composition of sections ([`Sections`]) gathers all problems of all sections into one
//!    [`ConfigError`], so an operator fixes a config in one pass instead of one error per
//!    restart.
//!
//! This module owns the layering, the reader, the problems, the shared typed readers and the
//! core sections: `[rollback]`, `[log]`, `[registries]`, `[images]` (with their checks),
//! `[store]`, `[server]`, `[approvals]`, `[limits]`. The adapters' sections live beside their
//! adapters (`chat::console::config`, `chat::slack::config`, `notify::config`, …) and
//! `daemon::ServeSettings` composes everything; this module knows none of them.

mod checks;
mod de;
mod images;
mod layers;
mod problem;
mod read;
mod registries;
mod rollback;
mod secrets;
mod serve;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::domain::model::{ImageRef, RegistryHost, Repository, Tag};
use crate::domain::policy::ApprovalRule;
use crate::secret::Secret;

pub use checks::{CheckKind, CheckSpec, Placeholders};
pub use images::ImageSettings;
pub use layers::Layers;
pub use problem::{unknown, ConfigError, ConfigProblem};
pub use read::{Checked, HumanDuration, Problems, DAY, H, MIN, MS, S};
pub use registries::{AuthSettings, RegistrySettings};
pub use rollback::{LogSettings, RollbackSettings};
pub use secrets::{SecretRead, Secrets};
pub use serve::{
    listen_refusal, ApprovalSettings, DaemonSettings, LimitSettings, PostgresLocation,
    StoreLocation, StoreSettings, LEASE_TTL_MAX, LEASE_TTL_MIN,
};

/// The documented defaults, compiled in so the binary works without any file on disk.
pub const DEFAULT_TOML: &str = include_str!("../../config/default.toml");

/// The core settings: everything the CLI reads, and what the daemon reads besides its
/// adapters' own settings.
#[derive(Debug, Clone)]
pub struct Settings {
    pub rollback: RollbackSettings,
    pub log: LogSettings,
    /// Per registry host (`registry.example.com`, `127.0.0.1:5000`, `docker.io`).
    pub registries: BTreeMap<RegistryHost, RegistrySettings>,
    /// The allowlist, by alias.
    pub images: BTreeMap<String, ImageSettings>,
    /// Where `docker login` keeps credentials: `$DOCKER_CONFIG/config.json` or
    /// `$HOME/.docker/config.json`, read from the environment at load time.
    pub docker_config_default: Option<PathBuf>,
    /// `rollbot serve`: state, HTTP, approvals, limits.
    pub daemon: DaemonSettings,
    /// Every secret read while loading (see [`Settings::guard_secrets`]).
    secrets: Vec<Secret>,
}

/// A set of sections [`load`] can read and validate in one go.
///
/// [`Settings`] reads the core sections only (library use and tests: it leaves other sections
/// alone, since it cannot know them). The binary loads `daemon::ServeSettings`, which adds
/// every adapter's section and refuses unknown ones.
pub trait Sections: Sized {
    /// Reads and validates its sections.
    ///
    /// # Errors
    /// Every problem of every section.
    fn read(layers: &Layers) -> Result<Self, Vec<ConfigProblem>>;
}

impl Sections for Settings {
    fn read(layers: &Layers) -> Result<Settings, Vec<ConfigProblem>> {
        let mut problems = Problems::default();
        let rollback =
            problems.section(layers.read("rollback", rollback::RollbackSection::validate));
        let log = problems.section(layers.read("log", rollback::LogSection::validate));
        let secrets = layers.secrets();
        let registries = problems.section(
            layers.read("registries", |section: registries::RegistriesSection| {
                registries::validate(section, secrets)
            }),
        );
        let check_timeout = rollback
            .as_ref()
            .map_or(Duration::from_secs(60), |r| r.check_timeout);
        let images = problems.section(layers.read("images", |section: images::ImagesSection| {
            images::validate(section, check_timeout)
        }));
        let daemon = problems.section(serve::read(layers));
        let docker_config_default = layers
            .env("DOCKER_CONFIG")
            .map(|dir| Path::new(dir).join("config.json"))
            .or_else(|| {
                layers
                    .env("HOME")
                    .map(|home| Path::new(home).join(".docker/config.json"))
            });
        let settings = || {
            Some(Settings {
                rollback: rollback?,
                log: log?,
                registries: registries?,
                images: images?,
                docker_config_default,
                daemon: daemon?,
                secrets: Vec::new(),
            })
        };
        let mut settings = problems.finish(settings())?;
        settings.guard_secrets(layers);
        Ok(settings)
    }
}

/// Loads defaults, then `file`, then `ROLLBOT__SECTION__KEY` variables from `env`, and reads
/// the sections of `T` (usually inferred: `daemon::start` takes `daemon::ServeSettings`, the
/// registry client [`Settings`]).
///
/// `env` is also where secrets' variables, `DOCKER_CONFIG` and `HOME` are looked up, so tests
/// can pass their own environment.
///
/// # Errors
/// Every problem found, at once: an unreadable or malformed file, unknown keys, invalid values,
/// missing secrets.
pub fn load<T: Sections>(
    file: Option<&Path>,
    env: &HashMap<String, String>,
) -> Result<T, ConfigError> {
    let layers = Layers::load(file, env)?;
    T::read(&layers).map_err(|problems| ConfigError::new(problems, layers.json_logs()))
}

/// Loads with the process environment.
///
/// # Errors
/// See [`load`].
pub fn load_from_process_env<T: Sections>(file: Option<&Path>) -> Result<T, ConfigError> {
    let env: HashMap<String, String> = std::env::vars().collect();
    load(file, &env)
}

impl Settings {
    /// Hands every secret read so far (registry passwords here; a composition's adapters'
    /// tokens too, when it calls this again after reading them) to the health checks: their
    /// commands do not see the variables secrets come from, and what they print cannot show a
    /// secret's value.
    pub fn guard_secrets(&mut self, layers: &Layers) {
        let (values, variables) = layers.secrets_read();
        for entry in self.images.values_mut() {
            for check in &mut entry.checks {
                check.hidden_env.clone_from(&variables);
                check.redact.clone_from(&values);
            }
        }
        self.secrets = values;
    }

    /// Every secret value the settings' load read (registry passwords; Slack, GitHub and Docker
    /// Hub tokens when the daemon's sections were loaded), for redacting them from health-check
    /// output. The one secret reader records each, so nothing needs listing here.
    pub fn secrets(&self) -> Vec<Secret> {
        self.secrets.clone()
    }

    /// The registry settings for `host`, or the defaults (HTTPS, auto credentials).
    pub fn registry(&self, host: &RegistryHost) -> RegistrySettings {
        self.registries
            .get(host)
            .cloned()
            .unwrap_or(RegistrySettings {
                insecure: false,
                auth: AuthSettings::Auto {
                    docker_config: None,
                },
                endpoint: None,
            })
    }

    /// The allowlist entry for an alias or for the image it names.
    pub fn image_entry(&self, image: &ImageRef) -> Option<&ImageSettings> {
        self.images.values().find(|entry| entry.image == *image)
    }

    /// Resolves `text` as an alias or as `host[:port]/repo`.
    ///
    /// # Errors
    /// Neither a known alias nor a valid image reference. A bare word is reported as an unknown
    /// alias and lists the configured ones.
    pub fn resolve_image(&self, text: &str) -> Result<(ImageRef, Option<&ImageSettings>), String> {
        if let Some(entry) = self.images.get(text) {
            return Ok((entry.image.clone(), Some(entry)));
        }
        if !text.contains('/') {
            let known: Vec<&str> = self.images.keys().map(String::as_str).collect();
            let hint = if known.is_empty() {
                "no aliases are configured ([images.<alias>] in the config)".to_owned()
            } else {
                format!("configured aliases: {}", known.join(", "))
            };
            return Err(format!(
                "unknown image alias '{text}' ({hint}); or give the image as host[:port]/repository"
            ));
        }
        let image = ImageRef::parse(text).map_err(|e| e.to_string())?;
        let entry = self.image_entry(&image);
        Ok((image, entry))
    }

    /// The approval rule for an allowlisted image.
    pub fn approval_rule(&self, entry: &ImageSettings) -> ApprovalRule {
        let approvals = &self.daemon.approvals;
        ApprovalRule {
            approvers: entry
                .approvers
                .clone()
                .unwrap_or_else(|| approvals.approvers.clone()),
            required: entry.required_approvals.unwrap_or(approvals.required),
            expiry: approvals.expiry,
        }
    }

    /// What makes this config unfit for `rollbot serve` although every value is valid: an
    /// image whose rollbacks nobody could ever approve (no approvers, or fewer named approvers
    /// than approvals required). The CLI does not need approvers.
    pub fn serve_problems(&self) -> Vec<ConfigProblem> {
        self.images
            .values()
            .filter_map(|entry| {
                let why = self.approval_rule(entry).unapprovable(None)?;
                let path = match (&entry.approvers, &entry.required_approvals) {
                    (Some(_), _) => format!("images.{}.approvers", entry.alias),
                    (None, Some(_)) => format!("images.{}.required_approvals", entry.alias),
                    (None, None) => "approvals.approvers".to_owned(),
                };
                Some(ConfigProblem {
                    path,
                    message: format!(
                        "rollbacks of {} could never be approved: {why}; add approvers (user ids or group:<name>) or lower the approvals required",
                        entry.alias
                    ),
                    origin: None,
                })
            })
            .collect()
    }

    /// The scratch repository a drill of `image` rehearses on (same registry): the entry's
    /// `drill_repository`, else the image's repository with `rollback.drill_repository_suffix`
    /// appended.
    ///
    /// # Errors
    /// A name that is too long to be a repository, or (which config validation already refuses
    /// for an entry's own) the image's own repository, or any configured image's repository.
    pub fn drill_image(
        &self,
        image: &ImageRef,
        entry: Option<&ImageSettings>,
    ) -> Result<ImageRef, String> {
        let repository = match entry.and_then(|e| e.drill_repository.clone()) {
            // Docker Hub serves a one-component name from library/, as it names images.
            Some(repository)
                if image.registry.is_docker_hub() && !repository.as_str().contains('/') =>
            {
                Repository::parse(&format!("library/{repository}"))
                    .map_err(|error| format!("the drill repository of {image}: {error}"))?
            }
            Some(repository) => repository,
            None => {
                let name = format!(
                    "{}{}",
                    image.repository, self.rollback.drill_repository_suffix
                );
                Repository::parse(&name).map_err(|error| {
                    format!("the drill repository of {image} cannot be named: {error}; set drill_repository in its [images.<alias>] entry")
                })?
            }
        };
        if repository == image.repository {
            return Err(format!(
                "the drill repository of {image} would be the image's own repository"
            ));
        }
        // A drill overwrites the scratch repository's tags and deletes what it wrote there
        // (in distribution, with every tag pointing at it): never a configured image's own.
        if let Some(other) = self.images.values().find(|e| {
            let same_registry = e.image.registry == image.registry
                || (e.image.registry.is_docker_hub() && image.registry.is_docker_hub());
            same_registry && e.image.repository == repository
        }) {
            return Err(format!(
                "the drill repository of {image} would be {}, the repository of the configured image {}; a drill needs a scratch repository of its own",
                other.image, other.alias
            ));
        }
        Ok(ImageRef {
            registry: image.registry.clone(),
            repository,
        })
    }

    /// The floating tags for an image: `--tag` values, else the image entry's, else the global.
    pub fn floating_tags(&self, entry: Option<&ImageSettings>, explicit: &[Tag]) -> Vec<Tag> {
        if !explicit.is_empty() {
            return explicit.to_vec();
        }
        entry
            .and_then(|e| e.tags.clone())
            .unwrap_or_else(|| self.rollback.tags.clone())
    }
}

#[cfg(test)]
mod tests;
