//! State changes: persisted with their audit entries, then announced; the audit entries a
//! message writes with its next change; expiry.

use super::*;

/// Why a state change did not happen.
#[derive(Debug, thiserror::Error)]
pub enum TransitionError {
    /// The state machine does not allow it (a bug, or a message about an old state).
    #[error("{id} cannot go from {from} to {to}")]
    Illegal {
        id: RollbackId,
        from: State,
        to: State,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// One state change: to `next`, with its audit entries (the `state` entry is added) and what
/// to announce once it is persisted.
#[derive(Debug)]
pub(in crate::engine) struct Hop {
    pub next: State,
    pub audit: Vec<AuditEntry>,
    pub kind: EventKind,
}

/// A change of one record staged for a commit: the record after it, the audit entries to write
/// with it, and the events to emit once it is persisted (each with the record as of its hop).
#[derive(Debug)]
pub(in crate::engine) struct Change {
    pub record: RollbackRecord,
    pub audit: Vec<AuditEntry>,
    pub events: Vec<Event>,
}

impl Engine {
    /// Writes `entry` (with any entry waiting for the next write, before it).
    pub(in crate::engine) async fn audit(&self, entry: AuditEntry) {
        let mut entries = self.take_unsaved();
        entries.push(entry);
        if let Err(error) = self.store.audit_all(&entries).await {
            let kinds: Vec<&str> = entries.iter().map(|e| e.kind.as_str()).collect();
            tracing::error!(%error, ?kinds, "Audit entries could not be written.");
        }
    }

    /// Keeps `entry` for the next write of this message (see `Engine::unsaved`).
    pub(in crate::engine) fn audit_with_next_write(&self, entry: AuditEntry) {
        crate::lock(&self.unsaved).push(entry);
    }

    /// Writes the entries no write took (the end of a message).
    pub(in crate::engine) async fn flush_unsaved(&self) {
        let entries = self.take_unsaved();
        if entries.is_empty() {
            return;
        }
        if let Err(error) = self.store.audit_all(&entries).await {
            let kinds: Vec<&str> = entries.iter().map(|e| e.kind.as_str()).collect();
            tracing::error!(%error, ?kinds, "Audit entries could not be written.");
        }
    }

    pub(in crate::engine) fn take_unsaved(&self) -> Vec<AuditEntry> {
        std::mem::take(&mut *crate::lock(&self.unsaved))
    }

    /// A write that took the waiting entries failed: the first `entries.len() - own` of
    /// `entries` were waiting, and wait again.
    pub(in crate::engine) fn put_back_unsaved(&self, mut entries: Vec<AuditEntry>, own: usize) {
        entries.truncate(entries.len().saturating_sub(own));
        let mut unsaved = crate::lock(&self.unsaved);
        entries.append(&mut unsaved);
        *unsaved = entries;
    }

    pub(in crate::engine) async fn persist(
        &mut self,
        record: &RollbackRecord,
        audit: &[AuditEntry],
    ) -> Result<(), StoreError> {
        let mut entries = self.take_unsaved();
        entries.extend_from_slice(audit);
        if let Err(error) = self.store.save(record, &entries).await {
            self.put_back_unsaved(entries, audit.len());
            self.finished_elsewhere(&error, record, audit).await;
            return Err(error);
        }
        self.unpersisted.superseded(record.id);
        self.active.insert(record.id, record.clone());
        Ok(())
    }

    /// Moves `record` to `next` (persisting, then announcing). Refuses transitions the state
    /// machine does not allow.
    pub(in crate::engine) async fn transition(
        &mut self,
        record: &mut RollbackRecord,
        next: State,
        audit: Vec<AuditEntry>,
        kind: EventKind,
    ) -> Result<(), TransitionError> {
        self.transitions(record, vec![Hop { next, audit, kind }])
            .await
    }

    /// Moves `record` through `hops` in order (an approval that starts the pipeline at once:
    /// approved, then retagging), persisting them in one transaction, then announcing each.
    /// Refuses, changing nothing, when the state machine does not allow one of them.
    pub(in crate::engine) async fn transitions(
        &mut self,
        record: &mut RollbackRecord,
        hops: Vec<Hop>,
    ) -> Result<(), TransitionError> {
        let change = self.stage(record, hops)?;
        let mut entries = self.take_unsaved();
        entries.extend_from_slice(&change.audit);
        if let Err(error) = self.store.save(record, &entries).await {
            self.put_back_unsaved(entries, change.audit.len());
            self.finished_elsewhere(&error, record, &change.audit).await;
            return Err(error.into());
        }
        self.apply(change);
        Ok(())
    }

    /// Applies `hops` to `record` (every one checked by `State::can_become` before any is
    /// applied) and returns the change to persist; nothing is written or announced.
    pub(in crate::engine) fn stage(
        &self,
        record: &mut RollbackRecord,
        hops: Vec<Hop>,
    ) -> Result<Change, TransitionError> {
        let mut from = record.state;
        for hop in &hops {
            if !from.can_become(hop.next) {
                tracing::error!(rollback_id = %record.id, from = %from, to = %hop.next, "Refused an invalid state transition.");
                return Err(TransitionError::Illegal {
                    id: record.id,
                    from,
                    to: hop.next,
                });
            }
            from = hop.next;
        }
        let now = self.now();
        let mut change = Change {
            record: record.clone(),
            audit: Vec::new(),
            events: Vec::new(),
        };
        for Hop { next, audit, kind } in hops {
            change.audit.extend(audit);
            change.audit.push(AuditEntry::new(
                now,
                Some(record.id),
                None,
                "state",
                json!({ "from": record.state, "to": next }),
            ));
            record.state = next;
            record.updated_at = now;
            if next.is_terminal() {
                record.finished_at = Some(now);
            }
            change.events.push(Event {
                kind,
                channel: record.channel.clone(),
                rollback: Some(record.clone()),
            });
        }
        change.record = record.clone();
        Ok(change)
    }

    /// What happens once a change is persisted: the engine's view of the rollback (gone when
    /// it finished, counted by outcome), the gauges, then the announcements, in order.
    pub(in crate::engine) fn apply(&mut self, change: Change) {
        let Change { record, events, .. } = change;
        self.unpersisted.superseded(record.id);
        if record.state.is_terminal() {
            self.let_go(record.id);
            self.metrics.rollback_finished(record.state.as_str());
        } else {
            self.active.insert(record.id, record);
        }
        self.update_gauges();
        for event in events {
            self.emit(event);
        }
    }

    /// The engine stops holding rollback `id` (and its image); whether it held it.
    fn let_go(&mut self, id: RollbackId) -> bool {
        self.target_manifests.remove(&id);
        self.active.remove(&id).is_some()
    }

    /// The database refused a change of a rollback because it has it finished (written by
    /// something other than this engine, or a bug). The database is right: `record` (the
    /// engine's version) is not recorded. What its audit entries tell the run did (`step`,
    /// `finished`) is, with one `reconcile` entry naming the rest and the tags as the run
    /// last saw them. While the rollback's run is still going, the engine keeps holding its
    /// image (the run's reports go the same way); once no run is left, it lets the rollback
    /// go and tells its channel, with the record as the database has it.
    pub(in crate::engine) async fn finished_elsewhere(
        &mut self,
        error: &StoreError,
        record: &RollbackRecord,
        audit: &[AuditEntry],
    ) {
        let StoreError::Finished { id, state } = *error else {
            return;
        };
        let running = self.running.contains(&id);
        tracing::error!(rollback_id = %id, stored = state.as_str(), running, "The database has this rollback finished; a change of it was not recorded.");
        self.unpersisted.superseded(id);
        // One `reconcile` entry when the disagreement is found, and one when the rollback is
        // let go (with the run's last tags): not one per report.
        let held = self.active.contains_key(&id);
        let first = held && !self.unpersisted.finished_in_database.contains(&id);
        let (facts, not_recorded): (Vec<&AuditEntry>, Vec<&AuditEntry>) = audit
            .iter()
            .partition(|e| matches!(e.kind.as_str(), "step" | "finished"));
        let mut entries: Vec<AuditEntry> = facts.into_iter().cloned().collect();
        if first || (held && !running) {
            let not_recorded: Vec<&str> = not_recorded.iter().map(|e| e.kind.as_str()).collect();
            entries.push(AuditEntry::new(
                self.now(),
                Some(id),
                None,
                "reconcile",
                json!({
                    "decision": "finished_in_database",
                    "stored": state,
                    "not_recorded": not_recorded,
                    "state_meant": record.state,
                    "tags_now": record.tags_now,
                    "run_going_on": running,
                }),
            ));
        }
        if let Err(error) = self.store.audit_all(&entries).await {
            tracing::error!(rollback_id = %id, %error, "Audit entries could not be written.");
        }
        if running {
            self.unpersisted.finished_in_database.insert(id);
            return;
        }
        self.unpersisted.finished_in_database.remove(&id);
        if !self.let_go(id) {
            // Let go already (an earlier change of the same batch).
            return;
        }
        self.update_gauges();
        let stored = match self.store.get(id).await {
            Ok(Some(stored)) => stored,
            _ => {
                let mut stored = record.clone();
                stored.state = state;
                stored
            }
        };
        let ran = if record.state.is_terminal() {
            format!("; its run ended {}", record.state.as_str())
        } else {
            String::new()
        };
        let check = if stored.drill {
            String::new()
        } else {
            format!(
                "; check the tags with `rollbot verify {} --expect {}` (and the hold with `rollbot hold status {}`)",
                stored.image, stored.target.digest, stored.image
            )
        };
        let text = format!(
            "{id} is {} in the state database, changed by something other than this rollbot, which no longer tracks it{ran}{check}",
            state.as_str()
        );
        self.emit(Event {
            kind: EventKind::FinishedElsewhere { text },
            channel: stored.channel.clone(),
            rollback: Some(stored),
        });
    }

    pub(in crate::engine) async fn expire(&mut self, id: RollbackId) {
        let Some(record) = self.active.get(&id).cloned() else {
            return;
        };
        if record.state != State::Requested {
            return;
        }
        let mut record = record;
        record.error = Some("not approved in time".to_owned());
        let audit = AuditEntry::new(
            self.now(),
            Some(id),
            None,
            "expired",
            json!({ "expires_at": record.expires_at }),
        );
        tracing::info!(rollback_id = %id, "Rollback request expired.");
        if let Err(error) = self
            .transition(&mut record, State::Expired, vec![audit], EventKind::Expired)
            .await
        {
            tracing::error!(rollback_id = %id, %error, "Expiry could not be persisted.");
        }
    }

    pub(in crate::engine) async fn tick(&mut self) {
        self.retry_unpersisted(false).await;
        let now = self.now();
        let expired: Vec<RollbackId> = self
            .active
            .values()
            .filter(|r| r.state == State::Requested && now >= r.expires_at)
            .map(|r| r.id)
            .collect();
        for id in expired {
            self.expire(id).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use serde_json::json;

    use super::TransitionError;
    use crate::domain::policy::Decision;
    use crate::domain::record::AuditEntry;
    use crate::domain::rollback::State;
    use crate::engine::testing::{actor, Harness, EXPIRY, START};
    use crate::engine::EventKind;

    #[tokio::test]
    async fn an_illegal_transition_is_refused_and_changes_nothing() {
        let mut h = Harness::new().await;
        let waiting = h.requested("web", &actor("alice")).await;
        let running = h.requested("app", &actor("alice")).await.id;
        h.engine
            .vote(&actor("bob"), running, Decision::Approve, None)
            .await;
        let running = h.engine.active[&running].clone();
        let finished = h.requested("api", &actor("alice")).await.id;
        h.engine.cancel(&actor("alice"), finished).await;
        let finished = h.stored(finished).await;
        h.events();
        for from in [waiting, running, finished] {
            for next in State::ALL {
                if from.state.can_become(next) {
                    continue;
                }
                let mut record = from.clone();
                let log = h.audit_log().await;
                let active = h.engine.active.clone();
                let audit = AuditEntry::new(START, Some(record.id), None, "test", json!({}));

                let result = h
                    .engine
                    .transition(&mut record, next, vec![audit], EventKind::Expired)
                    .await;

                let case = format!("{} to {next}", from.state);
                match result {
                    Err(TransitionError::Illegal { id, from: was, to }) => {
                        assert_eq!((id, was, to), (from.id, from.state, next), "{case}");
                    }
                    other => panic!("{case}: expected an illegal transition, got {other:?}"),
                }
                assert_eq!(record, from, "{case}: the record is unchanged");
                assert_eq!(h.stored(from.id).await, from, "{case}: nothing stored");
                assert_eq!(h.audit_log().await, log, "{case}: nothing audited");
                assert_eq!(h.engine.active, active, "{case}");
                assert_eq!(h.event_kinds(), [], "{case}: nothing announced");
            }
        }
    }

    #[tokio::test]
    async fn a_transition_is_persisted_with_its_audit_entries_then_announced() {
        // (next state, whether it finishes the rollback)
        let cases = [
            (State::Approved, false),
            (State::Expired, true),
            (State::Cancelled, true),
        ];
        for (next, finishes) in cases {
            let mut h = Harness::new().await;
            let mut record = h.requested("app", &actor("alice")).await;
            h.clock.advance(Duration::from_secs(5));
            let later = START.plus(Duration::from_secs(5));
            let audit = AuditEntry::new(later, Some(record.id), None, "test", json!({}));

            h.engine
                .transition(&mut record, next, vec![audit], EventKind::Expired)
                .await
                .expect("a legal transition");

            assert_eq!(record.state, next);
            assert_eq!(record.updated_at, later);
            assert_eq!(record.finished_at, finishes.then_some(later), "{next}");
            assert_eq!(h.stored(record.id).await, record, "{next}: stored");
            let log = h.audit_log().await;
            let kinds: Vec<&str> = log.iter().map(|e| e.kind.as_str()).collect();
            assert_eq!(kinds, ["requested", "test", "state"], "{next}");
            assert_eq!(
                log[2].detail,
                json!({ "from": "requested", "to": next.as_str() })
            );
            assert_eq!(
                h.engine.active.get(&record.id),
                (!finishes).then_some(&record),
                "{next}: active until finished"
            );
            let events = h.events();
            assert_eq!(events.len(), 1, "{next}");
            assert_eq!(events[0].rollback.as_ref(), Some(&record), "{next}");
            let finished_line = format!("rollbot_rollbacks_total{{outcome=\"{next}\"}} 1");
            assert_eq!(
                h.metrics.render(&[]).contains(&finished_line),
                finishes,
                "{next}: counted when finished"
            );
        }
    }

    #[tokio::test]
    async fn a_tick_expires_requests_at_their_expiry_and_not_before() {
        let mut h = Harness::new().await;
        let app = h.requested("app", &actor("alice")).await.id;
        let web = h.requested("web", &actor("alice")).await.id;
        let running = h.requested("api", &actor("alice")).await.id;
        h.engine
            .vote(&actor("bob"), running, Decision::Approve, None)
            .await;
        h.events();

        h.clock.advance(EXPIRY - Duration::from_millis(1));
        h.engine.tick().await;
        assert_eq!(h.event_kinds(), [], "not yet");
        assert_eq!(h.stored(app).await.state, State::Requested);

        h.clock.advance(Duration::from_millis(1));
        h.engine.tick().await;
        assert_eq!(h.event_kinds(), [EventKind::Expired, EventKind::Expired]);
        for id in [app, web] {
            let stored = h.stored(id).await;
            assert_eq!(stored.state, State::Expired);
            assert_eq!(stored.error.as_deref(), Some("not approved in time"));
            assert!(!h.engine.active.contains_key(&id));
        }
        assert_eq!(h.audited("expired").await.len(), 2);
        assert_eq!(
            h.stored(running).await.state,
            State::Retagging,
            "a running rollback does not expire"
        );
    }
}
