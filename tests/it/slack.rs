//! Slack, against a loopback fake that speaks the Web API and Socket Mode, with the real
//! registry and the real daemon: requests, approvals by button, reaction and text, refusals,
//! retries and double clicks, rate limits, HTTP mode's request signing, the self-check.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::manifests::Ci;
use crate::support::daemon::TestDaemon;
use crate::support::slack::{
    block_actions_payload, reaction, reaction_event, slash_command, Failure, FakeSlack, APP_TOKEN,
};

pub(crate) const CHANNEL: &str = "C0RELEASES";
pub(crate) const ALICE: &str = "U0ALICE001";
pub(crate) const BOB: &str = "U0BOB00001";
pub(crate) const CAROL: &str = "U0CAROL001";
pub(crate) const SIGNING_SECRET: &str = "test-signing-secret-3e9f";

pub(crate) struct World {
    pub(crate) ci: Ci,
    pub(crate) slack: FakeSlack,
    pub(crate) daemon: TestDaemon,
    pub(crate) v2: String,
}

pub(crate) fn world(mode: &str, extra: &str) -> World {
    let ci = Ci::new();
    for version in ["v1", "v2", "v3"] {
        ci.build(version);
    }
    let v2 = crate::support::block_on(ci.seeder.digest_of("acme/app", "v2")).expect("v2");
    let slack = FakeSlack::start();
    slack.set_group("S0SRE00001", &[CAROL]);
    let home = ci.cli.home.path();
    let secret = |name: &str, value: &str| {
        let path = home.join(name);
        std::fs::write(&path, format!("{value}\n")).expect("secret file");
        path.display().to_string()
    };
    let db = home.join("state/rollbot.db");
    let toml = format!(
        r#"
[registries."{host}"]
insecure = true

[images.app]
image = "{host}/acme/app"

[store]
path = "{db}"

[server]
listen = "127.0.0.1:0"

[approvals]
approvers = ["{BOB}", "group:S0SRE00001"]

[slack]
enabled = true
mode = "{mode}"
bot_token_file = "{bot}"
app_token_file = "{app}"
signing_secret_file = "{signing}"
api_url = "{api}"
channels = ["{CHANNEL}"]
{extra}
"#,
        host = ci.registry.host,
        db = db.display(),
        bot = secret("bot-token", "xoxb-test-bot-token"),
        app = secret("app-token", APP_TOKEN),
        signing = secret("signing-secret", SIGNING_SECRET),
        api = slack.api_url(),
    );
    let daemon = TestDaemon::start(&toml, &db);
    World {
        ci,
        slack,
        daemon,
        v2,
    }
}

pub(crate) fn text_of(body: &Value) -> String {
    body.to_string()
}

impl World {
    /// Requests a rollback by slash command; returns the status message's ts.
    pub(crate) fn request(&self, envelope: &str) -> String {
        let ack = self.slack.send(slash_command(
            envelope,
            CHANNEL,
            ALICE,
            "app v3 crashes on start",
        ));
        assert_eq!(ack["payload"]["text"], "Working on it…", "{ack}");
        assert_eq!(ack["payload"]["response_type"], "ephemeral", "{ack}");
        let posted = self.slack.wait_for("chat.postMessage", "the plan", |b| {
            text_of(b).contains("approve:rb-1") && b["thread_ts"].is_null()
        });
        assert_eq!(posted["channel"], CHANNEL);
        // The fake numbers messages; the first one posted is the status message.
        let calls = self.slack.calls("chat.postMessage");
        let index = calls.iter().position(|c| c.body == posted).expect("posted");
        self.daemon.wait_status_recorded(1);
        format!("1700000000.{:06}", 101 + index)
    }

    pub(crate) fn wait_rolled_back(&self, ts: &str) {
        self.slack
            .wait_for("chat.update", "the status edited to rolled back", |b| {
                b["ts"] == ts && text_of(b).contains("rolled back")
            });
        self.slack
            .wait_for("chat.postMessage", "the done reply", |b| {
                b["thread_ts"] == ts
                    && text_of(b).contains("rb-1 done.")
                    && text_of(b).contains(&format!("<@{ALICE}>"))
            });
        assert_eq!(self.ci.latest().as_deref(), Some(self.v2.as_str()));
    }

    pub(crate) fn ephemeral_to(&self, user: &str, needle: &str) -> Value {
        self.slack.wait_for("chat.postEphemeral", needle, |b| {
            b["user"] == user && text_of(b).contains(needle)
        })
    }
}

#[test]
fn socket_mode_request_refused_self_approval_and_approval_by_button() {
    let w = world("socket", "");
    let ts = w.request("e1");
    let plan = &w.slack.calls("chat.postMessage")[0].body;
    assert!(text_of(plan).contains("\"style\":\"primary\""), "{plan}");
    assert_eq!(
        w.slack.calls("chat.postMessage")[0].authorization,
        "Bearer xoxb-test-bot-token"
    );

    w.slack
        .send(w.slack.click("e2", CHANNEL, ALICE, &ts, "approve:rb-1"));
    w.ephemeral_to(ALICE, "you cannot approve or reject your own request");
    assert_ne!(
        w.ci.latest().as_deref(),
        Some(w.v2.as_str()),
        "nothing moved"
    );

    w.slack
        .send(w.slack.click("e3", CHANNEL, BOB, &ts, "approve:rb-1"));
    w.slack
        .wait_for("chat.postMessage", "the approval reply", |b| {
            b["thread_ts"] == ts.as_str()
                && text_of(b).contains(&format!("<@{ALICE}>: <@{BOB}> approved rb-1"))
        });
    w.wait_rolled_back(&ts);
    w.ephemeral_to(BOB, "rb-1 approved; rolling back now.");
}

#[test]
fn approval_by_reaction_from_a_user_group_member() {
    let w = world("socket", "");
    let ts = w.request("e1");
    // A reaction by someone outside the approvers, and one with another emoji, change nothing.
    w.slack.send(reaction(
        "e2",
        CHANNEL,
        "U0DAVE0001",
        "white_check_mark",
        &ts,
    ));
    w.ephemeral_to("U0DAVE0001", "not on the approvers list");
    w.slack.send(reaction("e3", CHANNEL, CAROL, "tada", &ts));
    w.slack
        .send(reaction("e4", CHANNEL, CAROL, "white_check_mark", &ts));
    w.wait_rolled_back(&ts);
    let groups = w.slack.calls("usergroups.users.list");
    assert!(
        !groups.is_empty() && groups[0].body["usergroup"] == "S0SRE00001",
        "group membership is looked up"
    );
}

#[test]
fn approval_by_text_command_and_usage_for_nonsense() {
    let w = world("socket", "");
    let ts = w.request("e1");
    let ack = w.slack.send(slash_command("e2", CHANNEL, BOB, "approve"));
    assert!(text_of(&ack).contains("Usage:"), "{ack}");
    let ack = w
        .slack
        .send(slash_command("e3", CHANNEL, BOB, "approve rb-1"));
    assert_eq!(ack["payload"]["text"], "Working on it…");
    w.wait_rolled_back(&ts);
    let ack = w
        .slack
        .send(slash_command("e4", "C0ELSEWHERE", BOB, "status"));
    assert!(
        text_of(&ack).contains("does not take commands in this channel"),
        "{ack}"
    );
}

#[test]
fn a_redelivered_envelope_and_a_double_click_run_the_rollback_once() {
    let w = world("socket", "");
    let ts = w.request("e1");
    // Slack redelivers the same click (same trigger id) and Bob double-clicks.
    let click = w.slack.click("e2", CHANNEL, BOB, &ts, "approve:rb-1");
    w.slack.send(click.clone());
    let mut again = click;
    again["envelope_id"] = json!("e2-retry");
    w.slack.send(again);
    w.slack
        .send(w.slack.click("e3", CHANNEL, BOB, &ts, "approve:rb-1"));
    w.wait_rolled_back(&ts);
    std::thread::sleep(Duration::from_millis(300));
    let done = w
        .slack
        .calls("chat.postMessage")
        .iter()
        .filter(|c| text_of(&c.body).contains("rb-1 done."))
        .count();
    assert_eq!(done, 1);
    let approvals = w
        .slack
        .calls("chat.postMessage")
        .iter()
        .filter(|c| text_of(&c.body).contains("approved rb-1; rolling back"))
        .count();
    assert_eq!(approvals, 1, "one approval");
    w.ephemeral_to(BOB, "no longer waiting for approval");
}

#[test]
fn a_429_is_retried_after_retry_after_and_api_errors_are_reported() {
    let w = world("socket", "");
    w.slack.fail_next("chat.update", Failure::RateLimited(1));
    let ts = w.request("e1");
    let started = Instant::now();
    w.slack
        .send(w.slack.click("e2", CHANNEL, BOB, &ts, "approve:rb-1"));
    w.wait_rolled_back(&ts);
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "waited for Retry-After"
    );
    let updates = w.slack.calls("chat.update");
    assert!(
        updates.len() >= 2,
        "the limited update was sent again: {updates:?}"
    );

    // A Web API error is reported (log, metrics) and changes nothing else.
    w.slack
        .fail_next("chat.postMessage", Failure::Api("not_in_channel"));
    let ack = w.slack.send(slash_command("e3", CHANNEL, ALICE, "app:v1"));
    assert_eq!(ack["payload"]["text"], "Working on it…");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, metrics) = w.daemon.get("/metrics");
        if metrics.contains("rollbot_notification_failures_total{sink=\"slack\"}") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the failure was not counted:\n{metrics}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_bot_that_is_not_in_its_channel_says_so_on_readyz() {
    let ci = Ci::new();
    let slack = FakeSlack::start();
    slack.set_not_member(CHANNEL);
    slack.set_group("S0SRE00001", &[CAROL]);
    let home = ci.cli.home.path();
    std::fs::write(home.join("bot"), "xoxb-test-bot-token").expect("write");
    std::fs::write(home.join("app"), "xapp-test-app-token").expect("write");
    let db = home.join("state/rollbot.db");
    let toml = format!(
        "[images.app]\nimage = \"{}/acme/app\"\n[registries.\"{}\"]\ninsecure = true\n[store]\npath = \"{}\"\n[server]\nlisten = \"127.0.0.1:0\"\n[slack]\nenabled = true\nbot_token_file = \"{}\"\napp_token_file = \"{}\"\napi_url = \"{}\"\nchannels = [\"{CHANNEL}\"]\n",
        ci.registry.host,
        ci.registry.host,
        db.display(),
        home.join("bot").display(),
        home.join("app").display(),
        slack.api_url()
    );
    let daemon = TestDaemon::start(&toml, &db);
    let (code, body) = daemon.get("/readyz");
    assert_eq!(code, 503, "{body}");
    assert!(
        body.contains(&format!(
            "the bot is not a member of Slack channel {CHANNEL} (#releases)"
        )),
        "{body}"
    );
    assert!(body.contains("/invite @rollbot"), "{body}");
    assert_eq!(slack.calls("auth.test").len(), 1);
}

// ---- HTTP mode ---------------------------------------------------------------------------

pub(crate) fn post_signed(
    base: &str,
    path: &str,
    content_type: &str,
    body: &str,
    secret: &str,
    timestamp: i64,
    extra: &[(&str, &str)],
) -> (u16, String) {
    let signature =
        rollbot::chat::slack::signing::sign(secret, &timestamp.to_string(), body.as_bytes());
    let timestamp = timestamp.to_string();
    let mut headers = vec![
        ("content-type", content_type),
        ("x-slack-request-timestamp", timestamp.as_str()),
        ("x-slack-signature", signature.as_str()),
    ];
    headers.extend_from_slice(extra);
    post(base, path, &headers, body)
}

/// POSTs `body` with exactly `headers`; the status and the answer's text.
pub(crate) fn post(base: &str, path: &str, headers: &[(&str, &str)], body: &str) -> (u16, String) {
    let mut request = reqwest::Client::new()
        .post(format!("{base}{path}"))
        .body(body.to_owned());
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    crate::support::block_on(async {
        let response = request.send().await.expect("send");
        (
            response.status().as_u16(),
            response.text().await.unwrap_or_default(),
        )
    })
}

pub(crate) fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("time")
        .as_secs() as i64
}

pub(crate) fn form(pairs: &[(&str, &str)]) -> String {
    form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs)
        .finish()
}

#[test]
fn http_mode_verifies_every_request_and_answers_url_verification() {
    let w = world("http", "");
    let base = &w.daemon.base;
    let command = form(&[
        ("token", "x"),
        ("team_id", "T0ACME0001"),
        ("channel_id", CHANNEL),
        ("user_id", ALICE),
        ("user_name", "alice"),
        ("command", "/rollback"),
        ("text", "status"),
        ("response_url", "https://hooks.slack.com/commands/1"),
        ("trigger_id", "t-http-1"),
    ]);
    let form_type = "application/x-www-form-urlencoded";
    let (code, body) = post_signed(
        base,
        "/slack/commands",
        form_type,
        &command,
        SIGNING_SECRET,
        now(),
        &[],
    );
    assert_eq!(code, 200, "{body}");
    assert!(
        body.contains("\"response_type\":\"ephemeral\"") && body.contains("Working on it"),
        "{body}"
    );
    w.ephemeral_to(ALICE, "No rollback is in progress.");

    let tampered = command.replace("status", "app");
    let signed = |secret: &str, at: i64| {
        post_signed(
            base,
            "/slack/commands",
            form_type,
            &command,
            secret,
            at,
            &[],
        )
        .0
    };
    let at = now().to_string();
    let original_signature =
        rollbot::chat::slack::signing::sign(SIGNING_SECRET, &at, command.as_bytes());
    let cases: Vec<(&str, u16)> = vec![
        ("wrong secret", signed("not-the-secret", now())),
        // A minute past the 5-minute window (its exact edges are unit tests in signing.rs): one
        // second past raced the server's clock ticking over.
        ("stale", signed(SIGNING_SECRET, now() - 360)),
        ("future", signed(SIGNING_SECRET, now() + 360)),
        (
            "altered body",
            post(
                base,
                "/slack/commands",
                &[
                    ("content-type", form_type),
                    ("x-slack-request-timestamp", &at),
                    ("x-slack-signature", &original_signature),
                ],
                &tampered,
            )
            .0,
        ),
        (
            "missing headers",
            post(
                base,
                "/slack/commands",
                &[("content-type", form_type)],
                &command,
            )
            .0,
        ),
    ];
    for (name, code) in cases {
        assert_eq!(code, 401, "{name}");
    }
    assert_eq!(
        w.slack.calls("chat.postEphemeral").len(),
        1,
        "refused requests did nothing"
    );

    let verification = r#"{"type":"url_verification","token":"Jhj5dZrVaK7ZwHHjRyZWjbDl","challenge":"3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P"}"#;
    let (code, body) = post_signed(
        base,
        "/slack/events",
        "application/json",
        verification,
        SIGNING_SECRET,
        now(),
        &[],
    );
    assert_eq!(code, 200);
    assert_eq!(
        serde_json::from_str::<Value>(&body).expect("json")["challenge"],
        "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P"
    );
    let (code, _) = post_signed(
        base,
        "/slack/events",
        "application/json",
        verification,
        "nope",
        now(),
        &[],
    );
    assert_eq!(code, 401, "url_verification is verified too");

    let (probe, _) = post(
        base,
        "/slack/commands",
        &[("content-type", form_type)],
        "ssl_check=1&token=x",
    );
    assert_eq!(probe, 200, "Slack's SSL check is answered");
}

#[test]
fn http_mode_an_events_api_retry_and_a_double_click_run_once() {
    let w = world("http", "");
    let base = w.daemon.base.clone();
    let form_type = "application/x-www-form-urlencoded";
    let command = form(&[
        ("team_id", "T0ACME0001"),
        ("channel_id", CHANNEL),
        ("user_id", ALICE),
        ("command", "/rollback"),
        ("text", "app v3 crashes"),
        ("response_url", "https://hooks.slack.com/commands/1"),
        ("trigger_id", "t-1"),
    ]);
    assert_eq!(
        post_signed(
            &base,
            "/slack/commands",
            form_type,
            &command,
            SIGNING_SECRET,
            now(),
            &[]
        )
        .0,
        200
    );
    w.slack.wait_for("chat.postMessage", "the plan", |b| {
        text_of(b).contains("approve:rb-1")
    });
    let ts = "1700000000.000101";

    // A reaction by Bob, then Slack's retry of the same event (same event id).
    let event = reaction_event("Ev0RETRY01", CHANNEL, BOB, "white_check_mark", ts).to_string();
    assert_eq!(
        post_signed(
            &base,
            "/slack/events",
            "application/json",
            &event,
            SIGNING_SECRET,
            now(),
            &[]
        )
        .0,
        200
    );
    assert_eq!(
        post_signed(
            &base,
            "/slack/events",
            "application/json",
            &event,
            SIGNING_SECRET,
            now(),
            &[
                ("x-slack-retry-num", "1"),
                ("x-slack-retry-reason", "http_timeout")
            ]
        )
        .0,
        200
    );
    // And a double click on Approve.
    for trigger in ["t-2", "t-3"] {
        let payload =
            block_actions_payload(trigger, CHANNEL, BOB, &w.slack.message(ts), "approve:rb-1")
                .to_string();
        let body = form(&[("payload", payload.as_str())]);
        assert_eq!(
            post_signed(
                &base,
                "/slack/interactions",
                form_type,
                &body,
                SIGNING_SECRET,
                now(),
                &[]
            )
            .0,
            200
        );
    }
    w.slack.wait_for("chat.update", "rolled back", |b| {
        b["ts"] == ts && text_of(b).contains("rolled back")
    });
    std::thread::sleep(Duration::from_millis(300));
    let done = w
        .slack
        .calls("chat.postMessage")
        .iter()
        .filter(|c| text_of(&c.body).contains("rb-1 done."))
        .count();
    assert_eq!(done, 1, "one run");
    assert_eq!(w.ci.latest().as_deref(), Some(w.v2.as_str()));
    let ephemerals = w.slack.calls("chat.postEphemeral");
    assert!(
        ephemerals
            .iter()
            .filter(|c| text_of(&c.body).contains("rolling back now"))
            .count()
            == 1,
        "{ephemerals:?}"
    );
    assert!(
        !ephemerals
            .iter()
            .any(|c| text_of(&c.body).contains("duplicate")),
        "a redelivery is silent"
    );
}

#[test]
fn the_slack_app_manifest_asks_for_exactly_the_scopes_the_code_uses() {
    let manifest = include_str!("../../deploy/slack-app-manifest.yaml");
    let mut scopes = Vec::new();
    let mut in_bot = false;
    for line in manifest.lines() {
        let trimmed = line.trim();
        if trimmed == "bot:" {
            in_bot = true;
            continue;
        }
        if in_bot {
            match trimmed.strip_prefix("- ") {
                Some(item) => scopes.push(
                    item.split_whitespace()
                        .next()
                        .unwrap_or_default()
                        .to_owned(),
                ),
                None => in_bot = false,
            }
        }
    }
    scopes.sort();
    // commands: /rollback; chat:write: postMessage/update/postEphemeral; reactions:read:
    // reaction_added; usergroups:read: usergroups.users.list; channels:read, groups:read:
    // conversations.info in the self-check.
    assert_eq!(
        scopes,
        [
            "channels:read",
            "chat:write",
            "commands",
            "groups:read",
            "reactions:read",
            "usergroups:read"
        ]
    );
    for needed in [
        "command: /rollback",
        "- reaction_added",
        "socket_mode_enabled: true",
        "is_enabled: true",
    ] {
        assert!(manifest.contains(needed), "the manifest lacks {needed}");
    }
}
