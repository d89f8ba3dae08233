//! What running rollbacks report (a step finished, the run ended), recorded in batches. The
//! loop takes every report already waiting in its queue (at most [`MOST`]); each is staged on the
//! record as the reports before it left it, then all are persisted in one transaction, then
//! announced in order. A hundred rollbacks at once cost the engine one commit per batch instead
//! of one per report, and it is free again sooner for the next approval; a report alone is a
//! batch of one, exactly as before.
//!
//! Persisted before announced still holds for every report: nothing of a batch is announced
//! before its commit. A batch that cannot be committed is committed report by report, so a
//! report that cannot be persisted fails alone (logged, as it always was) and the others are
//! recorded (unless the database is unreachable: then every report waits for a later tick). The refused report is kept: a later report of the same rollback, staged on top of
//! it, takes its audit entries and announcements along, and ticks commit it again
//! ([`Engine::retry_unpersisted`]: at the next tick, then backing off up to
//! [`MOST_TICKS_BETWEEN_TRIES`]), so a final report refused once is recorded (and the image
//! freed) once the database takes it.

use super::transitions::{Change, Hop};
use super::*;

/// The most reports committed together.
pub(in crate::engine) const MOST: usize = 64;

/// The most ticks between two tries of a report the database refused.
const MOST_TICKS_BETWEEN_TRIES: u32 = 64;

/// Reports the database refused, by rollback (the last one of each: it holds the others), and
/// when to try them again: at the next tick, then after twice as many ticks each time they
/// are refused again (up to [`MOST_TICKS_BETWEEN_TRIES`]).
#[derive(Default)]
pub(in crate::engine) struct Unpersisted {
    changes: HashMap<RollbackId, Change>,
    ticks_between: u32,
    ticks_waited: u32,
}

impl Unpersisted {
    pub(in crate::engine) fn is_empty(&self) -> bool {
        self.changes.is_empty()
    }

    pub(in crate::engine) fn len(&self) -> usize {
        self.changes.len()
    }

    /// A change of rollback `id` was persisted: a kept one is either in it or older than it.
    /// Called wherever a change is persisted (`Engine::apply`, `Engine::persist`), before a
    /// finished rollback leaves the active ones: a kept change is always of an active one.
    pub(in crate::engine) fn superseded(&mut self, id: RollbackId) {
        self.changes.remove(&id);
    }
}

impl Engine {
    /// Handles messages from the engine's tasks in order; consecutive progress and finished
    /// reports are committed together.
    pub(in crate::engine) async fn internals(&mut self, messages: Vec<Internal>) {
        let mut changes: Vec<Change> = Vec::new();
        for message in messages {
            match message {
                Internal::Progress { id, step } => {
                    let _span = self.span_of(id).entered();
                    changes.extend(self.stage_progress(&changes, id, step));
                }
                Internal::Finished {
                    id,
                    report,
                    tags_now,
                } => {
                    let _span = self.span_of(id).entered();
                    changes.extend(self.stage_finished(&changes, id, *report, tags_now));
                }
                other => {
                    self.commit(std::mem::take(&mut changes)).await;
                    self.internal(other).await;
                }
            }
        }
        self.commit(changes).await;
    }

    /// A step finished (a batch of one).
    pub(in crate::engine) async fn progress(&mut self, id: RollbackId, step: StepReport) {
        let change = self.stage_progress(&[], id, step);
        self.commit(change.into_iter().collect()).await;
    }

    /// A run ended (a batch of one).
    pub(in crate::engine) async fn finished(
        &mut self,
        id: RollbackId,
        report: Report,
        rechecked: Option<Vec<(Tag, TagNow)>>,
    ) {
        let change = self.stage_finished(&[], id, report, rechecked);
        self.commit(change.into_iter().collect()).await;
    }

    /// Persists `changes` in one transaction, then applies and announces each in order. When
    /// the transaction fails, each change is persisted on its own; one that still cannot be is
    /// logged and kept: it goes with the next change of its rollback (staged on top of it), or
    /// is committed again at a later tick. When the database is unreachable, all are kept
    /// without another try (each would wait out the pool's acquire timeout).
    pub(in crate::engine) async fn commit(&mut self, mut changes: Vec<Change>) {
        if changes.is_empty() {
            return;
        }
        // A kept change goes with the first change of its rollback (its record already holds it).
        for change in &mut changes {
            if let Some(kept) = self.unpersisted.changes.remove(&change.record.id) {
                carry(kept, change);
            }
        }
        let mut entries = self.take_unsaved();
        let waiting = entries.len();
        for change in &changes {
            entries.extend_from_slice(&change.audit);
        }
        // The last version of each record is the one to store.
        let mut latest: Vec<&RollbackRecord> = Vec::new();
        for change in changes.iter().rev() {
            if !latest.iter().any(|r| r.id == change.record.id) {
                latest.push(&change.record);
            }
        }
        let saved = self.store.save_all(&latest, &entries).await;
        match saved {
            Ok(()) => {
                for change in changes {
                    self.apply(change);
                }
            }
            Err(error) => {
                let own = entries.len() - waiting;
                self.put_back_unsaved(entries, own);
                // Unreachable (Postgres down, no connection free): every other write would wait
                // out the acquire timeout too, with the engine's loop blocked meanwhile. The
                // reports are kept whole and tried again at a later tick.
                let mut unreachable = error.is_unreachable();
                if unreachable {
                    tracing::error!(%error, changes = changes.len(), "The state database is unreachable; the reports are kept and tried again at a later tick.");
                } else if changes.len() > 1 {
                    tracing::warn!(%error, changes = changes.len(), "A batch of reports could not be committed; committing them one by one.");
                }
                // A change staged on one that could not be persisted holds what that one
                // changed in its record: it takes that one's audit entries and events along,
                // so nothing is stored without its entry nor announced out of order or twice.
                for mut change in changes {
                    let id = change.record.id;
                    if let Some(kept) = self.unpersisted.changes.remove(&id) {
                        carry(kept, &mut change);
                    }
                    if unreachable {
                        self.unpersisted.changes.insert(id, change);
                        continue;
                    }
                    match self.store.save(&change.record, &change.audit).await {
                        Ok(()) => self.apply(change),
                        Err(error @ StoreError::Finished { .. }) => {
                            self.forget_if_finished(&error);
                        }
                        Err(error) => {
                            tracing::error!(rollback_id = %id, %error, "A report of the rollback could not be persisted; it is tried again with the next report or tick.");
                            unreachable = error.is_unreachable();
                            self.unpersisted.changes.insert(id, change);
                        }
                    }
                }
                if !unreachable {
                    self.flush_unsaved().await;
                }
                self.update_gauges();
            }
        }
    }

    /// Commits again the reports the database refused: called at every tick, it tries at the
    /// next one and then backs off while they are refused; `now` tries at once (shutdown).
    pub(in crate::engine) async fn retry_unpersisted(&mut self, now: bool) {
        let kept = &mut self.unpersisted;
        if kept.changes.is_empty() {
            (kept.ticks_between, kept.ticks_waited) = (0, 0);
            return;
        }
        kept.ticks_waited += 1;
        if !now && kept.ticks_waited < kept.ticks_between {
            return;
        }
        kept.ticks_waited = 0;
        let changes = std::mem::take(&mut kept.changes).into_values().collect();
        self.commit(changes).await;
        let kept = &mut self.unpersisted;
        if !kept.changes.is_empty() {
            kept.ticks_between = (kept.ticks_between * 2).clamp(2, MOST_TICKS_BETWEEN_TRIES);
        }
    }

    /// The rollback `id` as the changes staged so far left it (or a kept one the database
    /// refused), or as the engine knows it.
    fn current(&self, staged: &[Change], id: RollbackId) -> Option<RollbackRecord> {
        staged
            .iter()
            .rev()
            .find(|c| c.record.id == id)
            .or_else(|| self.unpersisted.changes.get(&id))
            .map(|c| c.record.clone())
            .or_else(|| self.active.get(&id).cloned())
    }

    /// A step finished: added to the record (a retag that succeeded moves it to verifying).
    fn stage_progress(
        &self,
        staged: &[Change],
        id: RollbackId,
        step: StepReport,
    ) -> Option<Change> {
        let mut record = self.current(staged, id)?;
        self.metrics
            .step(step.name.as_str(), step.duration_ms as f64 / 1000.0);
        record.steps.push(step.clone());
        let audit = AuditEntry::new(self.now(), Some(id), None, "step", json!(step));
        if step.name == StepName::Retag && step.ok && record.state == State::Retagging {
            let hop = Hop {
                next: State::Verifying,
                audit: vec![audit],
                kind: EventKind::Step { step },
            };
            return match self.stage(&mut record, vec![hop]) {
                Ok(change) => Some(change),
                Err(error) => {
                    tracing::error!(rollback_id = %id, %error, "Step could not be recorded.");
                    None
                }
            };
        }
        record.updated_at = self.now();
        let event = Event {
            kind: EventKind::Step { step },
            channel: record.channel.clone(),
            rollback: Some(record.clone()),
        };
        Some(Change {
            record,
            audit: vec![audit],
            events: vec![event],
        })
    }

    /// A run ended: the record says what the report (and the re-check of a run that did not
    /// succeed) found, and is finished as succeeded or failed.
    fn stage_finished(
        &mut self,
        staged: &[Change],
        id: RollbackId,
        report: Report,
        rechecked: Option<Vec<(Tag, TagNow)>>,
    ) -> Option<Change> {
        self.running.remove(&id);
        let Some(mut record) = self.current(staged, id) else {
            self.update_gauges();
            return None;
        };
        record.checks = report.checks.clone();
        let reported: Vec<(Tag, TagNow)> = report
            .tags
            .iter()
            .map(|t| {
                let now = match (&t.now, t.status) {
                    (Some(seen), TagStatus::Unknown) => TagNow::Unknown {
                        unknown: format!(
                            "its write got no clear answer and may still land (it read back at {})",
                            seen.short()
                        ),
                    },
                    (None, TagStatus::Unknown) => TagNow::Unknown {
                        unknown: "could not be read back after the failed write".to_owned(),
                    },
                    (now, _) => TagNow::from(now.clone()),
                };
                (t.tag.clone(), now)
            })
            .collect();
        let succeeded = report.outcome == Outcome::Succeeded;
        if !succeeded {
            let mut error = report
                .error
                .clone()
                .unwrap_or_else(|| format!("{:?}", report.outcome));
            // A write reported as failed that landed after all: the registry is the truth.
            let landed: Vec<&str> = rechecked
                .iter()
                .flatten()
                .filter(|(tag, now)| {
                    now.is(&record.target.digest)
                        && reported
                            .iter()
                            .any(|(t, was)| t == tag && !was.is(&record.target.digest))
                })
                .map(|(tag, _)| tag.as_str())
                .collect();
            if !landed.is_empty() {
                tracing::warn!(rollback_id = %id, tags = ?landed, "A write reported as failed landed after all.");
                error.push_str(&format!(
                    "; re-checked before finishing: {} point{} at the target after all (a write without an answer landed)",
                    landed.join(", "),
                    if landed.len() == 1 { "s" } else { "" }
                ));
            }
            record.error = Some(error);
        }
        // The re-check is the registry's word, except that a write that may still land stays
        // unknown until a read shows it landed.
        record.tags_now = match rechecked {
            None => reported,
            Some(rechecked) => rechecked
                .into_iter()
                .zip(&reported)
                .map(|((tag, now), (_, was))| match (was, &now) {
                    (TagNow::Unknown { .. }, now) if !now.is(&record.target.digest) => {
                        (tag, was.clone())
                    }
                    _ => (tag, now),
                })
                .collect(),
        };
        let mut detail = json!({ "outcome": report.outcome, "error": report.error, "total_ms": report.total_ms });
        if record.drill {
            detail["drill"] = json!(true);
        }
        let audit = AuditEntry::new(self.now(), Some(id), None, "finished", detail);
        let (next, kind) = if succeeded {
            (State::Succeeded, EventKind::Succeeded)
        } else {
            (State::Failed, EventKind::Failed)
        };
        tracing::info!(rollback_id = %id, outcome = ?report.outcome, total_ms = report.total_ms, "Rollback finished.");
        let hop = Hop {
            next,
            audit: vec![audit],
            kind,
        };
        match self.stage(&mut record, vec![hop]) {
            Ok(change) => Some(change),
            Err(error) => {
                tracing::error!(rollback_id = %id, %error, "Final state could not be recorded.");
                self.update_gauges();
                None
            }
        }
    }
}

/// `later` was staged on `kept`'s record: it takes `kept`'s audit entries and announcements
/// along, before its own.
fn carry(mut kept: Change, later: &mut Change) {
    kept.audit.append(&mut later.audit);
    kept.events.append(&mut later.events);
    (later.audit, later.events) = (kept.audit, kept.events);
}

#[cfg(test)]
mod tests {
    use crate::domain::model::Reference;
    use crate::domain::policy::Decision;
    use crate::domain::record::{StepName, StepReport};
    use crate::domain::rollback::{RollbackId, State};
    use crate::engine::testing::{actor, Harness};
    use crate::engine::{EventKind, Internal};
    use crate::pipeline::{Outcome, Report};

    /// The pipeline's report that `id` succeeded.
    fn succeeded(h: &Harness, id: RollbackId) -> Internal {
        let record = &h.engine.active[&id];
        let target = Reference::Digest(record.target.digest.clone());
        let mut report = Report::new("rollback", &record.image, &target, &[]);
        report.outcome = Outcome::Succeeded;
        Internal::Finished {
            id,
            report: Box::new(report),
            tags_now: None,
        }
    }

    fn step(id: RollbackId, name: StepName) -> Internal {
        let step = StepReport {
            name,
            ok: true,
            duration_ms: 5,
            detail: "ok".to_owned(),
        };
        Internal::Progress { id, step }
    }

    /// Two rollbacks approved (their pipelines' own reports are never handed over: the test
    /// sends the reports).
    async fn running(h: &mut Harness) -> (RollbackId, RollbackId) {
        let app = h.requested("app", &actor("alice")).await.id;
        let api = h.requested("api", &actor("alice")).await.id;
        for id in [app, api] {
            h.engine
                .vote(&actor("bob"), id, Decision::Approve, None)
                .await;
        }
        h.events();
        (app, api)
    }

    #[tokio::test]
    async fn reports_waiting_together_are_recorded_in_one_batch_in_order_then_announced() {
        let mut h = Harness::new().await;
        let (app, api) = running(&mut h).await;
        let before = h.audit_log().await.len();
        let finished = succeeded(&h, app);

        h.engine
            .internals(vec![
                step(app, StepName::Retag),
                step(api, StepName::Retag),
                step(app, StepName::Verify),
                finished,
            ])
            .await;

        let app_record = h.stored(app).await;
        assert_eq!(app_record.state, State::Succeeded);
        let steps: Vec<StepName> = app_record.steps.iter().map(|s| s.name).collect();
        assert_eq!(steps, [StepName::Retag, StepName::Verify]);
        assert_eq!(h.stored(api).await.state, State::Verifying);
        assert!(!h.engine.active.contains_key(&app), "finished");
        assert_eq!(h.engine.active[&api].state, State::Verifying);
        let log = h.audit_log().await;
        let written: Vec<(Option<RollbackId>, String)> = log[before..]
            .iter()
            .map(|e| {
                (
                    e.rollback,
                    format!("{} {}", e.kind, e.detail["to"].as_str().unwrap_or("")),
                )
            })
            .collect();
        let entry = |id, what: &str| (Some(id), what.to_owned());
        assert_eq!(
            written,
            [
                entry(app, "step "),
                entry(app, "state verifying"),
                entry(api, "step "),
                entry(api, "state verifying"),
                entry(app, "step "),
                entry(app, "finished "),
                entry(app, "state succeeded"),
            ]
        );
        let events = h.events();
        let told: Vec<(RollbackId, State)> = events
            .iter()
            .filter_map(|e| e.rollback.as_ref().map(|r| (r.id, r.state)))
            .collect();
        assert_eq!(
            told,
            [
                (app, State::Verifying),
                (api, State::Verifying),
                (app, State::Verifying),
                (app, State::Succeeded),
            ],
            "each announced with the record as of its report"
        );
        assert_eq!(events[3].kind, EventKind::Succeeded);
    }

    #[tokio::test]
    async fn a_report_that_cannot_be_persisted_fails_alone() {
        let mut h = Harness::new().await;
        let (app, api) = running(&mut h).await;
        // A rollback the engine knows but the database does not: its report cannot be saved,
        // which fails the batch; the other reports are then recorded one by one.
        let mut ghost = h.engine.active[&app].clone();
        ghost.id = RollbackId(999);
        ghost.image = crate::domain::model::ImageRef::parse("registry.example.com/acme/ghost")
            .expect("image");
        h.engine.active.insert(ghost.id, ghost.clone());

        h.engine
            .internals(vec![
                step(app, StepName::Retag),
                step(ghost.id, StepName::Retag),
                step(api, StepName::Retag),
            ])
            .await;

        for id in [app, api] {
            assert_eq!(h.stored(id).await.state, State::Verifying, "{id}");
            assert_eq!(h.engine.active[&id].state, State::Verifying, "{id}");
        }
        assert_eq!(h.engine.active[&ghost.id], ghost, "left as it was");
        let told: Vec<RollbackId> = h
            .events()
            .iter()
            .filter_map(|e| e.rollback.as_ref().map(|r| r.id))
            .collect();
        assert_eq!(told, [app, api], "only what was persisted is announced");
    }

    #[tokio::test]
    async fn a_report_that_failed_alone_is_recorded_and_announced_with_the_next_of_its_rollback() {
        let mut h = Harness::new().await;
        let (app, _) = running(&mut h).await;
        let mut ghost = h.engine.active[&app].clone();
        ghost.id = RollbackId(999);
        ghost.image = crate::domain::model::ImageRef::parse("registry.example.com/acme/ghost")
            .expect("image");
        h.engine.active.insert(ghost.id, ghost.clone());
        let before = h.audit_log().await.len();
        // The database refuses app's record as the retag step leaves it (once verifying, one
        // step more), and only that one: the next report's record, with the verify step too,
        // is accepted. The ghost fails the batch, so each report is committed on its own.
        let steps = h.engine.active[&app].steps.len() + 1;
        h.sql(&format!(
            "CREATE TRIGGER refuse_once BEFORE UPDATE ON rollbacks \
             WHEN NEW.id = {app} AND NEW.state = 'verifying' \
             AND json_array_length(NEW.data, '$.steps') = {steps} \
             BEGIN SELECT RAISE(ABORT, 'refused for the test'); END;",
            app = app.0
        ))
        .await;

        h.engine
            .internals(vec![
                step(app, StepName::Retag),
                step(ghost.id, StepName::Retag),
                step(app, StepName::Verify),
            ])
            .await;

        let stored = h.stored(app).await;
        assert_eq!(stored.state, State::Verifying);
        let names: Vec<StepName> = stored.steps.iter().map(|s| s.name).collect();
        assert_eq!(
            names[names.len() - 2..],
            [StepName::Retag, StepName::Verify]
        );
        assert_eq!(h.engine.active[&app], stored);
        let log = h.audit_log().await;
        let written: Vec<String> = log[before..]
            .iter()
            .map(|e| {
                let what = e.detail["name"].as_str().or(e.detail["to"].as_str());
                format!("{} {}", e.kind, what.unwrap_or(""))
            })
            .collect();
        assert_eq!(
            written,
            ["step retag", "state verifying", "step verify"],
            "the record holds the retag and the move to verifying: so does the log"
        );
        let told: Vec<(usize, State)> = h
            .events()
            .iter()
            .filter_map(|e| e.rollback.as_ref().map(|r| (r.steps.len(), r.state)))
            .collect();
        assert_eq!(
            told,
            [(steps, State::Verifying), (steps + 1, State::Verifying)],
            "each report announced once, in order, once persisted"
        );
    }

    /// The database refuses to store rollback `id` in `state` until `DROP TRIGGER refuse_state`.
    async fn refuse_state(h: &Harness, id: RollbackId, state: &str) {
        h.sql(&format!(
            "CREATE TRIGGER refuse_state BEFORE UPDATE ON rollbacks \
             WHEN NEW.id = {} AND NEW.state = '{state}' \
             BEGIN SELECT RAISE(ABORT, 'refused for the test'); END;",
            id.0
        ))
        .await;
    }

    #[tokio::test]
    async fn a_final_report_the_database_refused_is_recorded_at_a_later_tick() {
        let mut h = Harness::new().await;
        let (app, _) = running(&mut h).await;
        h.engine.internals(vec![step(app, StepName::Retag)]).await;
        h.events();
        let before = h.engine.active[&app].clone();
        refuse_state(&h, app, "succeeded").await;
        let finished = succeeded(&h, app);
        h.engine.internals(vec![finished]).await;
        assert_eq!(h.stored(app).await.state, State::Verifying);
        assert_eq!(h.engine.active[&app], before, "still as recorded");
        h.engine.tick().await;
        assert_eq!(h.event_kinds(), [], "nothing announced while refused");

        h.sql("DROP TRIGGER refuse_state").await;
        // Refused at the first tick: tried again two ticks later.
        h.engine.tick().await;
        assert_eq!(h.stored(app).await.state, State::Verifying, "backing off");
        h.engine.tick().await;
        assert_eq!(h.stored(app).await.state, State::Succeeded);
        assert!(!h.engine.active.contains_key(&app), "the image is free");
        assert_eq!(h.event_kinds(), [EventKind::Succeeded], "announced once");
        let log = h.audit_log().await;
        let finished = log.iter().filter(|e| e.kind == "finished").count();
        assert_eq!(finished, 1, "audited once");
        h.engine.tick().await;
        assert_eq!(h.event_kinds(), [], "not again");
    }

    #[tokio::test]
    async fn a_refused_report_does_not_bring_back_a_rollback_finished_another_way() {
        let mut h = Harness::new().await;
        let (app, _) = running(&mut h).await;
        refuse_state(&h, app, "verifying").await;
        h.engine.internals(vec![step(app, StepName::Retag)]).await;
        // Its task ended without a report (a panic): reconciled as interrupted.
        let interrupted = crate::engine::Reconciliation::Interrupted {
            tags_now: Vec::new(),
            detail: "the task ended".to_owned(),
        };
        h.engine.reconciled(app, interrupted).await;
        assert_eq!(h.stored(app).await.state, State::Interrupted);

        h.sql("DROP TRIGGER refuse_state").await;
        for _ in 0..4 {
            h.engine.tick().await;
        }
        assert_eq!(
            h.stored(app).await.state,
            State::Interrupted,
            "not brought back"
        );
        assert!(!h.engine.active.contains_key(&app), "the image stays free");
    }

    #[tokio::test]
    async fn the_next_report_takes_a_refused_one_along_across_batches() {
        let mut h = Harness::new().await;
        let (app, _) = running(&mut h).await;
        refuse_state(&h, app, "verifying").await;
        let before = h.audit_log().await.len();
        h.engine.internals(vec![step(app, StepName::Retag)]).await;
        assert_eq!(h.event_kinds(), [], "not persisted, not announced");

        h.sql("DROP TRIGGER refuse_state").await;
        let finished = succeeded(&h, app);
        h.engine.internals(vec![finished]).await;
        let stored = h.stored(app).await;
        assert_eq!(stored.state, State::Succeeded);
        assert_eq!(stored.steps.last().map(|s| s.name), Some(StepName::Retag));
        let log = h.audit_log().await;
        let kinds: Vec<&str> = log[before..].iter().map(|e| e.kind.as_str()).collect();
        assert_eq!(kinds, ["step", "state", "finished", "state"]);
        let kinds = h.event_kinds();
        assert_eq!(kinds.len(), 2, "{kinds:?}");
        assert_eq!(kinds[1], EventKind::Succeeded);
    }

    #[tokio::test]
    async fn reports_wait_whole_while_the_database_is_unreachable() {
        let mut h = Harness::new().await;
        let (app, api) = running(&mut h).await;
        let before = h.audit_log().await.len();
        // No connection to be had, as with Postgres down: the pool is closed.
        h.engine.store.close().await;
        let finished = succeeded(&h, app);
        h.engine
            .internals(vec![
                step(app, StepName::Retag),
                step(api, StepName::Retag),
                finished,
            ])
            .await;
        assert_eq!(h.engine.unpersisted.len(), 2, "every report kept");
        h.engine.tick().await;
        assert_eq!(h.event_kinds(), [], "nothing announced while unreachable");
        assert_eq!(h.engine.active[&app].state, State::Retagging);

        // Reachable again (as after Postgres restarts: new connections to the same database).
        let store = crate::store::Store::open(&h.dir.path().join("rollbot.db"))
            .await
            .expect("store");
        (h.engine.store, h.store) = (store.clone(), store);
        h.engine.tick().await;
        h.engine.tick().await;
        assert!(h.engine.unpersisted.is_empty());
        assert_eq!(h.stored(app).await.state, State::Succeeded);
        assert_eq!(h.stored(api).await.state, State::Verifying);
        let log = h.audit_log().await;
        let kinds: Vec<(Option<RollbackId>, &str)> = log[before..]
            .iter()
            .map(|e| (e.rollback, e.kind.as_str()))
            .collect();
        for (id, expected) in [
            (app, &["step", "state", "finished", "state"][..]),
            (api, &["step", "state"][..]),
        ] {
            let of: Vec<&str> = kinds
                .iter()
                .filter(|k| k.0 == Some(id))
                .map(|k| k.1)
                .collect();
            assert_eq!(of, expected, "{id}");
        }
        // Each announced once, in order within its rollback.
        let events = h.events();
        let of = |id| {
            let events = events
                .iter()
                .filter(|e| e.rollback.as_ref().map(|r| r.id) == Some(id));
            events.map(|e| e.kind.clone()).collect::<Vec<_>>()
        };
        assert!(matches!(
            of(app)[..],
            [EventKind::Step { .. }, EventKind::Succeeded]
        ));
        assert!(matches!(of(api)[..], [EventKind::Step { .. }]));
    }

    #[tokio::test]
    async fn a_report_of_a_rollback_the_database_has_finished_is_dropped_and_the_image_freed() {
        let mut h = Harness::new().await;
        let (app, api) = running(&mut h).await;
        // Finished behind the engine's back (another writer, or a bug).
        h.sql(&format!(
            "UPDATE rollbacks SET state = 'cancelled', \
             data = json_set(data, '$.state', 'cancelled') WHERE id = {}",
            app.0
        ))
        .await;
        let finished = succeeded(&h, app);
        h.engine
            .internals(vec![
                step(app, StepName::Retag),
                step(api, StepName::Retag),
                finished,
            ])
            .await;
        assert_eq!(h.stored(app).await.state, State::Cancelled, "never changed");
        assert_eq!(
            h.stored(api).await.state,
            State::Verifying,
            "the other report recorded"
        );
        assert!(
            !h.engine.active.contains_key(&app),
            "the image is not held for it"
        );
        assert!(h.engine.unpersisted.is_empty(), "nothing to try again");
        let events = h.events();
        let ids: Vec<_> = events
            .iter()
            .map(|e| e.rollback.as_ref().map(|r| r.id))
            .collect();
        assert_eq!(ids, [Some(api)], "only the recorded report announced");
    }

    #[tokio::test]
    async fn a_batch_the_database_refuses_whole_is_neither_recorded_nor_announced() {
        // As a replica that lost the lease finds every change fenced: every write refused.
        let mut h = Harness::new().await;
        let (app, api) = running(&mut h).await;
        let log = h.audit_log().await;
        let active = h.engine.active.clone();
        h.sql(
            "CREATE TRIGGER refuse_all BEFORE UPDATE ON rollbacks \
             BEGIN SELECT RAISE(ABORT, 'refused for the test'); END;",
        )
        .await;
        let finished = succeeded(&h, app);

        h.engine
            .internals(vec![
                step(app, StepName::Retag),
                step(api, StepName::Retag),
                finished,
            ])
            .await;

        for id in [app, api] {
            assert_eq!(h.stored(id).await.state, State::Retagging, "{id}");
        }
        assert_eq!(h.engine.active, active, "as recorded last");
        assert_eq!(h.audit_log().await, log, "nothing audited");
        assert_eq!(h.event_kinds(), [], "nothing announced");
    }
}
