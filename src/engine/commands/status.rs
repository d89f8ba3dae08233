//! `/rollback status [ID]`: the rollbacks asked about.

use super::super::*;

impl Engine {
    pub(in crate::engine) async fn status(&self, actor: &Actor, id: Option<RollbackId>) -> Answer {
        let now = self.now();
        let Some(id) = id else {
            let mut records: Vec<RollbackRecord> = self.active.values().cloned().collect();
            records.sort_by_key(|r| r.id);
            return Answer::Status { records, now };
        };
        let record = match self.active.get(&id).cloned() {
            Some(record) => record,
            None => match self.store.get(id).await {
                Ok(Some(record)) => record,
                Ok(None) => {
                    let why = Refusal::NoSuchRollback { id };
                    return self.refuse(actor, Some(id), "status", why).await;
                }
                Err(error) => {
                    let error = error.to_string();
                    return Refusal::Unreadable { id, error }.into();
                }
            },
        };
        Answer::Status {
            records: vec![record],
            now,
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::domain::rollback::{RollbackId, State};
    use crate::engine::testing::{actor, Harness, START};
    use crate::engine::{Answer, Refusal};

    #[tokio::test]
    async fn status_without_an_id_lists_the_active_rollbacks_in_id_order() {
        let mut h = Harness::new().await;
        assert_eq!(
            h.engine.status(&actor("bob"), None).await,
            Answer::Status {
                records: Vec::new(),
                now: START
            },
            "none active"
        );
        let web = h.requested("web", &actor("alice")).await;
        let cancelled = h.requested("api", &actor("alice")).await.id;
        h.engine.cancel(&actor("alice"), cancelled).await;
        let app = h.requested("app", &actor("carol")).await;

        let answer = h.engine.status(&actor("bob"), None).await;

        assert_eq!(
            answer,
            Answer::Status {
                records: vec![web, app],
                now: START
            }
        );
        assert!(h.refusals().await.is_empty());
    }

    #[tokio::test]
    async fn status_of_one_id_answers_the_active_record_or_the_stored_one() {
        let mut h = Harness::new().await;
        let active = h.requested("web", &actor("alice")).await;
        let finished = h.requested("app", &actor("alice")).await.id;
        h.engine.cancel(&actor("alice"), finished).await;

        let of_active = h.engine.status(&actor("bob"), Some(active.id)).await;
        let of_finished = h.engine.status(&actor("bob"), Some(finished)).await;

        assert_eq!(
            of_active,
            Answer::Status {
                records: vec![active],
                now: START
            }
        );
        let Answer::Status { records, .. } = of_finished else {
            panic!("expected a status, got {of_finished:?}");
        };
        assert_eq!(records.len(), 1);
        assert_eq!(records[0].id, finished);
        assert_eq!(records[0].state, State::Cancelled, "read from the store");
    }

    #[tokio::test]
    async fn status_of_an_unknown_id_is_refused_and_audited() {
        let h = Harness::new().await;
        let id = RollbackId(42);

        let answer = h.engine.status(&actor("bob"), Some(id)).await;

        let refusal = Refusal::NoSuchRollback { id };
        assert_eq!(answer, refusal.clone().into());
        assert_eq!(
            h.refusals().await,
            [("status".to_owned(), "there is no rollback rb-42".to_owned())]
        );
        assert_eq!(h.audited("refused").await[0].rollback, Some(id));
    }
}
