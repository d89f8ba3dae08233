//! Vital signs of the daemon: the tasks it cannot run without (the engine, the HTTP server, the
//! chat sinks and workers, the notifier), and startup checks that finish after the port opened.
//! If one ends (or fails) while the daemon is not stopping, the daemon is dead in all but name: `/healthz` and `/readyz` fail and `rollbot serve` exits
//! non-zero, so the supervisor restarts it, and restart reconciliation picks up where it was.
//! Probes never stay green over a dead engine.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use tokio::sync::Notify;
use tokio::task::{JoinError, JoinHandle};
use tokio_util::task::TaskTracker;

/// What the daemon's vital tasks say.
#[derive(Debug, Default)]
pub struct Vitals {
    /// What ended unexpectedly, and how; causes (a panic, a cancellation, a fatal answer)
    /// before tasks that merely stopped, which is usually a consequence (a sink stops when
    /// the engine it listens to is gone).
    failures: Mutex<Vec<(bool, String)>>,
    stopping: AtomicBool,
    failed: Notify,
}

impl Vitals {
    /// Why the daemon can no longer do its job, once a vital task ended unexpectedly.
    pub fn failure(&self) -> Option<String> {
        let failures = crate::lock(&self.failures);
        if failures.is_empty() {
            return None;
        }
        Some(
            failures
                .iter()
                .map(|(_, text)| text.as_str())
                .collect::<Vec<_>>()
                .join("; "),
        )
    }

    /// Waits until a vital task ends unexpectedly; says which and how.
    pub async fn failed(&self) -> String {
        loop {
            let notified = self.failed.notified();
            if let Some(failure) = self.failure() {
                return failure;
            }
            notified.await;
        }
    }

    /// The daemon cannot go on as configured (a fatal answer to a startup check that runs
    /// after the port opened): `why` names the fix.
    pub fn fail(&self, why: String) {
        self.record(true, why);
    }

    fn record(&self, cause: bool, text: String) {
        if self.stopping.load(Ordering::SeqCst) {
            return;
        }
        let mut failures = crate::lock(&self.failures);
        failures.push((cause, text));
        // Causes first, each group in the order it happened.
        failures.sort_by_key(|(cause, _)| !cause);
        drop(failures);
        self.failed.notify_waiters();
    }

    /// From now on, tasks ending is expected (shutdown).
    pub fn stopping(&self) {
        self.stopping.store(true, Ordering::SeqCst);
    }

    fn ended(&self, name: &str, result: Result<(), JoinError>) {
        if self.stopping.load(Ordering::SeqCst) {
            return;
        }
        let cause = result.is_err();
        let how = match result {
            Ok(()) => "stopped".to_owned(),
            Err(error) if error.is_panic() => {
                let payload = error.into_panic();
                let message = payload
                    .downcast_ref::<&str>()
                    .map(|s| (*s).to_owned())
                    .or_else(|| payload.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "no message".to_owned());
                format!("panicked ({message})")
            }
            Err(_) => "was cancelled".to_owned(),
        };
        let failure = format!("{name} {how} unexpectedly");
        tracing::error!(task = name, %failure, "A task rollbot cannot run without ended; rollbot is exiting so that it is restarted.");
        self.record(cause, failure);
    }

    /// Watches `task` (on `tracker`, so the drain waits for it): when it ends while the daemon
    /// is not stopping, the daemon has failed.
    pub fn watch(
        self: &std::sync::Arc<Self>,
        tracker: &TaskTracker,
        name: &'static str,
        task: JoinHandle<()>,
    ) {
        let vitals = std::sync::Arc::clone(self);
        tracker.spawn(async move {
            let result = task.await;
            vitals.ended(name, result);
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_vital_task_ending_is_a_failure_unless_the_daemon_is_stopping() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        runtime.block_on(async {
            let vitals = std::sync::Arc::new(Vitals::default());
            let panicking = tokio::spawn(async {
                if vitals_test_flag() {
                    panic!("formatting a time past 9999");
                }
            });
            let tracker = TaskTracker::new();
            vitals.watch(&tracker, "the engine", panicking);
            tracker.close();
            tracker.wait().await;
            assert_eq!(
                vitals.failed().await,
                "the engine panicked (formatting a time past 9999) unexpectedly"
            );

            let stopping = std::sync::Arc::new(Vitals::default());
            stopping.stopping();
            let done = tokio::spawn(async {});
            let tracker = TaskTracker::new();
            stopping.watch(&tracker, "the engine", done);
            tracker.close();
            tracker.wait().await;
            assert_eq!(stopping.failure(), None);
        });
    }

    fn vitals_test_flag() -> bool {
        true
    }
}
