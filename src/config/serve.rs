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
    /// The SQLite file.
    pub store_path: PathBuf,
    pub listen: SocketAddr,
    /// Listening on a non-loopback address must be asked for.
    pub allow_non_loopback: bool,
    /// How long SIGTERM waits for running rollbacks before exiting.
    pub shutdown_grace: Duration,
    pub approvals: ApprovalSettings,
    pub limits: LimitSettings,
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
    let store = layers.read("store", |store: StoreSection| {
        let mut problems = Problems::default();
        let path = problems.required(&store.path).map(PathBuf::from);
        problems.finish(path)
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
    let store_path = problems.section(store);
    let server = problems.section(server);
    let approvals = problems.section(approvals);
    let limits = problems.section(limits);
    let settings = || {
        let (listen, allow_non_loopback, shutdown_grace) = server?;
        Some(DaemonSettings {
            store_path: store_path?,
            listen,
            allow_non_loopback,
            shutdown_grace,
            approvals: approvals?,
            limits: limits?,
        })
    };
    problems.finish(settings())
}
