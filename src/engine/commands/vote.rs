//! Approve and reject (buttons, reactions, `/rollback approve|reject ID`): the two-person rule
//! decides; an approval that completes the rule starts the pipeline.

use super::super::transitions::Hop;
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
        // A drill never takes a real rollback's place under the hourly limit.
        if verdict == Verdict::Approved && !record.drill {
            if let Some(refused) = self.rollbacks_per_hour(actor, id, now).await {
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
                // Approved and, in the same transaction, retagging: the pipeline starts at once.
                record.approved_at = Some(now);
                let approved = Hop {
                    next: State::Approved,
                    audit,
                    kind: EventKind::Approved { by },
                };
                let started = self.pipeline_hop(&record);
                let saved = self.transitions(&mut record, vec![approved, started]).await;
                (
                    saved,
                    Answer::Approved {
                        id,
                        drill: record.drill,
                    },
                )
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
            if !record.drill {
                self.rollbacks.started(now);
            }
            self.start_pipeline(record, false).await;
        }
        answer
    }

    /// The limit on rollbacks started per hour: `Some(refusal)` (audited) when it is reached.
    /// Takes nothing: the start counts once it is recorded.
    async fn rollbacks_per_hour(
        &mut self,
        actor: &Actor,
        id: RollbackId,
        now: Timestamp,
    ) -> Option<Answer> {
        let wait = self.rollbacks.check(now).err()?;
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
                retry_in: wait,
            }
            .into(),
        )
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use crate::domain::policy::{self, Decision};
    use crate::domain::rollback::{RollbackId, State};
    use crate::engine::testing::{actor, member, Harness, EXPIRY, START};
    use crate::engine::{Answer, EventKind, Refusal};

    /// Bob approves `id`: the engine's answer.
    async fn bob_approves(h: &mut Harness, id: RollbackId) -> Answer {
        h.engine
            .vote(&actor("bob"), id, Decision::Approve, None)
            .await
    }

    #[tokio::test]
    async fn votes_the_rule_refuses_are_audited_and_change_nothing() {
        // (who votes, how, why the two-person rule refuses it) on web (two approvals needed),
        // requested by alice and approved once by bob.
        let cases = [
            ("mallory", Decision::Approve, policy::Refusal::NotAnApprover),
            ("mallory", Decision::Reject, policy::Refusal::NotAnApprover),
            ("alice", Decision::Approve, policy::Refusal::OwnRequest),
            ("alice", Decision::Reject, policy::Refusal::OwnRequest),
            (
                "bob",
                Decision::Approve,
                policy::Refusal::AlreadyVoted(Decision::Approve),
            ),
            (
                "bob",
                Decision::Reject,
                policy::Refusal::AlreadyVoted(Decision::Approve),
            ),
        ];
        for (voter, decision, why) in cases {
            let mut h = Harness::new().await;
            let id = h.requested("web", &actor("alice")).await.id;
            h.engine
                .vote(&actor("bob"), id, Decision::Approve, None)
                .await;
            h.events();
            let before = h.stored(id).await;
            let verb = match decision {
                Decision::Approve => "approve",
                Decision::Reject => "reject",
            };

            let answer = h.engine.vote(&actor(voter), id, decision, None).await;

            let case = format!("{voter} {verb}s: {why:?}");
            assert_eq!(answer, Refusal::Vote { verb, id, why }.into(), "{case}");
            let refused = h.audited("vote_refused").await;
            assert_eq!(refused.len(), 1, "{case}");
            assert_eq!(refused[0].rollback, Some(id), "{case}");
            assert_eq!(refused[0].actor, Some(actor(voter)), "{case}");
            assert_eq!(
                refused[0].detail,
                json!({ "decision": verb, "why": why.explain() }),
                "{case}"
            );
            assert_eq!(
                h.stored(id).await,
                before,
                "{case}: the record is unchanged"
            );
            assert_eq!(h.engine.active[&id], before, "{case}");
            assert_eq!(h.event_kinds(), [], "{case}: nothing is announced");
        }
    }

    #[tokio::test]
    async fn an_approval_is_counted_when_more_are_needed() {
        let mut h = Harness::new().await;
        let id = h.requested("web", &actor("alice")).await.id;

        let answer = h
            .engine
            .vote(&actor("bob"), id, Decision::Approve, None)
            .await;

        assert_eq!(
            answer,
            Answer::ApprovalRecorded {
                id,
                approvals: 1,
                required: 2
            }
        );
        let stored = h.stored(id).await;
        assert_eq!(stored.state, State::Requested);
        assert_eq!(stored.votes.len(), 1);
        assert_eq!(stored.votes[0].actor, actor("bob"));
        assert_eq!(stored.votes[0].decision, Decision::Approve);
        assert_eq!(h.engine.active[&id], stored);
        let events = h.events();
        assert_eq!(events.len(), 1);
        assert_eq!(
            events[0].kind,
            EventKind::ApprovalRecorded { by: actor("bob") }
        );
        assert_eq!(events[0].rollback.as_ref(), Some(&stored));
        let votes = h.audited("vote").await;
        assert_eq!(votes.len(), 1);
        assert_eq!(
            votes[0].detail,
            json!({ "decision": "approve", "approvals": 1, "required": 2 })
        );
    }

    #[tokio::test]
    async fn the_approval_that_completes_the_rule_approves_and_starts_the_pipeline() {
        // An approver named by id, and one by group membership.
        for approver in [actor("bob"), member("dave", &["sre"])] {
            let mut h = Harness::new().await;
            let id = h.requested("app", &actor("alice")).await.id;

            let answer = h.engine.vote(&approver, id, Decision::Approve, None).await;

            assert_eq!(
                answer,
                Answer::Approved { id, drill: false },
                "{approver:?}"
            );
            let stored = h.stored(id).await;
            assert_eq!(stored.state, State::Retagging, "{approver:?}");
            assert_eq!(stored.approved_at, Some(START), "{approver:?}");
            assert_eq!(stored.votes.len(), 1, "{approver:?}");
            let kinds = h.event_kinds();
            assert_eq!(kinds.len(), 2, "{approver:?}: {kinds:?}");
            assert_eq!(
                kinds[0],
                EventKind::Approved {
                    by: approver.clone()
                }
            );
            assert!(
                matches!(&kinds[1], EventKind::Step { step } if step.name == crate::domain::record::StepName::Approve),
                "{kinds:?}"
            );
            assert!(
                h.engine.running.contains(&id),
                "{approver:?}: the pipeline runs"
            );
            let states: Vec<_> = h
                .audited("state")
                .await
                .into_iter()
                .map(|e| e.detail)
                .collect();
            assert_eq!(
                states,
                [
                    json!({ "from": "requested", "to": "approved" }),
                    json!({ "from": "approved", "to": "retagging" })
                ]
            );
        }
    }

    #[tokio::test]
    async fn an_approval_is_written_with_its_command_and_the_pipelines_start_then_announced() {
        let mut h = Harness::new().await;
        let id = h.requested("app", &actor("alice")).await.id;
        h.events();
        let before = h.audit_log().await.len();

        let answer = h
            .say(&actor("bob"), &format!("/rollback approve {id}"))
            .await;

        assert_eq!(answer.now(), Answer::Approved { id, drill: false });
        let log = h.audit_log().await;
        let kinds: Vec<&str> = log[before..].iter().map(|e| e.kind.as_str()).collect();
        assert_eq!(kinds, ["command", "vote", "state", "pipeline", "state"]);
        // Each event carries the record as of its own transition.
        let states: Vec<Option<State>> = h
            .events()
            .iter()
            .map(|e| e.rollback.as_ref().map(|r| r.state))
            .collect();
        assert_eq!(states, [Some(State::Approved), Some(State::Retagging)]);
    }

    #[tokio::test]
    async fn a_reject_vetoes_the_request_even_after_an_approval() {
        // (the reason given, the error the record keeps)
        let cases = [
            (Some("not this build"), "rejected by Carol: not this build"),
            (None, "rejected by Carol"),
        ];
        for (reason, error) in cases {
            let mut h = Harness::new().await;
            let id = h.requested("web", &actor("alice")).await.id;
            h.engine
                .vote(&actor("bob"), id, Decision::Approve, None)
                .await;
            h.events();

            let answer = h
                .engine
                .vote(
                    &actor("carol"),
                    id,
                    Decision::Reject,
                    reason.map(str::to_owned),
                )
                .await;

            assert_eq!(answer, Answer::Rejected { id });
            let stored = h.stored(id).await;
            assert_eq!(stored.state, State::Rejected);
            assert_eq!(stored.error.as_deref(), Some(error));
            assert_eq!(stored.finished_at, Some(START));
            assert_eq!(stored.votes.len(), 2);
            assert!(!h.engine.active.contains_key(&id), "no longer active");
            assert_eq!(
                h.event_kinds(),
                [EventKind::Rejected { by: actor("carol") }]
            );
            let votes = h.audited("vote").await;
            assert_eq!(
                votes[1].detail,
                json!({ "decision": "reject", "reason": reason })
            );
        }
    }

    #[tokio::test]
    async fn votes_on_an_unknown_or_finished_rollback_are_refused_and_audited() {
        let mut h = Harness::new().await;
        let cancelled = h.requested("app", &actor("alice")).await.id;
        h.engine.cancel(&actor("alice"), cancelled).await;
        h.events();
        let unknown = RollbackId(99);
        // (rollback, decision, the refusal)
        let cases = [
            (
                unknown,
                Decision::Approve,
                Refusal::NoSuchRollback { id: unknown },
            ),
            (
                unknown,
                Decision::Reject,
                Refusal::NoSuchRollback { id: unknown },
            ),
            (
                cancelled,
                Decision::Approve,
                Refusal::NotWaiting {
                    id: cancelled,
                    state: State::Cancelled,
                },
            ),
        ];
        for (id, decision, refusal) in cases {
            let answer = h.engine.vote(&actor("bob"), id, decision, None).await;
            assert_eq!(answer, refusal.clone().into());
            let verb = if decision == Decision::Approve {
                "approve"
            } else {
                "reject"
            };
            let refusals = h.refusals().await;
            assert_eq!(
                refusals.last(),
                Some(&(verb.to_owned(), refusal.to_string())),
                "{refusal:?}"
            );
        }
        assert_eq!(h.stored(cancelled).await.state, State::Cancelled);
        assert_eq!(h.event_kinds(), []);
    }

    #[tokio::test]
    async fn a_vote_on_a_running_rollback_is_refused_as_no_longer_pending() {
        let mut h = Harness::new().await;
        let id = h.requested("app", &actor("alice")).await.id;
        h.engine
            .vote(&actor("bob"), id, Decision::Approve, None)
            .await;
        h.events();

        let answer = h
            .engine
            .vote(&actor("carol"), id, Decision::Reject, None)
            .await;

        let why = policy::Refusal::NotPending(State::Retagging);
        assert_eq!(
            answer,
            Refusal::Vote {
                verb: "reject",
                id,
                why
            }
            .into()
        );
        assert_eq!(h.audited("vote_refused").await.len(), 1);
        assert_eq!(h.stored(id).await.state, State::Retagging);
        assert_eq!(h.event_kinds(), []);
    }

    #[tokio::test]
    async fn the_rollbacks_per_hour_limit_refuses_the_approval_that_would_start_one() {
        let mut h = Harness::with_env(&[("ROLLBOT__LIMITS__ROLLBACKS_PER_HOUR", "1")]).await;
        let first = h.requested("app", &actor("alice")).await.id;
        let second = h.requested("api", &actor("alice")).await.id;
        let counted = h.requested("web", &actor("alice")).await.id;
        assert_eq!(
            bob_approves(&mut h, first).await,
            Answer::Approved {
                id: first,
                drill: false
            }
        );
        h.events();

        let answer = h
            .engine
            .vote(&actor("bob"), second, Decision::Approve, None)
            .await;

        let Answer::Refused(Refusal::RollbacksPerHour { limit, retry_in }) = answer else {
            panic!("expected the hourly limit, got {answer:?}");
        };
        assert_eq!(limit, 1);
        assert!(
            retry_in > std::time::Duration::from_secs(59 * 60),
            "{retry_in:?}"
        );
        let limited = h.audited("rate_limited").await;
        assert_eq!(limited.len(), 1);
        assert_eq!(limited[0].rollback, Some(second));
        assert_eq!(limited[0].actor, Some(actor("bob")));
        assert_eq!(limited[0].detail, json!({ "limit": "rollbacks_per_hour" }));
        let stored = h.stored(second).await;
        assert_eq!(
            stored.state,
            State::Requested,
            "the approval was not recorded"
        );
        assert!(stored.votes.is_empty(), "the approval was not recorded");
        assert_eq!(h.event_kinds(), []);
        // An approval that starts nothing is not limited.
        assert_eq!(
            bob_approves(&mut h, counted).await,
            Answer::ApprovalRecorded {
                id: counted,
                approvals: 1,
                required: 2
            }
        );
        // An hour after the first start, it has left the window (the request refused then
        // has expired meanwhile: it is asked again).
        h.clock.advance(std::time::Duration::from_secs(3600));
        h.engine.tick().await;
        let again = h.requested("api", &actor("alice")).await.id;
        assert_eq!(
            bob_approves(&mut h, again).await,
            Answer::Approved {
                id: again,
                drill: false
            }
        );
    }

    /// The hourly limit counts the rollbacks started before a restart (read from the store).
    #[tokio::test]
    async fn a_restart_does_not_reset_the_hourly_limit() {
        let mut h = Harness::with_env(&[("ROLLBOT__LIMITS__ROLLBACKS_PER_HOUR", "1")]).await;
        let first = h.requested("app", &actor("alice")).await.id;
        let answer = bob_approves(&mut h, first).await;
        assert!(matches!(answer, Answer::Approved { .. }), "{answer:?}");
        let config = crate::engine::testing::CONFIG
            .replace("rollbacks_per_hour = 1000", "rollbacks_per_hour = 1");
        let mut h = h.restart(&config).await;

        let second = h.requested("api", &actor("alice")).await.id;
        let answer = bob_approves(&mut h, second).await;
        assert!(
            matches!(
                answer,
                Answer::Refused(Refusal::RollbacksPerHour { limit: 1, .. })
            ),
            "{answer:?}"
        );
    }

    /// An approval the database did not take started nothing: it takes nothing from the
    /// hourly limit.
    #[tokio::test]
    async fn an_approval_that_could_not_be_saved_does_not_count_against_the_hourly_limit() {
        let mut h = Harness::with_env(&[("ROLLBOT__LIMITS__ROLLBACKS_PER_HOUR", "1")]).await;
        let first = h.requested("app", &actor("alice")).await.id;
        h.sql(
            "CREATE TRIGGER refuse_start BEFORE UPDATE ON rollbacks \
             WHEN NEW.state = 'retagging' BEGIN SELECT RAISE(ABORT, 'refused for the test'); END;",
        )
        .await;
        let answer = bob_approves(&mut h, first).await;
        assert!(
            matches!(answer, Answer::Refused(Refusal::NotSaved { .. })),
            "{answer:?}"
        );
        assert_eq!(h.stored(first).await.state, State::Requested);

        h.sql("DROP TRIGGER refuse_start").await;
        assert_eq!(
            bob_approves(&mut h, first).await,
            Answer::Approved {
                id: first,
                drill: false
            }
        );
    }

    #[tokio::test]
    async fn a_vote_at_or_after_the_expiry_expires_the_request() {
        let mut h = Harness::new().await;
        let id = h.requested("app", &actor("alice")).await.id;
        h.clock.advance(EXPIRY);

        let answer = h
            .engine
            .vote(&actor("bob"), id, Decision::Approve, None)
            .await;

        let why = policy::Refusal::Expired;
        assert_eq!(
            answer,
            Refusal::Vote {
                verb: "approve",
                id,
                why
            }
            .into()
        );
        let stored = h.stored(id).await;
        assert_eq!(stored.state, State::Expired);
        assert_eq!(stored.error.as_deref(), Some("not approved in time"));
        assert!(stored.votes.is_empty());
        assert!(!h.engine.active.contains_key(&id));
        assert_eq!(h.event_kinds(), [EventKind::Expired]);
        assert_eq!(h.audited("vote_refused").await.len(), 1);
        assert_eq!(h.audited("expired").await.len(), 1);
    }

    #[tokio::test]
    async fn a_vote_just_before_the_expiry_counts() {
        let mut h = Harness::new().await;
        let id = h.requested("app", &actor("alice")).await.id;
        h.clock
            .advance(EXPIRY - std::time::Duration::from_millis(1));

        let answer = h
            .engine
            .vote(&actor("bob"), id, Decision::Approve, None)
            .await;

        assert_eq!(answer, Answer::Approved { id, drill: false });
        assert!(h.audited("expired").await.is_empty());
    }

    #[tokio::test]
    async fn a_vote_on_a_rollback_whose_image_left_the_allowlist_is_refused() {
        let mut h = Harness::new().await;
        let id = h.requested("app", &actor("alice")).await.id;
        let without_app = crate::engine::testing::CONFIG
            .replace("[images.app]\nimage = \"{host}/acme/app\"\n", "");
        let mut h = h.restart(&without_app).await;
        assert!(h.engine.active.contains_key(&id), "loaded from the store");

        let answer = h
            .engine
            .vote(&actor("bob"), id, Decision::Approve, None)
            .await;

        let refusal = Refusal::NoLongerAllowlisted {
            alias: "app".to_owned(),
            id,
        };
        assert_eq!(answer, refusal.clone().into());
        assert_eq!(
            h.refusals().await,
            [("approve".to_owned(), refusal.to_string())]
        );
        assert!(h.stored(id).await.votes.is_empty());
        assert_eq!(h.event_kinds(), []);
    }
}
