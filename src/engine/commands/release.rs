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
