//! `/rollback cancel ID`: the requester withdraws a request nobody approved yet.

use super::super::*;

impl Engine {
    pub(in crate::engine) async fn cancel(&mut self, actor: &Actor, id: RollbackId) -> Reply {
        let refusal = match self.active.get(&id) {
            None => Some(format!("{id} is not active")),
            Some(record) if record.requester.id != actor.id => Some(format!(
                "only {} (who requested {id}) can cancel it; approvers can reject it",
                record.requester.name
            )),
            Some(record) if record.state != State::Requested => Some(format!(
                "{id} is already {}; it cannot be cancelled",
                record.state
            )),
            Some(_) => None,
        };
        if let Some(why) = refusal {
            return self.refuse(actor, Some(id), "cancel", why).await;
        }
        let Some(record) = self.active.get(&id).cloned() else {
            return Reply::refused(format!("{id} is not active"));
        };
        let now = self.now();
        let mut record = record;
        record.error = Some(format!("cancelled by {}", actor.name));
        let audit = AuditEntry::new(now, Some(id), Some(actor), "cancel", json!({}));
        match self
            .transition(
                &mut record,
                State::Cancelled,
                vec![audit],
                EventKind::Cancelled { by: actor.clone() },
            )
            .await
        {
            Ok(()) => Reply::ok(format!("{id} cancelled.")),
            Err(error) => Reply::refused(format!("cancel could not be saved: {error}")),
        }
    }
}
