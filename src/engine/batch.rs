//! What running rollbacks report (a step finished, the run ended), recorded in batches. The
//! loop takes every report already waiting in its queue (at most [`MOST`]); each is staged on the
//! record as the reports before it left it, then all are persisted in one transaction, then
//! announced in order. A hundred rollbacks at once cost the engine one commit per batch instead
//! of one per report, and it is free again sooner for the next approval; a report alone is a
//! batch of one, exactly as before.
//!
//! Persisted before announced still holds for every report: nothing of a batch is announced
//! before its commit. A batch that cannot be committed is committed report by report, so a
//! report that cannot be persisted fails alone (logged, as it always was) and the others are
//! recorded (unless the database is unreachable: then every report waits for a later tick).
//! The refused report is kept: a later report of the same rollback, staged on top of it,
//! takes its audit entries and announcements along, and ticks commit it again
//! ([`Engine::retry_unpersisted`]: at the next tick, then backing off up to
//! [`MOST_TICKS_BETWEEN_TRIES`]), so a final report refused once is recorded (and the image
//! freed) once the database takes it. Once the database was found unreachable, later reports
//! wait with the kept ones for that next try instead of each batch waiting out the pool's
//! acquire timeout first, with the engine's loop blocked meanwhile; a change of a rollback the
//! database takes (a command's, say) ends that, and so does a shutdown's drain.

use super::transitions::{Change, Hop};
use super::*;

/// The most reports committed together.
pub(in crate::engine) const MOST: usize = 64;

/// The most ticks between two tries of a report the database refused.
const MOST_TICKS_BETWEEN_TRIES: u32 = 64;

/// Reports the database refused, by rollback (the last one of each: it holds the others), and
/// when to try them again: at the next tick, then after twice as many ticks each time they
/// are refused again (up to [`MOST_TICKS_BETWEEN_TRIES`]).
#[derive(Default)]
pub(in crate::engine) struct Unpersisted {
    changes: HashMap<RollbackId, Change>,
    /// Rollbacks the database has finished while their run went on
    /// (`Engine::finished_elsewhere`): the run's final report goes to the database as it is,
    /// to be let go then.
    pub(in crate::engine) finished_in_database: HashSet<RollbackId>,
    /// The last try found the database unreachable: reports are kept without a try until the
    /// next scheduled one, or until a write of anything else is taken.
    unreachable: bool,
    ticks_between: u32,
    ticks_waited: u32,
}

impl Unpersisted {
    pub(in crate::engine) fn is_empty(&self) -> bool {
        self.changes.is_empty()
    }

    pub(in crate::engine) fn len(&self) -> usize {
        self.changes.len()
    }

    /// A change of rollback `id` was persisted: a kept one is either in it or older than it.
    /// Called wherever a change is persisted (`Engine::apply`, `Engine::persist`), before a
    /// finished rollback leaves the active ones: a kept change is always of an active one.
    /// Also when the database has the rollback finished (`Engine::finished_elsewhere`): then
    /// no change of it is ever recorded.
    pub(in crate::engine) fn superseded(&mut self, id: RollbackId) {
        self.changes.remove(&id);
        self.reached();
    }

    /// Keeps `change` to be committed later; it holds what an earlier kept change of its
    /// rollback holds (it was staged on top of it) and takes its audit entries and events
    /// along.
    fn keep(&mut self, mut change: Change) {
        self.carry_into(&mut change);
        self.changes.insert(change.record.id, change);
    }

    /// `change` takes the kept change of its rollback along (see [`carry`]), if any.
    fn carry_into(&mut self, change: &mut Change) {
        if let Some(kept) = self.changes.remove(&change.record.id) {
            carry(kept, change);
        }
    }

    /// The database took a write (or answered one): kept reports are tried at the next tick.
    pub(in crate::engine) fn reached(&mut self) {
        if std::mem::take(&mut self.unreachable) {
            (self.ticks_between, self.ticks_waited) = (0, 0);
        }
    }
}

impl Engine {
    /// Handles messages from the engine's tasks in order; consecutive progress and finished
    /// reports are committed together.
    pub(in crate::engine) async fn internals(&mut self, messages: Vec<Internal>) {
        let mut changes: Vec<Change> = Vec::new();
        for message in messages {
            match message {
                Internal::Progress { id, step } => {
                    let _span = self.span_of(id).entered();
                    changes.extend(self.stage_progress(&changes, id, step));
                }
                Internal::Finished {
                    id,
                    report,
                    tags_now,
                } => {
                    let _span = self.span_of(id).entered();
                    changes.extend(self.stage_finished(&changes, id, *report, tags_now));
                }
                other => {
                    self.commit(std::mem::take(&mut changes)).await;
                    self.internal(other).await;
                }
            }
        }
        self.commit(changes).await;
    }

    /// A step finished (a batch of one).
    pub(in crate::engine) async fn progress(&mut self, id: RollbackId, step: StepReport) {
        let change = self.stage_progress(&[], id, step);
        self.commit(change.into_iter().collect()).await;
    }

    /// A run ended (a batch of one).
    pub(in crate::engine) async fn finished(
        &mut self,
        id: RollbackId,
        report: Report,
        rechecked: Option<Vec<(Tag, TagNow)>>,
    ) {
        let change = self.stage_finished(&[], id, report, rechecked);
        self.commit(change.into_iter().collect()).await;
    }

    /// Persists `changes` in one transaction, then applies and announces each in order. When
    /// the transaction fails, each change is persisted on its own; one that still cannot be is
    /// logged and kept: it goes with the next change of its rollback (staged on top of it), or
    /// is committed again at a later tick. When the database is unreachable, all are kept
    /// without another try (each would wait out the pool's acquire timeout), and so are those
    /// of later batches until the next scheduled try.
    pub(in crate::engine) async fn commit(&mut self, mut changes: Vec<Change>) {
        if changes.is_empty() {
            return;
        }
        // A kept change goes with the first change of its rollback (its record already holds it).
        for change in &mut changes {
            self.unpersisted.carry_into(change);
        }
        // While draining, every report is tried as it comes (the drain may end before the next
        // scheduled try), as long as a try that waits out the pool's acquire timeout still
        // ends before the drain's deadline.
        let try_now = self.draining.is_some_and(|deadline| {
            deadline.saturating_duration_since(Instant::now()) > crate::store::ACQUIRE_TIMEOUT
        });
        if self.unpersisted.unreachable && !try_now {
            tracing::debug!(
                changes = changes.len(),
                "The state database was unreachable at the last try; the reports wait for the next."
            );
            for change in changes {
                self.unpersisted.keep(change);
            }
            self.update_gauges();
            return;
        }
        let mut entries = self.take_unsaved();
        let waiting = entries.len();
        for change in &changes {
            entries.extend_from_slice(&change.audit);
        }
        // The last version of each record is the one to store.
        let mut latest: Vec<&RollbackRecord> = Vec::new();
        for change in changes.iter().rev() {
            if !latest.iter().any(|r| r.id == change.record.id) {
                latest.push(&change.record);
            }
        }
        let saved = self.store.save_all(&latest, &entries).await;
        match saved {
            Ok(()) => {
                for change in changes {
                    self.apply(change);
                }
            }
            Err(error) => {
                let own = entries.len() - waiting;
                self.put_back_unsaved(entries, own);
                // Unreachable (Postgres down, no connection free): every other write would wait
                // out the acquire timeout too, with the engine's loop blocked meanwhile. The
                // reports are kept whole and tried again at a later tick.
                let mut unreachable = error.is_unreachable();
                if unreachable {
                    tracing::error!(%error, changes = changes.len(), "The state database is unreachable; the reports are kept and tried again at a later tick.");
                } else if changes.len() > 1 {
                    tracing::warn!(%error, changes = changes.len(), "A batch of reports could not be committed; committing them one by one.");
                }
                // A change staged on one that could not be persisted holds what that one
                // changed in its record: it takes that one's audit entries and events along,
                // so nothing is stored without its entry nor announced out of order or twice.
                for mut change in changes {
                    let id = change.record.id;
                    if unreachable {
                        self.unpersisted.keep(change);
                        continue;
                    }
                    self.unpersisted.carry_into(&mut change);
                    match self.store.save(&change.record, &change.audit).await {
                        Ok(()) => self.apply(change),
                        Err(error @ StoreError::Finished { .. }) => {
                            self.finished_elsewhere(&error, &change.record, &change.audit)
                                .await;
                        }
                        Err(error) => {
                            tracing::error!(rollback_id = %id, %error, "A report of the rollback could not be persisted; it is tried again with the next report or tick.");
                            unreachable = error.is_unreachable();
                            self.unpersisted.keep(change);
                        }
                    }
                }
                if unreachable {
                    self.unpersisted.unreachable = true;
                } else {
                    self.flush_unsaved().await;
                }
                self.update_gauges();
            }
        }
    }

    /// Commits again the reports the database refused: called at every tick, it tries at the
    /// next one and then backs off while they are refused; `now` tries at once (shutdown).
    pub(in crate::engine) async fn retry_unpersisted(&mut self, now: bool) {
        let kept = &mut self.unpersisted;
        if kept.changes.is_empty() {
            (kept.ticks_between, kept.ticks_waited) = (0, 0);
            return;
        }
        kept.ticks_waited += 1;
        if !now && kept.ticks_waited < kept.ticks_between {
            return;
        }
        kept.ticks_waited = 0;
        kept.unreachable = false;
        let changes = std::mem::take(&mut kept.changes).into_values().collect();
        self.commit(changes).await;
        let kept = &mut self.unpersisted;
        if !kept.changes.is_empty() {
            kept.ticks_between = (kept.ticks_between * 2).clamp(2, MOST_TICKS_BETWEEN_TRIES);
        }
    }

    /// The rollback `id` as the changes staged so far left it (or a kept one the database
    /// refused), or as the engine knows it.
    fn current(&self, staged: &[Change], id: RollbackId) -> Option<RollbackRecord> {
        staged
            .iter()
            .rev()
            .find(|c| c.record.id == id)
            .or_else(|| self.unpersisted.changes.get(&id))
            .map(|c| c.record.clone())
            .or_else(|| self.active.get(&id).cloned())
    }

    /// A step finished: added to the record (a retag that succeeded moves it to verifying).
    fn stage_progress(
        &self,
        staged: &[Change],
        id: RollbackId,
        step: StepReport,
    ) -> Option<Change> {
        let mut record = self.current(staged, id)?;
        self.metrics
            .step(step.name.as_str(), step.duration_ms as f64 / 1000.0);
        record.steps.push(step.clone());
        let audit = AuditEntry::new(self.now(), Some(id), None, "step", json!(step));
        if step.name == StepName::Retag && step.ok && record.state == State::Retagging {
            let hop = Hop {
                next: State::Verifying,
                audit: vec![audit],
                kind: EventKind::Step { step },
            };
            return match self.stage(&mut record, vec![hop]) {
                Ok(change) => Some(change),
                Err(error) => {
                    tracing::error!(rollback_id = %id, %error, "Step could not be recorded.");
                    None
                }
            };
        }
        record.updated_at = self.now();
        let event = Event {
            kind: EventKind::Step { step },
            channel: record.channel.clone(),
            rollback: Some(record.clone()),
        };
        Some(Change {
            record,
            audit: vec![audit],
            events: vec![event],
        })
    }

    /// A run ended: the record says what the report (and the re-check of a run that did not
    /// succeed) found, and is finished as succeeded or failed.
    fn stage_finished(
        &mut self,
        staged: &[Change],
        id: RollbackId,
        report: Report,
        rechecked: Option<Vec<(Tag, TagNow)>>,
    ) -> Option<Change> {
        self.running.remove(&id);
        let Some(mut record) = self.current(staged, id) else {
            self.update_gauges();
            return None;
        };
        record.checks = report.checks.clone();
        let reported: Vec<(Tag, TagNow)> = report
            .tags
            .iter()
            .map(|t| {
                let now = match (&t.now, t.status) {
                    (Some(seen), TagStatus::Unknown) => TagNow::Unknown {
                        unknown: format!(
                            "its write got no clear answer and may still land (it read back at {})",
                            seen.short()
                        ),
                    },
                    (None, TagStatus::Unknown) => TagNow::Unknown {
                        unknown: "could not be read back after the failed write".to_owned(),
                    },
                    (now, _) => TagNow::from(now.clone()),
                };
                (t.tag.clone(), now)
            })
            .collect();
        let succeeded = report.outcome == Outcome::Succeeded;
        if !succeeded {
            let mut error = report
                .error
                .clone()
                .unwrap_or_else(|| format!("{:?}", report.outcome));
            // A write reported as failed that landed after all: the registry is the truth.
            let landed: Vec<&str> = rechecked
                .iter()
                .flatten()
                .filter(|(tag, now)| {
                    now.is(&record.target.digest)
                        && reported
                            .iter()
                            .any(|(t, was)| t == tag && !was.is(&record.target.digest))
                })
                .map(|(tag, _)| tag.as_str())
                .collect();
            if !landed.is_empty() {
                tracing::warn!(rollback_id = %id, tags = ?landed, "A write reported as failed landed after all.");
                error.push_str(&format!(
                    "; re-checked before finishing: {} point{} at the target after all (a write without an answer landed)",
                    landed.join(", "),
                    if landed.len() == 1 { "s" } else { "" }
                ));
            }
            record.error = Some(error);
        }
        // The re-check is the registry's word, except that a write that may still land stays
        // unknown until a read shows it landed.
        record.tags_now = match rechecked {
            None => reported,
            Some(rechecked) => rechecked
                .into_iter()
                .zip(&reported)
                .map(|((tag, now), (_, was))| match (was, &now) {
                    (TagNow::Unknown { .. }, now) if !now.is(&record.target.digest) => {
                        (tag, was.clone())
                    }
                    _ => (tag, now),
                })
                .collect(),
        };
        let mut detail = json!({ "outcome": report.outcome, "error": report.error, "total_ms": report.total_ms });
        if record.drill {
            detail["drill"] = json!(true);
        }
        let audit = AuditEntry::new(self.now(), Some(id), None, "finished", detail);
        let (next, kind) = if succeeded {
            (State::Succeeded, EventKind::Succeeded)
        } else {
            (State::Failed, EventKind::Failed)
        };
        tracing::info!(rollback_id = %id, outcome = ?report.outcome, total_ms = report.total_ms, "Rollback finished.");
        if self.unpersisted.finished_in_database.contains(&id) {
            // Whatever state the engine last recorded, the database has its own final one: it
            // keeps it (or takes this report if it is the same) and the rollback is let go.
            let now = self.now();
            (record.state, record.updated_at, record.finished_at) = (next, now, Some(now));
            let event = Event {
                kind,
                channel: record.channel.clone(),
                rollback: Some(record.clone()),
            };
            return Some(Change {
                record,
                audit: vec![audit],
                events: vec![event],
            });
        }
        let hop = Hop {
            next,
            audit: vec![audit],
            kind,
        };
        match self.stage(&mut record, vec![hop]) {
            Ok(change) => Some(change),
            Err(error) => {
                tracing::error!(rollback_id = %id, %error, "Final state could not be recorded.");
                self.update_gauges();
                None
            }
        }
    }
}

/// `later` was staged on `kept`'s record: it takes `kept`'s audit entries and announcements
/// along, before its own.
fn carry(mut kept: Change, later: &mut Change) {
    kept.audit.append(&mut later.audit);
    kept.events.append(&mut later.events);
    (later.audit, later.events) = (kept.audit, kept.events);
}

#[cfg(test)]
mod tests;
