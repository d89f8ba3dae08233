//! The lease loop of a replica on Postgres: try to take the lease every quarter TTL while
//! standing by, renew it every third while leading. Winning it starts what only the leader runs
//! (`daemon/lead.rs`) and is audited. Losing it — another holder, a renewal the database did
//! not answer before the lease's deadline, or a new epoch (someone led in between) — closes the
//! registry and the store to this process at once and ends it non-zero, so its supervisor
//! restarts it as a standby: crash-only, the next leader reconciles. A clean shutdown keeps
//! renewing through the drain, then gives the lease up so a standby takes over at once.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use tokio_util::sync::CancellationToken;

use super::lead::Leading;
use crate::domain::record::AuditEntry;
use crate::engine::{Clock as _, SystemClock};
use crate::leadership::Leadership;
use crate::metrics::Metrics;
use crate::store::{LeaseOutcome, Store};
use crate::vitals::Vitals;

/// What the loop needs.
pub(super) struct LeaseLoop {
    pub store: Store,
    pub leadership: Arc<Leadership>,
    pub ttl: Duration,
    pub metrics: Arc<Metrics>,
    pub vitals: Arc<Vitals>,
    /// Started (on its own task) when the lease is first won.
    pub leading: Option<Leading>,
    pub tracker: tokio_util::task::TaskTracker,
    /// Cancelled after the drain: the loop stops renewing and releases the lease.
    pub done: CancellationToken,
    /// The daemon's shutdown: a standby stops competing.
    pub shutdown: CancellationToken,
}

impl LeaseLoop {
    pub async fn run(mut self) {
        let holder = self.leadership.holder.clone();
        let mut leading = false;
        loop {
            // A standby stops competing once the daemon stops; a leader renews through the
            // drain (until `done`).
            if !leading && self.shutdown.is_cancelled() {
                return;
            }
            let asked = Instant::now();
            // A renewal slower than half the TTL (or than what is left of the lease) counts
            // as failed.
            let mut limit = self.ttl / 2;
            if let Some(deadline) = self.leadership.deadline().filter(|_| leading) {
                limit = limit.min(deadline.saturating_duration_since(asked));
            }
            let attempt = tokio::time::timeout(limit, self.store.try_lead(&holder, self.ttl)).await;
            if matches!(attempt, Ok(Ok(_))) {
                self.leadership.answered();
            }
            match attempt {
                Ok(Ok(LeaseOutcome::Held { epoch, previous })) => {
                    if leading && !self.leadership.is_leader() {
                        return self.lose("the lease ran out before it was renewed");
                    }
                    if leading && self.leadership.epoch() != Some(epoch) {
                        return self.lose("another replica led in between");
                    }
                    self.leadership.granted(epoch, asked, self.ttl);
                    // Won only with time left (an answer that came too late is asked again),
                    // and never while the daemon stops.
                    if !leading && self.leadership.is_leader() && !self.shutdown.is_cancelled() {
                        leading = true;
                        self.won(epoch, previous).await;
                    }
                }
                Ok(Ok(LeaseOutcome::Standby { holder: other })) => {
                    if leading {
                        return self.lose(&format!("replica {other} holds the lease now"));
                    }
                    tracing::debug!(leader = %other, "Standing by.");
                }
                Ok(Err(error)) => {
                    tracing::warn!(%error, "Cannot reach the lease in the state database.");
                    if leading && !self.leadership.is_leader() {
                        return self.lose(&format!("the lease could not be renewed: {error}"));
                    }
                }
                Err(_) => {
                    tracing::warn!(
                        limit_ms = limit.as_millis() as u64,
                        "The state database did not answer the lease renewal in time."
                    );
                    if leading && !self.leadership.is_leader() {
                        return self.lose(
                            "the database did not answer the renewal before the lease ran out",
                        );
                    }
                }
            }
            let pause = if leading { self.ttl / 3 } else { self.ttl / 4 };
            // The deadline ends the lease even when no renewal answers at all.
            let deadline = self
                .leadership
                .deadline()
                .filter(|_| leading)
                .unwrap_or_else(|| Instant::now() + pause + self.ttl);
            tokio::select! {
                () = tokio::time::sleep(pause) => {}
                () = tokio::time::sleep_until(deadline.into()) => {
                    return self.lose("the lease ran out before it was renewed");
                }
                () = self.done.cancelled() => break,
            }
        }
        if let Some(epoch) = self.leadership.epoch() {
            self.leadership.lost();
            self.metrics.set_leader(false);
            match self.store.release_lead(&holder, epoch).await {
                Ok(true) => tracing::info!(epoch, "Gave the leader lease up."),
                Ok(false) => {}
                Err(error) => {
                    tracing::warn!(%error, "Could not give the leader lease up; a standby takes over when it runs out.");
                }
            }
        }
    }

    async fn won(&mut self, epoch: i64, previous: Option<String>) {
        self.metrics.set_leader(true);
        tracing::info!(epoch, previous = previous.as_deref().unwrap_or("-"), holder = %self.leadership.holder, "This replica leads now.");
        let entry = AuditEntry::new(
            SystemClock.now(),
            None,
            None,
            "leader",
            json!({ "holder": self.leadership.holder, "epoch": epoch, "previous": previous }),
        );
        if let Err(error) = self.store.audit(&entry).await {
            tracing::warn!(%error, "Could not audit the change of leader.");
        }
        if let Some(leading) = self.leading.take() {
            let vitals = Arc::clone(&self.vitals);
            self.tracker.spawn(async move {
                if let Err(error) = leading.begin().await {
                    vitals.fail(format!("{error:#}"));
                }
            });
        }
    }

    fn lose(&self, why: &str) {
        let epoch = self.leadership.epoch();
        self.leadership.lost();
        self.metrics.set_leader(false);
        let failure = format!(
            "lost the leadership ({why}); exiting so that this replica restarts as a standby"
        );
        tracing::error!(%failure, "Stepping down.");
        let entry = AuditEntry::new(
            SystemClock.now(),
            None,
            None,
            "leader_lost",
            json!({ "holder": self.leadership.holder, "why": why }),
        );
        // Best effort: say so, and give the lease up if the row still names this replica with
        // the same epoch (a standby then need not wait for it to run out).
        let (store, holder) = (self.store.clone(), self.leadership.holder.clone());
        tokio::spawn(async move {
            let _ = tokio::time::timeout(Duration::from_secs(2), store.audit_as_bystander(&entry))
                .await;
            if let Some(epoch) = epoch {
                let released = store.release_lead(&holder, epoch);
                let _ = tokio::time::timeout(Duration::from_secs(2), released).await;
            }
        });
        self.vitals.fail(failure);
    }
}
