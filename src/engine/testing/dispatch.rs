//! Tests of the dispatch in `engine/mod.rs`: what every command goes through before its
//! function (reactions resolved, shutdown, idempotency keys, the per-user rate limit, the
//! `command` audit entry) and malformed text.

use std::time::Duration;

use serde_json::json;

use super::{actor, channel, Harness, Reply};
use crate::domain::command::Command;
use crate::domain::policy::Decision;
use crate::domain::rollback::{ChannelRef, Platform, RollbackId, State};
use crate::engine::{Answer, EventKind, Inbound, Refusal};

#[tokio::test]
async fn each_command_reaches_its_function_and_is_audited() {
    let mut h = Harness::new().await;
    let web = h.requested("web", &actor("alice")).await.id;
    let app = h.requested("app", &actor("alice")).await.id;
    // (who, what they type, what the answer must be)
    type Check = fn(&Reply) -> bool;
    let cases: [(&str, &str, Check); 9] = [
        ("bob", "help", |r| matches!(r, Reply::Now(Answer::Usage))),
        (
            "bob",
            "status",
            |r| matches!(r, Reply::Now(Answer::Status { records, .. }) if records.len() == 2),
        ),
        (
            "bob",
            "status rb-1",
            |r| matches!(r, Reply::Now(Answer::Status { records, .. }) if records.len() == 1),
        ),
        ("bob", "approve rb-1", |r| {
            matches!(r, Reply::Now(Answer::ApprovalRecorded { approvals: 1, .. }))
        }),
        ("carol", "reject rb-1 not now", |r| {
            matches!(r, Reply::Now(Answer::Rejected { .. }))
        }),
        ("alice", "cancel rb-2", |r| {
            matches!(r, Reply::Now(Answer::Cancelled { .. }))
        }),
        ("bob", "history app", Reply::is_later),
        ("bob", "release app", Reply::is_later),
        ("bob", "app", Reply::is_later),
    ];
    for (who, text, check) in cases {
        let reply = h.say(&actor(who), text).await;
        assert!(check(&reply), "{text}: {reply:?}");
    }
    assert_eq!(h.stored(web).await.state, State::Rejected);
    assert_eq!(h.stored(app).await.state, State::Cancelled);
    let commands: Vec<_> = h
        .audited("command")
        .await
        .into_iter()
        .map(|e| (e.actor.expect("actor").id, e.rollback, e.detail))
        .collect();
    let audited = |who: &str, id: Option<i64>, command: &str, text: &str| {
        let detail = json!({ "command": command, "channel": "console:releases", "text": text });
        (who.to_owned(), id.map(RollbackId), detail)
    };
    assert_eq!(
        commands,
        [
            audited("bob", None, "help", "/rollback help"),
            audited("bob", None, "status", "/rollback status"),
            audited("bob", Some(1), "status", "/rollback status rb-1"),
            audited("bob", Some(1), "approve", "/rollback approve rb-1"),
            audited("carol", Some(1), "reject", "/rollback reject rb-1 not now"),
            audited("alice", Some(2), "cancel", "/rollback cancel rb-2"),
            audited("bob", None, "history", "/rollback history app"),
            audited("bob", None, "release", "/rollback release app"),
            audited("bob", None, "request", "/rollback app"),
        ]
    );
    assert_eq!(h.commands_counted("status"), 2);
}

#[tokio::test]
async fn a_redelivered_command_is_answered_duplicate_and_decided_once() {
    let mut h = Harness::new().await;
    let id = h.requested("web", &actor("alice")).await.id;
    let approve = Command::Approve { id };

    let first = h.submit(&actor("bob"), approve.clone(), Some("ev-1")).await;
    let again = h.submit(&actor("bob"), approve.clone(), Some("ev-1")).await;

    assert_eq!(
        first.now(),
        Answer::ApprovalRecorded {
            id,
            approvals: 1,
            required: 2
        }
    );
    assert_eq!(again.now(), Answer::Duplicate);
    assert_eq!(h.stored(id).await.votes.len(), 1);
    assert_eq!(h.audited("command").await.len(), 1, "audited once");
    assert!(h.audited("vote_refused").await.is_empty());
    assert_eq!(h.event_kinds().len(), 1, "announced once");
    // Another delivery of the same vote is decided (and refused: bob already approved).
    let other = h.submit(&actor("bob"), approve, Some("ev-2")).await.now();
    assert!(
        matches!(other, Answer::Refused(Refusal::Vote { .. })),
        "{other:?}"
    );
}

#[tokio::test]
async fn an_idempotency_key_is_remembered_for_fifteen_minutes() {
    // (time between the deliveries, the second answer)
    let cases = [
        (
            Duration::from_secs(15 * 60) - Duration::from_millis(1),
            Answer::Duplicate,
        ),
        (Duration::from_secs(15 * 60), Answer::Usage),
    ];
    for (after, expected) in cases {
        let mut h = Harness::new().await;
        let first = h.submit(&actor("bob"), Command::Help, Some("k")).await;
        assert_eq!(first.now(), Answer::Usage);
        h.clock.advance(after);

        let second = h.submit(&actor("bob"), Command::Help, Some("k")).await;

        assert_eq!(second.now(), expected, "after {after:?}");
    }
}

#[tokio::test]
async fn commands_over_the_per_user_limit_are_refused_too_fast_and_audited() {
    let mut h = Harness::with_env(&[("ROLLBOT__LIMITS__COMMANDS_PER_MINUTE", "2")]).await;
    for _ in 0..2 {
        assert_eq!(h.say(&actor("alice"), "help").await.now(), Answer::Usage);
    }

    let answer = h.say(&actor("alice"), "help").await.now();

    let Answer::Refused(Refusal::TooFast { limit, retry_in }) = answer else {
        panic!("expected too fast, got {answer:?}");
    };
    assert_eq!(limit, 2);
    assert!(
        retry_in > Duration::ZERO && retry_in <= Duration::from_secs(30),
        "{retry_in:?}"
    );
    let limited = h.audited("rate_limited").await;
    assert_eq!(limited.len(), 1);
    assert_eq!(limited[0].actor, Some(actor("alice")));
    assert_eq!(limited[0].detail, json!({ "command": "help" }));
    assert_eq!(h.audited("command").await.len(), 2, "the third is not run");
    assert_eq!(
        h.say(&actor("bob"), "help").await.now(),
        Answer::Usage,
        "the limit is per user"
    );
}

#[tokio::test]
async fn malformed_text_is_refused_with_the_usage_audited_and_counted() {
    let mut h = Harness::new().await;

    let answer = h.malformed(&actor("alice"), "approve").await;

    let error = "`approve` needs a rollback id, like `approve rb-17`".to_owned();
    assert_eq!(
        answer,
        Refusal::Malformed {
            error: error.clone()
        }
        .into()
    );
    let refused = h.audited("refused").await;
    assert_eq!(refused.len(), 1);
    assert_eq!(refused[0].actor, Some(actor("alice")));
    assert_eq!(
        refused[0].detail,
        json!({ "command": "malformed", "why": error, "text": "approve", "channel": "console:releases" })
    );
    assert_eq!(h.commands_counted("malformed"), 1);
}

#[tokio::test]
async fn malformed_text_counts_against_the_per_user_limit() {
    let mut h = Harness::with_env(&[("ROLLBOT__LIMITS__COMMANDS_PER_MINUTE", "1")]).await;
    h.malformed(&actor("alice"), "approve").await;

    let answer = h.say(&actor("alice"), "help").await.now();

    assert!(
        matches!(answer, Answer::Refused(Refusal::TooFast { limit: 1, .. })),
        "{answer:?}"
    );
    let again = h.malformed(&actor("alice"), "approve").await;
    assert!(
        matches!(again, Answer::Refused(Refusal::TooFast { .. })),
        "{again:?}"
    );
    assert_eq!(h.audited("rate_limited").await.len(), 2);
}

#[tokio::test]
async fn a_reaction_on_a_message_that_is_not_a_status_message_is_ignored_silently() {
    let elsewhere = ChannelRef::new(Platform::Slack, "C0123");
    // (the status message posted, if any; where the reaction is; on which message)
    let cases = [
        (None, channel(), "msg-1"),
        (Some("msg-1"), channel(), "msg-2"),
        (Some("msg-1"), elsewhere, "msg-1"),
    ];
    for (posted, place, message) in cases {
        let mut h = Harness::new().await;
        let id = h.requested("web", &actor("alice")).await.id;
        if let Some(posted) = posted {
            h.status_posted(id, posted).await;
        }
        let before = h.audit_log().await;
        let reaction = Inbound {
            actor: actor("bob"),
            channel: place.clone(),
            command: Command::VoteOnMessage {
                decision: Decision::Approve,
                message: message.to_owned(),
            },
            idempotency_key: None,
        };

        let answer = h.submit_inbound(reaction).await.now();

        let case = format!("{posted:?}, a reaction in {place} on {message}");
        assert_eq!(answer, Answer::Ignored, "{case}");
        assert_eq!(h.audit_log().await, before, "{case}: nothing audited");
        assert_eq!(h.commands_counted("reaction"), 0, "{case}: not counted");
        assert!(h.stored(id).await.votes.is_empty(), "{case}");
        assert_eq!(h.event_kinds(), [], "{case}");
    }
}

#[tokio::test]
async fn a_reaction_on_a_rollbacks_status_message_is_a_vote_on_it() {
    let mut h = Harness::new().await;
    let id = h.requested("web", &actor("alice")).await.id;
    h.status_posted(id, "msg-1").await;
    assert_eq!(h.stored(id).await.status_ref.as_deref(), Some("msg-1"));
    let react = |who: &str, decision| Inbound {
        actor: actor(who),
        channel: channel(),
        command: Command::VoteOnMessage {
            decision,
            message: "msg-1".to_owned(),
        },
        idempotency_key: None,
    };

    let approved = h.submit_inbound(react("bob", Decision::Approve)).await;
    let rejected = h.submit_inbound(react("carol", Decision::Reject)).await;

    assert_eq!(
        approved.now(),
        Answer::ApprovalRecorded {
            id,
            approvals: 1,
            required: 2
        }
    );
    assert_eq!(rejected.now(), Answer::Rejected { id });
    assert_eq!(h.stored(id).await.state, State::Rejected);
    let texts: Vec<_> = h
        .audited("command")
        .await
        .into_iter()
        .map(|e| e.detail["text"].clone())
        .collect();
    assert_eq!(
        texts,
        [
            json!("/rollback approve rb-1"),
            json!("/rollback reject rb-1")
        ]
    );
    assert_eq!(h.commands_counted("approve"), 1);
    assert_eq!(h.commands_counted("reaction"), 0);
    assert_eq!(
        h.event_kinds(),
        [
            EventKind::ApprovalRecorded { by: actor("bob") },
            EventKind::Rejected { by: actor("carol") }
        ]
    );
}

#[tokio::test]
async fn while_shutting_down_every_command_is_refused_and_audited() {
    let mut h = Harness::new().await;
    let id = h.requested("web", &actor("alice")).await.id;
    h.engine.drain();
    // (what is typed, the command name audited, the rollback it names)
    let cases = [
        ("help", "help", None),
        ("approve rb-1", "approve", Some(id)),
        ("cancel rb-1", "cancel", Some(id)),
        ("app", "request", None),
    ];
    for (text, command, rollback) in cases {
        let answer = h.say(&actor("bob"), text).await.now();

        assert_eq!(answer, Refusal::ShuttingDown.into(), "{text}");
        let refused = h.audited("refused").await;
        let last = refused.last().expect("audited");
        assert_eq!(last.rollback, rollback, "{text}");
        assert_eq!(
            last.detail,
            json!({ "command": command, "why": Refusal::ShuttingDown.to_string() }),
            "{text}"
        );
    }
    assert_eq!(
        h.malformed(&actor("bob"), "approve").await,
        Refusal::ShuttingDown.into()
    );
    assert!(h.audited("command").await.is_empty(), "nothing was run");
    assert_eq!(h.stored(id).await.state, State::Requested);
    assert!(h.engine.planning.is_empty());
}
