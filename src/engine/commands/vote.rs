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
    ) -> Answer {
        let now = self.now();
        let verb = match decision {
            Decision::Approve => "approve",
            Decision::Reject => "reject",
        };
        let Some(mut record) = self.active.get(&id).cloned() else {
            let why = match self.store.get(id).await {
                Ok(Some(record)) => Refusal::NotWaiting {
                    id,
                    state: record.state,
                },
                Ok(None) => Refusal::NoSuchRollback { id },
                Err(error) => Refusal::Unreadable {
                    id,
                    error: error.to_string(),
                },
            };
            return self.refuse(actor, Some(id), verb, why).await;
        };
        let Some(entry) = self.settings.images.get(&record.alias).cloned() else {
            let why = Refusal::NoLongerAllowlisted {
                alias: record.alias.clone(),
                id,
            };
            return self.refuse(actor, Some(id), verb, why).await;
        };
        let rule = self.settings.approval_rule(&entry);
        let pending = Pending {
            state: record.state,
            requester: &record.requester,
            expires_at: record.expires_at,
            votes: &record.votes,
        };
        let verdict = policy::decide(&rule, pending, actor, decision, now);
        if let Verdict::Refused(why) = verdict {
            let detail = json!({ "decision": verb, "why": why.explain() });
            self.audit(AuditEntry::new(
                now,
                Some(id),
                Some(actor),
                "vote_refused",
                detail,
            ))
            .await;
            if why == policy::Refusal::Expired {
                self.expire(id).await;
            }
            return Refusal::Vote { verb, id, why }.into();
        }
        if verdict == Verdict::Approved {
            if let Some(refused) = self.rollbacks_per_hour(actor, id).await {
                return refused;
            }
        }

        record.votes.push(RecordedVote {
            actor: actor.clone(),
            decision,
            at: now,
            reason: reason.clone(),
        });
        let detail = match verdict {
            Verdict::Counted {
                approvals,
                required,
            } => json!({ "decision": verb, "approvals": approvals, "required": required }),
            Verdict::Rejected => json!({ "decision": verb, "reason": reason }),
            _ => json!({ "decision": verb, "approved": true }),
        };
        let audit = vec![AuditEntry::new(now, Some(id), Some(actor), "vote", detail)];
        let by = actor.clone();
        let (saved, answer) = match verdict {
            Verdict::Counted {
                approvals,
                required,
            } => {
                record.updated_at = now;
                let saved = self.persist(&record, &audit).await.map_err(Into::into);
                if saved.is_ok() {
                    self.emit(Event {
                        kind: EventKind::ApprovalRecorded { by },
                        channel: record.channel.clone(),
                        rollback: Some(record.clone()),
                    });
                }
                let answer = Answer::ApprovalRecorded {
                    id,
                    approvals,
                    required,
                };
                (saved, answer)
            }
            Verdict::Rejected => {
                let why = reason
                    .as_deref()
                    .map(|r| format!(": {r}"))
                    .unwrap_or_default();
                record.error = Some(format!("rejected by {}{why}", actor.name));
                let kind = EventKind::Rejected { by };
                let saved = self
                    .transition(&mut record, State::Rejected, audit, kind)
                    .await;
                (saved, Answer::Rejected { id })
            }
            _ => {
                record.approved_at = Some(now);
                let kind = EventKind::Approved { by };
                let saved = self
                    .transition(&mut record, State::Approved, audit, kind)
                    .await;
                (saved, Answer::Approved { id })
            }
        };
        if let Err(error) = saved {
            let error = error.to_string();
            return Refusal::NotSaved {
                what: "your vote",
                error,
            }
            .into();
        }
        if verdict == Verdict::Approved {
            self.start_pipeline(record, false).await;
        }
        answer
    }

    /// The limit on rollbacks started per hour: `Some(refusal)` (audited) when it is reached.
    async fn rollbacks_per_hour(&self, actor: &Actor, id: RollbackId) -> Option<Answer> {
        let not_until = self.rollbacks.check().err()?;
        self.metrics.rate_limited();
        let detail = json!({ "limit": "rollbacks_per_hour" });
        self.audit(AuditEntry::new(
            self.now(),
            Some(id),
            Some(actor),
            "rate_limited",
            detail,
        ))
        .await;
        Some(
            Refusal::RollbacksPerHour {
                limit: self.settings.daemon.limits.rollbacks_per_hour,
                retry_in: retry_in(&not_until),
            }
            .into(),
        )
    }
}
