//! Whether this process may act: the one place every writer asks. With SQLite there is one
//! process and it always leads ([`Leadership::single`]). With Postgres, replicas compete for one
//! lease row on the database's clock (`store/lease.rs`, renewed by `daemon/leader.rs`); the
//! winner holds it with an epoch until a deadline on this process's monotonic clock, and loses
//! it when a renewal fails, comes too late, or finds another holder.
//!
//! Two things are fenced with it. The store makes every rollback state change conditional on the
//! lease row still naming this holder and epoch (checked by the database, in the same statement).
//! The registry client asks [`Leadership::may_write`] right before it sends any write: a process
//! that was paused (SIGSTOP, a long GC, a frozen VM) past its deadline wakes up to find the
//! monotonic clock moved on, and writes nothing.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// This process's standing among the replicas.
#[derive(Debug)]
pub struct Leadership {
    /// How this replica names itself in the lease row (`host:pid:nonce`).
    pub holder: String,
    held: Mutex<Held>,
    /// When the lease row last answered (won, renewed, or found held by another).
    answered: Mutex<Option<Instant>>,
}

#[derive(Debug, Clone, Copy)]
enum Held {
    /// The only process: always leads, nothing to renew (SQLite).
    Always,
    /// Not the leader (yet, or any more).
    Not,
    /// Leader with `epoch` until `until` on the monotonic clock.
    Lease { epoch: i64, until: Instant },
}

impl Leadership {
    /// The only process there is: it always leads (SQLite, the command line).
    pub fn single() -> Leadership {
        Leadership {
            holder: "single".to_owned(),
            held: Mutex::new(Held::Always),
            answered: Mutex::new(None),
        }
    }

    /// A replica that must win the lease before it leads.
    pub fn replica(holder: String) -> Leadership {
        Leadership {
            holder,
            held: Mutex::new(Held::Not),
            answered: Mutex::new(None),
        }
    }

    /// Leads now (and, with a lease, its deadline has not passed).
    pub fn is_leader(&self) -> bool {
        self.may_write().is_ok()
    }

    /// The epoch to fence store writes with: `None` for the only process (nothing to fence),
    /// `Some(Err)` when this replica does not lead.
    pub fn fence(&self) -> Option<Result<i64, NotLeader>> {
        match *crate::lock(&self.held) {
            Held::Always => None,
            Held::Lease { epoch, until } if Instant::now() < until => Some(Ok(epoch)),
            Held::Lease { .. } | Held::Not => Some(Err(NotLeader)),
        }
    }

    /// Whether a write may be sent now: leading, within the lease's deadline.
    ///
    /// # Errors
    /// Not the leader, or the lease's deadline has passed without a renewal.
    pub fn may_write(&self) -> Result<(), NotLeader> {
        match self.fence() {
            None | Some(Ok(_)) => Ok(()),
            Some(Err(not)) => Err(not),
        }
    }

    /// When the lease runs out on this process's clock, while it holds one.
    pub fn deadline(&self) -> Option<Instant> {
        match *crate::lock(&self.held) {
            Held::Lease { until, .. } => Some(until),
            Held::Always | Held::Not => None,
        }
    }

    /// How long a write sent now may take at most: `None` without a lease to outlive (the
    /// only process); zero when the deadline has passed.
    pub fn write_budget(&self) -> Option<Duration> {
        match *crate::lock(&self.held) {
            Held::Always => None,
            Held::Lease { until, .. } => Some(until.saturating_duration_since(Instant::now())),
            Held::Not => Some(Duration::ZERO),
        }
    }

    /// The lease row answered an attempt (whatever it said).
    pub fn answered(&self) {
        *crate::lock(&self.answered) = Some(Instant::now());
    }

    /// Whether the lease row answered within `within`: a standby that could take over.
    pub fn in_touch(&self, within: Duration) -> bool {
        crate::lock(&self.answered).is_some_and(|at| at.elapsed() <= within)
    }

    /// The epoch held, if this replica holds the lease (deadline or not).
    pub fn epoch(&self) -> Option<i64> {
        match *crate::lock(&self.held) {
            Held::Lease { epoch, .. } => Some(epoch),
            Held::Always | Held::Not => None,
        }
    }

    /// The lease was won or renewed with `epoch`, asked at `asked` for `ttl`: the database set
    /// the expiry after `asked`, so no other replica can win it before `asked + ttl`. The
    /// deadline keeps a tenth of the TTL (at most a second) as a margin for clock rates.
    pub fn granted(&self, epoch: i64, asked: Instant, ttl: Duration) {
        let margin = (ttl / 10).min(Duration::from_secs(1));
        *crate::lock(&self.held) = Held::Lease {
            epoch,
            until: asked + ttl - margin,
        };
    }

    /// The lease is gone: nothing is written from now on.
    pub fn lost(&self) {
        let mut held = crate::lock(&self.held);
        if matches!(*held, Held::Always) {
            return;
        }
        *held = Held::Not;
    }
}

/// Refused: this replica does not hold the leadership lease.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("this replica does not hold the leadership lease (another replica leads, or the lease ran out before it was renewed)")]
pub struct NotLeader;

/// A name for this replica in the lease row: the host name (a pod's name in Kubernetes), the
/// process id and a nonce, so a restarted process never takes itself for its predecessor.
pub fn replica_name() -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| {
            std::fs::read_to_string("/proc/sys/kernel/hostname")
                .ok()
                .map(|h| h.trim().to_owned())
        })
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "rollbot".to_owned());
    let nonce = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let host: String = host.chars().take(64).collect();
    format!("{host}:{}:{nonce:08x}", std::process::id())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_only_process_always_leads_and_fences_nothing() {
        let single = Leadership::single();
        single.lost();
        assert!(single.is_leader());
        assert_eq!(single.fence(), None);
    }

    #[test]
    fn a_replica_leads_only_between_a_grant_and_its_deadline_or_loss() {
        let replica = Leadership::replica("a:1:0".into());
        assert_eq!(replica.fence(), Some(Err(NotLeader)));
        replica.granted(7, Instant::now(), Duration::from_secs(15));
        assert_eq!(replica.fence(), Some(Ok(7)));
        assert!(replica.may_write().is_ok());
        replica.lost();
        assert_eq!(replica.may_write(), Err(NotLeader));
        // Granted long ago: the deadline passed (as after a SIGSTOP), so nothing may be written.
        let asked = Instant::now() - Duration::from_secs(20);
        replica.granted(8, asked, Duration::from_secs(15));
        assert_eq!(replica.may_write(), Err(NotLeader));
        assert_eq!(replica.epoch(), Some(8));
    }
}
