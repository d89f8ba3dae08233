//! Benchmark of `rollbot serve` (release build, a real process) against a real loopback
//! registry: start-to-ready, idle RSS, and approval click → tag moved, verified, hold written
//! and status message edited to "rolled back", over N rollbacks one after another
//! (p50/p95/max); what each rollback cost the registry and the engine, and where its time went
//! (from the audit log, `phases.rs`).
//!
//! Run: `deploy/bench/daemon.sh [N]` (default 100). Goals (DESIGN.md): p50 ≤ 12 ms, idle RSS
//! under 30 MB, ready within 200 ms of start.

// The tests' registry and image seeding, shared; the bench uses only part of them.
#[allow(dead_code)]
#[path = "../../tests/it/support/images.rs"]
mod images;
#[path = "phases.rs"]
mod phases;
#[allow(dead_code)]
#[path = "../../tests/it/support/registry.rs"]
mod registry;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use images::{Kind, Seeder};
use phases::{cpu_seconds, listener_pid, metric, percentile, print_phases, Run};
use registry::{free_port, TestRegistry};
use rollbot::domain::rollback::{RollbackId, Timestamp};

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|n| n.parse().ok()))
        })
        .unwrap_or(0)
}

/// The rollbot binary: this build's, or `ROLLBOT_BIN` (to compare two builds in alternation).
fn rollbot_bin() -> std::ffi::OsString {
    std::env::var_os("ROLLBOT_BIN").unwrap_or_else(|| env!("CARGO_BIN_EXE_rollbot").into())
}

fn main() {
    let runs: usize = std::env::args()
        .skip(1)
        .find(|a| !a.starts_with('-'))
        .and_then(|a| a.parse().ok())
        .unwrap_or(100);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let registry = TestRegistry::start();
    let seeder = Seeder::new(&registry.host);
    let (v1, v2) = runtime.block_on(async {
        let v1 = seeder.push("acme/app", Kind::OciIndex, "v1", &["v1"]).await;
        let v2 = seeder
            .push("acme/app", Kind::OciIndex, "v2", &["v2", "latest"])
            .await;
        (v1, v2)
    });
    let dir = tempfile::tempdir().expect("dir");
    let port = free_port();
    let config = format!(
        r#"[registries."{host}"]
insecure = true
[images.app]
image = "{host}/acme/app"
[store]
path = "{db}"
[server]
listen = "127.0.0.1:{port}"
[approvals]
approvers = ["bob"]
[limits]
commands_per_minute = 100000
rollbacks_per_hour = 100000
[log]
level = "error"
[[console.users]]
id = "alice"
[[console.users]]
id = "bob"
"#,
        host = registry.host,
        db = dir.path().join("bench.db").display()
    );
    let config_path = dir.path().join("bench.toml");
    std::fs::write(&config_path, config).expect("config");

    let http = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{port}");
    let started = Instant::now();
    let mut child = Command::new(rollbot_bin())
        .arg("--config")
        .arg(&config_path)
        .arg("serve")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start rollbot serve");
    let ready = runtime.block_on(async {
        loop {
            if let Ok(response) = http.get(format!("{base}/readyz")).send().await {
                if response.status() == 200 {
                    return started.elapsed();
                }
            }
            assert!(started.elapsed() < Duration::from_secs(10), "not ready");
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    });
    std::thread::sleep(Duration::from_millis(300));
    let rss_idle = rss_kib(child.id());

    let mut latencies = Vec::with_capacity(runs);
    let mut clicks = Vec::with_capacity(runs);
    let mut version = 0u64;
    let registry_pid = registry
        .host
        .rsplit_once(':')
        .and_then(|(_, port)| port.parse::<u16>().ok())
        .and_then(listener_pid)
        .expect("the registry's process");
    let registry_cpu = cpu_seconds(registry_pid);
    let (busy, requests) = runtime.block_on(async {
        let busy = metric(&http, &base, "rollbot_engine_busy_seconds_total").await;
        let requests = metric(&http, &base, "rollbot_registry_requests_total").await;
        let post = |path: &'static str, body: serde_json::Value| {
            let http = http.clone();
            let url = format!("{base}{path}");
            async move {
                let value: serde_json::Value = http.post(url).json(&body).send().await.expect("post").json().await.expect("json");
                assert_eq!(value["ok"], true, "{value}");
            }
        };
        for n in 1..=runs {
            let target = if n % 2 == 1 { &v1 } else { &v2 };
            post("/console/api/command", serde_json::json!({ "user": "alice", "text": format!("/rollback app@{}", target.digest) })).await;
            let header = format!("Rollback rb-{n} of app: rolled back");
            // A person reads the plan before approving: the request's reads are older than
            // `MAX_READ_AGE` by then, so the re-plan HEADs the target as it does for people.
            tokio::time::sleep(rollbot::pipeline::MAX_READ_AGE + Duration::from_millis(50)).await;
            let t0 = Instant::now();
            clicks.push(Timestamp::from_system(std::time::SystemTime::now()).0);
            post("/console/api/action", serde_json::json!({ "user": "bob", "action": format!("approve:rb-{n}") })).await;
            loop {
                let state: serde_json::Value = http
                    .get(format!("{base}/console/api/state?user=bob&since={version}"))
                    .send()
                    .await
                    .expect("state")
                    .json()
                    .await
                    .expect("json");
                version = state["version"].as_u64().unwrap_or(version);
                let done = state["messages"].as_array().is_some_and(|messages| {
                    messages.iter().any(|m| {
                        serde_json::from_value::<rollbot::chat::Message>(m["message"].clone())
                            .is_ok_and(|message| message.fallback.to_string() == header)
                    })
                });
                if done {
                    break;
                }
                assert!(t0.elapsed() < Duration::from_secs(10), "rb-{n} did not finish");
                tokio::time::sleep(Duration::from_micros(200)).await;
            }
            latencies.push(t0.elapsed().as_secs_f64() * 1000.0);
        }
        (
            metric(&http, &base, "rollbot_engine_busy_seconds_total").await - busy,
            metric(&http, &base, "rollbot_registry_requests_total").await - requests,
        )
    });
    std::thread::sleep(Duration::from_millis(300));
    let rss_after = rss_kib(child.id());
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status();
    let _ = child.wait();

    let registry_cpu = cpu_seconds(registry_pid) - registry_cpu;
    let done: Vec<Run> = clicks
        .iter()
        .zip(&latencies)
        .enumerate()
        .map(|(n, (&clicked_ms, &done_after_ms))| Run {
            id: RollbackId(n as i64 + 1),
            clicked_ms,
            done_after_ms,
        })
        .collect();
    let phases = runtime.block_on(phases::phases(&dir.path().join("bench.db"), &done));
    latencies.sort_by(|a, b| a.total_cmp(b));
    println!();
    println!("rollbot serve (release), {runs} rollbacks of a 2-platform OCI index on a loopback registry, {} CPUs", std::thread::available_parallelism().map_or(0, usize::from));
    println!();
    println!("| measure | value | goal |");
    println!("|---|---|---|");
    println!(
        "| start → /readyz 200 | {:.1} ms | < 200 ms |",
        ready.as_secs_f64() * 1000.0
    );
    println!(
        "| idle RSS after start | {:.1} MB | < 30 MB |",
        rss_idle as f64 / 1024.0
    );
    println!(
        "| idle RSS after {runs} rollbacks | {:.1} MB | < 30 MB |",
        rss_after as f64 / 1024.0
    );
    println!(
        "| approval → moved, verified, hold, status edited: p50 | {:.1} ms | ≤ 12 ms |",
        percentile(&latencies, 50.0)
    );
    println!("| … p95 | {:.1} ms | |", percentile(&latencies, 95.0));
    println!(
        "| … max | {:.1} ms | |",
        latencies.last().copied().unwrap_or(0.0)
    );
    println!(
        "| registry requests per rollback (request and approval) | {:.1} | |",
        requests / runs as f64
    );
    println!(
        "| the registry's CPU time per rollback · per request | {:.1} ms · {:.2} ms | |",
        registry_cpu * 1000.0 / runs as f64,
        registry_cpu * 1000.0 / requests.max(1.0)
    );
    println!(
        "| engine busy per rollback (request and approval: handling messages, mostly its commits) | {:.2} ms | |",
        busy * 1000.0 / runs as f64
    );
    print_phases(
        "where the time of one rollback went (from the audit log):",
        phases,
    );
}
