//! `/rollback release IMAGE [reason]`: an approver lets CI move the tags again (the hold is
//! released, in a task).

use super::super::*;

impl Engine {
    pub(in crate::engine) async fn release(
        &mut self,
        actor: Actor,
        channel: ChannelRef,
        name: ImageName,
        reason: Option<String>,
        reply: oneshot::Sender<Answer>,
    ) -> Option<(oneshot::Sender<Answer>, Answer)> {
        let found = self.allowlisted(&name).cloned().and_then(|entry| {
            if !self.settings.approval_rule(&entry).may_approve(&actor) {
                return Err(Refusal::NotApprover { alias: entry.alias });
            }
            self.with_registry(entry)
        });
        let (entry, registry) = match found {
            Ok(found) => found,
            Err(why) => return Some((reply, self.refuse(&actor, None, "release", why).await)),
        };
        let internal = self.internal_tx.clone();
        let store = self.store.clone();
        let now = self.now();
        self.tasks.spawn(async move {
            let answer = match manifest::read_hold(&registry, &entry.image).await {
                Ok(Some(hold)) if hold.is_active() => {
                    let warning = hold.release_warning();
                    let released = hold.released(actor.name.clone(), now.rfc3339(), reason.clone());
                    match manifest::write_hold(&registry, &released).await {
                        Ok(()) => {
                            let _ = store
                                .audit(&AuditEntry::new(
                                    now,
                                    None,
                                    Some(&actor),
                                    "hold_released",
                                    json!({ "image": entry.image.to_string(), "reason": reason }),
                                ))
                                .await;
                            let _ = internal.send(Internal::Emit(Box::new(Event {
                                kind: EventKind::HoldReleased {
                                    image: entry.image.clone(),
                                    by: actor.clone(),
                                    reason,
                                },
                                rollback: None,
                                channel,
                            })));
                            Answer::HoldReleased {
                                alias: entry.alias.clone(),
                                warning,
                            }
                        }
                        Err(error) => Refusal::HoldNotReleased(error.to_string()).into(),
                    }
                }
                Ok(_) => Answer::NoActiveHold {
                    alias: entry.alias.clone(),
                },
                Err(error) => Refusal::HoldUnreadable {
                    alias: entry.alias.clone(),
                    error: error.to_string(),
                }
                .into(),
            };
            let _ = reply.send(answer);
        });
        None
    }
}

#[cfg(test)]
mod tests {
    use crate::domain::command::ImageName;
    use crate::domain::rollback::Actor;
    use crate::engine::testing::{actor, channel, member, Harness, Reply};
    use crate::engine::{Answer, Refusal};

    async fn release(h: &mut Harness, by: &Actor, name: &str) -> Reply {
        let (reply, answer) = tokio::sync::oneshot::channel();
        let decided = h
            .engine
            .release(
                by.clone(),
                channel(),
                ImageName::Alias(name.to_owned()),
                Some("CI may move it again".to_owned()),
                reply,
            )
            .await;
        Reply::of(decided, answer)
    }

    #[tokio::test]
    async fn releases_by_non_approvers_or_of_unknown_images_are_refused_and_audited() {
        // (who, image, the refusal)
        let not_approver = Refusal::NotApprover {
            alias: "app".to_owned(),
        };
        let cases = [
            ("mallory", "app", Some(not_approver)),
            // Only alice approves solo.
            (
                "bob",
                "solo",
                Some(Refusal::NotApprover {
                    alias: "solo".to_owned(),
                }),
            ),
            ("bob", "nope", None),
        ];
        for (who, name, refusal) in cases {
            let mut h = Harness::new().await;

            let answer = release(&mut h, &actor(who), name).await.now();

            let Answer::Refused(refused) = answer else {
                panic!("{who} releasing {name}: expected a refusal, got {answer:?}");
            };
            match refusal {
                Some(refusal) => assert_eq!(refused, refusal),
                None => assert!(
                    matches!(refused, Refusal::NotAllowlisted { .. }),
                    "{refused:?}"
                ),
            }
            assert_eq!(
                h.refusals().await,
                [("release".to_owned(), refused.to_string())]
            );
            assert_eq!(h.event_kinds(), []);
        }
    }

    #[tokio::test]
    async fn an_approver_releasing_a_hold_the_registry_cannot_show_is_told_so() {
        // An approver by id, one by group, and solo's only approver.
        let cases = [
            (actor("bob"), "app"),
            (member("dave", &["sre"]), "app"),
            (actor("alice"), "solo"),
        ];
        for (who, name) in cases {
            let mut h = Harness::new().await;

            let answer = release(&mut h, &who, name).await.later().await;

            let Answer::Refused(Refusal::HoldUnreadable { alias, .. }) = &answer else {
                panic!("{who:?} releasing {name}: expected an unreadable hold, got {answer:?}");
            };
            assert_eq!(alias, name);
            assert!(h.audited("hold_released").await.is_empty());
            assert!(h.refusals().await.is_empty());
            assert_eq!(h.event_kinds(), []);
        }
    }
}
