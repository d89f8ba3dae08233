//! Prometheus metrics in the text exposition format, kept in plain atomics and maps (no
//! metrics crate: a handful of series).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// Step duration buckets, in seconds.
const BUCKETS: [f64; 12] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 60.0,
];

#[derive(Debug, Default)]
struct Histogram {
    buckets: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

/// The daemon's metrics. Shared by the engine (writes) and the HTTP server (reads).
#[derive(Debug, Default)]
pub struct Metrics {
    rollbacks: Mutex<BTreeMap<String, u64>>,
    commands: Mutex<BTreeMap<String, u64>>,
    steps: Mutex<BTreeMap<String, Histogram>>,
    pending_approvals: AtomicU64,
    running: AtomicU64,
    /// Microseconds the engine spent handling messages (its utilization, over time).
    engine_busy_micros: AtomicU64,
    /// 1 while this process leads (always, with SQLite), 0 on a standby.
    leader: AtomicU64,
    rate_limited: AtomicU64,
    pending_notifications: AtomicU64,
    sink_failures: Mutex<BTreeMap<String, u64>>,
    /// `(platform, code)`: errors a chat platform's API answered.
    chat_api_errors: Mutex<BTreeMap<(String, String), u64>>,
}

fn bump(map: &Mutex<BTreeMap<String, u64>>, key: &str) {
    let mut map = crate::lock(map);
    *map.entry(key.to_owned()).or_default() += 1;
}

impl Metrics {
    /// A rollback reached a terminal state.
    pub fn rollback_finished(&self, outcome: &str) {
        bump(&self.rollbacks, outcome);
    }

    pub fn command(&self, name: &str) {
        bump(&self.commands, name);
    }

    pub fn rate_limited(&self) {
        self.rate_limited.fetch_add(1, Ordering::Relaxed);
    }

    pub fn sink_failure(&self, sink: &str) {
        bump(&self.sink_failures, sink);
    }

    /// A chat platform's API answered an error: `code` is its own (Discord's `50013`, say).
    pub fn chat_api_error(&self, platform: &str, code: &str) {
        let mut map = crate::lock(&self.chat_api_errors);
        *map.entry((platform.to_owned(), code.to_owned()))
            .or_default() += 1;
    }

    pub fn step(&self, name: &str, seconds: f64) {
        let mut steps = crate::lock(&self.steps);
        let histogram = steps.entry(name.to_owned()).or_default();
        for (bucket, bound) in histogram.buckets.iter_mut().zip(BUCKETS) {
            if seconds <= bound {
                *bucket += 1;
            }
        }
        histogram.count += 1;
        histogram.sum += seconds;
    }

    pub fn set_pending_approvals(&self, n: u64) {
        self.pending_approvals.store(n, Ordering::Relaxed);
    }

    pub fn set_pending_notifications(&self, n: u64) {
        self.pending_notifications.store(n, Ordering::Relaxed);
    }

    pub fn set_leader(&self, leads: bool) {
        self.leader.store(u64::from(leads), Ordering::Relaxed);
    }

    /// The engine spent `busy` handling a message (or a batch of its tasks' reports).
    pub fn engine_busy(&self, busy: std::time::Duration) {
        let micros = u64::try_from(busy.as_micros()).unwrap_or(u64::MAX);
        self.engine_busy_micros.fetch_add(micros, Ordering::Relaxed);
    }

    pub fn set_running(&self, n: u64) {
        self.running.store(n, Ordering::Relaxed);
    }

    /// The exposition text; `registry_statuses` is (host, status, count), status 0 meaning no
    /// answer (connection error or timeout).
    pub fn render(&self, registry_statuses: &[(String, u16, u64)]) -> String {
        let mut out = String::new();
        let by_label =
            |out: &mut String, name: &str, label: &str, map: &Mutex<BTreeMap<String, u64>>| {
                for (value, n) in crate::lock(map).iter() {
                    let _ = writeln!(out, "{name}{{{label}=\"{value}\"}} {n}");
                }
            };
        let single = |out: &mut String, name: &str, value: &AtomicU64| {
            let _ = writeln!(out, "{name} {}", value.load(Ordering::Relaxed));
        };
        let name = "rollbot_rollbacks_total";
        family(
            &mut out,
            name,
            "counter",
            "Rollbacks that reached a final state, by outcome.",
        );
        by_label(&mut out, name, "outcome", &self.rollbacks);
        let name = "rollbot_commands_total";
        family(
            &mut out,
            name,
            "counter",
            "Chat commands received, by command.",
        );
        by_label(&mut out, name, "command", &self.commands);
        let name = "rollbot_rate_limited_total";
        family(
            &mut out,
            name,
            "counter",
            "Commands refused by a rate limit.",
        );
        single(&mut out, name, &self.rate_limited);
        let name = "rollbot_pending_approvals";
        family(&mut out, name, "gauge", "Rollbacks waiting for approval.");
        single(&mut out, name, &self.pending_approvals);
        let name = "rollbot_running_rollbacks";
        family(
            &mut out,
            name,
            "gauge",
            "Rollbacks whose pipeline is running.",
        );
        single(&mut out, name, &self.running);
        let name = "rollbot_engine_busy_seconds_total";
        family(
            &mut out,
            name,
            "counter",
            "Time the engine spent handling commands and reports, mostly waiting for its own commits; a rate near 1 means commands queue behind each other.",
        );
        let busy = self.engine_busy_micros.load(Ordering::Relaxed) as f64 / 1e6;
        let _ = writeln!(out, "{name} {busy}");
        let name = "rollbot_leader";
        family(
            &mut out,
            name,
            "gauge",
            "1 while this replica leads (runs the engine and holds the chat connections), 0 on a standby.",
        );
        single(&mut out, name, &self.leader);
        let name = "rollbot_step_duration_seconds";
        family(&mut out, name, "histogram", "Duration of pipeline steps.");
        for (step, histogram) in crate::lock(&self.steps).iter() {
            for (bound, n) in BUCKETS.iter().zip(histogram.buckets) {
                let _ = writeln!(out, "{name}_bucket{{step=\"{step}\",le=\"{bound}\"}} {n}");
            }
            let count = histogram.count;
            let _ = writeln!(out, "{name}_bucket{{step=\"{step}\",le=\"+Inf\"}} {count}");
            let _ = writeln!(out, "{name}_sum{{step=\"{step}\"}} {}", histogram.sum);
            let _ = writeln!(out, "{name}_count{{step=\"{step}\"}} {count}");
        }
        let name = "rollbot_registry_requests_total";
        family(
            &mut out,
            name,
            "counter",
            "Registry requests by registry and HTTP status (0: no answer).",
        );
        for (host, status, n) in registry_statuses {
            let _ = writeln!(out, "{name}{{registry=\"{host}\",status=\"{status}\"}} {n}");
        }
        let name = "rollbot_notifications_pending";
        family(
            &mut out,
            name,
            "gauge",
            "Deliveries to GitHub or Docker Hub waiting in the outbox.",
        );
        single(&mut out, name, &self.pending_notifications);
        let name = "rollbot_notification_failures_total";
        family(
            &mut out,
            name,
            "counter",
            "Chat or notification deliveries that failed.",
        );
        by_label(&mut out, name, "sink", &self.sink_failures);
        let name = "rollbot_chat_api_errors_total";
        family(
            &mut out,
            name,
            "counter",
            "Errors a chat platform's API answered, by platform and the platform's error code.",
        );
        for ((platform, code), n) in crate::lock(&self.chat_api_errors).iter() {
            let _ = writeln!(out, "{name}{{platform=\"{platform}\",code=\"{code}\"}} {n}");
        }
        out
    }
}

/// The `# HELP` and `# TYPE` lines of a metric family.
fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_render_in_prometheus_text_format() {
        let metrics = Metrics::default();
        metrics.rollback_finished("succeeded");
        metrics.step("retag", 0.004);
        metrics.step("retag", 0.2);
        metrics.set_pending_approvals(2);
        metrics.engine_busy(std::time::Duration::from_millis(1500));
        metrics.engine_busy(std::time::Duration::from_micros(250));
        let text = metrics.render(&[("127.0.0.1:5000".to_owned(), 200, 7)]);
        for line in [
            "rollbot_rollbacks_total{outcome=\"succeeded\"} 1",
            "rollbot_pending_approvals 2",
            "rollbot_step_duration_seconds_bucket{step=\"retag\",le=\"0.005\"} 1",
            "rollbot_step_duration_seconds_bucket{step=\"retag\",le=\"0.25\"} 2",
            "rollbot_step_duration_seconds_count{step=\"retag\"} 2",
            "rollbot_registry_requests_total{registry=\"127.0.0.1:5000\",status=\"200\"} 7",
            "# TYPE rollbot_engine_busy_seconds_total counter",
            "\nrollbot_engine_busy_seconds_total 1.50025\n",
        ] {
            assert!(text.contains(line), "missing {line} in\n{text}");
        }
    }
}
