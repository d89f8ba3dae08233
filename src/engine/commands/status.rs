//! `/rollback status [ID]`: one line per rollback.

use super::super::*;

impl Engine {
    pub(in crate::engine) async fn status(&self, actor: &Actor, id: Option<RollbackId>) -> Reply {
        let now = self.now();
        match id {
            Some(id) => match self.active.get(&id).cloned() {
                Some(record) => Reply::ok(describe(&record, now)),
                None => match self.store.get(id).await {
                    Ok(Some(record)) => Reply::ok(describe(&record, now)),
                    Ok(None) => {
                        let why = format!("there is no rollback {id}");
                        self.refuse(actor, Some(id), "status", why).await
                    }
                    Err(error) => Reply::refused(format!("cannot read {id}: {error}")),
                },
            },
            None => {
                if self.active.is_empty() {
                    return Reply::ok("No rollback is in progress.");
                }
                let mut records: Vec<&RollbackRecord> = self.active.values().collect();
                records.sort_by_key(|r| r.id);
                Reply::ok(
                    records
                        .into_iter()
                        .map(|r| describe(r, now))
                        .collect::<Vec<_>>()
                        .join("\n"),
                )
            }
        }
    }
}

/// `alice, group:sre`
pub fn describe_approvers(rule: &ApprovalRule) -> String {
    if rule.approvers.is_empty() {
        return "nobody (no approvers are configured)".to_owned();
    }
    rule.approvers
        .iter()
        .map(|a| match a {
            Approver::User(id) => id.clone(),
            Approver::Group(group) => format!("group:{group}"),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// One line about a rollback for `/rollback status`.
pub fn describe(record: &RollbackRecord, now: Timestamp) -> String {
    let tags = record
        .tags
        .iter()
        .map(|t| t.tag.as_str())
        .collect::<Vec<_>>()
        .join(", ");
    let mut line = format!(
        "{} {} ({tags}) → {}: {}, requested by {}",
        record.id,
        record.alias,
        record.target.digest.short(),
        record.state,
        record.requester.name
    );
    match record.state {
        State::Requested => {
            let approvals = record
                .votes
                .iter()
                .filter(|v| v.decision == Decision::Approve)
                .count();
            let left = record.expires_at.0.saturating_sub(now.0).max(0) / 1000;
            line.push_str(&format!(
                ", {approvals} approval(s), expires in {} min {} s",
                left / 60,
                left % 60
            ));
        }
        _ => {
            if let Some(error) = &record.error {
                line.push_str(&format!(": {error}"));
            }
        }
    }
    line
}
