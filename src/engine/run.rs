//! Running an approved rollback: the pipeline in a tracked task, its steps and outcome reported
//! back as messages, the record re-checked against the registry before a failure is stored.

use super::transitions::Hop;
use super::*;

impl Engine {
    /// Approved → Retagging, which starts the pipeline: its audit entry and the approval as
    /// the run's first step (how long the request waited for it).
    pub(in crate::engine) fn pipeline_hop(&self, record: &RollbackRecord) -> Hop {
        let audit = AuditEntry::new(
            self.now(),
            Some(record.id),
            None,
            "pipeline",
            json!({ "started": true }),
        );
        let step = StepReport {
            name: StepName::Approve,
            ok: true,
            duration_ms: record
                .approved_at
                .map_or(0, |at| at.since(record.created_at)),
            detail: "approved".to_owned(),
        };
        Hop {
            next: State::Retagging,
            audit: vec![audit],
            kind: EventKind::Step { step },
        }
    }

    /// Runs the approved rollback: Approved → Retagging (unless the approval did both at
    /// once), then the pipeline task (re-planned
    /// against the approved state, so a tag that moved since the request aborts it).
    pub(in crate::engine) async fn start_pipeline(
        &mut self,
        mut record: RollbackRecord,
        verify_only: bool,
    ) {
        let id = record.id;
        if record.state == State::Approved {
            let hop = self.pipeline_hop(&record);
            if let Err(error) = self.transitions(&mut record, vec![hop]).await {
                tracing::error!(rollback_id = %id, %error, "Could not start the pipeline.");
                return;
            }
        }
        if record.drill {
            self.start_drill(record);
            return;
        }
        let entry = self.settings.images.get(&record.alias).cloned();
        let registry = match self.registries.get(&record.image.registry) {
            Ok(registry) => registry,
            Err(error) => {
                self.could_not_start(&record, "rollback", error.to_string());
                return;
            }
        };
        let options = RunOptions {
            dry_run: false,
            rto: self.settings.rollback.rto,
            checks: entry.map(|e| e.checks).unwrap_or_default(),
            hold: Some(HoldOptions {
                reason: record
                    .reason
                    .clone()
                    .unwrap_or_else(|| format!("rolled back by rollbot ({id})")),
                by: hold_by(&record, ""),
            }),
        };
        let prefetched = self.target_manifests.remove(&id);
        self.running.insert(id);
        self.update_gauges();
        let internal = self.internal_tx.clone();
        let started = Instant::now();
        tracing::info!(rollback_id = %id, verify_only, "Pipeline started.");
        let span = rollback_span(Some(id), Some(&record.image));
        self.tasks.spawn(async move {
            let run = run_pipeline(
                &registry,
                &record,
                &options,
                verify_only,
                prefetched,
                started,
                &internal,
            );
            match catch_panic(run).await {
                Ok(report) => {
                    let tags_now = if report.outcome == Outcome::Succeeded {
                        None
                    } else {
                        Some(read_tags_now(&registry, &record).await)
                    };
                    let _ = internal.send(Internal::Finished {
                        id,
                        report: Box::new(report),
                        tags_now,
                    });
                }
                // A bug must not leave the image locked until the next restart: read where
                // the tags are and end the rollback as interrupted, for a human to look at.
                Err(panic) => {
                    tracing::error!(rollback_id = %id, %panic, "The pipeline task panicked.");
                    let tags_now = read_tags_now(&registry, &record).await;
                    let _ = internal.send(Internal::Reconciled {
                        id,
                        outcome: Reconciliation::Interrupted {
                            detail: format!(
                                "internal error: the rollback stopped unexpectedly ({panic}); tags now: {}; finish it with: {}",
                                describe_tags(&tags_now),
                                finish_command(&registry, &record)
                            ),
                            tags_now,
                        },
                    });
                }
            }
        }.instrument(span));
    }
}

/// The pipeline for an approved record, through the one [`pipeline::run`]: re-planned against
/// the approved state (a tag that moved since aborts it; the target's bytes the request read,
/// when `prefetched`, are not read again), then retag, verify, check, hold. With
/// `verify_only` (after a restart found every tag moved): [`pipeline::run_verification`].
pub(in crate::engine) async fn run_pipeline(
    registry: &RegistryClient,
    record: &RollbackRecord,
    options: &RunOptions,
    verify_only: bool,
    prefetched: Option<pipeline::Prefetched>,
    started: Instant,
    internal: &mpsc::UnboundedSender<Internal>,
) -> Report {
    let id = record.id;
    // Steps go to the record as they finish (the plan is already on it).
    let mut progress = |event: Progress<'_>| {
        if let Progress::Step(step) = event {
            let _ = internal.send(Internal::Progress {
                id,
                step: step.clone(),
            });
        }
    };
    if verify_only {
        return pipeline::run_verification(
            registry,
            &record.image,
            &record.target.digest,
            &record.tags,
            options,
            started,
            &mut progress,
        )
        .await;
    }
    let request = RollbackRequest {
        image: record.image.clone(),
        target: Reference::Digest(record.target.digest.clone()),
        tags: record.tags.iter().map(|t| t.tag.clone()).collect(),
        expect_from: record
            .tags
            .iter()
            .map(|t| (t.tag.clone(), t.from.clone()))
            .collect(),
        target_source: record.target_source.clone(),
        prefetched,
    };
    // The plan is made after the approval, with nothing in between: its reads of the tags are
    // the compare-and-swap reads of the first write.
    let approved = |_: &Plan| pipeline::Confirmation::Preapproved;
    let mut report = pipeline::run(
        registry,
        &request,
        options,
        started,
        approved,
        &mut progress,
    )
    .await;
    if matches!(report.outcome, Outcome::BadInput | Outcome::PrecheckFailed) {
        report.outcome = Outcome::PrecheckFailed;
        report.error = report
            .error
            .take()
            .map(|error| format!("aborted before any change: {error}"));
    }
    report
}

/// "latest at sha256:abcd…, stable at (missing)".
pub(in crate::engine) fn describe_tags(tags_now: &[(Tag, TagNow)]) -> String {
    if tags_now.is_empty() {
        return "unknown".to_owned();
    }
    tags_now
        .iter()
        .map(|(tag, now)| format!("{tag} at {}", now.short()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Where each of the rollback's tags points now ([`pipeline::read_tags`]).
pub(in crate::engine) async fn read_tags_now(
    registry: &RegistryClient,
    record: &RollbackRecord,
) -> Vec<(Tag, TagNow)> {
    let tags: Vec<Tag> = record.tags.iter().map(|t| t.tag.clone()).collect();
    let now = pipeline::read_tags(registry, &record.image, &tags).await;
    tags.into_iter().zip(now).collect()
}

/// `rollbot rollback IMAGE --to DIGEST --tag …`: what finishes the rollback `record` names.
pub(in crate::engine) fn finish_command(
    registry: &RegistryClient,
    record: &RollbackRecord,
) -> String {
    let tags: Vec<&Tag> = record.tags.iter().map(|t| &t.tag).collect();
    manifest::rollback_command(
        &record.image,
        &record.target.digest,
        &tags,
        registry.is_insecure(),
    )
}

/// Runs a task's body and turns a panic into `Err(message)`, so the engine can release what
/// the task held (a reserved image, a running rollback) instead of waiting for a restart.
pub(in crate::engine) async fn catch_panic<T>(body: impl Future<Output = T>) -> Result<T, String> {
    AssertUnwindSafe(body)
        .catch_unwind()
        .await
        .map_err(|payload| {
            payload
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "panic".to_owned())
        })
}

impl Engine {
    /// Ends an approved run that could not start (no registry client, no scratch repository):
    /// its report says why, and it is finished like any failed run.
    pub(in crate::engine) fn could_not_start(
        &self,
        record: &RollbackRecord,
        command: &'static str,
        error: String,
    ) {
        let target = Reference::Digest(record.target.digest.clone());
        let mut report = Report::new(command, &record.image, &target, &[]);
        report.outcome = Outcome::PrecheckFailed;
        report.error = Some(error);
        let _ = self.internal_tx.send(Internal::Finished {
            id: record.id,
            report: Box::new(report),
            tags_now: None,
        });
    }
}

/// Who a hold written by the engine names: the requester and the approvers, via rollbot (and
/// `what`, e.g. ` (drill)`).
pub(in crate::engine) fn hold_by(record: &RollbackRecord, what: &str) -> String {
    let approvers: Vec<&str> = record
        .votes
        .iter()
        .filter(|v| v.decision == Decision::Approve)
        .map(|v| v.actor.name.as_str())
        .collect();
    format!(
        "{} (requested), {} (approved) via rollbot {}{what}",
        record.requester.name,
        approvers.join(", "),
        record.id
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panicking_task_body_becomes_an_error_with_its_message() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        let ok = runtime.block_on(catch_panic(async { 7 }));
        assert_eq!(ok, Ok(7));
        let formatted = runtime.block_on(catch_panic(async {
            let index = 3;
            if index > 2 {
                panic!("index {index} out of range");
            }
        }));
        assert_eq!(formatted, Err("index 3 out of range".to_owned()));
        let literal = runtime.block_on(catch_panic(async {
            if true {
                panic!("plain");
            }
        }));
        assert_eq!(literal, Err("plain".to_owned()));
        assert_eq!(describe_tags(&[]), "unknown");
    }
}
