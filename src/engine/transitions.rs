//! State changes: persisted with their audit entries, then announced; expiry.

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

impl Engine {
    pub(in crate::engine) async fn persist(
        &mut self,
        record: &RollbackRecord,
        audit: &[AuditEntry],
    ) -> Result<(), StoreError> {
        self.store.save(record, audit).await?;
        self.active.insert(record.id, record.clone());
        Ok(())
    }

    /// Moves `record` to `next` (persisting, then announcing). Refuses transitions the state
    /// machine does not allow.
    pub(in crate::engine) async fn transition(
        &mut self,
        record: &mut RollbackRecord,
        next: State,
        mut audit: Vec<AuditEntry>,
        kind: EventKind,
    ) -> Result<(), TransitionError> {
        if !record.state.can_become(next) {
            tracing::error!(rollback_id = %record.id, from = %record.state, to = %next, "Refused an invalid state transition.");
            return Err(TransitionError::Illegal {
                id: record.id,
                from: record.state,
                to: next,
            });
        }
        let now = self.now();
        audit.push(AuditEntry::new(
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
        self.store.save(record, &audit).await?;
        if next.is_terminal() {
            self.active.remove(&record.id);
            self.metrics.rollback_finished(next.as_str());
        } else {
            self.active.insert(record.id, record.clone());
        }
        self.update_gauges();
        self.emit(Event {
            kind,
            channel: record.channel.clone(),
            rollback: Some(record.clone()),
        });
        Ok(())
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
