//! Layered, strict configuration: `config/default.toml` → `--config FILE` → `ROLLBOT__…` env.
//!
//! The `config` crate merges the layers; this module then walks the merged tree once, turning it
//! into typed [`Settings`] and collecting *every* problem (unknown key, wrong type, invalid value,
//! secret in plain text) with its key path and the layer it came from, so an operator fixes a
//! config in one pass instead of one error per restart.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use config::{Config, Environment, File, FileFormat, Value, ValueKind};

use crate::domain::command::RESERVED;
use crate::domain::model::{ImageRef, RegistryHost, Tag};
use crate::domain::policy::{ApprovalRule, Approver};
use crate::domain::rollback::Actor;
use crate::secret::Secret;

mod checks;

pub use checks::{CheckKind, CheckSpec, Placeholders};

/// The documented defaults, compiled in so the binary works without any file on disk.
pub const DEFAULT_TOML: &str = include_str!("../../config/default.toml");

/// Everything rollbot reads from configuration, validated.
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
    /// `rollbot serve`: state, HTTP, approvals, limits, the console.
    pub daemon: DaemonSettings,
}

/// Everything only `rollbot serve` (and `rollbot audit`) reads.
#[derive(Debug, Clone)]
pub struct DaemonSettings {
    /// The SQLite file.
    pub store_path: PathBuf,
    pub listen: std::net::SocketAddr,
    /// Listening on a non-loopback address must be asked for.
    pub allow_non_loopback: bool,
    /// How long SIGTERM waits for running rollbacks before exiting.
    pub shutdown_grace: Duration,
    pub approvals: ApprovalSettings,
    pub limits: LimitSettings,
    pub console: ConsoleSettings,
    /// `None` when Slack is not enabled.
    pub slack: Option<SlackSettings>,
    /// `None` when GitHub Discussions are not enabled.
    pub github: Option<GitHubSettings>,
    /// `None` when the Docker Hub banner is not enabled.
    pub dockerhub: Option<DockerHubSettings>,
    pub notify: NotifySettings,
    /// Your own templates, replacing built-in ones.
    pub templates: Vec<(crate::notify::templates::TemplateName, PathBuf)>,
}

/// When the Discussion is created.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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

#[derive(Debug, Clone)]
pub struct DockerHubSettings {
    pub username: String,
    pub token: Secret,
    /// `https://hub.docker.com`
    pub api_url: String,
}

/// Retries of notification deliveries (GitHub, Docker Hub).
#[derive(Debug, Clone)]
pub struct NotifySettings {
    pub max_attempts: u32,
    pub retry_base: Duration,
    pub retry_max: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlackMode {
    /// A WebSocket opened by rollbot (app-level token); no public URL needed.
    Socket,
    /// Slack posts to `/slack/commands`, `/slack/interactions`, `/slack/events`, signed.
    Http,
}

#[derive(Debug, Clone)]
pub struct SlackSettings {
    pub mode: SlackMode,
    /// `xoxb-…`: Web API calls.
    pub bot_token: Secret,
    /// `xapp-…`: Socket Mode only.
    pub app_token: Option<Secret>,
    /// HTTP mode only.
    pub signing_secret: Option<Secret>,
    /// Channel ids rollbot works in; empty: any channel it is in.
    pub channels: Vec<String>,
    pub approve_reaction: String,
    pub reject_reaction: String,
    /// `https://slack.com/api` (tests point it at a loopback fake).
    pub api_url: String,
    /// How long user-group memberships are cached.
    pub group_cache: Duration,
}

#[derive(Debug, Clone)]
pub struct ApprovalSettings {
    pub approvers: Vec<Approver>,
    pub required: u32,
    pub expiry: Duration,
}

#[derive(Debug, Clone)]
pub struct LimitSettings {
    /// Chat commands per user per minute.
    pub commands_per_minute: u32,
    /// Rollbacks started per hour, all users together.
    pub rollbacks_per_hour: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConsoleMode {
    /// On when no chat platform is configured.
    Auto,
    On,
    Off,
}

#[derive(Debug, Clone)]
pub struct ConsoleSettings {
    pub mode: ConsoleMode,
    /// The name of the console's one channel.
    pub channel: String,
    /// The people who can use the console (it has no login: pick a user).
    pub users: Vec<Actor>,
    /// How many messages the channel keeps in memory (the oldest go first).
    pub history: u32,
}

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
}

#[derive(Debug, Clone)]
pub struct LogSettings {
    /// A `tracing` filter such as `warn` or `rollbot=debug,info`.
    pub level: String,
    /// One JSON object per line instead of text.
    pub json: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RegistrySettings {
    /// Plain HTTP instead of HTTPS.
    pub insecure: bool,
    pub auth: AuthSettings,
    /// `host:port` to connect to instead of the image's registry host (a mirror, or a test
    /// registry standing in for `docker.io`).
    pub endpoint: Option<String>,
}

/// Why rollbot refuses to listen on `addr`, if it does: beyond loopback only when
/// `server.allow_non_loopback` says so (the console has no login).
pub fn listen_refusal(addr: std::net::SocketAddr, allow_non_loopback: bool) -> Option<String> {
    (!addr.ip().is_loopback() && !allow_non_loopback).then(|| {
        format!("{addr} is not a loopback address; set server.allow_non_loopback = true to listen there (put TLS and authentication in front)")
    })
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
}

impl Settings {
    /// Every secret value the settings hold (registry passwords; Slack, GitHub and Docker Hub
    /// tokens), for redacting them from health-check output. A new `Secret` field belongs here.
    pub fn secrets(&self) -> Vec<Secret> {
        let mut secrets: Vec<Secret> = self
            .registries
            .values()
            .filter_map(|registry| match &registry.auth {
                AuthSettings::Basic { password, .. } => Some(password.clone()),
                _ => None,
            })
            .collect();
        let daemon = &self.daemon;
        if let Some(slack) = &daemon.slack {
            secrets.push(slack.bot_token.clone());
            secrets.extend(slack.app_token.clone());
            secrets.extend(slack.signing_secret.clone());
        }
        secrets.extend(daemon.github.as_ref().map(|github| github.token.clone()));
        secrets.extend(daemon.dockerhub.as_ref().map(|hub| hub.token.clone()));
        secrets
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

/// One thing wrong with the configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigProblem {
    /// Dotted key path, e.g. `images.app.checks[0].timeout`.
    pub path: String,
    pub message: String,
    /// The layer the value came from (a file path, "the environment"), when known.
    pub origin: Option<String>,
}

impl fmt::Display for ConfigProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)?;
        if let Some(origin) = &self.origin {
            write!(f, " (set in {origin})")?;
        }
        Ok(())
    }
}

/// All problems found in one load.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigError {
    pub problems: Vec<ConfigProblem>,
    /// `log.format` is `json` as far as the config could be read: a daemon reports this error
    /// as a JSON log line, like everything else it logs.
    pub json_logs: bool,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.problems.as_slice() {
            [one] => write!(f, "invalid config: {one}"),
            many => {
                write!(f, "invalid config ({} problems):", many.len())?;
                for problem in many {
                    write!(f, "\n  {problem}")?;
                }
                Ok(())
            }
        }
    }
}

impl ConfigError {
    fn single(path: &str, message: String) -> ConfigError {
        ConfigError {
            problems: vec![ConfigProblem {
                path: path.to_owned(),
                message,
                origin: None,
            }],
            json_logs: false,
        }
    }
}

/// Loads defaults, then `file`, then `ROLLBOT__SECTION__KEY` variables from `env`.
///
/// `env` is also where `password_env` variables, `DOCKER_CONFIG` and `HOME` are looked up, so
/// tests can pass their own environment.
///
/// # Errors
/// Every problem found, at once: an unreadable or malformed file, unknown keys, invalid values,
/// missing secrets.
pub fn load(file: Option<&Path>, env: &HashMap<String, String>) -> Result<Settings, ConfigError> {
    let mut builder = Config::builder().add_source(File::from_str(DEFAULT_TOML, FileFormat::Toml));
    if let Some(path) = file {
        if let Err(error) = std::fs::metadata(path) {
            return Err(ConfigError::single(
                "--config",
                format!("cannot read {}: {error}", path.display()),
            ));
        }
        builder = builder.add_source(File::from(path).format(FileFormat::Toml).required(true));
    }
    // Only ROLLBOT__… is config; ROLLBOT_SOMETHING (one underscore) stays free for secrets that
    // password_env points at. See api-facts.md §6.2 on the prefix separator.
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
    let json_from_env = env
        .get("ROLLBOT__LOG__FORMAT")
        .is_some_and(|format| format == "json");
    let merged = builder.build().map_err(|error| ConfigError {
        json_logs: json_from_env,
        ..ConfigError::single("config", error.to_string())
    })?;

    let mut walker = Walker {
        problems: Vec::new(),
        env,
        secret_env: Vec::new(),
    };
    let settings = walker.settings(&merged.cache);
    match settings {
        Some(settings) if walker.problems.is_empty() => Ok(settings),
        _ => {
            let mut problems = walker.problems;
            problems.sort_by(|a, b| a.path.cmp(&b.path));
            problems.dedup();
            let json_logs = merged
                .get_string("log.format")
                .is_ok_and(|format| format == "json");
            Err(ConfigError {
                problems,
                json_logs,
            })
        }
    }
}

/// Loads with the process environment.
///
/// # Errors
/// See [`load`].
pub fn load_from_process_env(file: Option<&Path>) -> Result<Settings, ConfigError> {
    let env: HashMap<String, String> = std::env::vars().collect();
    load(file, &env)
}

/// Walks the merged tree; each method reports what is wrong at its path and returns `None`.
struct Walker<'e> {
    problems: Vec<ConfigProblem>,
    env: &'e HashMap<String, String>,
    /// Environment variables secrets are read from (hidden from health-check commands).
    secret_env: Vec<String>,
}

const TOP_KEYS: &[&str] = &[
    "rollback",
    "log",
    "registries",
    "images",
    "store",
    "server",
    "approvals",
    "limits",
    "console",
    "slack",
    "github",
    "dockerhub",
    "notify",
    "templates",
];
const STORE_KEYS: &[&str] = &["path"];
const SERVER_KEYS: &[&str] = &["listen", "allow_non_loopback", "shutdown_grace"];
const APPROVAL_KEYS: &[&str] = &["approvers", "required", "expiry"];
const LIMIT_KEYS: &[&str] = &["commands_per_minute", "rollbacks_per_hour"];
const CONSOLE_KEYS: &[&str] = &["enabled", "channel", "users", "history"];
const SLACK_KEYS: &[&str] = &[
    "enabled",
    "mode",
    "bot_token_env",
    "bot_token_file",
    "app_token_env",
    "app_token_file",
    "signing_secret_env",
    "signing_secret_file",
    "channels",
    "approve_reaction",
    "reject_reaction",
    "api_url",
    "group_cache",
];
const CONSOLE_USER_KEYS: &[&str] = &["id", "name", "groups"];
const ROLLBACK_KEYS: &[&str] = &["rto", "tags", "registry_timeout", "check_timeout"];
const LOG_KEYS: &[&str] = &["level", "format"];
const REGISTRY_KEYS: &[&str] = &[
    "insecure",
    "auth",
    "username",
    "password_env",
    "password_file",
    "docker_config",
    "endpoint",
];
const IMAGE_KEYS: &[&str] = &[
    "image",
    "tags",
    "checks",
    "approvers",
    "required_approvals",
    "dockerhub",
];
const GITHUB_KEYS: &[&str] = &[
    "enabled",
    "repository",
    "category",
    "token_env",
    "token_file",
    "api_url",
    "announce_on",
    "publish_check_output",
];
const DOCKERHUB_KEYS: &[&str] = &["enabled", "username", "token_env", "token_file", "api_url"];
const NOTIFY_KEYS: &[&str] = &["max_attempts", "retry_base", "retry_max"];
const TEMPLATE_KEYS: &[&str] = &[
    "chat_summary",
    "discussion_title",
    "discussion_announcement",
    "discussion_comment",
    "dockerhub_banner",
];
const CHECK_KEYS: &[&str] = &[
    "name",
    "command",
    "http",
    "expect_status",
    "timeout",
    "attempts",
    "interval",
];

impl Walker<'_> {
    fn problem(&mut self, path: &str, value: Option<&Value>, message: impl Into<String>) {
        self.problems.push(ConfigProblem {
            path: path.to_owned(),
            message: message.into(),
            origin: value.and_then(origin_of),
        });
    }

    fn settings(&mut self, root: &Value) -> Option<Settings> {
        let table = self.table("(root)", root, TOP_KEYS)?;
        let rollback = self.rollback(table.get("rollback"));
        let log = self.log(table.get("log"));
        let registries = self.registries(table.get("registries"));
        let mut images = self.images(table.get("images"), rollback.as_ref());
        let daemon = self.daemon(table);
        // Health-check commands must not see the variables secrets come from.
        let mut hidden = self.secret_env.clone();
        hidden.sort();
        hidden.dedup();
        for entry in images.values_mut() {
            for check in &mut entry.checks {
                check.hidden_env.clone_from(&hidden);
            }
        }
        let docker_config_default = self
            .env
            .get("DOCKER_CONFIG")
            .map(|dir| Path::new(dir).join("config.json"))
            .or_else(|| {
                self.env
                    .get("HOME")
                    .map(|home| Path::new(home).join(".docker/config.json"))
            });
        let mut settings = Settings {
            rollback: rollback?,
            log: log?,
            registries,
            images,
            docker_config_default,
            daemon: daemon?,
        };
        // Nor can what they print show a secret's value.
        let secrets = settings.secrets();
        for entry in settings.images.values_mut() {
            for check in &mut entry.checks {
                check.redact.clone_from(&secrets);
            }
        }
        Some(settings)
    }

    fn daemon(&mut self, root: &config::Map<String, Value>) -> Option<DaemonSettings> {
        let store = self.table("store", root.get("store")?, STORE_KEYS)?;
        let store_path = self
            .required(store, "store", "path", Self::string)
            .map(PathBuf::from);

        let server = self.table("server", root.get("server")?, SERVER_KEYS)?;
        let listen = self
            .required(server, "server", "listen", Self::string)
            .and_then(|text| match text.parse::<std::net::SocketAddr>() {
                Ok(addr) => Some(addr),
                Err(_) => {
                    self.problem(
                        "server.listen",
                        server.get("listen"),
                        format!("'{text}' is not an address:port like 127.0.0.1:8080"),
                    );
                    None
                }
            });
        let allow_non_loopback = self.required(server, "server", "allow_non_loopback", Self::bool);
        let shutdown_grace = self.required(server, "server", "shutdown_grace", Self::duration);
        if let (Some(addr), Some(allow)) = (listen, allow_non_loopback) {
            if let Some(refusal) = listen_refusal(addr, allow) {
                self.problem("server.listen", server.get("listen"), refusal);
            }
        }

        let approvals = self.table("approvals", root.get("approvals")?, APPROVAL_KEYS)?;
        let approvers = self.required(approvals, "approvals", "approvers", Self::approvers);
        let required = self.required(approvals, "approvals", "required", Self::count);
        let expiry = self.required(approvals, "approvals", "expiry", Self::duration);

        let limits = self.table("limits", root.get("limits")?, LIMIT_KEYS)?;
        let commands_per_minute =
            self.required(limits, "limits", "commands_per_minute", Self::rate);
        let rollbacks_per_hour = self.required(limits, "limits", "rollbacks_per_hour", Self::rate);

        let console = self.table("console", root.get("console")?, CONSOLE_KEYS)?;
        let mode = self
            .required(console, "console", "enabled", Self::string)
            .and_then(|text| match text.as_str() {
                "auto" => Some(ConsoleMode::Auto),
                "true" | "on" => Some(ConsoleMode::On),
                "false" | "off" => Some(ConsoleMode::Off),
                other => {
                    self.problem(
                        "console.enabled",
                        console.get("enabled"),
                        format!("'{other}' is not one of auto, on, off"),
                    );
                    None
                }
            });
        let channel = self.required(console, "console", "channel", Self::string);
        let history = self
            .required(console, "console", "history", Self::integer)
            .and_then(|n| self.in_range("console.history", console.get("history"), n, 10, 100_000));
        let slack = match root.get("slack") {
            Some(value) => self.slack(value),
            None => Some(None),
        };
        let github = match root.get("github") {
            Some(value) => self.github(value),
            None => Some(None),
        };
        let dockerhub = match root.get("dockerhub") {
            Some(value) => self.dockerhub(value),
            None => Some(None),
        };
        let notify = self.table("notify", root.get("notify")?, NOTIFY_KEYS)?;
        let max_attempts = self.required(notify, "notify", "max_attempts", Self::count);
        let retry_base = self.required(notify, "notify", "retry_base", Self::duration);
        let retry_max = self.required(notify, "notify", "retry_max", Self::duration);
        if let (Some(base), Some(max)) = (retry_base, retry_max) {
            if max < base {
                self.problem(
                    "notify.retry_max",
                    notify.get("retry_max"),
                    format!(
                        "must not be shorter than notify.retry_base ({})",
                        humantime::format_duration(base)
                    ),
                );
            }
        }
        let templates = self.templates(root.get("templates")?);
        let users = match console.get("users") {
            None => Vec::new(),
            Some(value) => self.console_users(value),
        };
        Some(DaemonSettings {
            store_path: store_path?,
            listen: listen?,
            allow_non_loopback: allow_non_loopback?,
            shutdown_grace: shutdown_grace?,
            approvals: ApprovalSettings {
                approvers: approvers?,
                required: required?,
                expiry: expiry?,
            },
            limits: LimitSettings {
                commands_per_minute: commands_per_minute?,
                rollbacks_per_hour: rollbacks_per_hour?,
            },
            console: ConsoleSettings {
                mode: mode?,
                channel: channel?,
                users,
                history: history?,
            },
            slack: slack?,
            github: github?,
            dockerhub: dockerhub?,
            notify: NotifySettings {
                max_attempts: max_attempts?,
                retry_base: retry_base?,
                retry_max: retry_max?,
            },
            templates: templates?,
        })
    }

    /// `Some(None)`: disabled; `Some(Some(..))`: enabled and valid; `None`: problems reported.
    fn slack(&mut self, value: &Value) -> Option<Option<SlackSettings>> {
        let table = self.table("slack", value, SLACK_KEYS)?;
        let enabled = self.required(table, "slack", "enabled", Self::bool)?;
        if !enabled {
            return Some(None);
        }
        let mode = match self
            .required(table, "slack", "mode", Self::string)?
            .as_str()
        {
            "socket" => SlackMode::Socket,
            "http" => SlackMode::Http,
            other => {
                self.problem(
                    "slack.mode",
                    table.get("mode"),
                    format!("'{other}' is not socket or http"),
                );
                return None;
            }
        };
        let bot_token = self.secret(table, "slack", "bot_token", Some("xoxb-"));
        let app_token = match mode {
            SlackMode::Socket => Some(self.secret(table, "slack", "app_token", Some("xapp-"))),
            SlackMode::Http => None,
        };
        let signing_secret = match mode {
            SlackMode::Http => Some(self.secret(table, "slack", "signing_secret", None)),
            SlackMode::Socket => None,
        };
        let channels = self
            .optional(table, "slack", "channels", Self::string_list)
            .unwrap_or_default();
        for channel in &channels {
            let ok = channel.len() >= 9
                && matches!(channel.as_bytes()[0], b'C' | b'G' | b'D')
                && channel
                    .bytes()
                    .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit());
            if !ok {
                self.problem("slack.channels", table.get("channels"), format!("'{channel}' is not a Slack channel id like C0123456789 (names change; ids do not)"));
            }
        }
        let approve_reaction = self.required(table, "slack", "approve_reaction", Self::string);
        let reject_reaction = self.required(table, "slack", "reject_reaction", Self::string);
        let api_url = self
            .required(table, "slack", "api_url", Self::string)
            .and_then(|url| self.api_url("slack.api_url", table.get("api_url"), &url));
        let group_cache = self.required(table, "slack", "group_cache", Self::duration);
        Some(Some(SlackSettings {
            mode,
            bot_token: bot_token?,
            app_token: match app_token {
                Some(token) => Some(token?),
                None => None,
            },
            signing_secret: match signing_secret {
                Some(secret) => Some(secret?),
                None => None,
            },
            channels,
            approve_reaction: approve_reaction?,
            reject_reaction: reject_reaction?,
            api_url: api_url?,
            group_cache: group_cache?,
        }))
    }

    fn templates(
        &mut self,
        value: &Value,
    ) -> Option<Vec<(crate::notify::templates::TemplateName, PathBuf)>> {
        let table = self.table("templates", value, TEMPLATE_KEYS)?;
        let mut out = Vec::new();
        for name in crate::notify::templates::TemplateName::ALL {
            if let Some(path) = self.optional(table, "templates", name.key(), Self::string) {
                if !path.is_empty() {
                    out.push((name, PathBuf::from(path)));
                }
            }
        }
        Some(out)
    }

    fn github(&mut self, value: &Value) -> Option<Option<GitHubSettings>> {
        let table = self.table("github", value, GITHUB_KEYS)?;
        if !self.required(table, "github", "enabled", Self::bool)? {
            return Some(None);
        }
        let repository = self.required(table, "github", "repository", Self::string);
        let repository = repository.and_then(|text| {
            let parts: Vec<&str> = text.split('/').collect();
            let valid = |p: &str| {
                !p.is_empty()
                    && p.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
            };
            match parts.as_slice() {
                [owner, name] if valid(owner) && valid(name) => {
                    Some(((*owner).to_owned(), (*name).to_owned()))
                }
                _ => {
                    self.problem(
                        "github.repository",
                        table.get("repository"),
                        format!("'{text}' is not owner/name"),
                    );
                    None
                }
            }
        });
        let category = self.required(table, "github", "category", Self::string);
        let token = self.secret(table, "github", "token", None);
        let api_url = self
            .required(table, "github", "api_url", Self::string)
            .and_then(|url| self.api_url("github.api_url", table.get("api_url"), &url));
        let announce_on = match self
            .required(table, "github", "announce_on", Self::string)?
            .as_str()
        {
            "approved" => Some(AnnounceOn::Approved),
            "succeeded" => Some(AnnounceOn::Succeeded),
            other => {
                self.problem(
                    "github.announce_on",
                    table.get("announce_on"),
                    format!("'{other}' is not approved or succeeded"),
                );
                None
            }
        };
        let publish_check_output =
            self.required(table, "github", "publish_check_output", Self::bool);
        let (owner, name) = repository?;
        Some(Some(GitHubSettings {
            owner,
            name,
            category: category?,
            token: token?,
            api_url: api_url?,
            announce_on: announce_on?,
            publish_check_output: publish_check_output?,
        }))
    }

    fn dockerhub(&mut self, value: &Value) -> Option<Option<DockerHubSettings>> {
        let table = self.table("dockerhub", value, DOCKERHUB_KEYS)?;
        if !self.required(table, "dockerhub", "enabled", Self::bool)? {
            return Some(None);
        }
        let username = self.required(table, "dockerhub", "username", Self::string).filter(|u| {
            if u.is_empty() {
                self.problem("dockerhub.username", table.get("username"), "the Docker Hub user (or organization, for an organization access token) is needed");
                false
            } else {
                true
            }
        });
        let token = self.secret(table, "dockerhub", "token", None);
        let api_url = self
            .required(table, "dockerhub", "api_url", Self::string)
            .and_then(|url| self.api_url("dockerhub.api_url", table.get("api_url"), &url));
        Some(Some(DockerHubSettings {
            username: username?,
            token: token?,
            api_url: api_url?,
        }))
    }

    /// An https URL (plain http only on loopback, for tests), without a trailing slash.
    fn api_url(&mut self, path: &str, value: Option<&Value>, url: &str) -> Option<String> {
        let parsed = reqwest::Url::parse(url).ok();
        let ok = parsed.as_ref().is_some_and(|u| {
            u.scheme() == "https"
                || (u.scheme() == "http"
                    && matches!(u.host_str(), Some("127.0.0.1" | "localhost" | "[::1]")))
        });
        if ok {
            Some(url.trim_end_matches('/').to_owned())
        } else {
            self.problem(
                path,
                value,
                format!("'{url}' must be an https URL (plain http only on loopback, for tests)"),
            );
            None
        }
    }

    /// A secret named `<name>_file` (wins when set) or `<name>_env`, with an optional prefix it
    /// must have (Slack token kinds).
    fn secret(
        &mut self,
        table: &config::Map<String, Value>,
        section: &str,
        name: &str,
        prefix: Option<&str>,
    ) -> Option<Secret> {
        let file_key = format!("{name}_file");
        let env_key = format!("{name}_env");
        let file = self.optional(table, section, &file_key, Self::string);
        let env = self.optional(table, section, &env_key, Self::string);
        // Named as holding a secret, so hidden from health checks even when the file wins.
        if let Some(var) = &env {
            self.secret_env.push(var.clone());
        }
        let (value, origin_key, source) = match (file, env) {
            (Some(file), _) => match std::fs::read_to_string(&file) {
                Ok(text) => (text.trim().to_owned(), file_key, format!("file {file}")),
                Err(error) => {
                    self.problem(
                        &format!("{section}.{file_key}"),
                        table.get(&file_key),
                        format!("cannot read {file}: {error}"),
                    );
                    return None;
                }
            },
            (None, Some(var)) => (
                self.env
                    .get(&var)
                    .map(|v| v.trim().to_owned())
                    .unwrap_or_default(),
                env_key,
                format!("environment variable {var}"),
            ),
            (None, None) => {
                self.problem(
                    &format!("{section}.{env_key}"),
                    None,
                    format!("set {env_key} or {file_key}"),
                );
                return None;
            }
        };
        if value.is_empty() {
            self.problem(
                &format!("{section}.{origin_key}"),
                table.get(&origin_key),
                format!("{source} is not set or empty"),
            );
            return None;
        }
        if let Some(prefix) = prefix {
            if !value.starts_with(prefix) {
                self.problem(
                    &format!("{section}.{origin_key}"),
                    table.get(&origin_key),
                    format!("{source} does not hold a {prefix}… token"),
                );
                return None;
            }
        }
        Some(Secret::new(value))
    }

    fn console_users(&mut self, value: &Value) -> Vec<Actor> {
        let ValueKind::Array(items) = &value.kind else {
            self.problem(
                "console.users",
                Some(value),
                "expected a list of [[console.users]] tables",
            );
            return Vec::new();
        };
        let mut users: Vec<Actor> = Vec::new();
        for (index, item) in items.iter().enumerate() {
            let path = format!("console.users[{index}]");
            let Some(table) = self.table(&path, item, CONSOLE_USER_KEYS) else {
                continue;
            };
            let id = self.required(table, &path, "id", Self::string);
            let name = self.optional(table, &path, "name", Self::string);
            let groups = self
                .optional(table, &path, "groups", Self::string_list)
                .unwrap_or_default();
            let Some(id) = id else { continue };
            if id.is_empty() || id.starts_with("group:") {
                self.problem(
                    &format!("{path}.id"),
                    table.get("id"),
                    "a user id cannot be empty or start with group:",
                );
                continue;
            }
            if users.iter().any(|u| u.id == id) {
                self.problem(
                    &format!("{path}.id"),
                    table.get("id"),
                    format!("user '{id}' is listed twice"),
                );
                continue;
            }
            users.push(Actor {
                name: name.unwrap_or_else(|| id.clone()),
                id,
                groups,
            });
        }
        users
    }

    fn approvers(&mut self, path: &str, value: &Value) -> Option<Vec<Approver>> {
        let texts = self.string_list(path, value)?;
        let mut approvers = Vec::new();
        for text in texts {
            match Approver::parse(&text) {
                Ok(approver) => approvers.push(approver),
                Err(error) => {
                    self.problem(path, Some(value), error);
                    return None;
                }
            }
        }
        Some(approvers)
    }

    /// A positive rate (1 to 100 000).
    fn rate(&mut self, path: &str, value: &Value) -> Option<u32> {
        let n = self.integer(path, value)?;
        match u32::try_from(n) {
            Ok(rate) if (1..=100_000).contains(&rate) => Some(rate),
            _ => {
                self.problem(
                    path,
                    Some(value),
                    format!("{n} is not between 1 and 100000"),
                );
                None
            }
        }
    }

    fn rollback(&mut self, value: Option<&Value>) -> Option<RollbackSettings> {
        let table = self.table("rollback", value?, ROLLBACK_KEYS)?;
        let rto = self.required(table, "rollback", "rto", Self::duration);
        let tags = self.required(table, "rollback", "tags", Self::tags);
        let registry_timeout = self.required(table, "rollback", "registry_timeout", Self::duration);
        let check_timeout = self.required(table, "rollback", "check_timeout", Self::duration);
        if tags.as_ref().is_some_and(Vec::is_empty) {
            self.problem(
                "rollback.tags",
                table.get("tags"),
                "at least one floating tag is needed",
            );
        }
        Some(RollbackSettings {
            rto: rto?,
            tags: tags?,
            registry_timeout: registry_timeout?,
            check_timeout: check_timeout?,
        })
    }

    fn log(&mut self, value: Option<&Value>) -> Option<LogSettings> {
        let table = self.table("log", value?, LOG_KEYS)?;
        let level = self.required(table, "log", "level", Self::string)?;
        if let Err(why) = check_log_filter(&level) {
            self.problem(
                "log.level",
                table.get("level"),
                format!("'{level}' is not a log filter: {why}; use error, warn, info, debug or trace (or rollbot=debug,warn)"),
            );
            return None;
        }
        let json = match self
            .optional(table, "log", "format", Self::string)
            .as_deref()
        {
            None | Some("text") => false,
            Some("json") => true,
            Some(other) => {
                self.problem(
                    "log.format",
                    table.get("format"),
                    format!("'{other}' is not a log format; use text or json"),
                );
                return None;
            }
        };
        Some(LogSettings { level, json })
    }

    fn registries(&mut self, value: Option<&Value>) -> BTreeMap<RegistryHost, RegistrySettings> {
        let mut registries = BTreeMap::new();
        let Some(table) = value.and_then(|v| self.map("registries", v)) else {
            return registries;
        };
        for (key, entry) in sorted(table) {
            let path = format!("registries.\"{key}\"");
            let host = match RegistryHost::parse(key) {
                Ok(host) => host,
                Err(error) => {
                    self.problem(&path, Some(entry), error.to_string());
                    continue;
                }
            };
            if let Some(settings) = self.registry(&path, entry) {
                if registries.insert(host.clone(), settings).is_some() {
                    self.problem(
                        &path,
                        Some(entry),
                        format!("{host} is configured twice (host names are case-insensitive)"),
                    );
                }
            }
        }
        registries
    }

    fn registry(&mut self, path: &str, value: &Value) -> Option<RegistrySettings> {
        let table = self.table(path, value, REGISTRY_KEYS)?;
        if let Some(password) = table.get("password") {
            // Reported instead of "unknown key" because this is a likely, dangerous mistake.
            self.problem(
                &format!("{path}.password"),
                Some(password),
                "plain-text passwords are not accepted in config; use password_env (name of an environment variable) or password_file",
            );
        }
        let insecure = self
            .optional(table, path, "insecure", Self::bool)
            .unwrap_or(false);
        let endpoint = self
            .optional(table, path, "endpoint", Self::string)
            .and_then(|text| match RegistryHost::parse(&text) {
                Ok(host) => Some(host.as_str().to_owned()),
                Err(error) => {
                    self.problem(
                        &format!("{path}.endpoint"),
                        table.get("endpoint"),
                        error.to_string(),
                    );
                    None
                }
            });
        let mode = self.optional(table, path, "auth", Self::string);
        let username = self.optional(table, path, "username", Self::string);
        let password_env = self.optional(table, path, "password_env", Self::string);
        let password_file = self.optional(table, path, "password_file", Self::string);
        let docker_config = self
            .optional(table, path, "docker_config", Self::string)
            .map(PathBuf::from);
        let mode = mode.unwrap_or_else(|| {
            if username.is_some() {
                "basic".to_owned()
            } else {
                "auto".to_owned()
            }
        });
        let auth_path = format!("{path}.auth");
        let basic_only = |walker: &mut Self, key: &str| {
            if table.contains_key(key) {
                walker.problem(
                    &format!("{path}.{key}"),
                    table.get(key),
                    format!("only used with auth = \"basic\" (auth is \"{mode}\")"),
                );
            }
        };
        let auth = match mode.as_str() {
            "auto" | "docker-config" | "anonymous" => {
                for key in ["username", "password_env", "password_file"] {
                    basic_only(self, key);
                }
                match mode.as_str() {
                    "auto" => AuthSettings::Auto { docker_config },
                    "docker-config" => AuthSettings::DockerConfig {
                        path: docker_config,
                    },
                    _ => {
                        if table.contains_key("docker_config") {
                            self.problem(
                                &format!("{path}.docker_config"),
                                table.get("docker_config"),
                                "not used with auth = \"anonymous\"",
                            );
                        }
                        AuthSettings::Anonymous
                    }
                }
            }
            "basic" => {
                if table.contains_key("docker_config") {
                    self.problem(
                        &format!("{path}.docker_config"),
                        table.get("docker_config"),
                        "not used with auth = \"basic\"",
                    );
                }
                let Some(username) = username else {
                    self.problem(
                        &format!("{path}.username"),
                        None,
                        "required with auth = \"basic\"",
                    );
                    return None;
                };
                let (password, source) = match (password_env, password_file) {
                    (Some(var), None) => {
                        self.secret_env.push(var.clone());
                        match self.env.get(&var) {
                            Some(value) if !value.is_empty() => (
                                Secret::new(value.clone()),
                                format!("environment variable {var}"),
                            ),
                            _ => {
                                self.problem(
                                    &format!("{path}.password_env"),
                                    table.get("password_env"),
                                    format!("environment variable {var} is not set or empty"),
                                );
                                return None;
                            }
                        }
                    }
                    (None, Some(file)) => match std::fs::read_to_string(&file) {
                        // A trailing newline is how `echo pw > file` and most secret mounts end.
                        Ok(text) if !text.trim_end_matches(['\n', '\r']).is_empty() => (
                            Secret::new(text.trim_end_matches(['\n', '\r'])),
                            format!("file {file}"),
                        ),
                        Ok(_) => {
                            self.problem(
                                &format!("{path}.password_file"),
                                table.get("password_file"),
                                format!("{file} is empty"),
                            );
                            return None;
                        }
                        Err(error) => {
                            self.problem(
                                &format!("{path}.password_file"),
                                table.get("password_file"),
                                format!("cannot read {file}: {error}"),
                            );
                            return None;
                        }
                    },
                    (Some(_), Some(_)) => {
                        self.problem(
                            path,
                            Some(value),
                            "set either password_env or password_file, not both",
                        );
                        return None;
                    }
                    (None, None) => {
                        self.problem(
                            path,
                            Some(value),
                            "auth = \"basic\" needs password_env or password_file",
                        );
                        return None;
                    }
                };
                AuthSettings::Basic {
                    username,
                    password,
                    source,
                }
            }
            other => {
                self.problem(
                    &auth_path,
                    table.get("auth"),
                    format!(
                        "'{other}' is not an auth mode; use auto, anonymous, basic or docker-config"
                    ),
                );
                return None;
            }
        };
        Some(RegistrySettings {
            insecure,
            auth,
            endpoint,
        })
    }

    fn images(
        &mut self,
        value: Option<&Value>,
        rollback: Option<&RollbackSettings>,
    ) -> BTreeMap<String, ImageSettings> {
        let mut images = BTreeMap::new();
        let Some(table) = value.and_then(|v| self.map("images", v)) else {
            return images;
        };
        let default_check_timeout = rollback.map_or(Duration::from_secs(60), |r| r.check_timeout);
        for (alias, entry) in sorted(table) {
            let path = format!("images.{alias}");
            let alias_ok = !alias.is_empty()
                && alias.len() <= 64
                && alias.bytes().all(|b| {
                    b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_'
                });
            if RESERVED.contains(&alias.as_str()) {
                self.problem(
                    &path,
                    Some(entry),
                    format!("'{alias}' is a /rollback subcommand and cannot be an alias"),
                );
                continue;
            }
            if !alias_ok {
                // Lowercase only: environment overrides arrive lowercased and must hit the same key.
                self.problem(
                    &path,
                    Some(entry),
                    "an alias is 1-64 lowercase letters, digits, '-' or '_'",
                );
                continue;
            }
            let Some(table) = self.table(&path, entry, IMAGE_KEYS) else {
                continue;
            };
            let image = self
                .required(table, &path, "image", Self::string)
                .and_then(|text| match ImageRef::parse(&text) {
                    Ok(image) => Some(image),
                    Err(error) => {
                        self.problem(
                            &format!("{path}.image"),
                            table.get("image"),
                            error.to_string(),
                        );
                        None
                    }
                });
            let tags = self.optional(table, &path, "tags", Self::tags);
            if tags.as_ref().is_some_and(Vec::is_empty) {
                self.problem(
                    &format!("{path}.tags"),
                    table.get("tags"),
                    "leave tags out to use rollback.tags, or name at least one",
                );
            }
            let approvers = self.optional(table, &path, "approvers", Self::approvers);
            let dockerhub = match self.optional(table, &path, "dockerhub", Self::bool) {
                Some(true) => match &image {
                    Some(image) if image.registry.is_docker_hub() => {
                        Some(image.repository.to_string())
                    }
                    Some(image) => {
                        self.problem(
                            &format!("{path}.dockerhub"),
                            table.get("dockerhub"),
                            format!("{image} is not on Docker Hub; only docker.io/… images have a Docker Hub description"),
                        );
                        None
                    }
                    None => None,
                },
                _ => None,
            };
            let required_approvals = self.optional(table, &path, "required_approvals", Self::count);
            let checks = match table.get("checks") {
                None => Vec::new(),
                Some(value) => self.checks(&format!("{path}.checks"), value, default_check_timeout),
            };
            if let Some(image) = image {
                images.insert(
                    alias.clone(),
                    ImageSettings {
                        alias: alias.clone(),
                        image,
                        tags,
                        checks,
                        approvers,
                        required_approvals,
                        dockerhub,
                    },
                );
            }
        }
        let mut seen: HashMap<&ImageRef, &str> = HashMap::new();
        let mut duplicates = Vec::new();
        for (alias, entry) in &images {
            if let Some(first) = seen.insert(&entry.image, alias) {
                duplicates.push((alias.clone(), first.to_owned(), entry.image.to_string()));
            }
        }
        for (alias, first, image) in duplicates {
            self.problem(
                &format!("images.{alias}.image"),
                None,
                format!("{image} is already configured as images.{first}"),
            );
        }
        images
    }

    fn checks(&mut self, path: &str, value: &Value, default_timeout: Duration) -> Vec<CheckSpec> {
        let ValueKind::Array(items) = &value.kind else {
            self.problem(
                path,
                Some(value),
                "expected a list of checks ([[images.<alias>.checks]] tables)",
            );
            return Vec::new();
        };
        let mut checks = Vec::new();
        let mut names: Vec<String> = Vec::new();
        for (index, item) in items.iter().enumerate() {
            let path = format!("{path}[{index}]");
            let Some(table) = self.table(&path, item, CHECK_KEYS) else {
                continue;
            };
            let name = self.required(table, &path, "name", Self::string);
            let command = self.optional(table, &path, "command", Self::string_list);
            let http = self.optional(table, &path, "http", Self::string);
            let expect_status = self.optional(table, &path, "expect_status", Self::status);
            let timeout = self
                .optional(table, &path, "timeout", Self::duration)
                .unwrap_or(default_timeout);
            let attempts = self
                .optional(table, &path, "attempts", Self::count)
                .unwrap_or(1);
            let interval = self
                .optional(table, &path, "interval", Self::duration)
                .unwrap_or(Duration::from_secs(5));
            let kind = match (command, http) {
                (Some(argv), None) => {
                    if expect_status.is_some() {
                        self.problem(
                            &format!("{path}.expect_status"),
                            table.get("expect_status"),
                            "only used with http checks",
                        );
                    }
                    if argv.is_empty() {
                        self.problem(
                            &format!("{path}.command"),
                            table.get("command"),
                            "needs at least the program to run",
                        );
                        continue;
                    }
                    CheckKind::Command { argv }
                }
                (None, Some(url)) => CheckKind::Http {
                    url,
                    expect_status: expect_status.unwrap_or(200),
                },
                (Some(_), Some(_)) => {
                    self.problem(
                        &path,
                        Some(item),
                        "a check has either command or http, not both",
                    );
                    continue;
                }
                (None, None) => {
                    if !table.contains_key("command") && !table.contains_key("http") {
                        self.problem(
                            &path,
                            Some(item),
                            "a check needs command = [\"program\", \"arg\", …] or http = \"https://…\"",
                        );
                    }
                    continue;
                }
            };
            let Some(name) = name else { continue };
            if names.contains(&name) {
                self.problem(
                    &format!("{path}.name"),
                    table.get("name"),
                    format!("another check is already named '{name}'"),
                );
                continue;
            }
            names.push(name.clone());
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
                self.problem(&path, Some(item), message);
                continue;
            }
            checks.push(spec);
        }
        checks
    }

    // ---- typed leaves -------------------------------------------------------------------

    fn required<T>(
        &mut self,
        table: &config::Map<String, Value>,
        path: &str,
        key: &str,
        parse: fn(&mut Self, &str, &Value) -> Option<T>,
    ) -> Option<T> {
        let full = format!("{path}.{key}");
        match table.get(key) {
            Some(value) => parse(self, &full, value),
            None => {
                self.problem(&full, None, "missing");
                None
            }
        }
    }

    fn optional<T>(
        &mut self,
        table: &config::Map<String, Value>,
        path: &str,
        key: &str,
        parse: fn(&mut Self, &str, &Value) -> Option<T>,
    ) -> Option<T> {
        let full = format!("{path}.{key}");
        table.get(key).and_then(|value| parse(self, &full, value))
    }

    fn map<'v>(&mut self, path: &str, value: &'v Value) -> Option<&'v config::Map<String, Value>> {
        match &value.kind {
            ValueKind::Table(table) => Some(table),
            _ => {
                self.problem(path, Some(value), "expected a table");
                None
            }
        }
    }

    fn table<'v>(
        &mut self,
        path: &str,
        value: &'v Value,
        allowed: &[&str],
    ) -> Option<&'v config::Map<String, Value>> {
        let table = self.map(path, value)?;
        for (key, value) in sorted(table) {
            // `password` in a registry table gets its own, sharper message in `registry`.
            let reported_elsewhere = key == "password" && allowed.contains(&"password_env");
            if allowed.contains(&key.as_str()) || reported_elsewhere {
                continue;
            }
            let full = if path == "(root)" {
                key.clone()
            } else {
                format!("{path}.{key}")
            };
            let message = match closest(key, allowed) {
                Some(suggestion) => format!("unknown key (did you mean '{suggestion}'?)"),
                None => format!("unknown key (known keys here: {})", allowed.join(", ")),
            };
            self.problem(&full, Some(value), message);
        }
        Some(table)
    }

    fn string(&mut self, path: &str, value: &Value) -> Option<String> {
        match &value.kind {
            ValueKind::String(text) => Some(text.clone()),
            _ => {
                self.problem(path, Some(value), "expected a string");
                None
            }
        }
    }

    fn bool(&mut self, path: &str, value: &Value) -> Option<bool> {
        match &value.kind {
            ValueKind::Boolean(flag) => Some(*flag),
            // Environment overrides are always strings.
            ValueKind::String(text) if text == "true" => Some(true),
            ValueKind::String(text) if text == "false" => Some(false),
            _ => {
                self.problem(path, Some(value), "expected true or false");
                None
            }
        }
    }

    fn integer(&mut self, path: &str, value: &Value) -> Option<i64> {
        match &value.kind {
            ValueKind::I64(n) => Some(*n),
            ValueKind::U64(n) => i64::try_from(*n).ok(),
            ValueKind::String(text) => text.parse().ok().or_else(|| {
                self.problem(path, Some(value), "expected a whole number");
                None
            }),
            _ => {
                self.problem(path, Some(value), "expected a whole number");
                None
            }
        }
    }

    fn status(&mut self, path: &str, value: &Value) -> Option<u16> {
        let n = self.integer(path, value)?;
        match u16::try_from(n) {
            Ok(status) if (100..=599).contains(&status) => Some(status),
            _ => {
                self.problem(
                    path,
                    Some(value),
                    format!("{n} is not an HTTP status (100-599)"),
                );
                None
            }
        }
    }

    fn count(&mut self, path: &str, value: &Value) -> Option<u32> {
        let n = self.integer(path, value)?;
        match u32::try_from(n) {
            Ok(count) if (1..=100).contains(&count) => Some(count),
            _ => {
                self.problem(path, Some(value), format!("{n} is not between 1 and 100"));
                None
            }
        }
    }

    /// A whole number within `min..=max`.
    fn in_range(
        &mut self,
        path: &str,
        value: Option<&Value>,
        n: i64,
        min: u32,
        max: u32,
    ) -> Option<u32> {
        match u32::try_from(n) {
            Ok(n) if (min..=max).contains(&n) => Some(n),
            _ => {
                self.problem(path, value, format!("{n} is not between {min} and {max}"));
                None
            }
        }
    }

    /// A duration within the range [`duration_range`] gives for the key.
    fn duration(&mut self, path: &str, value: &Value) -> Option<Duration> {
        let text = self.string(path, value)?;
        let (min, max) = duration_range(path);
        match humantime::parse_duration(&text) {
            Ok(duration) if (min..=max).contains(&duration) => Some(duration),
            Ok(_) => {
                self.problem(
                    path,
                    Some(value),
                    format!(
                        "'{text}' is out of range: between {} and {}",
                        humantime::format_duration(min),
                        humantime::format_duration(max)
                    ),
                );
                None
            }
            Err(error) => {
                self.problem(
                    path,
                    Some(value),
                    format!(
                        "'{text}' is not a duration ({error}); write e.g. \"30s\", \"15m\", \"1h\""
                    ),
                );
                None
            }
        }
    }

    /// A list of strings; a single string (from the environment) is split on commas.
    fn string_list(&mut self, path: &str, value: &Value) -> Option<Vec<String>> {
        match &value.kind {
            ValueKind::Array(items) => {
                let mut out = Vec::new();
                let mut ok = true;
                for (index, item) in items.iter().enumerate() {
                    match self.string(&format!("{path}[{index}]"), item) {
                        Some(text) => out.push(text),
                        None => ok = false,
                    }
                }
                ok.then_some(out)
            }
            ValueKind::String(text) => Some(
                text.split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned)
                    .collect(),
            ),
            _ => {
                self.problem(path, Some(value), "expected a list of strings");
                None
            }
        }
    }

    fn tags(&mut self, path: &str, value: &Value) -> Option<Vec<Tag>> {
        let texts = self.string_list(path, value)?;
        let mut tags = Vec::new();
        let mut ok = true;
        for text in texts {
            match Tag::parse(&text) {
                Ok(tag) if !tags.contains(&tag) => tags.push(tag),
                Ok(tag) => {
                    self.problem(path, Some(value), format!("tag '{tag}' is listed twice"));
                    ok = false;
                }
                Err(error) => {
                    self.problem(path, Some(value), error.to_string());
                    ok = false;
                }
            }
        }
        ok.then_some(tags)
    }
}

/// The sane bounds of every duration key, by its last path component. Out of them is a config
/// error: an approval expiry of "8000y" once passed validation and killed the engine, which
/// could not format a time past the year 9999.
fn duration_range(path: &str) -> (Duration, Duration) {
    const MS: Duration = Duration::from_millis(1);
    const S: Duration = Duration::from_secs(1);
    const MIN: Duration = Duration::from_secs(60);
    const H: Duration = Duration::from_secs(3600);
    const DAY: Duration = Duration::from_secs(24 * 3600);
    let key = path.rsplit('.').next().unwrap_or(path);
    match key {
        "rto" => (S, 7 * DAY),
        "registry_timeout" => (100 * MS, 10 * MIN),
        "check_timeout" => (100 * MS, H),
        "shutdown_grace" => (S, H),
        "expiry" => (10 * S, 7 * DAY),
        "group_cache" => (S, DAY),
        "retry_base" => (10 * MS, H),
        "retry_max" => (100 * MS, DAY),
        // Health checks: `images.<alias>.checks[N].timeout` / `.interval`.
        "timeout" => (100 * MS, H),
        "interval" => (10 * MS, H),
        _ => (MS, 7 * DAY),
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

fn origin_of(value: &Value) -> Option<String> {
    value.origin().map(str::to_owned)
}

fn sorted(table: &config::Map<String, Value>) -> Vec<(&String, &Value)> {
    let mut entries: Vec<_> = table.iter().collect();
    entries.sort_by(|a, b| a.0.cmp(b.0));
    entries
}

/// The allowed key closest to a misspelt one, if it is close enough to be a likely typo.
fn closest<'a>(key: &str, allowed: &[&'a str]) -> Option<&'a str> {
    allowed
        .iter()
        .map(|candidate| (edit_distance(key, candidate), *candidate))
        .filter(|(distance, candidate)| *distance <= 2.max(candidate.len() / 4))
        .min()
        .map(|(_, candidate)| candidate)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut current = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let substitution = previous[j] + usize::from(ca != *cb);
            current.push(substitution.min(previous[j + 1] + 1).min(current[j] + 1));
        }
        previous = current;
    }
    previous[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load_str(toml: &str, env: &[(&str, &str)]) -> Result<Settings, ConfigError> {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("rollbot.toml");
        std::fs::write(&path, toml).expect("write");
        let env = env
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        load(Some(&path), &env)
    }

    #[test]
    fn defaults_load_on_their_own() {
        let settings = load(None, &HashMap::new()).expect("defaults are valid");
        assert_eq!(settings.rollback.rto, Duration::from_secs(15 * 60));
        assert_eq!(
            settings.rollback.tags,
            vec![Tag::parse("latest").expect("tag")]
        );
        assert!(settings.images.is_empty());
    }

    #[test]
    fn environment_overrides_files_and_files_override_defaults() {
        let settings = load_str(
            "[rollback]\nrto = \"5m\"\ntags = [\"latest\", \"stable\"]\n",
            &[("ROLLBOT__ROLLBACK__RTO", "7m"), ("ROLLBOT_IGNORED", "x")],
        )
        .expect("valid");
        assert_eq!(settings.rollback.rto, Duration::from_secs(7 * 60));
        assert_eq!(settings.rollback.tags.len(), 2);
    }

    #[test]
    fn every_problem_is_reported_at_once_with_its_path() {
        let error = load_str(
            r#"
[rollback]
rto = "soon"
tagz = ["latest"]

[registries."registry.example.com"]
password = "hunter2"
auth = "basic"
username = "bot"
password_env = "MISSING_VAR"

[images.app]
image = "acme/app"
tags = ["bad tag"]

[[images.app.checks]]
name = "x"
command = ["true", "{imgae}"]
"#,
            &[],
        )
        .expect_err("invalid");
        let text = error.to_string();
        for expected in [
            "rollback.rto: 'soon' is not a duration",
            "rollback.tagz: unknown key (did you mean 'tags'?)",
            "registries.\"registry.example.com\".password: plain-text passwords are not accepted",
            "registries.\"registry.example.com\".password_env: environment variable MISSING_VAR is not set",
            "images.app.image: image 'acme/app' is not valid",
            "images.app.tags: tag 'bad tag' is not valid",
            "images.app.checks[0]: unknown placeholder {imgae}",
        ] {
            assert!(text.contains(expected), "missing {expected:?} in:\n{text}");
        }
        assert!(text.contains("(set in "), "origins are named:\n{text}");
        assert!(!text.contains("hunter2"), "secrets never echo:\n{text}");
    }

    #[test]
    fn basic_auth_reads_the_password_from_env_or_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("pw");
        std::fs::write(&file, "from-file\n").expect("write");
        let toml = format!(
            "[registries.\"a.example\"]\nusername = \"u\"\npassword_env = \"PW\"\n\
             [registries.\"b.example:5000\"]\nauth = \"basic\"\nusername = \"u\"\npassword_file = \"{}\"\ninsecure = true\n",
            file.display()
        );
        let settings = load_str(&toml, &[("PW", "from-env")]).expect("valid");
        let a = settings.registry(&RegistryHost::parse("a.example").expect("host"));
        let b = settings.registry(&RegistryHost::parse("b.example:5000").expect("host"));
        match (a.auth, b.auth) {
            (
                AuthSettings::Basic { password: pa, .. },
                AuthSettings::Basic { password: pb, .. },
            ) => {
                assert_eq!(pa.expose(), "from-env");
                assert_eq!(pb.expose(), "from-file");
            }
            other => panic!("expected basic auth, got {other:?}"),
        }
        assert!(b.insecure);
    }

    #[test]
    fn a_docker_hub_banner_needs_an_image_on_docker_hub() {
        let error = load_str(
            "[images.app]\nimage = \"ghcr.io/acme/app\"\ndockerhub = true\n",
            &[],
        )
        .expect_err("not on Docker Hub");
        assert!(
            error
                .to_string()
                .contains("images.app.dockerhub: ghcr.io/acme/app is not on Docker Hub"),
            "{error}"
        );
        let settings = load_str(
            "[images.app]\nimage = \"docker.io/acme/app\"\ndockerhub = true\n",
            &[],
        )
        .expect("valid");
        assert_eq!(
            settings.images["app"].dockerhub.as_deref(),
            Some("acme/app")
        );
    }

    #[test]
    fn aliases_resolve_and_unknown_ones_say_what_exists() {
        let settings = load_str(
            "[images.app]\nimage = \"registry.example.com/acme/app\"\ntags = [\"latest\", \"stable\"]\n",
            &[],
        )
        .expect("valid");
        let (image, entry) = settings.resolve_image("app").expect("alias");
        assert_eq!(image.to_string(), "registry.example.com/acme/app");
        assert_eq!(settings.floating_tags(entry, &[]).len(), 2);
        let error = settings.resolve_image("ap").expect_err("unknown");
        assert!(error.contains("configured aliases: app"), "{error}");
    }

    #[test]
    fn every_duration_and_number_has_a_range_named_in_the_error() {
        for (toml, expected) in [
            (
                "[approvals]\nexpiry = \"8000y\"\n",
                "approvals.expiry: '8000y' is out of range: between 10s and 7days",
            ),
            (
                "[approvals]\nexpiry = \"0s\"\n",
                "approvals.expiry: '0s' is out of range",
            ),
            (
                "[rollback]\nrto = \"30d\"\n",
                "rollback.rto: '30d' is out of range: between 1s and 7days",
            ),
            (
                "[rollback]\nregistry_timeout = \"1ms\"\n",
                "rollback.registry_timeout: '1ms' is out of range: between 100ms and 10m",
            ),
            (
                "[server]\nshutdown_grace = \"2h\"\n",
                "server.shutdown_grace: '2h' is out of range",
            ),
            (
                "[slack]\nenabled = true\ngroup_cache = \"9d\"\n",
                "slack.group_cache: '9d' is out of range",
            ),
            (
                "[notify]\nretry_base = \"2h\"\n",
                "notify.retry_base: '2h' is out of range",
            ),
            (
                "[notify]\nretry_base = \"1m\"\nretry_max = \"10s\"\n",
                "notify.retry_max: must not be shorter than notify.retry_base (1m)",
            ),
            (
                "[images.app]\nimage = \"r.example.com/a/b\"\n[[images.app.checks]]\nname = \"x\"\ncommand = [\"true\"]\ntimeout = \"3h\"\n",
                "images.app.checks[0].timeout: '3h' is out of range",
            ),
            (
                "[approvals]\nrequired = 1000\n",
                "approvals.required: 1000 is not between 1 and 100",
            ),
            (
                "[limits]\ncommands_per_minute = 0\n",
                "limits.commands_per_minute: 0 is not between 1 and 100000",
            ),
            (
                "[console]\nhistory = 1000000\n",
                "console.history: 1000000 is not between 10 and 100000",
            ),
        ] {
            let text = load_str(toml, &[]).expect_err(toml).to_string();
            assert!(text.contains(expected), "{toml}: expected {expected:?} in:\n{text}");
        }
    }

    #[test]
    fn log_levels_are_levels_or_target_level_directives() {
        for good in [
            "warn",
            "INFO",
            "off",
            "rollbot=debug,warn",
            "rollbot::engine=trace",
        ] {
            let toml = format!("[log]\nlevel = \"{good}\"\n");
            assert!(load_str(&toml, &[]).is_ok(), "{good} is a filter");
        }
        for bad in ["nonsense", "", "rollbot=loud", "=debug", "info,,warn"] {
            let toml = format!("[log]\nlevel = \"{bad}\"\n");
            let text = load_str(&toml, &[]).expect_err(bad).to_string();
            assert!(text.contains("log.level: '"), "{bad}: {text}");
        }
    }

    #[test]
    fn a_config_error_knows_whether_the_daemon_logs_json() {
        let error = load_str(
            "[log]\nformat = \"json\"\n[approvals]\nexpiry = \"8000y\"\n",
            &[],
        )
        .expect_err("invalid");
        assert!(error.json_logs);
        let error = load_str("[approvals]\nexpiry = \"8000y\"\n", &[]).expect_err("invalid");
        assert!(!error.json_logs);
    }

    #[test]
    fn serve_refuses_images_nobody_could_approve() {
        let image = "[images.app]\nimage = \"r.example.com/a/b\"\n";
        let settings = load_str(image, &[]).expect("the CLI needs no approvers");
        let problems = settings.serve_problems();
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert_eq!(problems[0].path, "approvals.approvers");
        assert!(problems[0]
            .message
            .contains("could never be approved: no approvers"));

        let too_many = format!("{image}approvers = [\"bob\"]\nrequired_approvals = 2\n");
        let problems = load_str(&too_many, &[]).expect("valid").serve_problems();
        assert_eq!(problems[0].path, "images.app.approvers");
        assert!(problems[0]
            .message
            .contains("2 approvals are required but only 1 person"));

        let fine = format!("{image}approvers = [\"bob\", \"group:sre\"]\nrequired_approvals = 2\n");
        assert!(load_str(&fine, &[])
            .expect("valid")
            .serve_problems()
            .is_empty());
    }
}
