//! Slack's Socket Mode link, against the loopback fake speaking the documented protocol: a
//! refused app-level token stops `rollbot serve`; `/readyz` says "not connected" and why until
//! Slack's `hello`, and again after a `disconnect`, a close or a dropped connection; rollbot
//! reconnects with a fresh URL each time and rollbacks still work afterwards; a redelivered
//! envelope runs nothing twice; Slack's pings are answered.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::manifests::Ci;
use crate::slack::{text_of, world, BOB, CHANNEL};
use crate::support::slack::{reaction, Failure, FakeSlack, APP_TOKEN};
use crate::support::{block_on, daemon::TestDaemon};

/// Polls `/readyz` (20 s) until its answer satisfies `ok`; returns (status, body).
fn readyz_until(daemon: &TestDaemon, what: &str, ok: impl Fn(u16, &str) -> bool) -> (u16, String) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (code, body) = daemon.get("/readyz");
        if ok(code, &body) {
            return (code, body);
        }
        assert!(
            Instant::now() < deadline,
            "/readyz never showed {what}; last answer {code}:\n{body}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn ready(daemon: &TestDaemon) {
    readyz_until(daemon, "ready", |code, body| {
        code == 200 && body == "ready\n"
    });
}

fn not_connected_because(daemon: &TestDaemon, why: &str) -> String {
    let needle = format!("slack socket mode: not connected ({why}");
    readyz_until(daemon, &needle, |code, body| {
        code == 503 && body.contains(&needle)
    })
    .1
}

#[test]
fn readyz_says_not_connected_and_why_until_slack_says_hello() {
    let ci = Ci::new();
    let slack = FakeSlack::start();
    // Slack itself is in trouble at startup: not a config error, so rollbot starts and retries.
    slack.fail_always("apps.connections.open", Failure::Api("internal_error"));
    let daemon = TestDaemon::start(
        &config(&ci, &slack, APP_TOKEN),
        &ci.cli.home.path().join("state/rollbot.db"),
    );
    not_connected_because(&daemon, "apps.connections.open: internal_error");

    // The next attempt connects, but until Slack's hello the link is not usable.
    slack.hold_hello();
    slack.clear_failures("apps.connections.open");
    slack.wait_until("rollbot connected", |s| s.connections_opened() == 1);
    let (code, body) = daemon.get("/readyz");
    assert_eq!(code, 503, "{body}");
    assert!(
        body.contains("slack socket mode: not connected ("),
        "{body}"
    );
    slack.release_hello();
    ready(&daemon);
    slack.wait_until("rollbot answered Slack's pings", |s| s.pongs() > 0);

    // Every way Slack ends a connection: not connected, with the reason, until the next hello.
    type End = fn(&FakeSlack);
    let endings: Vec<(&str, End, &str)> = vec![
        (
            "a refresh",
            FakeSlack::refresh,
            "Slack asked for a new connection (refresh_requested); reconnecting",
        ),
        (
            "a warning",
            FakeSlack::warn_of_close,
            "Slack is about to close the connection (warning); reconnecting",
        ),
        (
            "Socket Mode turned off",
            FakeSlack::link_disabled,
            "Slack disabled the connection (link_disabled): turn Socket Mode on in the Slack app's settings",
        ),
        (
            "a close frame",
            FakeSlack::close_connections,
            "Slack closed the connection (1001 going away); reconnecting",
        ),
        (
            "a dropped connection",
            FakeSlack::drop_connections,
            "the Socket Mode connection broke",
        ),
    ];
    for (name, end, why) in endings {
        let opened = slack.connections_opened();
        slack.hold_hello();
        end(&slack);
        not_connected_because(&daemon, why);
        slack.wait_until(&format!("a new connection after {name}"), |s| {
            s.connections_opened() == opened + 1
        });
        let (code, body) = daemon.get("/readyz");
        assert!(
            code == 503 && body.contains(why),
            "{name}: still not connected before the hello: {body}"
        );
        slack.release_hello();
        ready(&daemon);
        slack.wait_until(&format!("one connection left after {name}"), |s| {
            s.live_connections().len() == 1
        });
    }
    assert_eq!(
        slack.refused_handshakes(),
        0,
        "every connection used a fresh ticket"
    );
    assert_eq!(
        slack.tickets_issued(),
        slack.connections_opened(),
        "one URL per connection"
    );
}

#[test]
fn a_refused_app_token_stops_serve_with_the_api_error_and_the_fix() {
    let cases: Vec<(&str, &str, Option<Failure>, &str)> = vec![
        ("a revoked token", "xapp-revoked-token", None, "apps.connections.open: invalid_auth; check slack.app_token_env / slack.app_token_file"),
        (
            "a token without connections:write",
            APP_TOKEN,
            Some(Failure::Api("missing_scope")),
            "apps.connections.open: missing_scope; give the app-level token the connections:write scope",
        ),
    ];
    for (name, token, failure, expected) in cases {
        let ci = Ci::new();
        let slack = FakeSlack::start();
        if let Some(failure) = failure {
            slack.fail_always("apps.connections.open", failure);
        }
        let path = ci.cli.home.path().join("serve.toml");
        std::fs::write(&path, config(&ci, &slack, token)).expect("config");
        let (code, stderr) = serve_until_exit(&path, ci.cli.home.path());
        assert_eq!(code, 3, "{name}: {stderr}");
        assert!(
            stderr.contains(&format!("Slack refused the app-level token: {expected}")),
            "{name}: {stderr}"
        );
        assert!(
            !stderr.contains("Socket Mode connected"),
            "{name}: {stderr}"
        );
        assert!(
            !stderr.contains(token),
            "{name}: the token is never printed: {stderr}"
        );
        assert_eq!(slack.connections_opened(), 0, "{name}");
    }
}

#[test]
fn after_slack_asks_for_a_refresh_a_rollback_is_still_requested_and_approved() {
    let w = world("socket", "");
    let ts = w.request("e1");
    let first = w.slack.live_connections();
    assert_eq!(first, [1]);
    w.slack.refresh();
    // A new connection (new URL, new ticket); once it says hello, rollbot closes the old one
    // itself instead of waiting for Slack to.
    w.slack
        .wait_until("rollbot closed the refreshed connection", |s| {
            s.closed_by_rollbot() == [1] && s.live_connections() == [2]
        });
    assert_eq!(w.slack.calls("apps.connections.open").len(), 2);
    assert_eq!(w.slack.refused_handshakes(), 0);
    ready(&w.daemon);
    w.slack
        .send(w.slack.click("e2", CHANNEL, BOB, &ts, "approve:rb-1"));
    w.wait_rolled_back(&ts);
}

#[test]
fn after_a_dropped_connection_a_rollback_is_still_requested_and_approved() {
    let w = world("socket", "");
    w.slack
        .wait_until("connected", |s| s.live_connections() == [1]);
    w.slack.drop_connections();
    w.slack
        .wait_until("reconnected", |s| s.live_connections() == [2]);
    let ts = w.request("e1");
    w.slack.drop_connections();
    w.slack
        .wait_until("reconnected again", |s| s.live_connections() == [3]);
    w.slack
        .send(reaction("e2", CHANNEL, BOB, "white_check_mark", &ts));
    w.wait_rolled_back(&ts);
    assert_eq!(w.slack.calls("apps.connections.open").len(), 3);
    assert_eq!(w.slack.refused_handshakes(), 0);
}

#[test]
fn a_redelivered_envelope_runs_nothing_twice() {
    let w = world("socket", "");
    let ts = w.request("e1");
    // An envelope rollbot cannot read is acknowledged (a redelivery would read no better) and
    // changes nothing.
    let ack = w.slack.send(json!({
        "envelope_id": "e-unreadable", "type": "interactive", "accepts_response_payload": false,
        "payload": { "type": "block_actions", "trigger_id": "t" }
    }));
    assert_eq!(ack, json!({ "envelope_id": "e-unreadable" }));

    // Bob's approval; rollbot's acknowledgement is lost, so Slack sends the same envelope again.
    w.slack.lose_next_ack();
    w.slack
        .send(reaction("e2", CHANNEL, BOB, "white_check_mark", &ts));
    let deliveries = w.slack.deliveries("e2");
    assert_eq!(deliveries.len(), 2, "{deliveries:?}");
    assert_eq!(
        (
            &deliveries[1]["retry_attempt"],
            &deliveries[1]["retry_reason"]
        ),
        (&json!(1), &json!("timeout"))
    );
    assert_eq!(deliveries[0]["payload"], deliveries[1]["payload"]);
    w.wait_rolled_back(&ts);
    std::thread::sleep(Duration::from_millis(300));
    let count = |method: &str, needle: &str| {
        w.slack
            .calls(method)
            .iter()
            .filter(|c| text_of(&c.body).contains(needle))
            .count()
    };
    assert_eq!(count("chat.postMessage", "rb-1 done."), 1, "one run");
    assert_eq!(
        count("chat.postMessage", "approved rb-1; rolling back"),
        1,
        "one approval"
    );
    let to_bob: Vec<_> = w
        .slack
        .calls("chat.postEphemeral")
        .into_iter()
        .filter(|c| c.body["user"] == BOB)
        .collect();
    assert_eq!(to_bob.len(), 1, "the redelivery is silent: {to_bob:?}");
    assert!(
        text_of(&to_bob[0].body).contains("rolling back now"),
        "{to_bob:?}"
    );
}

#[test]
fn the_fake_like_slack_refuses_a_second_handshake_with_the_same_ticket() {
    let slack = FakeSlack::start();
    let url = block_on(async {
        let answer: serde_json::Value = reqwest::Client::new()
            .post(format!("{}/apps.connections.open", slack.api_url()))
            .bearer_auth(APP_TOKEN)
            .send()
            .await
            .expect("apps.connections.open")
            .json()
            .await
            .expect("json");
        answer["url"].as_str().expect("a url").to_owned()
    });
    assert!(
        url.starts_with("ws://127.0.0.1:") && url.contains("/link/?ticket="),
        "{url}"
    );
    block_on(async {
        let first = tokio_tungstenite::connect_async(url.as_str()).await;
        assert!(first.is_ok(), "the first handshake works");
        let second = tokio_tungstenite::connect_async(url.as_str()).await;
        assert!(second.is_err(), "the ticket is single-use");
    });
    assert_eq!(slack.refused_handshakes(), 1);
}

/// A Socket Mode config for `rollbot serve` (and the in-process daemon) using `app_token`.
fn config(ci: &Ci, slack: &FakeSlack, app_token: &str) -> String {
    let home = ci.cli.home.path();
    std::fs::write(home.join("bot"), "xoxb-test-bot-token").expect("write");
    std::fs::write(home.join("app"), app_token).expect("write");
    format!(
        "[images.app]\nimage = \"{host}/acme/app\"\n[registries.\"{host}\"]\ninsecure = true\n[store]\npath = \"{db}\"\n[server]\nlisten = \"127.0.0.1:0\"\n[approvals]\napprovers = [\"{BOB}\"]\n[slack]\nenabled = true\nbot_token_file = \"{bot}\"\napp_token_file = \"{app}\"\napi_url = \"{api}\"\nchannels = [\"{CHANNEL}\"]\n",
        host = ci.registry.host,
        db = home.join("state/rollbot.db").display(),
        bot = home.join("bot").display(),
        app = home.join("app").display(),
        api = slack.api_url()
    )
}

/// Runs `rollbot serve` and waits (30 s) for it to exit; (exit code, stderr). A serve that
/// keeps running fails the test instead of hanging it.
fn serve_until_exit(config: &std::path::Path, home: &std::path::Path) -> (i32, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_rollbot"))
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", home)
        .arg("--config")
        .arg(config)
        .arg("serve")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start rollbot serve");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if child.try_wait().expect("wait").is_some() {
            break;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let output = child.wait_with_output().expect("output");
            panic!(
                "rollbot serve kept running:\n{}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let output = child.wait_with_output().expect("output");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}
