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
