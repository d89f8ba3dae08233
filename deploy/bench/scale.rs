//! Benchmark of `rollbot serve` (release build, a real process) under load, against a real
//! loopback registry: N images in the config (N repositories), N rollbacks requested at once
//! (each image asked for twice at the same moment: exactly one request may win) and approved at
//! once through the console API; approval → status message "rolled back" per rollback
//! (p50/p95/max), peak RSS, and from the audit log that no two rollbacks of one image overlapped.
//! Then the store is filled to `--finished` finished rollbacks and the daemon restarted: start to
//! ready, `/rollback status`, `/rollback status ID`, `/rollback history IMAGE` and
//! `rollbot audit --since 1h` are timed.
//!
//! Run: `deploy/bench/scale.sh [N] [FINISHED]` (defaults 100 and 10000). Goals (DESIGN.md): all
//! succeed, p95 approval → done ≤ 1 s, peak RSS ≤ 40 MB; with 10,000 finished rollbacks each
//! read and the start under 50 ms.

// The tests' registry and image seeding, shared; the bench uses only part of them.
#[allow(dead_code)]
#[path = "../../tests/it/support/images.rs"]
mod images;
#[path = "phases.rs"]
mod phases;
#[allow(dead_code)]
#[path = "../../tests/it/support/registry.rs"]
mod registry;

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use images::{Kind, Pushed, Seeder};
use phases::{cpu_seconds, listener_pid, metric, percentile, print_phases, Run};
use registry::{free_port, TestRegistry};
use rollbot::domain::record::AuditEntry;
use rollbot::domain::rollback::{RollbackId, State, Timestamp};
use rollbot::store::Store;

fn status_kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|n| n.parse().ok()))
        })
        .unwrap_or(0)
}

/// CPU seconds the whole machine was busy so far (every CPU, from /proc/stat).
fn machine_busy_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let fields: Vec<u64> = stat
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .skip(1)
        .filter_map(|f| f.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal: busy is all but idle and iowait.
    let busy: u64 = fields
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != 3 && *i != 4)
        .map(|(_, v)| v)
        .take(8)
        .sum();
    busy as f64 / 100.0
}

/// The rollbot binary: this build's, or `ROLLBOT_BIN` (to compare two builds in alternation).
fn rollbot_bin() -> std::ffi::OsString {
    std::env::var_os("ROLLBOT_BIN").unwrap_or_else(|| env!("CARGO_BIN_EXE_rollbot").into())
}

fn arg(position: usize, default: usize) -> usize {
    std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .nth(position)
        .and_then(|a| a.parse().ok())
        .unwrap_or(default)
}

struct Daemon {
    child: Child,
    base: String,
    ready: Duration,
}

impl Daemon {
    async fn start(config: &Path, port: u16, http: &reqwest::Client) -> Daemon {
        let base = format!("http://127.0.0.1:{port}");
        let started = Instant::now();
        let child = Command::new(rollbot_bin())
            .arg("--config")
            .arg(config)
            .arg("serve")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start rollbot serve");
        let ready = loop {
            if let Ok(response) = http.get(format!("{base}/readyz")).send().await {
                if response.status() == 200 {
                    break started.elapsed();
                }
            }
            assert!(started.elapsed() < Duration::from_secs(30), "not ready");
            tokio::time::sleep(Duration::from_millis(1)).await;
        };
        Daemon { child, base, ready }
    }

    fn stop(mut self) {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let _ = self.child.wait();
    }
}

impl Drop for Daemon {
    /// A bench that panics leaves no daemon behind (a stopped one has been waited for).
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

async fn post(http: &reqwest::Client, url: String, body: serde_json::Value) -> (bool, String) {
    let value: serde_json::Value = http
        .post(url)
        .json(&body)
        .send()
        .await
        .expect("post")
        .json()
        .await
        .expect("json");
    (
        value["ok"] == true,
        value["reply"].as_str().unwrap_or_default().to_owned(),
    )
}

/// The status messages' headings seen so far, by rollback ("rb-7" → "rolled back").
#[derive(Default)]
struct Watcher {
    version: u64,
    states: HashMap<String, String>,
    truncated: bool,
}

impl Watcher {
    async fn poll(&mut self, http: &reqwest::Client, base: &str) {
        let state: serde_json::Value = http
            .get(format!(
                "{base}/console/api/state?user=nobody&since={}",
                self.version
            ))
            .send()
            .await
            .expect("state")
            .json()
            .await
            .expect("json");
        self.version = state["version"].as_u64().unwrap_or(self.version);
        self.truncated |= state["truncated"] == true;
        for m in state["messages"].as_array().into_iter().flatten() {
            let Ok(message) =
                serde_json::from_value::<rollbot::chat::Message>(m["message"].clone())
            else {
                continue;
            };
            // "Rollback rb-7 of app-03: rolled back"
            let heading = message.fallback.to_string();
            if let Some(rest) = heading.strip_prefix("Rollback ") {
                if let (Some((id, _)), Some((_, state))) =
                    (rest.split_once(' '), rest.split_once(": "))
                {
                    self.states.insert(id.to_owned(), state.to_owned());
                }
            }
        }
    }
}

fn main() {
    let images = arg(0, 100);
    let finished_goal = arg(1, 10_000);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let registry = TestRegistry::start();
    let seeder = Seeder::new(&registry.host);
    let seeded = Instant::now();
    let pushed: Vec<(Pushed, Pushed)> = runtime.block_on(async {
        let mut tasks = Vec::new();
        for n in 0..images {
            let seeder = seeder.clone();
            tasks.push(tokio::spawn(async move {
                let repo = format!("acme/app-{n:03}");
                let v1 = seeder.push(&repo, Kind::OciIndex, "v1", &["v1"]).await;
                let v2 = seeder
                    .push(&repo, Kind::OciIndex, "v2", &["v2", "latest"])
                    .await;
                (v1, v2)
            }));
        }
        let mut out = Vec::new();
        for task in tasks {
            out.push(task.await.expect("seed"));
        }
        out
    });
    eprintln!(
        "seeded {images} repositories in {:.1} s",
        seeded.elapsed().as_secs_f64()
    );

    let dir = tempfile::tempdir().expect("dir");
    let db = dir.path().join("bench.db");
    let port = free_port();
    let mut config = format!(
        r#"[registries."{host}"]
insecure = true
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
[console]
history = 2000
[[console.users]]
id = "alice"
[[console.users]]
id = "bob"
"#,
        host = registry.host,
        db = db.display()
    );
    for n in 0..images {
        config.push_str(&format!(
            "[images.app-{n:03}]\nimage = \"{}/acme/app-{n:03}\"\n",
            registry.host
        ));
    }
    let config_path = dir.path().join("bench.toml");
    std::fs::write(&config_path, config).expect("config");

    let registry_port = registry
        .host
        .rsplit_once(':')
        .and_then(|(_, port)| port.parse::<u16>().ok());
    let http = reqwest::Client::new();
    let (ready_empty, rss_idle, rss_peak, latencies, failed, refused_twins, requested_in, cpu) =
        runtime.block_on(async {
            let daemon = Daemon::start(&config_path, port, &http).await;
            tokio::time::sleep(Duration::from_millis(300)).await;
            let rss_idle = status_kib(daemon.child.id(), "VmRSS:");
            let base = daemon.base.clone();

            // Every image asked for twice at the same moment: one request wins, one is refused.
            let asked = Instant::now();
            let mut requests = Vec::new();
            for (n, (v1, _)) in pushed.iter().enumerate() {
                for _ in 0..2 {
                    let text = format!("/rollback app-{n:03}@{} scale bench", v1.digest);
                    let body = serde_json::json!({ "user": "alice", "text": text });
                    let url = format!("{base}/console/api/command");
                    requests.push((n, tokio::spawn(post_owned(http.clone(), url, body))));
                }
            }
            let mut ids: BTreeMap<usize, String> = BTreeMap::new();
            let mut refused_twins = 0;
            for (n, request) in requests {
                let (ok, reply) = request.await.expect("request");
                if ok {
                    let id = reply
                        .split_whitespace()
                        .next()
                        .unwrap_or_default()
                        .to_owned();
                    assert!(
                        ids.insert(n, id).is_none(),
                        "two requests for app-{n:03} were accepted"
                    );
                } else {
                    assert!(reply.contains("already"), "app-{n:03}: {reply}");
                    refused_twins += 1;
                }
            }
            let requested_in = asked.elapsed();
            assert_eq!(ids.len(), images, "one request per image accepted");
            // People approve later than `MAX_READ_AGE` after a request: every re-plan HEADs its
            // target, as it does for them.
            tokio::time::sleep(rollbot::pipeline::MAX_READ_AGE + Duration::from_millis(50)).await;

            let mut watcher = Watcher::default();
            watcher.poll(&http, &base).await;
            // Only what changes from here on must fit the pages.
            watcher.truncated = false;
            let registry_pid = registry_port
                .and_then(listener_pid)
                .expect("the registry's process");
            let busy_before = metric(&http, &base, "rollbot_engine_busy_seconds_total").await;
            let requests_before = metric(&http, &base, "rollbot_registry_requests_total").await;
            let cpu_before = (
                cpu_seconds(daemon.child.id()),
                cpu_seconds(registry_pid),
                machine_busy_seconds(),
            );
            let t0 = Instant::now();
            let t0_ms = Timestamp::from_system(std::time::SystemTime::now()).0;
            let mut approvals = Vec::new();
            let sequential = std::env::var_os("SCALE_SEQUENTIAL").is_some();
            for id in ids.values() {
                let body = serde_json::json!({ "user": "bob", "action": format!("approve:{id}") });
                let url = format!("{base}/console/api/action");
                approvals.push(tokio::spawn(post_owned(http.clone(), url, body)));
                // One after another: the next approval once this one is rolled back.
                while sequential
                    && watcher.states.get(id).map(String::as_str) != Some("rolled back")
                {
                    watcher.poll(&http, &base).await;
                    tokio::time::sleep(Duration::from_micros(200)).await;
                }
            }
            let mut done: HashMap<String, f64> = HashMap::new();
            let mut failed = Vec::new();
            while done.len() + failed.len() < images {
                watcher.poll(&http, &base).await;
                for id in ids.values() {
                    if done.contains_key(id) || failed.contains(id) {
                        continue;
                    }
                    match watcher.states.get(id).map(String::as_str) {
                        Some("rolled back") => {
                            done.insert(id.clone(), t0.elapsed().as_secs_f64() * 1000.0);
                        }
                        Some("FAILED" | "INTERRUPTED" | "rejected" | "expired") => {
                            failed.push(id.clone());
                        }
                        _ => {}
                    }
                }
                assert!(
                    t0.elapsed() < Duration::from_secs(60),
                    "not finished after 60 s: {} done, {} failed",
                    done.len(),
                    failed.len()
                );
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            let wall = t0.elapsed().as_secs_f64();
            let cpu = (
                (cpu_seconds(daemon.child.id()) - cpu_before.0) / wall,
                (cpu_seconds(registry_pid) - cpu_before.1) / wall,
                (machine_busy_seconds() - cpu_before.2) / wall,
                metric(&http, &base, "rollbot_engine_busy_seconds_total").await - busy_before,
                wall,
                metric(&http, &base, "rollbot_registry_requests_total").await - requests_before,
            );
            for approval in approvals {
                let (ok, reply) = approval.await.expect("approval");
                assert!(ok, "{reply}");
            }
            assert!(
                !watcher.truncated,
                "the console view was truncated; poll faster"
            );
            let rss_peak = status_kib(daemon.child.id(), "VmHWM:");
            if std::env::var_os("SCALE_METRICS").is_some() {
                let metrics = phases::metrics_text(&http, &base).await;
                for line in metrics.lines().filter(|l| l.contains("registry")) {
                    eprintln!("{line}");
                }
            }
            let ready = daemon.ready;
            daemon.stop();
            (
                ready,
                rss_idle,
                rss_peak,
                (t0_ms, done),
                failed,
                refused_twins,
                requested_in,
                cpu,
            )
        });

    // The registry: every image's latest at v1.
    let moved = runtime.block_on(async {
        let mut moved = 0;
        for (n, (v1, _)) in pushed.iter().enumerate() {
            let now = seeder
                .digest_of(&format!("acme/app-{n:03}"), "latest")
                .await;
            if now.as_deref() == Some(v1.digest.as_str()) {
                moved += 1;
            }
        }
        moved
    });
    let overlaps = runtime.block_on(overlapping(&db));
    let (t0_ms, done) = latencies;
    let runs: Vec<Run> = done
        .iter()
        .filter_map(|(id, &done_after_ms)| {
            Some(Run {
                id: id.parse().ok()?,
                clicked_ms: t0_ms,
                done_after_ms,
            })
        })
        .collect();
    let phases = runtime.block_on(phases::phases(&db, &runs));
    let mut latencies: Vec<f64> = done.into_values().collect();
    latencies.sort_by(|a, b| a.total_cmp(b));

    let cpus = std::thread::available_parallelism().map_or(0, usize::from);
    println!();
    println!(
        "rollbot serve (release), {images} images, {images} rollbacks of a 2-platform OCI index requested and approved at once, one loopback registry, {cpus} CPUs"
    );
    println!();
    println!("| measure | value | goal |");
    println!("|---|---|---|");
    println!(
        "| succeeded | {} of {images} ({} failed) | all |",
        latencies.len(),
        failed.len()
    );
    println!("| images whose `latest` moved to the target | {moved} of {images} | all |");
    println!(
        "| second request of an image at the same moment refused | {refused_twins} of {images} | all |"
    );
    println!("| rollbacks of one image overlapping (audit log) | {overlaps} | 0 |");
    println!(
        "| all {images} requests planned and answered | {:.0} ms | |",
        requested_in.as_secs_f64() * 1000.0
    );
    println!(
        "| approval → moved, verified, hold, status edited: p50 | {:.0} ms | |",
        percentile(&latencies, 50.0)
    );
    println!(
        "| … p95 | {:.0} ms | ≤ 1000 ms |",
        percentile(&latencies, 95.0)
    );
    println!(
        "| … max (all {images} done) | {:.0} ms | |",
        latencies.last().copied().unwrap_or(f64::NAN)
    );
    println!(
        "| CPUs busy while they ran: rollbot · registry · whole machine | {:.2} · {:.2} · {:.2} of {cpus} | |",
        cpu.0, cpu.1, cpu.2
    );
    println!(
        "| engine busy (handling messages, mostly its commits) | {:.0} ms of {:.0} ms | |",
        cpu.3 * 1000.0,
        cpu.4 * 1000.0
    );
    let registry_seconds = cpu.1 * cpu.4;
    println!(
        "| registry requests per rollback · registry CPU per request | {:.1} · {:.1} ms | |",
        cpu.5 / images as f64,
        registry_seconds * 1000.0 / cpu.5.max(1.0)
    );
    println!(
        "| the registry's CPU time spread over all {cpus} CPUs (a floor for the last one done) | {:.0} ms | |",
        registry_seconds * 1000.0 / cpus.max(1) as f64
    );
    println!(
        "| start → /readyz 200 (empty store) | {:.1} ms | |",
        ready_empty.as_secs_f64() * 1000.0
    );
    println!(
        "| RSS idle after start → peak | {:.1} → {:.1} MB | ≤ 40 MB |",
        rss_idle as f64 / 1024.0,
        rss_peak as f64 / 1024.0
    );
    print_phases(
        &format!("where the time of one rollback went (from the audit log; all {images} at once):"),
        phases,
    );
    if finished_goal == 0 {
        return;
    }

    // Fill the store to `finished_goal` finished rollbacks, copies of the real ones (record and
    // audit entries), spread over the last 50 minutes.
    let filled = Instant::now();
    let finished = runtime.block_on(fill(&db, finished_goal));
    eprintln!(
        "filled the store to {finished} finished rollbacks in {:.1} s",
        filled.elapsed().as_secs_f64()
    );

    let reads = runtime.block_on(async {
        let daemon = Daemon::start(&config_path, port, &http).await;
        let base = daemon.base.clone();
        let mut reads: Vec<(String, Vec<f64>)> = Vec::new();
        let old = format!("rb-{}", finished / 2);
        for (name, text) in [
            (
                "`/rollback status`".to_owned(),
                "/rollback status".to_owned(),
            ),
            (
                format!("`/rollback status {old}` (finished)"),
                format!("/rollback status {old}"),
            ),
            (
                "`/rollback history app-007`".to_owned(),
                "/rollback history app-007".to_owned(),
            ),
        ] {
            let mut times = Vec::new();
            for _ in 0..20 {
                let body = serde_json::json!({ "user": "bob", "text": text });
                let started = Instant::now();
                let (ok, reply) = post(&http, format!("{base}/console/api/command"), body).await;
                times.push(started.elapsed().as_secs_f64() * 1000.0);
                assert!(ok, "{text}: {reply}");
            }
            reads.push((name, times));
        }
        let rss = status_kib(daemon.child.id(), "VmRSS:");
        let ready = daemon.ready;
        daemon.stop();
        for args in [
            &["audit", "--since", "1h"][..],
            &["audit", "--since", "1h", "--json"],
        ] {
            let mut times = Vec::new();
            for _ in 0..10 {
                let started = Instant::now();
                let status = Command::new(rollbot_bin())
                    .arg("--config")
                    .arg(&config_path)
                    .args(args)
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status()
                    .expect("rollbot audit");
                times.push(started.elapsed().as_secs_f64() * 1000.0);
                assert!(status.success(), "rollbot {args:?}");
            }
            reads.push((format!("`rollbot {}` (process)", args.join(" ")), times));
        }
        reads.push((
            "start → /readyz 200".to_owned(),
            vec![ready.as_secs_f64() * 1000.0],
        ));
        reads.push((
            "idle RSS after the start (MB)".to_owned(),
            vec![rss as f64 / 1024.0],
        ));
        reads
    });

    println!();
    println!(
        "with {finished} finished rollbacks in the store (SQLite, all finished in the last hour):"
    );
    println!();
    println!("| measure | median | max | goal |");
    println!("|---|---|---|---|");
    for (name, mut times) in reads {
        times.sort_by(|a, b| a.total_cmp(b));
        let unit = if name.contains("MB") { "" } else { " ms" };
        let goal = if name.contains("MB") { "" } else { "< 50 ms" };
        println!(
            "| {name} | {:.1}{unit} | {:.1}{unit} | {goal} |",
            percentile(&times, 50.0),
            times.last().copied().unwrap_or(f64::NAN)
        );
    }
}

async fn post_owned(http: reqwest::Client, url: String, body: serde_json::Value) -> (bool, String) {
    post(&http, url, body).await
}

/// Rollbacks of one image whose runs (approved → finished, from the audit log) overlap.
async fn overlapping(db: &Path) -> usize {
    let store = Store::open(db).await.expect("store");
    let log = store.audit_since(Timestamp(0)).await.expect("audit");
    // rollback → (approved, finished)
    let mut runs: BTreeMap<RollbackId, (i64, i64)> = BTreeMap::new();
    for entry in &log {
        let Some(id) = entry.rollback else {
            continue;
        };
        let run = runs.entry(id).or_insert((i64::MAX, i64::MIN));
        if entry.kind == "state" && entry.detail["to"] == "approved" {
            run.0 = entry.at.0;
        }
        if entry.kind == "finished" {
            run.1 = entry.at.0;
        }
    }
    let mut by_image: BTreeMap<String, Vec<(i64, i64)>> = BTreeMap::new();
    for (id, (started, finished)) in runs {
        let record = store.get(id).await.expect("get").expect("the record");
        if started != i64::MAX {
            by_image
                .entry(record.image.to_string())
                .or_default()
                .push((started, finished));
        }
    }
    by_image
        .values_mut()
        .map(|runs| {
            runs.sort();
            runs.windows(2).filter(|w| w[1].0 < w[0].1).count()
        })
        .sum()
}

/// Fills the store to `goal` finished rollbacks with copies of the ones there (their record and
/// audit entries, new ids, spread over the last 50 minutes); returns how many there are.
async fn fill(db: &Path, goal: usize) -> usize {
    let store = Store::open(db).await.expect("store");
    let now = Timestamp::from_system(std::time::SystemTime::now());
    let log = store.audit_since(Timestamp(0)).await.expect("audit");
    let mut models = Vec::new();
    for id in 1..=i64::try_from(goal).unwrap_or(i64::MAX) {
        match store.get(RollbackId(id)).await.expect("get") {
            Some(record) if record.state == State::Succeeded => {
                let entries: Vec<AuditEntry> = log
                    .iter()
                    .filter(|e| e.rollback == Some(record.id))
                    .cloned()
                    .collect();
                models.push((record, entries));
            }
            Some(_) | None => {}
        }
    }
    assert!(!models.is_empty(), "no finished rollback to copy");
    let mut count = models.len();
    let span_ms = 50 * 60 * 1000;
    while count < goal {
        let (model, entries) = &models[count % models.len()];
        let shift = now.0 - span_ms + (span_ms * count as i64 / goal as i64) - model.created_at.0;
        let moved = |t: Timestamp| Timestamp(t.0 + shift);
        let mut record = model.clone();
        record.created_at = moved(record.created_at);
        record.updated_at = moved(record.updated_at);
        record.expires_at = moved(record.expires_at);
        record.approved_at = record.approved_at.map(moved);
        record.finished_at = record.finished_at.map(moved);
        record.status_ref = None;
        let mut entries: Vec<AuditEntry> = entries
            .iter()
            .map(|e| AuditEntry {
                at: moved(e.at),
                ..e.clone()
            })
            .collect();
        let first = entries.remove(0);
        store.create(&mut record, first).await.expect("create");
        for entry in &mut entries {
            entry.rollback = Some(record.id);
        }
        store.save(&record, &entries).await.expect("save");
        count += 1;
    }
    count
}
