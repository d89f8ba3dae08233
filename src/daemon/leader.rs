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
}

impl LeaseLoop {
    pub async fn run(mut self) {
        let holder = self.leadership.holder.clone();
        let mut leading = false;
        loop {
            let asked = Instant::now();
            // A renewal slower than half the TTL counts as failed.
            let attempt =
                tokio::time::timeout(self.ttl / 2, self.store.try_lead(&holder, self.ttl)).await;
            match attempt {
                Ok(Ok(LeaseOutcome::Held { epoch, previous })) => {
                    if leading && !self.leadership.is_leader() {
                        return self.lose("the lease ran out before it was renewed");
                    }
                    if leading && self.leadership.epoch() != Some(epoch) {
                        return self.lose("another replica led in between");
                    }
                    self.leadership.granted(epoch, asked, self.ttl);
                    if !leading {
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
                        ttl_ms = self.ttl.as_millis() as u64,
                        "The state database did not answer the lease renewal within half its TTL."
                    );
                    if leading && !self.leadership.is_leader() {
                        return self.lose(
                            "the database did not answer the renewal before the lease ran out",
                        );
                    }
                }
            }
            let pause = if leading { self.ttl / 3 } else { self.ttl / 4 };
            tokio::select! {
                () = tokio::time::sleep(pause) => {}
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
        let store = self.store.clone();
        tokio::spawn(async move {
            let _ = tokio::time::timeout(Duration::from_secs(2), store.audit_as_bystander(&entry))
                .await;
        });
        self.vitals.fail(failure);
    }
}
