//! Snapshot tests of the platform-neutral chat rendering: the status message in each state and
//! the thread replies. Snapshots live in `tests/it/snapshots/`; after an intended change, run
//! with `ROLLBOT_UPDATE_SNAPSHOTS=1` and review the diff.

use std::path::PathBuf;
use std::time::Duration;

use rollbot::chat::{status_message, thread_reply};
use rollbot::domain::model::{Tag, TagNow};
use rollbot::domain::policy::{Decision, RecordedVote};
use rollbot::domain::record::RollbackRecord;
use rollbot::domain::record::{StepName, StepReport};
use rollbot::domain::rollback::{State, Timestamp};
use rollbot::engine::{Event, EventKind};

use crate::support::records::{actor, digest, sample};

fn assert_snapshot(name: &str, actual: &str) {
    let path =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!("tests/it/snapshots/{name}.txt"));
    let update = std::env::var_os("ROLLBOT_UPDATE_SNAPSHOTS").is_some();
    match std::fs::read_to_string(&path) {
        Ok(expected) if !update => assert_eq!(
            actual, expected,
            "snapshot {name} differs; if the change is intended, re-run with ROLLBOT_UPDATE_SNAPSHOTS=1"
        ),
        _ => {
            std::fs::create_dir_all(path.parent().expect("dir")).expect("mkdir");
            std::fs::write(&path, actual).expect("write snapshot");
            assert!(update, "snapshot {name} was missing and has been written; review it and re-run");
        }
    }
}

fn record(state: State) -> RollbackRecord {
    sample("registry.example.com/acme/app", state)
}

fn approved_by_bob(mut record: RollbackRecord) -> RollbackRecord {
    record.votes.push(RecordedVote {
        actor: actor("U2BOB", "Bob"),
        decision: Decision::Approve,
        at: Timestamp(1_795_000_030_000),
        reason: None,
    });
    record.approved_at = Some(Timestamp(1_795_000_030_000));
    record
}

fn render(record: &RollbackRecord) -> String {
    let message = status_message(
        record,
        Timestamp(1_795_000_060_000),
        Duration::from_secs(900),
    );
    format!(
        "{}\n--- json ---\n{}\n",
        message.to_text(),
        serde_json::to_string_pretty(&message).expect("json")
    )
}

#[test]
fn status_message_waiting_for_approval() {
    assert_snapshot("status_requested", &render(&record(State::Requested)));
}

#[test]
fn status_message_succeeded() {
    let mut done = approved_by_bob(record(State::Succeeded));
    done.finished_at = Some(Timestamp(1_795_000_030_412));
    done.steps = vec![
        StepReport {
            name: StepName::Retag,
            ok: true,
            duration_ms: 6,
            detail: "moved latest, stable".into(),
        },
        StepReport {
            name: StepName::Verify,
            ok: true,
            duration_ms: 4,
            detail: "latest, stable at sha256:bbbbbbbbbbbb, 2 references present".into(),
        },
        StepReport {
            name: StepName::Hold,
            ok: true,
            duration_ms: 12,
            detail: "registry.example.com/acme/app:rollbot-hold set".into(),
        },
    ];
    done.tags_now = vec![
        (Tag::parse("latest").expect("t"), TagNow::At(digest('b'))),
        (Tag::parse("stable").expect("t"), TagNow::At(digest('b'))),
    ];
    assert_snapshot("status_succeeded", &render(&done));
}

#[test]
fn status_message_failed_part_way() {
    let mut failed = approved_by_bob(record(State::Failed));
    failed.finished_at = Some(Timestamp(1_795_000_031_000));
    failed.steps = vec![StepReport {
        name: StepName::Retag,
        ok: false,
        duration_ms: 9,
        detail: "writing tag 'stable' failed: registry registry.example.com answered 500".into(),
    }];
    failed.tags_now = vec![
        (Tag::parse("latest").expect("t"), TagNow::At(digest('b'))),
        (Tag::parse("stable").expect("t"), TagNow::At(digest('c'))),
    ];
    failed.error =
        Some("writing tag 'stable' failed: registry registry.example.com answered 500".into());
    assert_snapshot("status_failed", &render(&failed));
}

#[test]
fn thread_replies_mention_the_requester() {
    let done = approved_by_bob(record(State::Succeeded));
    let mut lines = Vec::new();
    for kind in [
        EventKind::Approved {
            by: actor("U2BOB", "Bob"),
        },
        EventKind::Rejected {
            by: actor("U2BOB", "Bob"),
        },
        EventKind::Expired,
        EventKind::Succeeded,
        EventKind::HoldReleased {
            image: done.image.clone(),
            by: actor("U2BOB", "Bob"),
            reason: Some("fixed in v1.2.4".into()),
        },
    ] {
        let event = Event {
            kind,
            rollback: Some(done.clone()),
            channel: done.channel.clone(),
        };
        lines.push(
            thread_reply(
                &event,
                &rollbot::notify::templates::Templates::builtin(),
                Duration::from_secs(900),
                Timestamp(1_795_000_060_000),
            )
            .map(|m| m.to_text())
            .unwrap_or_else(|| "(none)\n".into()),
        );
    }
    let step = Event {
        kind: EventKind::Step {
            step: StepReport {
                name: StepName::Retag,
                ok: true,
                duration_ms: 1,
                detail: String::new(),
            },
        },
        rollback: Some(done.clone()),
        channel: done.channel.clone(),
    };
    assert!(
        thread_reply(
            &step,
            &rollbot::notify::templates::Templates::builtin(),
            Duration::from_secs(900),
            Timestamp(1_795_000_060_000),
        )
        .is_none(),
        "steps edit the status message, they do not ping anyone"
    );
    assert_snapshot("thread_replies", &lines.concat());
}

#[test]
fn slack_block_kit_of_the_status_message() {
    let mut succeeded = approved_by_bob(record(State::Succeeded));
    succeeded.finished_at = Some(Timestamp(1_795_000_030_412));
    for (name, record) in [
        ("slack_status_requested", record(State::Requested)),
        ("slack_status_succeeded", succeeded),
    ] {
        let message = status_message(
            &record,
            Timestamp(1_795_000_060_000),
            Duration::from_secs(900),
        );
        let blocks = rollbot::chat::slack::blocks::blocks(&message);
        // Every block is one slack-morphism's Block Kit model accepts (nothing silently dropped).
        let typed: Vec<slack_morphism::prelude::SlackBlock> =
            serde_json::from_value(serde_json::Value::Array(blocks.clone()))
                .expect("valid Block Kit");
        assert_eq!(typed.len(), blocks.len());
        assert_snapshot(
            name,
            &format!("{}\n", serde_json::to_string_pretty(&blocks).expect("json")),
        );
    }
}
