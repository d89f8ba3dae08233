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

#[cfg(test)]
mod tests {
    use crate::domain::policy::Decision;
    use crate::domain::rollback::{RollbackId, State};
    use crate::engine::testing::{actor, Harness, START};
    use crate::engine::{Answer, EventKind, Refusal};

    #[tokio::test]
    async fn the_requester_cancels_a_request_waiting_for_approval() {
        let mut h = Harness::new().await;
        let id = h.requested("app", &actor("alice")).await.id;

        let answer = h.engine.cancel(&actor("alice"), id).await;

        assert_eq!(answer, Answer::Cancelled { id });
        let stored = h.stored(id).await;
        assert_eq!(stored.state, State::Cancelled);
        assert_eq!(stored.error.as_deref(), Some("cancelled by Alice"));
        assert_eq!(stored.finished_at, Some(START));
        assert!(!h.engine.active.contains_key(&id));
        assert_eq!(
            h.event_kinds(),
            [EventKind::Cancelled { by: actor("alice") }]
        );
        let cancels = h.audited("cancel").await;
        assert_eq!(cancels.len(), 1);
        assert_eq!(cancels[0].actor, Some(actor("alice")));
        // The image is free again: a new request goes to planning.
        assert!(h.request(&actor("alice"), "app").await.is_later());
    }

    #[tokio::test]
    async fn cancels_that_are_not_allowed_are_refused_audited_and_change_nothing() {
        let mut h = Harness::new().await;
        let waiting = h.requested("web", &actor("alice")).await.id;
        let running = h.requested("app", &actor("alice")).await.id;
        h.engine
            .vote(&actor("bob"), running, Decision::Approve, None)
            .await;
        let finished = h.requested("api", &actor("alice")).await.id;
        h.engine.cancel(&actor("alice"), finished).await;
        h.events();
        let unknown = RollbackId(99);
        // (who cancels, what, the refusal)
        let cases = [
            (
                "bob",
                waiting,
                Refusal::NotRequester {
                    id: waiting,
                    requester: "Alice".to_owned(),
                },
            ),
            (
                "alice",
                running,
                Refusal::NotCancellable {
                    id: running,
                    state: State::Retagging,
                },
            ),
            ("alice", finished, Refusal::NotActive { id: finished }),
            ("alice", unknown, Refusal::NotActive { id: unknown }),
        ];
        for (who, id, refusal) in cases {
            let before = h.store.get(id).await.expect("readable");

            let answer = h.engine.cancel(&actor(who), id).await;

            assert_eq!(answer, refusal.clone().into());
            let entries = h.audited("refused").await;
            let last = entries.last().expect("audited");
            assert_eq!(last.rollback, Some(id), "{refusal:?}");
            assert_eq!(last.actor, Some(actor(who)), "{refusal:?}");
            assert_eq!(
                h.refusals().await.last(),
                Some(&("cancel".to_owned(), refusal.to_string()))
            );
            assert_eq!(h.store.get(id).await.expect("readable"), before);
        }
        assert_eq!(h.event_kinds(), []);
        assert_eq!(h.engine.active[&waiting].state, State::Requested);
    }
}
