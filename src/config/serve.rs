//! The core sections only `rollbot serve` (and `rollbot audit`) reads: `[store]`, `[server]`,
//! `[approvals]`, `[limits]`. The adapters' sections are read beside their adapters.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::layers::Layers;
use super::read::{Checked, HumanDuration, Problems, DAY, H, S};
use super::ConfigProblem;
use crate::domain::policy::Approver;

/// Everything only `rollbot serve` (and `rollbot audit`) reads of the core sections.
#[derive(Debug, Clone)]
pub struct DaemonSettings {
    /// Where the state lives, and the leader lease's TTL (Postgres).
    pub store: StoreSettings,
    pub listen: SocketAddr,
    /// Listening on a non-loopback address must be asked for.
    pub allow_non_loopback: bool,
    /// How long SIGTERM waits for running rollbacks before exiting.
    pub shutdown_grace: Duration,
    pub approvals: ApprovalSettings,
    pub limits: LimitSettings,
}

/// `[store]`.
#[derive(Debug, Clone)]
pub struct StoreSettings {
    pub location: StoreLocation,
    /// How long the leader's lease lasts without a renewal (Postgres; renewed every third).
    pub lease_ttl: Duration,
}

/// Where the state lives.
#[derive(Debug, Clone)]
pub enum StoreLocation {
    /// A SQLite file: one `rollbot serve` at a time.
    Sqlite(PathBuf),
    /// A Postgres database: any number of replicas, one leader.
    Postgres(PostgresLocation),
}

impl StoreLocation {
    /// The SQLite file, if the state is in one.
    pub fn sqlite_path(&self) -> Option<&std::path::Path> {
        match self {
            StoreLocation::Sqlite(path) => Some(path),
            StoreLocation::Postgres(_) => None,
        }
    }

    /// For messages: the file, or the database URL (which never holds the password).
    pub fn display(&self) -> String {
        match self {
            StoreLocation::Sqlite(path) => path.display().to_string(),
            StoreLocation::Postgres(postgres) => postgres.display(),
        }
    }
}

/// A Postgres database: its URL (without a password: that is a secret, read by the one rule)
/// and the password, if the server asks for one.
#[derive(Debug, Clone)]
pub struct PostgresLocation {
    pub url: reqwest::Url,
    pub password: Option<crate::secret::Secret>,
}

impl PostgresLocation {
    /// The URL, safe to show.
    pub fn display(&self) -> String {
        self.url.to_string()
    }
}

/// The lease's TTL range: renewals every third of it must fit in, and a failover takes about
/// one TTL.
pub const LEASE_TTL_MIN: Duration = Duration::from_secs(2);
pub const LEASE_TTL_MAX: Duration = Duration::from_secs(300);

/// `[store] url`: a path (or `sqlite:` URL) or a `postgres://` URL without a password.
fn parse_store_url(text: &str) -> Result<StoreLocation, String> {
    let lower = text.to_ascii_lowercase();
    if lower.starts_with("postgres://") || lower.starts_with("postgresql://") {
        let url = reqwest::Url::parse(text)
            .map_err(|e| format!("not a postgres:// URL ({e}): like postgres://rollbot@db.example.com:5432/rollbot?sslmode=verify-full"))?;
        let password_in_query = url.query_pairs().any(|(key, _)| {
            key.eq_ignore_ascii_case("password") || key.eq_ignore_ascii_case("sslpassword")
        });
        if url.password().is_some() || password_in_query {
            return Err("the URL holds a password: remove it and set store.password_env or store.password_file (secrets are never part of the config)".to_owned());
        }
        if url.host_str().is_none_or(str::is_empty) {
            return Err(
                "the URL names no host: like postgres://rollbot@db.example.com:5432/rollbot"
                    .to_owned(),
            );
        }
        return Ok(StoreLocation::Postgres(PostgresLocation {
            url,
            password: None,
        }));
    }
    if let Some((scheme, _)) = text
        .split_once("://")
        .filter(|_| !lower.starts_with("sqlite://"))
    {
        // Only the scheme: the rest may hold a password.
        let scheme: String = scheme.chars().take(20).collect();
        return Err(format!(
            "a {scheme}:// URL is neither a SQLite path nor a postgres:// URL"
        ));
    }
    let path = text
        .strip_prefix("sqlite://")
        .or_else(|| text.strip_prefix("sqlite:"))
        .unwrap_or(text);
    if path.is_empty() {
        return Err(
            "an empty path: name the SQLite file, like /var/lib/rollbot/rollbot.db".to_owned(),
        );
    }
    Ok(StoreLocation::Sqlite(PathBuf::from(path)))
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

/// Why rollbot refuses to listen on `addr`, if it does: beyond loopback only when
/// `server.allow_non_loopback` says so (the console has no login).
pub fn listen_refusal(addr: SocketAddr, allow_non_loopback: bool) -> Option<String> {
    (!addr.ip().is_loopback() && !allow_non_loopback).then(|| {
        format!("{addr} is not a loopback address; set server.allow_non_loopback = true to listen there (put TLS and authentication in front)")
    })
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct StoreSection {
    path: Checked<String>,
    url: Checked<String>,
    password_env: Checked<String>,
    password_file: Checked<String>,
    lease_ttl: Checked<HumanDuration>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ServerSection {
    listen: Checked<String>,
    allow_non_loopback: Checked<bool>,
    shutdown_grace: Checked<HumanDuration>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ApprovalSection {
    approvers: Checked<Vec<String>>,
    required: Checked<i64>,
    expiry: Checked<HumanDuration>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct LimitSection {
    commands_per_minute: Checked<i64>,
    rollbacks_per_hour: Checked<i64>,
}

/// Reads `[store]`, `[server]`, `[approvals]` and `[limits]`.
///
/// # Errors
/// Every problem of the four sections.
pub(super) fn read(layers: &Layers) -> Result<DaemonSettings, Vec<ConfigProblem>> {
    let secrets = layers.secrets();
    let store = layers.read("store", |store: StoreSection| {
        let mut problems = Problems::default();
        // `url` names a SQLite file or a Postgres database; `path` is the older key for the
        // file, used when `url` is not set.
        let location = if store.url.is_set() {
            problems.parse(&store.url, |text| parse_store_url(&text))
        } else {
            problems
                .required(&store.path)
                .map(|path| StoreLocation::Sqlite(PathBuf::from(path)))
        };
        let password_set = store.password_env.is_chosen() || store.password_file.is_set();
        let location = match location {
            Some(StoreLocation::Postgres(mut postgres)) => {
                if password_set {
                    let read =
                        secrets.read(&store.password_env, &store.password_file, &mut problems);
                    postgres.password = read.map(|read| read.secret);
                }
                Some(StoreLocation::Postgres(postgres))
            }
            Some(sqlite) => {
                if password_set {
                    problems.add(
                        &store.password_file,
                        "a password is only for a postgres:// store.url; a SQLite file has none"
                            .to_owned(),
                    );
                }
                Some(sqlite)
            }
            None => None,
        };
        let lease_ttl = problems.duration(&store.lease_ttl, LEASE_TTL_MIN, LEASE_TTL_MAX);
        let settings = || {
            Some(StoreSettings {
                location: location?,
                lease_ttl: lease_ttl?,
            })
        };
        problems.finish(settings())
    });
    let server = layers.read("server", |server: ServerSection| {
        let mut problems = Problems::default();
        let listen = problems.parse(&server.listen, |text| {
            text.parse::<SocketAddr>()
                .map_err(|_| format!("'{text}' is not an address:port like 127.0.0.1:8080"))
        });
        let allow = problems.required(&server.allow_non_loopback);
        let grace = problems.duration(&server.shutdown_grace, S, H);
        if let (Some(addr), Some(allow)) = (listen, allow) {
            if let Some(refusal) = listen_refusal(addr, allow) {
                problems.add(&server.listen, refusal);
            }
        }
        problems.finish((|| Some((listen?, allow?, grace?)))())
    });
    let approvals = layers.read("approvals", |approvals: ApprovalSection| {
        let mut problems = Problems::default();
        let approvers = problems.approvers(&approvals.approvers);
        let required = problems.number(&approvals.required, 1, 100);
        let expiry = problems.duration(&approvals.expiry, 10 * S, 7 * DAY);
        let settings = || {
            Some(ApprovalSettings {
                approvers: approvers?,
                required: required?,
                expiry: expiry?,
            })
        };
        problems.finish(settings())
    });
    let limits = layers.read("limits", |limits: LimitSection| {
        let mut problems = Problems::default();
        let commands_per_minute = problems.number(&limits.commands_per_minute, 1, 100_000);
        let rollbacks_per_hour = problems.number(&limits.rollbacks_per_hour, 1, 100_000);
        let settings = || {
            Some(LimitSettings {
                commands_per_minute: commands_per_minute?,
                rollbacks_per_hour: rollbacks_per_hour?,
            })
        };
        problems.finish(settings())
    });
    let mut problems = Problems::default();
    let store = problems.section(store);
    let server = problems.section(server);
    let approvals = problems.section(approvals);
    let limits = problems.section(limits);
    let settings = || {
        let (listen, allow_non_loopback, shutdown_grace) = server?;
        Some(DaemonSettings {
            store: store?,
            listen,
            allow_non_loopback,
            shutdown_grace,
            approvals: approvals?,
            limits: limits?,
        })
    };
    problems.finish(settings())
}
