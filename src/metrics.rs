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
    rate_limited: AtomicU64,
    pending_notifications: AtomicU64,
    sink_failures: Mutex<BTreeMap<String, u64>>,
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

    pub fn set_running(&self, n: u64) {
        self.running.store(n, Ordering::Relaxed);
    }

    /// The exposition text; `registry_statuses` is (host, status, count), status 0 meaning no
    /// answer (connection error or timeout).
    pub fn render(&self, registry_statuses: &[(String, u16, u64)]) -> String {
        let mut out = String::new();
        let snapshot = |m: &Mutex<BTreeMap<String, u64>>| crate::lock(m).clone();
        let _ = writeln!(
            out,
            "# HELP rollbot_rollbacks_total Rollbacks that reached a final state, by outcome."
        );
        let _ = writeln!(out, "# TYPE rollbot_rollbacks_total counter");
        for (outcome, n) in snapshot(&self.rollbacks) {
            let _ = writeln!(out, "rollbot_rollbacks_total{{outcome=\"{outcome}\"}} {n}");
        }
        let _ = writeln!(
            out,
            "# HELP rollbot_commands_total Chat commands received, by command."
        );
        let _ = writeln!(out, "# TYPE rollbot_commands_total counter");
        for (command, n) in snapshot(&self.commands) {
            let _ = writeln!(out, "rollbot_commands_total{{command=\"{command}\"}} {n}");
        }
        let _ = writeln!(
            out,
            "# HELP rollbot_rate_limited_total Commands refused by a rate limit."
        );
        let _ = writeln!(out, "# TYPE rollbot_rate_limited_total counter");
        let _ = writeln!(
            out,
            "rollbot_rate_limited_total {}",
            self.rate_limited.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP rollbot_pending_approvals Rollbacks waiting for approval."
        );
        let _ = writeln!(out, "# TYPE rollbot_pending_approvals gauge");
        let _ = writeln!(
            out,
            "rollbot_pending_approvals {}",
            self.pending_approvals.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP rollbot_running_rollbacks Rollbacks whose pipeline is running."
        );
        let _ = writeln!(out, "# TYPE rollbot_running_rollbacks gauge");
        let _ = writeln!(
            out,
            "rollbot_running_rollbacks {}",
            self.running.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP rollbot_step_duration_seconds Duration of pipeline steps."
        );
        let _ = writeln!(out, "# TYPE rollbot_step_duration_seconds histogram");
        {
            let steps = crate::lock(&self.steps);
            for (step, histogram) in steps.iter() {
                for (bound, n) in BUCKETS.iter().zip(histogram.buckets) {
                    let _ = writeln!(out, "rollbot_step_duration_seconds_bucket{{step=\"{step}\",le=\"{bound}\"}} {n}");
                }
                let _ = writeln!(
                    out,
                    "rollbot_step_duration_seconds_bucket{{step=\"{step}\",le=\"+Inf\"}} {}",
                    histogram.count
                );
                let _ = writeln!(
                    out,
                    "rollbot_step_duration_seconds_sum{{step=\"{step}\"}} {}",
                    histogram.sum
                );
                let _ = writeln!(
                    out,
                    "rollbot_step_duration_seconds_count{{step=\"{step}\"}} {}",
                    histogram.count
                );
            }
        }
        let _ = writeln!(out, "# HELP rollbot_registry_requests_total Registry requests by registry and HTTP status (0: no answer).");
        let _ = writeln!(out, "# TYPE rollbot_registry_requests_total counter");
        for (host, status, n) in registry_statuses {
            let _ = writeln!(
                out,
                "rollbot_registry_requests_total{{registry=\"{host}\",status=\"{status}\"}} {n}"
            );
        }
        let _ = writeln!(out, "# HELP rollbot_notifications_pending Deliveries to GitHub or Docker Hub waiting in the outbox.");
        let _ = writeln!(out, "# TYPE rollbot_notifications_pending gauge");
        let _ = writeln!(
            out,
            "rollbot_notifications_pending {}",
            self.pending_notifications.load(Ordering::Relaxed)
        );
        let _ = writeln!(out, "# HELP rollbot_notification_failures_total Chat or notification deliveries that failed.");
        let _ = writeln!(out, "# TYPE rollbot_notification_failures_total counter");
        for (sink, n) in snapshot(&self.sink_failures) {
            let _ = writeln!(
                out,
                "rollbot_notification_failures_total{{sink=\"{sink}\"}} {n}"
            );
        }
        out
    }
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
        let text = metrics.render(&[("127.0.0.1:5000".to_owned(), 200, 7)]);
        for line in [
            "rollbot_rollbacks_total{outcome=\"succeeded\"} 1",
            "rollbot_pending_approvals 2",
            "rollbot_step_duration_seconds_bucket{step=\"retag\",le=\"0.005\"} 1",
            "rollbot_step_duration_seconds_bucket{step=\"retag\",le=\"0.25\"} 2",
            "rollbot_step_duration_seconds_count{step=\"retag\"} 2",
            "rollbot_registry_requests_total{registry=\"127.0.0.1:5000\",status=\"200\"} 7",
        ] {
            assert!(text.contains(line), "missing {line} in\n{text}");
        }
    }
}
