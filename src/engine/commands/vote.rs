//! Approve and reject (buttons, reactions, `/rollback approve|reject ID`): the two-person rule
//! decides; an approval that completes the rule starts the pipeline.

use super::super::*;

impl Engine {
    pub(in crate::engine) async fn vote(
        &mut self,
        actor: &Actor,
        id: RollbackId,
        decision: Decision,
        reason: Option<String>,
    ) -> Reply {
        let now = self.now();
        let verb = match decision {
            Decision::Approve => "approve",
            Decision::Reject => "reject",
        };
        let Some(record) = self.active.get(&id).cloned() else {
            let why = match self.store.get(id).await {
                Ok(Some(record)) => format!(
                    "{id} is no longer waiting for approval (it is {})",
                    record.state
                ),
                Ok(None) => format!("there is no rollback {id}"),
                Err(error) => format!("cannot read {id}: {error}"),
            };
            return self.refuse(actor, Some(id), verb, why).await;
        };
        let Some(entry) = self.settings.images.get(&record.alias).cloned() else {
            let why = format!(
                "{} is no longer on the allowlist; {id} cannot be approved",
                record.alias
            );
            return self.refuse(actor, Some(id), verb, why).await;
        };
        let rule = self.settings.approval_rule(&entry);
        let verdict = policy::decide(
            &rule,
            Pending {
                state: record.state,
                requester: &record.requester,
                expires_at: record.expires_at,
                votes: &record.votes,
            },
            actor,
            decision,
            now,
        );
        let recorded = RecordedVote {
            actor: actor.clone(),
            decision,
            at: now,
            reason: reason.clone(),
        };
        match verdict {
            Verdict::Refused(refusal) => {
                self.audit(AuditEntry::new(
                    now,
                    Some(id),
                    Some(actor),
                    "vote_refused",
                    json!({ "decision": verb, "why": refusal.explain() }),
                ))
                .await;
                if refusal == policy::Refusal::Expired {
                    self.expire(id).await;
                }
                Reply::refused(format!("You cannot {verb} {id}: {}.", refusal.explain()))
            }
            Verdict::Counted {
                approvals,
                required,
            } => {
                let mut record = record;
                record.votes.push(recorded);
                record.updated_at = now;
                let audit = AuditEntry::new(
                    now,
                    Some(id),
                    Some(actor),
                    "vote",
                    json!({ "decision": verb, "approvals": approvals, "required": required }),
                );
                if let Err(error) = self.persist(&record, &[audit]).await {
                    return Reply::refused(format!("your approval could not be saved: {error}"));
                }
                self.emit(Event {
                    kind: EventKind::ApprovalRecorded { by: actor.clone() },
                    channel: record.channel.clone(),
                    rollback: Some(record),
                });
                Reply::ok(format!(
                    "Approval recorded for {id} ({approvals} of {required})."
                ))
            }
            Verdict::Rejected => {
                let mut record = record;
                record.votes.push(recorded);
                record.error = Some(format!(
                    "rejected by {}{}",
                    actor.name,
                    reason
                        .as_deref()
                        .map(|r| format!(": {r}"))
                        .unwrap_or_default()
                ));
                let audit = AuditEntry::new(
                    now,
                    Some(id),
                    Some(actor),
                    "vote",
                    json!({ "decision": "reject", "reason": reason }),
                );
                if let Err(error) = self
                    .transition(
                        &mut record,
                        State::Rejected,
                        vec![audit],
                        EventKind::Rejected { by: actor.clone() },
                    )
                    .await
                {
                    return Reply::refused(format!("your rejection could not be saved: {error}"));
                }
                Reply::ok(format!("{id} rejected; nothing will change."))
            }
            Verdict::Approved => {
                if let Err(not_until) = self.rollbacks.check() {
                    let wait = retry_in(&not_until);
                    self.metrics.rate_limited();
                    self.audit(AuditEntry::new(
                        now,
                        Some(id),
                        Some(actor),
                        "rate_limited",
                        json!({ "limit": "rollbacks_per_hour" }),
                    ))
                    .await;
                    return Reply::refused(format!(
                        "The limit of {} rollbacks per hour is reached; your approval was not recorded. Try again in {} min.",
                        self.settings.daemon.limits.rollbacks_per_hour,
                        wait.as_secs().div_ceil(60).max(1)
                    ));
                }
                let mut record = record;
                record.votes.push(recorded);
                record.approved_at = Some(now);
                let audit = AuditEntry::new(
                    now,
                    Some(id),
                    Some(actor),
                    "vote",
                    json!({ "decision": "approve", "approved": true }),
                );
                if let Err(error) = self
                    .transition(
                        &mut record,
                        State::Approved,
                        vec![audit],
                        EventKind::Approved { by: actor.clone() },
                    )
                    .await
                {
                    return Reply::refused(format!("your approval could not be saved: {error}"));
                }
                self.start_pipeline(record, false).await;
                Reply::ok(format!("{id} approved; rolling back now."))
            }
        }
    }
}
