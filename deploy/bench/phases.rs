//! What the daemon benchmarks (`daemon.rs`, `scale.rs`) share: where each rollback's time went,
//! read from the audit log the daemon wrote, the daemon's own counters from `/metrics`, and the
//! CPU time of a process (rollbot's, the registry's).

use std::collections::BTreeMap;
use std::path::Path;

use rollbot::domain::record::AuditEntry;
use rollbot::domain::rollback::{RollbackId, Timestamp};
use rollbot::store::Store;

/// One approved rollback as the benchmark saw it: when the approval was clicked (wall clock,
/// ms since the epoch, the clock the audit log uses) and how long after the click its status
/// message said "rolled back".
#[derive(Debug, Clone, Copy)]
pub struct Run {
    pub id: RollbackId,
    pub clicked_ms: i64,
    pub done_after_ms: f64,
}

/// CPU seconds `pid` used so far (user + system).
pub fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The fields after the command's closing parenthesis; utime and stime are the 12th and 13th.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or("", |(_, rest)| rest)
        .split_whitespace()
        .collect();
    let ticks: u64 = [11, 12]
        .iter()
        .filter_map(|&i| fields.get(i).and_then(|f| f.parse::<u64>().ok()))
        .sum();
    ticks as f64 / 100.0
}

/// The process listening on 127.0.0.1:`port` (from /proc/net/tcp and the processes' sockets).
pub fn listener_pid(port: u16) -> Option<u32> {
    let tcp = std::fs::read_to_string("/proc/net/tcp").ok()?;
    let inode = tcp.lines().skip(1).find_map(|line| {
        let f: Vec<&str> = line.split_whitespace().collect();
        let local_port = f.get(1)?.rsplit_once(':')?.1;
        (u16::from_str_radix(local_port, 16).ok()? == port && f.get(3) == Some(&"0A"))
            .then(|| f.get(9).map(|i| format!("socket:[{i}]")))
            .flatten()
    })?;
    std::fs::read_dir("/proc")
        .ok()?
        .flatten()
        .find_map(|entry| {
            let pid: u32 = entry.file_name().to_str()?.parse().ok()?;
            let fds = std::fs::read_dir(entry.path().join("fd")).ok()?;
            fds.flatten()
                .any(|fd| std::fs::read_link(fd.path()).is_ok_and(|l| l.to_str() == Some(&inode)))
                .then_some(pid)
        })
}

/// The `p`th percentile of `sorted` (nearest rank).
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil().max(1.0) as usize;
    sorted[rank.min(sorted.len()) - 1]
}

/// Where each run's time went, from its audit entries (ms): the click to the vote recorded (the
/// engine's queue and commit), to the pipeline started, each step's own duration, the whole
/// pipeline in its task, its end to the engine recording it, and to the status edit seen.
pub async fn phases(db: &Path, runs: &[Run]) -> Vec<(String, Vec<f64>)> {
    let store = Store::open(db).await.expect("store");
    let first = runs.iter().map(|r| r.clicked_ms).min().unwrap_or(0);
    let log = store
        .audit_since(Timestamp(first - 1000))
        .await
        .expect("audit");
    let mut phases: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    let mut add = |name: &str, ms: f64| phases.entry(name.to_owned()).or_default().push(ms);
    for run in runs {
        let mine: Vec<&AuditEntry> = log.iter().filter(|e| e.rollback == Some(run.id)).collect();
        let at = |kind: &str, to: Option<&str>| {
            mine.iter()
                .find(|e| e.kind == kind && to.is_none_or(|to| e.detail["to"] == to))
                .map(|e| e.at.0)
        };
        let (Some(approved), Some(started), Some(finished)) = (
            at("state", Some("approved")),
            at("state", Some("retagging")),
            at("finished", None),
        ) else {
            continue;
        };
        let total = mine
            .iter()
            .find(|e| e.kind == "finished")
            .and_then(|e| e.detail["total_ms"].as_i64())
            .unwrap_or(0);
        add(
            "1 click → approval recorded",
            (approved - run.clicked_ms) as f64,
        );
        add(
            "2 approval recorded → pipeline started",
            (started - approved) as f64,
        );
        for step in mine.iter().filter(|e| e.kind == "step") {
            if let (Some(name), Some(ms)) = (
                step.detail["name"].as_str(),
                step.detail["duration_ms"].as_f64(),
            ) {
                if name != "approve" {
                    add(&format!("3 step {name} (its own duration)"), ms);
                }
            }
        }
        add("4 pipeline (all steps, in its task)", total as f64);
        add(
            "5 pipeline end → engine recorded it",
            (finished - started - total) as f64,
        );
        add(
            "6 recorded → status edit seen (sink, poll)",
            run.done_after_ms - (finished - run.clicked_ms) as f64,
        );
    }
    phases.into_iter().collect()
}

/// Prints `phases` as a Markdown table (p50, p95, max).
pub fn print_phases(title: &str, phases: Vec<(String, Vec<f64>)>) {
    println!();
    println!("{title}");
    println!();
    println!("| phase | p50 ms | p95 ms | max ms |");
    println!("|---|---|---|---|");
    for (name, mut times) in phases {
        times.sort_by(|a, b| a.total_cmp(b));
        println!(
            "| {name} | {:.0} | {:.0} | {:.0} |",
            percentile(&times, 50.0),
            percentile(&times, 95.0),
            times.last().copied().unwrap_or(f64::NAN)
        );
    }
}

/// The daemon's `/metrics` page.
pub async fn metrics_text(http: &reqwest::Client, base: &str) -> String {
    http.get(format!("{base}/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text")
}

/// The sum of every series of `name` on the daemon's `/metrics` (0 when it has none).
pub async fn metric(http: &reqwest::Client, base: &str, name: &str) -> f64 {
    metrics_text(http, base)
        .await
        .lines()
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with(' ') || rest.starts_with('{'))
        })
        .filter_map(|l| l.rsplit_once(' ').and_then(|(_, v)| v.parse::<f64>().ok()))
        .sum()
}
