//! After a restart: rollbacks left running are reconciled from the registry, and recently failed
//! ones read again (a write without an answer can land late).

use super::*;

impl Engine {
    pub(in crate::engine) fn reconcile_on_start(&mut self) {
        let interrupted: Vec<RollbackRecord> = self
            .active
            .values()
            .filter(|r| r.state.is_running())
            .cloned()
            .collect();
        for record in interrupted {
            if record.drill {
                self.drill_interrupted(&record);
                continue;
            }
            tracing::warn!(rollback_id = %record.id, state = %record.state, "Rollback was running when rollbot stopped; reconciling from the registry.");
            let registry = self.registries.get(&record.image.registry);
            let internal = self.internal_tx.clone();
            let now = self.now();
            let expiry = self.settings.daemon.approvals.expiry;
            self.running.insert(record.id);
            let span = rollback_span(Some(record.id), Some(&record.image));
            self.tasks.spawn(
                async move {
                let outcome = match registry {
                    Ok(registry) => catch_panic(reconcile(&registry, &record, now, expiry))
                        .await
                        .unwrap_or_else(|panic| Reconciliation::Interrupted {
                            tags_now: Vec::new(),
                            detail: format!("internal error while reconciling on restart ({panic}); check the tags by hand"),
                        }),
                    Err(error) => Reconciliation::Interrupted {
                        tags_now: Vec::new(),
                        detail: format!("registry unusable on restart: {error}"),
                    },
                };
                let _ = internal.send(Internal::Reconciled {
                    id: record.id,
                    outcome,
                });
            }
                .instrument(span),
            );
        }
    }

    /// Reads again, in the background, the tags of rollbacks that failed recently: the record
    /// must end up saying what the registry says, even when a write landed after it was written.
    pub(in crate::engine) fn reread_failed(&mut self, records: Vec<RollbackRecord>) {
        // A drill's tags were the scratch repository's, not the image's.
        for record in records.into_iter().filter(|r| !r.drill) {
            let Ok(registry) = self.registries.get(&record.image.registry) else {
                continue;
            };
            let internal = self.internal_tx.clone();
            self.tasks.spawn(async move {
                let tags_now = read_tags_now(&registry, &record).await;
                if tags_now != record.tags_now && !tags_now.iter().any(|(_, now)| now.is_unknown())
                {
                    let _ = internal.send(Internal::Reread {
                        record: Box::new(record),
                        tags_now,
                    });
                }
            });
        }
    }

    /// Records what a re-read found (only called when it differs from the record) and says so
    /// in the rollback's thread.
    pub(in crate::engine) async fn reread(
        &mut self,
        mut record: RollbackRecord,
        tags_now: Vec<(Tag, TagNow)>,
    ) {
        let id = record.id;
        let detail = format!(
            "after a restart, rollbot read the tags of {id} again: {} (the record said {})",
            describe_tags(&tags_now),
            describe_tags(&record.tags_now)
        );
        tracing::warn!(rollback_id = %id, %detail, "Tags of a failed rollback changed since it was recorded.");
        record.tags_now = tags_now;
        record.updated_at = self.now();
        let audit = AuditEntry::new(
            self.now(),
            Some(id),
            None,
            "reconcile",
            json!({ "decision": "tags_reread", "detail": detail }),
        );
        if let Err(error) = self.store.save(&record, &[audit]).await {
            tracing::error!(rollback_id = %id, %error, "Re-read tags could not be saved.");
            return;
        }
        self.emit(Event {
            kind: EventKind::Notice {
                text: detail,
                link: None,
            },
            channel: record.channel.clone(),
            rollback: Some(record),
        });
    }

    pub(in crate::engine) async fn reconciled(&mut self, id: RollbackId, outcome: Reconciliation) {
        self.running.remove(&id);
        let Some(mut record) = self.active.get(&id).cloned() else {
            return;
        };
        let now = self.now();
        match outcome {
            Reconciliation::Resume => {
                let detail =
                    "rollbot restarted before any tag moved; resuming the approved rollback"
                        .to_owned();
                let entry = AuditEntry::new(
                    now,
                    Some(id),
                    None,
                    "reconcile",
                    json!({ "decision": "resume" }),
                );
                if !self.reconciliation_recorded(&record, entry).await {
                    return;
                }
                self.emit(Event {
                    kind: EventKind::Resumed { detail },
                    channel: record.channel.clone(),
                    rollback: Some(record.clone()),
                });
                self.start_pipeline(record, false).await;
            }
            Reconciliation::Verify => {
                let detail = "rollbot restarted after every tag moved; verifying now".to_owned();
                let entry = AuditEntry::new(
                    now,
                    Some(id),
                    None,
                    "reconcile",
                    json!({ "decision": "verify" }),
                );
                if !self.reconciliation_recorded(&record, entry).await {
                    return;
                }
                if record.state != State::Verifying {
                    if record.state == State::Approved {
                        // Approved → Retagging → Verifying: the retag happened.
                        let _ = self
                            .transition(
                                &mut record,
                                State::Retagging,
                                Vec::new(),
                                EventKind::Resumed {
                                    detail: detail.clone(),
                                },
                            )
                            .await;
                    }
                    let _ = self
                        .transition(
                            &mut record,
                            State::Verifying,
                            Vec::new(),
                            EventKind::Resumed { detail },
                        )
                        .await;
                } else {
                    self.emit(Event {
                        kind: EventKind::Resumed { detail },
                        channel: record.channel.clone(),
                        rollback: Some(record.clone()),
                    });
                }
                if !self.active.contains_key(&id) {
                    // The database has it finished meanwhile (`finished_elsewhere`).
                    return;
                }
                self.start_pipeline(record, true).await;
            }
            Reconciliation::Interrupted { tags_now, detail } => {
                record.tags_now = tags_now;
                record.error = Some(detail.clone());
                let audit = AuditEntry::new(
                    now,
                    Some(id),
                    None,
                    "reconcile",
                    json!({ "decision": "interrupted", "detail": detail }),
                );
                if let Err(error) = self
                    .transition(
                        &mut record,
                        State::Interrupted,
                        vec![audit],
                        EventKind::Interrupted,
                    )
                    .await
                {
                    tracing::error!(rollback_id = %id, %error, "Interrupted state could not be persisted.");
                }
            }
        }
    }

    /// Records a reconciliation that goes on (resume, verify) before anything is announced or
    /// run, with the record as it was loaded: a write the database takes only while the
    /// rollback is still active there (and, on Postgres, while this replica holds the lease).
    /// Whether to go on: not when the database has it finished meanwhile (then it is let go
    /// and its thread told, `Engine::finished_elsewhere`) or the write failed.
    async fn reconciliation_recorded(
        &mut self,
        record: &RollbackRecord,
        entry: AuditEntry,
    ) -> bool {
        match self.persist(record, &[entry]).await {
            Ok(()) => true,
            Err(error) => {
                tracing::error!(rollback_id = %record.id, %error, "The reconciliation could not be recorded; not going on.");
                false
            }
        }
    }
}

/// Decides what to do with a rollback the previous process left running
/// ([`domain::reconcile`](crate::domain::reconcile)), from its tags read after a write that
/// may have been in flight had time to land.
pub(in crate::engine) async fn reconcile(
    registry: &RegistryClient,
    record: &RollbackRecord,
    now: Timestamp,
    expiry: Duration,
) -> Reconciliation {
    if record.state == State::Retagging {
        tokio::time::sleep(pipeline::SETTLE).await;
    }
    let tags_now = read_tags_now(registry, record).await;
    let detail = match reconcile::reconcile(record, &tags_now, now, expiry) {
        Reconcile::Verify => return Reconciliation::Verify,
        Reconcile::Resume => return Reconciliation::Resume,
        Reconcile::Interrupted(why) => interruption_text(&why, registry, record, &tags_now),
    };
    Reconciliation::Interrupted { tags_now, detail }
}

/// What a person is told (and the record keeps) about a rollback interrupted by a restart.
pub(in crate::engine) fn interruption_text(
    why: &Interruption,
    registry: &RegistryClient,
    record: &RollbackRecord,
    tags_now: &[(Tag, TagNow)],
) -> String {
    let finish = finish_command(registry, record);
    let (image, target) = (&record.image, &record.target.digest);
    match why {
        Interruption::Unreadable { tag, why } => format!(
            "rollbot restarted mid-rollback and could not read tag {tag} ({why}); check the tags with `rollbot verify {image} --expect {target}`, and finish with: {finish}"
        ),
        Interruption::StaleBeforeRetag => format!(
            "rollbot restarted before any tag moved, but the approval is too old to act on; nothing changed ({}); request it again",
            describe_tags(tags_now)
        ),
        Interruption::StaleDuringRetag => format!(
            "rollbot restarted during the retag, before any tag was seen to move, and the approval is too old to act on ({}); a write in flight when it stopped may still land, and the hold records the rollback as in progress (CI's gate stays closed): check with `rollbot verify {image} --expect {target}`, then finish with: {finish} (or release the hold with `rollbot hold release {image}` if the rollback is no longer wanted)",
            describe_tags(tags_now)
        ),
        Interruption::Mixed => format!(
            "rollbot restarted mid-rollback and the tags are neither all moved nor untouched: {}; finish it with: {finish}",
            describe_tags(tags_now)
        ),
    }
}
