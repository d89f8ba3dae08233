//! Drills in the engine: an approved drill is rehearsed on the image's scratch repository
//! ([`pipeline::rehearse`]) in a tracked task whose steps are reported like a rollback's; its end
//! is recorded with a `drill` audit entry (steps, total against the RTO, cleanup) and announced
//! as a DRILL. A drill left running by a stopped process is ended as interrupted without reading
//! or writing anything: production was never written, and a rehearsal is not resumed.

use super::*;

impl Engine {
    /// Runs the approved drill `record` (already Retagging) in a task.
    pub(in crate::engine) fn start_drill(&mut self, record: RollbackRecord) {
        let id = record.id;
        let entry = self.settings.images.get(&record.alias).cloned();
        let scratch = self.settings.drill_image(&record.image, entry.as_ref());
        let registry = self
            .registries
            .get(&record.image.registry)
            .map_err(|error| error.to_string());
        let (scratch, registry) = match (scratch, registry) {
            (Ok(scratch), Ok(registry)) => (scratch, registry),
            (Err(error), _) | (_, Err(error)) => {
                let error = format!("the drill could not start: {error}");
                self.could_not_start(&record, "drill", error);
                return;
            }
        };
        let options = RunOptions {
            dry_run: false,
            rto: self.settings.rollback.rto,
            checks: entry.map(|e| e.checks).unwrap_or_default(),
            hold: Some(HoldOptions {
                reason: format!(
                    "DRILL {id}: {}",
                    record.reason.as_deref().unwrap_or("rehearsing a rollback")
                ),
                by: super::run::hold_by(&record, " (drill)"),
            }),
        };
        let request = pipeline::DrillRequest {
            production: record.image.clone(),
            scratch,
            live: record
                .tags
                .iter()
                .map(|t| (t.tag.clone(), t.from.clone()))
                .collect(),
            target: record.target.digest.clone(),
            target_source: record.target_source.clone(),
            prefetched: None,
        };
        self.running.insert(id);
        self.update_gauges();
        let internal = self.internal_tx.clone();
        let started = Instant::now();
        tracing::info!(rollback_id = %id, scratch = %request.scratch, "Drill started.");
        let span = rollback_span(Some(id), Some(&record.image));
        self.tasks.spawn(
            async move {
                let mut progress = |event: Progress<'_>| {
                    if let Progress::Planned(_, step) | Progress::Step(step) = event {
                        let _ = internal.send(Internal::Progress {
                            id,
                            step: step.clone(),
                        });
                    }
                };
                let rehearsal =
                    pipeline::rehearse(&registry, &request, &options, started, &mut progress);
                let message = match catch_panic(rehearsal).await {
                    Ok(report) => Internal::DrillFinished {
                        id,
                        report: Box::new(report),
                    },
                    Err(panic) => {
                        tracing::error!(rollback_id = %id, %panic, "The drill task panicked.");
                        Internal::Reconciled {
                            id,
                            outcome: Reconciliation::Interrupted {
                                tags_now: Vec::new(),
                                detail: format!(
                                    "internal error: the drill stopped unexpectedly ({panic}); production was only read; the scratch repository {} may still hold what the drill copied",
                                    request.scratch
                                ),
                            },
                        }
                    }
                };
                let _ = internal.send(message);
            }
            .instrument(span),
        );
    }

    /// A drill's rehearsal ended: audited as a `drill` entry, then finished like a rollback
    /// (its tags as the rehearsal left them in the scratch repository).
    pub(in crate::engine) async fn drill_finished(
        &mut self,
        id: RollbackId,
        drill: pipeline::DrillReport,
    ) {
        let mut detail = drill.audit_detail();
        detail["via"] = json!("chat");
        self.audit(AuditEntry::new(self.now(), Some(id), None, "drill", detail))
            .await;
        let target = Reference::Digest(drill.target.clone());
        let mut report = drill
            .rollback
            .clone()
            .unwrap_or_else(|| Report::new("drill", &drill.image, &target, &[]));
        report.outcome = drill.outcome;
        report.error.clone_from(&drill.error);
        report.total_ms = drill.total_ms;
        self.finished(id, report, None).await;
    }

    /// A drill the previous process left running: ended as interrupted, touching nothing.
    pub(in crate::engine) fn drill_interrupted(&mut self, record: &RollbackRecord) {
        tracing::warn!(rollback_id = %record.id, "A drill was running when rollbot stopped; it is not resumed.");
        let entry = self.settings.images.get(&record.alias);
        let scratch = match self.settings.drill_image(&record.image, entry) {
            Ok(scratch) => scratch.to_string(),
            Err(error) => error,
        };
        let detail = format!(
            "rollbot stopped during this drill, which is not resumed; production was only read; the scratch repository {scratch} may still hold what the drill copied (the next drill of {} overwrites and cleans it)",
            record.alias
        );
        self.running.insert(record.id);
        let _ = self.internal_tx.send(Internal::Reconciled {
            id: record.id,
            outcome: Reconciliation::Interrupted {
                tags_now: Vec::new(),
                detail,
            },
        });
    }
}
