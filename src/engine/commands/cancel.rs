//! `/rollback cancel ID`: the requester withdraws a request nobody approved yet.

use super::super::*;

impl Engine {
    pub(in crate::engine) async fn cancel(&mut self, actor: &Actor, id: RollbackId) -> Answer {
        let refusal = match self.active.get(&id) {
            None => Some(Refusal::NotActive { id }),
            Some(record) if record.requester.id != actor.id => Some(Refusal::NotRequester {
                id,
                requester: record.requester.name.clone(),
            }),
            Some(record) if record.state != State::Requested => Some(Refusal::NotCancellable {
                id,
                state: record.state,
            }),
            Some(_) => None,
        };
        if let Some(why) = refusal {
            return self.refuse(actor, Some(id), "cancel", why).await;
        }
        let Some(mut record) = self.active.get(&id).cloned() else {
            return Refusal::NotActive { id }.into();
        };
        record.error = Some(format!("cancelled by {}", actor.name));
        let audit = AuditEntry::new(self.now(), Some(id), Some(actor), "cancel", json!({}));
        let cancelled = EventKind::Cancelled { by: actor.clone() };
        match self
            .transition(&mut record, State::Cancelled, vec![audit], cancelled)
            .await
        {
            Ok(()) => Answer::Cancelled { id },
            Err(error) => Refusal::NotSaved {
                what: "the cancellation",
                error: error.to_string(),
            }
            .into(),
        }
    }
}
