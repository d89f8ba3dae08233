//! Untrusted text never becomes a Slack mention, broadcast or link: whatever people type (a
//! reason, an image name) and whatever rollbot quotes (registry errors, health-check output)
//! reaches Slack escaped, on every path (status message blocks and `text` fallback, its edits,
//! thread replies, ephemeral replies, the slash command's acknowledgement), while rollbot's own
//! mentions of the requester and approvers stay real `<@U…>` mentions. Checked with arbitrary
//! text against the requests rollbot builds, and end to end through the fake Slack.

use std::time::Duration;

use proptest::prelude::*;
use serde_json::Value;

use rollbot::chat::slack::{ack, ephemeral_request, post_request, update_request};
use rollbot::chat::{status_message, thread_reply, Message, Text};
use rollbot::domain::model::{ImageRef, TagNow};
use rollbot::domain::policy::{Decision, RecordedVote};
use rollbot::domain::record::CheckReport;
use rollbot::domain::record::RollbackRecord;
use rollbot::domain::record::{StepName, StepReport};
use rollbot::domain::rollback::{State, Timestamp};
use rollbot::engine::{Event, EventKind};
use rollbot::notify::templates::{TemplateName, Templates};

use crate::slack::{form, now, post_signed, world, ALICE, BOB, CHANNEL, SIGNING_SECRET};
use crate::support::records::{actor, digest, sample};
use crate::support::slack::slash_command;

/// Every string in `value`, however deep.
fn strings(value: &Value) -> Vec<String> {
    match value {
        Value::String(s) => vec![s.clone()],
        Value::Array(items) => items.iter().flat_map(strings).collect(),
        Value::Object(map) => map.values().flat_map(strings).collect(),
        _ => Vec::new(),
    }
}

/// Every Slack control sequence in `value`'s strings: each `<` up to its `>` (or the end). In
/// escaped text there is none; `<@`, `<!`, `<#`, `<http`, `<mailto` all start with `<`.
fn control_sequences(value: &Value) -> Vec<String> {
    strings(value)
        .iter()
        .flat_map(|s| {
            s.match_indices('<')
                .map(|(at, _)| {
                    let rest = &s[at..];
                    rest[..rest.find('>').map_or(rest.len(), |end| end + 1)].to_owned()
                })
                .collect::<Vec<_>>()
        })
        .collect()
}

fn assert_only_mentions_of(value: &Value, allowed: &[&str]) {
    for sequence in control_sequences(value) {
        assert!(
            allowed.iter().any(|id| sequence == format!("<@{id}>")),
            "{sequence:?} is not one of rollbot's own mentions {allowed:?} in {value}"
        );
    }
}

// ---- every output path, arbitrary text ---------------------------------------------------

/// Text people could type or services could answer: anything, or words built from Slack's
/// control sequences.
fn untrusted() -> impl Strategy<Value = String> {
    let sequence = prop::sample::select(vec![
        "<!channel>",
        "<!here>",
        "<!everyone>",
        "<@U0BOB>",
        "<@U1ALICE>",
        "<!subteam^S0SRE00001>",
        "<#C0OTHER001>",
        "<https://evil.example|click>",
        "<mailto:a@evil.example|mail>",
        "&lt;!channel&gt;",
        "<",
        ">",
        "&",
        "*",
        "`",
        "\u{E000}",
        "\u{E001}",
    ]);
    prop_oneof![
        any::<String>(),
        prop::collection::vec(
            prop_oneof![sequence.prop_map(str::to_owned), "[a-z@!#|^ ]{0,6}"],
            0..6
        )
        .prop_map(|parts| parts.concat()),
    ]
}

/// A chat summary template that shows every untrusted value it has, next to its own markup.
fn every_value_template(dir: &std::path::Path) -> Templates {
    let path = dir.join("summary.md");
    std::fs::write(
        &path,
        "<@{{ requester.id }}>: *{{ rollback_id }}* {{ state }} by {{ requester.name }} `{{ reason }}` \
         {{ approvers | join(\", \") }} {% for s in steps %}{{ s.detail }}{% endfor %} \
         {{ platforms | join(\",\") }} {{ error }} {{ reason | upper }}",
    )
    .expect("template");
    Templates::load(&[(TemplateName::ChatSummary, path.as_path())]).expect("template loads")
}

/// A failed rollback of Alice's, approved by Bob, with `text` wherever a record holds words
/// from people or other services.
fn record_with(text: &str) -> RollbackRecord {
    let mut record = sample("registry.example.com/acme/app", State::Failed);
    record.reason = Some(text.to_owned());
    record.requester.name = text.to_owned();
    record.requested_target = text.to_owned();
    record.target_source = Some(text.to_owned());
    record.target.platforms = vec![text.to_owned()];
    record.target.kind = text.to_owned();
    record.error = Some(text.to_owned());
    record.votes.push(RecordedVote {
        actor: actor("U2BOB", text),
        decision: Decision::Approve,
        at: Timestamp(1_795_000_030_000),
        reason: Some(text.to_owned()),
    });
    record.steps = vec![StepReport {
        name: StepName::Retag,
        ok: false,
        duration_ms: 3,
        detail: text.to_owned(),
    }];
    record.checks = vec![CheckReport {
        name: "smoke".into(),
        kind: "command".into(),
        passed: false,
        attempts: 1,
        duration_ms: 2,
        detail: text.to_owned(),
        output: Some(text.to_owned()),
    }];
    record.tags_now = vec![(record.tags[0].tag.clone(), TagNow::At(digest('b')))];
    record.finished_at = Some(Timestamp(1_795_000_031_000));
    record
}

/// Every message rollbot would post about `record` (status, and a thread reply for each event).
fn messages(record: &RollbackRecord, text: &str, templates: &[Templates]) -> Vec<Message> {
    let now = Timestamp(1_795_000_060_000);
    let rto = Duration::from_secs(900);
    let mut messages = vec![status_message(record, now, rto)];
    let mut requested = record.clone();
    requested.state = State::Requested;
    messages.push(status_message(&requested, now, rto));
    let kinds = [
        EventKind::Approved {
            by: actor("U2BOB", text),
        },
        EventKind::ApprovalRecorded {
            by: actor("U2BOB", text),
        },
        EventKind::Rejected {
            by: actor("U2BOB", text),
        },
        EventKind::Expired,
        EventKind::Interrupted,
        EventKind::Succeeded,
        EventKind::Failed,
        EventKind::Notice {
            text: text.to_owned(),
            link: None,
        },
        EventKind::Resumed {
            detail: text.to_owned(),
        },
        EventKind::HoldReleased {
            image: ImageRef::parse("registry.example.com/acme/app").expect("image"),
            by: actor("U2BOB", text),
            reason: Some(text.to_owned()),
        },
    ];
    for kind in kinds {
        let event = Event {
            kind,
            rollback: Some(record.clone()),
            channel: record.channel.clone(),
        };
        for templates in templates {
            messages.extend(thread_reply(&event, templates, rto, now));
        }
    }
    messages
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn no_untrusted_text_reaches_slack_as_a_control_sequence(text in untrusted()) {
        let dir = tempfile::tempdir().expect("dir");
        let templates = [Templates::builtin(), every_value_template(dir.path())];
        let record = record_with(&text);
        let mut sent: Vec<Value> = Vec::new();
        for message in messages(&record, &text, &templates) {
            for request in [
                serde_json::to_value(post_request(CHANNEL, None, &message)),
                serde_json::to_value(post_request(CHANNEL, Some("1700000000.000101"), &message)),
                serde_json::to_value(update_request(CHANNEL, "1700000000.000101", &message)),
            ] {
                sent.push(request.expect("request JSON"));
            }
        }
        // What the engine answers quotes what was typed: an ephemeral reply, or the ack.
        let reply = Text::from(format!("'{text}' is neither an image alias nor host/repository"));
        sent.push(serde_json::to_value(ephemeral_request(CHANNEL, "U1ALICE", &reply)).expect("JSON"));
        sent.push(ack(&reply));
        for value in &sent {
            for sequence in control_sequences(value) {
                prop_assert!(
                    sequence == "<@U1ALICE>" || sequence == "<@U2BOB>",
                    "{:?} in {}", sequence, value
                );
            }
        }
        // rollbot's own mentions are still there: the requester in the status message and the
        // thread replies, the approver where they approved.
        let status = serde_json::to_value(post_request(CHANNEL, None, &messages(&record, &text, &templates[..1])[0]))
            .expect("JSON");
        prop_assert!(status.to_string().contains("<@U1ALICE> asked to roll back"), "{}", status);
        prop_assert!(status.to_string().contains("approved by <@U2BOB>"), "{}", status);
    }
}

#[test]
fn typed_control_sequences_are_escaped_and_rollbots_mentions_kept_on_every_path() {
    let typed = "<!channel> <@U0BOB> <!subteam^S1> <#C1> <https://evil.example|click>";
    let escaped = "&lt;!channel&gt; &lt;@U0BOB&gt; &lt;!subteam^S1&gt; &lt;#C1&gt; &lt;https://evil.example|click&gt;";
    let record = record_with(typed);
    let templates = [Templates::builtin()];
    let all = messages(&record, typed, &templates);
    let failed_summary = all
        .iter()
        .find(|m| m.fallback.to_string().contains("rb-7 FAILED"))
        .expect("the summary of the failure");
    let cases: Vec<(&str, Value)> = vec![
        (
            "status message",
            serde_json::to_value(post_request(CHANNEL, None, &all[0])).expect("JSON"),
        ),
        (
            "status edit",
            serde_json::to_value(update_request(CHANNEL, "1.2", &all[0])).expect("JSON"),
        ),
        (
            "summary in the thread",
            serde_json::to_value(post_request(CHANNEL, Some("1.2"), failed_summary)).expect("JSON"),
        ),
        (
            "ephemeral reply",
            serde_json::to_value(ephemeral_request(CHANNEL, ALICE, &Text::from(typed)))
                .expect("JSON"),
        ),
        ("ack", ack(&Text::from(typed))),
    ];
    for (path, value) in cases {
        assert!(value.to_string().contains(escaped), "{path}: {value}");
        assert_only_mentions_of(&value, &["U1ALICE", "U2BOB"]);
        if path != "ephemeral reply" && path != "ack" {
            assert!(value.to_string().contains("<@U1ALICE>"), "{path}: {value}");
        }
    }
    let summary =
        serde_json::to_value(post_request(CHANNEL, Some("1.2"), failed_summary)).expect("JSON");
    assert_eq!(
        summary["text"],
        format!("<@U1ALICE>: rb-7 FAILED: {escaped}"),
        "the fallback of the summary mentions the requester and escapes the error"
    );
    for request in [
        serde_json::to_value(post_request(CHANNEL, None, &all[0])).expect("JSON"),
        serde_json::to_value(update_request(CHANNEL, "1.2", &all[0])).expect("JSON"),
        serde_json::to_value(ephemeral_request(CHANNEL, ALICE, &Text::from(typed))).expect("JSON"),
    ] {
        assert_eq!(request["parse"], "none", "{request}");
        assert_eq!(request["link_names"], false, "{request}");
    }
}

// ---- end to end, through the fake Slack --------------------------------------------------

/// A health check that fails printing control sequences (as a compromised or odd service might).
const LOUD_CHECK: &str = r#"
[[images.app.checks]]
name = "smoke"
command = ["sh", "-c", "echo '<!here> <@U0MALLORY> <https://evil.example|click>' >&2; exit 1"]
"#;

#[test]
fn a_request_full_of_mentions_and_links_reaches_slack_escaped_with_the_requester_still_mentioned() {
    let w = world("socket", LOUD_CHECK);
    let ack_of_request = w.slack.send(slash_command(
        "e1",
        CHANNEL,
        ALICE,
        "app <!channel> broke it, ask <@U0BOB> or <!subteam^S0SRE00001> in <#C0OTHER001> <https://evil.example|click>",
    ));
    assert_eq!(ack_of_request["payload"]["text"], "Working on it…");
    let plan = w.slack.wait_for("chat.postMessage", "the plan", |b| {
        b.to_string().contains("approve:rb-1") && b["thread_ts"].is_null()
    });
    let reason = "&lt;!channel&gt; broke it, ask &lt;@U0BOB&gt; or &lt;!subteam^S0SRE00001&gt; in &lt;#C0OTHER001&gt; &lt;https://evil.example|click&gt;";
    assert!(
        plan.to_string().contains(&format!(
            "<@{ALICE}> asked to roll back `{}/acme/app` to the previous good build. Reason: {reason}",
            w.ci.registry.host
        )),
        "{plan}"
    );

    // An image name or an id made of control sequences: the ack quotes it, escaped.
    for (envelope, typed, answer) in [
        (
            "e2a",
            "<!channel>",
            "'&lt;!channel&gt;' is neither an image alias nor host/repository\nUsage:",
        ),
        (
            "e2b",
            "approve <@U0BOB><!here>",
            "'&lt;@U0BOB&gt;&lt;!here&gt;' is not a rollback id (like rb-17)\nUsage:",
        ),
    ] {
        let ack = w.slack.send(slash_command(envelope, CHANNEL, ALICE, typed));
        let text = ack["payload"]["text"].as_str().unwrap_or_default();
        assert!(text.starts_with(answer), "{typed}: {ack}");
    }

    // Bob approves; the check fails, printing control sequences.
    let ts = "1700000000.000101";
    w.slack
        .send(w.slack.click("e3", CHANNEL, BOB, ts, "approve:rb-1"));
    w.slack
        .wait_for("chat.postMessage", "the approval reply", |b| {
            b["thread_ts"] == ts
                && b["text"] == format!("<@{ALICE}>: <@{BOB}> approved rb-1; rolling back now.")
        });
    let output = "&lt;!here&gt; &lt;@U0MALLORY&gt; &lt;https://evil.example|click&gt;";
    let failed = w
        .slack
        .wait_for("chat.update", "the status edited to FAILED", |b| {
            b["ts"] == ts && b.to_string().contains("FAILED")
        });
    assert!(failed.to_string().contains(output), "{failed}");
    assert!(failed.to_string().contains(reason), "{failed}");
    let summary = w
        .slack
        .wait_for("chat.postMessage", "the failure in the thread", |b| {
            b["thread_ts"] == ts
                && b["text"]
                    .as_str()
                    .unwrap_or_default()
                    .contains("rb-1 FAILED")
        });
    let text = summary["text"].as_str().unwrap_or_default();
    assert!(
        text.starts_with(&format!("<@{ALICE}>: rb-1 FAILED: ")),
        "{summary}"
    );
    assert!(text.contains(output), "{summary}");

    // The status, asked for privately, quotes the error: an ephemeral reply, escaped.
    w.slack
        .send(slash_command("e4", CHANNEL, ALICE, "status rb-1"));
    let status = w.ephemeral_to(ALICE, "rb-1 app");
    assert!(
        status["text"].as_str().unwrap_or_default().contains(output),
        "{status}"
    );

    // Nothing rollbot sent holds a control sequence but its own mentions of Alice and Bob.
    let mut sent: Vec<Value> = w.slack.acks();
    for method in ["chat.postMessage", "chat.update", "chat.postEphemeral"] {
        sent.extend(w.slack.calls(method).into_iter().map(|c| c.body));
    }
    assert!(sent.len() >= 10, "{sent:?}");
    for body in &sent {
        assert_only_mentions_of(body, &[ALICE, BOB]);
    }
}

#[test]
fn http_mode_acknowledges_a_command_with_what_was_typed_escaped() {
    let w = world("http", "");
    let command = form(&[
        ("team_id", "T0ACME0001"),
        ("channel_id", CHANNEL),
        ("user_id", ALICE),
        ("command", "/rollback"),
        ("text", "status <!here><mailto:x@evil.example|mail>"),
        ("response_url", "https://hooks.slack.com/commands/1"),
        ("trigger_id", "t-1"),
    ]);
    let (code, body) = post_signed(
        &w.daemon.base,
        "/slack/commands",
        "application/x-www-form-urlencoded",
        &command,
        SIGNING_SECRET,
        now(),
        &[],
    );
    assert_eq!(code, 200, "{body}");
    let answer: Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(answer["response_type"], "ephemeral");
    assert!(
        answer["text"]
            .as_str()
            .unwrap_or_default()
            .starts_with("'&lt;!here&gt;&lt;mailto:x@evil.example|mail&gt;' is not a rollback id"),
        "{answer}"
    );
    assert_only_mentions_of(&answer, &[]);
}
