//! The batched reports against a real SQLite store: order, refusals, an unreachable or
//! disagreeing database (also when a restart reconciles a rollback).

use crate::domain::model::Reference;
use crate::domain::policy::Decision;
use crate::domain::record::{RollbackRecord, StepName, StepReport};
use crate::domain::rollback::{RollbackId, State};
use crate::engine::testing::{actor, Harness};
use crate::engine::{Event, EventKind, Internal, Reconciliation};
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

/// A rollback like `like` that the engine holds but the database does not have: any write of
/// it fails.
fn ghost(h: &mut Harness, like: RollbackId) -> RollbackRecord {
    let mut ghost = h.engine.active[&like].clone();
    ghost.id = RollbackId(999);
    ghost.image =
        crate::domain::model::ImageRef::parse("registry.example.com/acme/ghost").expect("image");
    h.engine.active.insert(ghost.id, ghost.clone());
    ghost
}

/// What was announced about rollback `id`, in order.
fn announced(events: &[Event], id: RollbackId) -> Vec<EventKind> {
    events
        .iter()
        .filter(|e| e.rollback.as_ref().map(|r| r.id) == Some(id))
        .map(|e| e.kind.clone())
        .collect()
}

#[tokio::test]
async fn a_report_that_cannot_be_persisted_fails_alone() {
    let mut h = Harness::new().await;
    let (app, api) = running(&mut h).await;
    // A rollback the engine knows but the database does not: its report cannot be saved,
    // which fails the batch; the other reports are then recorded one by one.
    let ghost = ghost(&mut h, app);

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
    let ghost = ghost(&mut h, app);
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

    reachable_again(&mut h).await;
    h.engine.tick().await;
    h.engine.tick().await;
    assert!(h.engine.unpersisted.is_empty());
    assert_eq!(h.stored(app).await.state, State::Succeeded);
    assert_eq!(h.stored(api).await.state, State::Verifying);
    for (id, expected) in [
        (app, &["step", "state", "finished", "state"][..]),
        (api, &["step", "state"][..]),
    ] {
        assert_eq!(audited_of(&h, id, before).await, expected, "{id}");
    }
    // Each announced once, in order within its rollback.
    let events = h.events();
    assert!(matches!(
        announced(&events, app)[..],
        [EventKind::Step { .. }, EventKind::Succeeded]
    ));
    assert!(matches!(
        announced(&events, api)[..],
        [EventKind::Step { .. }]
    ));
}

/// The database comes back (as after Postgres restarts: new connections to the same file).
async fn reachable_again(h: &mut Harness) {
    let store = crate::store::Store::open(&h.dir.path().join("rollbot.db"))
        .await
        .expect("store");
    (h.engine.store, h.store) = (store.clone(), store);
}

#[tokio::test]
async fn once_the_database_was_unreachable_later_reports_wait_for_the_next_try() {
    let mut h = Harness::new().await;
    let (app, api) = running(&mut h).await;
    let before = h.audit_log().await.len();
    h.engine.store.close().await;
    h.engine.internals(vec![step(app, StepName::Retag)]).await;
    assert_eq!(h.engine.unpersisted.len(), 1);
    // Tried again at the first tick, still unreachable: the next try is two ticks away.
    h.engine.tick().await;

    // Back, but the engine has not tried since: later batches are kept without a try (during
    // an outage, each try would block the engine for the pool's acquire timeout), each with
    // what was kept of its rollback before.
    reachable_again(&mut h).await;
    h.engine
        .internals(vec![
            step(api, StepName::Retag),
            step(api, StepName::Verify),
        ])
        .await;
    h.engine.internals(vec![step(app, StepName::Verify)]).await;
    assert_eq!(h.engine.unpersisted.len(), 2, "kept without a try");
    h.engine.tick().await;
    assert_eq!(h.stored(api).await.state, State::Retagging, "not yet");
    assert_eq!(
        h.event_kinds(),
        [],
        "nothing announced before it is recorded"
    );

    // The next scheduled try records everything, each report announced once, in order.
    h.engine.tick().await;
    assert!(h.engine.unpersisted.is_empty());
    for id in [app, api] {
        assert_eq!(h.stored(id).await.state, State::Verifying, "{id}");
        assert_eq!(
            audited_of(&h, id, before).await,
            ["step", "state", "step"],
            "{id}"
        );
    }
    let events = h.events();
    for id in [app, api] {
        let steps: Vec<StepName> = announced(&events, id)
            .into_iter()
            .map(|kind| match kind {
                EventKind::Step { step } => step.name,
                other => panic!("{id}: {other:?}"),
            })
            .collect();
        assert_eq!(steps, [StepName::Retag, StepName::Verify], "{id}");
    }
}

/// A drain may end before the next scheduled try: while draining, every report is tried as
/// it comes.
#[tokio::test]
async fn while_draining_reports_are_tried_as_they_come() {
    let mut h = Harness::new().await;
    let (app, api) = running(&mut h).await;
    h.engine.store.close().await;
    h.engine.internals(vec![step(app, StepName::Retag)]).await;
    reachable_again(&mut h).await;
    h.engine.drain();
    h.engine
        .internals(vec![
            step(api, StepName::Retag),
            step(app, StepName::Verify),
        ])
        .await;
    assert!(h.engine.unpersisted.is_empty(), "tried at once");
    for id in [app, api] {
        assert_eq!(h.stored(id).await.state, State::Verifying, "{id}");
    }
}

#[tokio::test]
async fn a_write_the_database_takes_ends_the_wait_for_the_next_try() {
    let mut h = Harness::new().await;
    let (app, api) = running(&mut h).await;
    h.engine.store.close().await;
    h.engine.internals(vec![step(app, StepName::Retag)]).await;
    h.engine.tick().await;
    h.engine.tick().await;
    h.engine.tick().await;
    reachable_again(&mut h).await;
    // A command's write is taken: the database is known reachable again.
    h.requested("web", &actor("alice")).await;
    h.events();

    h.engine.internals(vec![step(api, StepName::Retag)]).await;
    assert_eq!(h.stored(api).await.state, State::Verifying, "tried at once");
    assert_eq!(
        h.engine.unpersisted.len(),
        1,
        "app's report waits for its tick"
    );
    // The grown back-off is over too: the kept report is tried at the next tick.
    h.engine.tick().await;
    assert!(h.engine.unpersisted.is_empty());
    assert_eq!(h.stored(app).await.state, State::Verifying);
}

#[tokio::test]
async fn reports_of_a_rollback_the_database_has_finished_are_not_recorded_and_it_is_let_go() {
    let mut h = Harness::new().await;
    let (app, api) = running(&mut h).await;
    finish_in_database(&h, app, "cancelled").await;
    let before = h.audit_log().await.len();
    h.engine
        .internals(vec![step(app, StepName::Retag), step(api, StepName::Retag)])
        .await;
    assert_eq!(h.stored(app).await.state, State::Cancelled, "never changed");
    assert_eq!(
        h.stored(api).await.state,
        State::Verifying,
        "the other report recorded"
    );
    assert!(
        h.engine.active.contains_key(&app),
        "its run is still going: the image stays held"
    );
    assert_eq!(
        audited_of(&h, app, before).await,
        ["step", "reconcile"],
        "what the run did is audited"
    );
    let events = h.events();
    assert!(
        announced(&events, app).is_empty(),
        "nothing announced that is not recorded"
    );
    assert!(matches!(
        announced(&events, api)[..],
        [EventKind::Step { .. }]
    ));

    // Its run ends: now the engine lets it go and says so, with the database's record.
    let finished = succeeded(&h, app);
    h.engine.internals(vec![finished]).await;
    assert_eq!(h.stored(app).await.state, State::Cancelled);
    assert!(!h.engine.active.contains_key(&app), "the image is free");
    assert!(h.engine.unpersisted.is_empty(), "nothing to try again");
    let events = h.events();
    let [event] = &events[..] else {
        panic!("one notice: {events:?}")
    };
    assert!(
        matches!(&event.kind, EventKind::FinishedElsewhere { text } if text.contains("cancelled in the state database"))
    );
    assert_eq!(
        event.rollback.as_ref().map(|r| r.state),
        Some(State::Cancelled)
    );
    assert_eq!(
        audited_of(&h, app, before).await,
        ["step", "reconcile", "finished", "reconcile"],
        "what the run did, and the disagreement when found and when let go"
    );
}

/// Rollback `id` finished as `state` behind the engine's back (someone's SQL, another writer,
/// or a bug).
async fn finish_in_database(h: &Harness, id: RollbackId, state: &str) {
    h.sql(&format!(
        "UPDATE rollbacks SET state = '{state}', \
         data = json_set(data, '$.state', '{state}') WHERE id = {}",
        id.0
    ))
    .await;
}

/// The kinds of the audit entries of rollback `id` after the first `before` entries.
async fn audited_of(h: &Harness, id: RollbackId, before: usize) -> Vec<String> {
    let log = h.audit_log().await;
    log[before..]
        .iter()
        .filter(|e| e.rollback == Some(id))
        .map(|e| e.kind.clone())
        .collect()
}

#[tokio::test]
async fn a_last_step_and_the_end_of_a_rollback_the_database_has_finished_say_so_once() {
    let mut h = Harness::new().await;
    let (app, api) = running(&mut h).await;
    finish_in_database(&h, app, "failed").await;
    let before = h.audit_log().await.len();
    // As a run sends them: its last step, then its end, in one batch with another's report.
    let finished = succeeded(&h, app);
    h.engine
        .internals(vec![
            step(app, StepName::Retag),
            step(api, StepName::Retag),
            finished,
        ])
        .await;
    assert_eq!(h.stored(app).await.state, State::Failed);
    assert_eq!(h.stored(api).await.state, State::Verifying);
    assert!(!h.engine.active.contains_key(&app));
    assert!(h.engine.unpersisted.finished_in_database.is_empty());
    assert_eq!(
        audited_of(&h, app, before).await,
        ["step", "reconcile", "finished"]
    );
    let notices = h
        .event_kinds()
        .into_iter()
        .filter(|k| matches!(k, EventKind::FinishedElsewhere { .. }))
        .count();
    assert_eq!(notices, 1, "one notice");
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

/// Someone finished the rollback in the database between the start's load and its
/// reconciliation: neither resuming nor verifying starts a run for it.
#[tokio::test]
async fn a_restart_starts_no_run_for_a_rollback_the_database_has_finished_meanwhile() {
    for (name, reconciliation) in [
        ("resume", Reconciliation::Resume),
        ("verify", Reconciliation::Verify),
    ] {
        let mut h = Harness::new().await;
        let (app, _) = running(&mut h).await;
        finish_in_database(&h, app, "cancelled").await;
        let before = h.audit_log().await.len();
        h.engine.reconciled(app, reconciliation).await;
        assert!(!h.engine.running.contains(&app), "{name}: no run");
        assert!(!h.engine.active.contains_key(&app), "{name}: let go");
        assert_eq!(h.stored(app).await.state, State::Cancelled, "{name}");
        assert_eq!(audited_of(&h, app, before).await, ["reconcile"], "{name}");
        let events = h.events();
        assert!(
            matches!(
                announced(&events, app)[..],
                [EventKind::FinishedElsewhere { .. }]
            ),
            "{name}: {events:?}"
        );
    }
}
