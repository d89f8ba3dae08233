//! `rollbot serve` through the console's HTTP API, against a real registry: the two-person
//! rule, persistence, expiry, rate limits, restarts.

use std::time::Duration;

use crate::manifests::Ci;
use crate::support::block_on;
use crate::support::daemon::{config, TestDaemon};
use crate::support::images::Pushed;
use crate::support::proxy::{Proxy, Rule};

const REPO: &str = "acme/app";

/// v1, v2, v3 published with rollback manifests; `latest` is v3.
fn published() -> (Ci, Vec<Pushed>) {
    let ci = Ci::new();
    let builds = ["v1", "v2", "v3"].iter().map(|v| ci.build(v)).collect();
    (ci, builds)
}

fn daemon(ci: &Ci, extra: &str) -> TestDaemon {
    let db = ci.cli.home.path().join("state/rollbot.db");
    TestDaemon::start(&config(&ci.registry.host, &db, extra), &db)
}

fn latest(ci: &Ci) -> String {
    ci.latest().expect("latest exists")
}

#[test]
fn the_whole_flow_request_refuse_self_approval_approve_roll_back_verify_hold() {
    let (ci, builds) = published();
    let daemon = daemon(&ci, "");

    let (ok, reply) = daemon.say("alice", "/rollback app v3 crashes on start");
    assert!(ok, "{reply}");
    assert!(
        reply.starts_with("rb-1 requested: roll back app (latest) to sha256:"),
        "{reply}"
    );
    assert!(
        reply.contains("Waiting for 1 approval from bob, group:sre"),
        "{reply}"
    );
    daemon.wait_for("the plan with buttons", |text| {
        text.contains("waiting for approval")
            && text.contains("approve:rb-1")
            && text.contains("Reason: v3 crashes on start")
    });

    let (ok, reply) = daemon.click("alice", "approve:rb-1");
    assert!(!ok);
    assert_eq!(reply, "You cannot approve rb-1: you cannot approve or reject your own request; a second person must.");
    assert_eq!(latest(&ci), builds[2].digest, "nothing moved");

    let (ok, reply) = daemon.click("bob", "approve:rb-1");
    assert!(ok, "{reply}");
    daemon.wait_for("success", |text| text.contains("rb-1 done."));
    assert_eq!(
        daemon.status_header().as_deref(),
        Some("Rollback rb-1 of app: rolled back")
    );
    assert_eq!(
        latest(&ci),
        builds[1].digest,
        "latest is the previous build"
    );
    let text = daemon.channel_text("alice");
    for expected in [
        "<@bob> approved rb-1; rolling back now.",
        "✓ retag",
        "✓ verify",
        "✓ hold",
        "of the 15m RTO budget",
        "approved by <@bob>",
    ] {
        assert!(text.contains(expected), "missing {expected:?} in {text}");
    }
    // The hold stops CI.
    let gate = ci.cli.run(&["gate", &ci.image()]);
    assert_eq!(gate.code, 1, "{}", gate.stderr);

    // Status, metrics and the audit log tell the same story.
    let (_, status) = daemon.say("alice", "/rollback status rb-1");
    assert!(
        status.contains("rb-1 app (latest)") && status.contains("succeeded"),
        "{status}"
    );
    let (code, metrics) = daemon.get("/metrics");
    assert_eq!(code, 200);
    assert!(
        metrics.contains("rollbot_rollbacks_total{outcome=\"succeeded\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("rollbot_step_duration_seconds_count{step=\"retag\"} 1"),
        "{metrics}"
    );
    assert!(metrics.contains("rollbot_pending_approvals 0"), "{metrics}");
    assert!(
        metrics.contains(&format!(
            "rollbot_registry_requests_total{{registry=\"{}\",status=\"201\"}}",
            ci.registry.host
        )),
        "{metrics}"
    );
    let db = daemon.db.clone();
    assert!(daemon.stop(), "clean shutdown");
    let audit = crate::support::Cli::new()
        .config(&format!("[store]\npath = \"{}\"\n", db.display()))
        .run(&["audit", "--json"]);
    assert_eq!(audit.code, 0, "{}", audit.stderr);
    let kinds: Vec<String> = audit
        .stdout
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).expect("json")["kind"]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        })
        .collect();
    for kind in [
        "command",
        "requested",
        "vote_refused",
        "vote",
        "state",
        "step",
        "finished",
    ] {
        assert!(
            kinds.iter().any(|k| k == kind),
            "audit has no {kind}: {kinds:?}"
        );
    }
}

#[test]
fn non_approvers_are_refused_and_group_members_can_approve() {
    let (ci, builds) = published();
    let daemon = daemon(&ci, "");
    assert!(daemon.say("alice", "/rollback app").0);
    let (ok, reply) = daemon.say("dave", "/rollback approve rb-1");
    assert!(!ok);
    assert!(
        reply.contains("you are not on the approvers list for this image"),
        "{reply}"
    );
    let (ok, reply) = daemon.say("dave", "/rollback reject rb-1 I do not like it");
    assert!(!ok, "a non-approver cannot veto: {reply}");
    assert_eq!(latest(&ci), builds[2].digest);
    let (ok, reply) = daemon.click("carol", "approve:rb-1");
    assert!(ok, "{reply}");
    daemon.wait_for("success", |text| text.contains("rb-1 done."));
    assert_eq!(latest(&ci), builds[1].digest);
}

#[test]
fn a_double_approval_runs_the_rollback_once() {
    let (ci, builds) = published();
    let daemon = daemon(&ci, "");
    assert!(daemon.say("alice", "/rollback app").0);
    // Two approvals at once (a double click, or two approvers racing).
    let base = daemon.base.clone();
    let answers: Vec<(bool, String)> = daemon.runtime.block_on(async {
        let http = reqwest::Client::new();
        let click = |user: &'static str| {
            let http = http.clone();
            let url = format!("{base}/console/api/action");
            async move {
                let value: serde_json::Value = http
                    .post(url)
                    .json(&serde_json::json!({ "user": user, "action": "approve:rb-1" }))
                    .send()
                    .await
                    .expect("send")
                    .json()
                    .await
                    .expect("json");
                (
                    value["ok"].as_bool().unwrap_or(false),
                    value["reply"].as_str().unwrap_or_default().to_owned(),
                )
            }
        };
        let (a, b) = futures_util::future::join(click("bob"), click("carol")).await;
        vec![a, b]
    });
    assert_eq!(
        answers.iter().filter(|(ok, _)| *ok).count(),
        1,
        "{answers:?}"
    );
    assert!(
        answers
            .iter()
            .any(|(_, r)| r.contains("no longer waiting for approval")),
        "{answers:?}"
    );
    let (ok, reply) = daemon.click("bob", "approve:rb-1");
    assert!(!ok && reply.contains("no longer waiting"), "{reply}");
    daemon.wait_for("success", |text| text.contains("rb-1 done."));
    assert_eq!(latest(&ci), builds[1].digest);
    let lines = daemon.public_lines();
    assert_eq!(
        lines
            .iter()
            .filter(|l| l.contains("approved rb-1; rolling back now"))
            .count(),
        1,
        "one approval announced: {lines:?}"
    );
    assert_eq!(
        lines.iter().filter(|l| l.contains("rb-1 done.")).count(),
        1,
        "one run: {lines:?}"
    );
}

#[test]
fn a_reject_vetoes_and_a_requester_can_cancel() {
    let (ci, builds) = published();
    let daemon = daemon(&ci, "");
    assert!(daemon.say("alice", "/rollback app").0);
    let (ok, reply) = daemon.click("bob", "reject:rb-1");
    assert!(ok, "{reply}");
    daemon.wait_for("rejection", |text| {
        text.contains("<@bob> rejected rb-1; nothing changed.")
    });
    assert_eq!(
        daemon.status_header().as_deref(),
        Some("Rollback rb-1 of app: rejected")
    );
    assert_eq!(latest(&ci), builds[2].digest);

    assert!(
        daemon.say("alice", "/rollback app:v1").0,
        "the image is free again"
    );
    let (ok, reply) = daemon.say("bob", "/rollback cancel rb-2");
    assert!(!ok && reply.contains("only Alice"), "{reply}");
    let (ok, reply) = daemon.say("alice", "/rollback cancel rb-2");
    assert!(ok, "{reply}");
    let (ok, reply) = daemon.click("bob", "approve:rb-2");
    assert!(!ok && reply.contains("it is cancelled"), "{reply}");
    assert_eq!(latest(&ci), builds[2].digest);
}

#[test]
fn one_rollback_per_image_and_only_allowlisted_images() {
    let (ci, _) = published();
    let daemon = daemon(&ci, "");
    assert!(daemon.say("alice", "/rollback app").0);
    let (ok, reply) = daemon.say("carol", "/rollback app:v1");
    assert!(!ok);
    assert!(
        reply.contains(
            "app already has a rollback in progress: rb-1 (requested, requested by Alice)"
        ),
        "{reply}"
    );
    let (ok, reply) = daemon.say(
        "alice",
        &format!("/rollback {}/acme/other", ci.registry.host),
    );
    assert!(
        !ok && reply.contains("is not on rollbot's allowlist of images (app)"),
        "{reply}"
    );
    let (ok, reply) = daemon.say("alice", "/rollback approve");
    assert!(
        !ok && reply.contains("`approve` needs a rollback id") && reply.contains("Usage:"),
        "{reply}"
    );
}

#[test]
fn an_unapproved_request_expires_and_then_cannot_be_approved() {
    let (ci, builds) = published();
    let daemon = daemon(&ci, "");
    assert!(daemon.say("alice", "/rollback app").0);
    daemon.clock.advance(Duration::from_secs(10 * 60 + 1));
    daemon.wait_for("expiry", |text| {
        text.contains("rb-1 expired without approval; nothing changed.")
    });
    let (ok, reply) = daemon.click("bob", "approve:rb-1");
    assert!(!ok && reply.contains("it is expired"), "{reply}");
    assert_eq!(latest(&ci), builds[2].digest);
}

#[test]
fn a_tag_moved_after_the_request_aborts_the_approved_rollback() {
    let (ci, builds) = published();
    let daemon = daemon(&ci, "");
    assert!(daemon.say("alice", "/rollback app").0);
    // CI (or a person) pushes v1 to latest after the plan was shown.
    block_on(ci.seeder.tag(REPO, &builds[0], "latest"));
    assert!(daemon.click("bob", "approve:rb-1").0);
    daemon.wait_for("failure", |text| text.contains("rb-1 FAILED"));
    let text = daemon.channel_text("bob");
    assert!(
        text.contains("moved from") && text.contains("nothing was changed"),
        "{text}"
    );
    assert_eq!(
        latest(&ci),
        builds[0].digest,
        "the state nobody approved is left alone"
    );
}

/// The approval's re-plan reuses the request's read of the target's bytes, but not its word that
/// the manifest exists: one deleted in between (a takedown, a clean-up) is not put back by the
/// tag's PUT.
#[test]
fn a_target_deleted_after_the_request_aborts_the_approved_rollback() {
    let (ci, builds) = published();
    let daemon = daemon(&ci, "");
    assert!(daemon.say("alice", "/rollback app").0);
    let target = &builds[1].digest;
    block_on(ci.seeder.delete_manifest(REPO, target));
    // People take longer than `MAX_READ_AGE` to approve; a read younger than that is trusted.
    std::thread::sleep(Duration::from_millis(150));
    assert!(daemon.click("bob", "approve:rb-1").0);
    daemon.wait_for("failure", |text| text.contains("rb-1 FAILED"));
    let text = daemon.channel_text("bob");
    assert!(
        text.contains("no longer in") && text.contains("nothing was changed"),
        "{text}"
    );
    assert_eq!(latest(&ci), builds[2].digest, "latest was not moved");
    assert_eq!(
        block_on(ci.seeder.digest_of(REPO, target)),
        None,
        "the deleted manifest was not put back"
    );
}

#[test]
fn rate_limits_answer_with_when_to_retry() {
    let (ci, _) = published();
    let daemon = daemon(
        &ci,
        "[limits]\ncommands_per_minute = 3\nrollbacks_per_hour = 1\n",
    );
    for _ in 0..3 {
        assert!(daemon.say("dave", "/rollback status").0);
    }
    let (ok, reply) = daemon.say("dave", "/rollback status");
    assert!(!ok);
    assert!(
        reply.contains("too fast (limit 3 per minute); try again in"),
        "{reply}"
    );
    assert!(
        daemon.say("alice", "/rollback status").0,
        "other users are not affected"
    );

    assert!(daemon.say("alice", "/rollback app").0);
    assert!(daemon.click("bob", "approve:rb-1").0);
    daemon.wait_for("first rollback", |text| text.contains("rb-1 done."));
    assert!(daemon.say("alice", "/rollback app:v1").0);
    let (ok, reply) = daemon.click("carol", "approve:rb-2");
    assert!(!ok);
    assert!(reply.contains("The limit of 1 rollbacks per hour is reached; your approval was not recorded. Try again in"), "{reply}");
}

#[test]
fn a_pending_request_survives_a_restart() {
    let (ci, builds) = published();
    let first = daemon(&ci, "");
    assert!(first.say("alice", "/rollback app").0);
    assert!(first.stop());
    let second = daemon(&ci, "");
    let (ok, status) = second.say("bob", "/rollback status");
    assert!(
        ok && status.contains("rb-1 app (latest)") && status.contains("requested"),
        "{status}"
    );
    assert!(second.click("bob", "approve:rb-1").0);
    second.wait_for("success", |text| text.contains("rb-1 done."));
    assert_eq!(latest(&ci), builds[1].digest);
}

/// A health check slow enough to crash the daemon while it runs.
const SLOW_CHECK: &str =
    "[[images.app.checks]]\nname = \"slow\"\ncommand = [\"sleep\", \"30\"]\ntimeout = \"60s\"\n";

fn config_with_slow_check(ci: &Ci, db: &std::path::Path) -> String {
    config(&ci.registry.host, db, "").replace("[store]", &format!("{SLOW_CHECK}\n[store]"))
}

#[test]
fn a_daemon_killed_after_the_retag_finishes_the_verification_on_restart() {
    let (ci, builds) = published();
    let db = ci.cli.home.path().join("state/rollbot.db");
    let first = TestDaemon::start(&config_with_slow_check(&ci, &db), &db);
    assert!(first.say("alice", "/rollback app").0);
    assert!(first.click("bob", "approve:rb-1").0);
    first.wait_for("the slow check to start", |text| {
        text.contains("verifying") && text.contains("✓ verify")
    });
    first.crash();
    assert_eq!(
        latest(&ci),
        builds[1].digest,
        "the retag happened before the crash"
    );

    let second = TestDaemon::start(&config(&ci.registry.host, &db, ""), &db);
    second.wait_for("reconciled success", |text| text.contains("rb-1 done."));
    let text = second.channel_text("bob");
    assert!(
        text.contains("rollbot restarted after every tag moved; verifying now"),
        "{text}"
    );
    let (_, status) = second.say("bob", "/rollback status rb-1");
    assert!(status.contains("succeeded"), "{status}");
}

#[test]
fn a_daemon_killed_mid_rollback_marks_it_interrupted_when_the_registry_changed_meanwhile() {
    let (ci, builds) = published();
    let db = ci.cli.home.path().join("state/rollbot.db");
    let first = TestDaemon::start(&config_with_slow_check(&ci, &db), &db);
    assert!(first.say("alice", "/rollback app").0);
    assert!(first.click("bob", "approve:rb-1").0);
    first.wait_for("the slow check to start", |text| text.contains("✓ verify"));
    first.crash();
    // While rollbot was down, someone pushed v1.
    block_on(ci.seeder.tag(REPO, &builds[0], "latest"));

    let second = TestDaemon::start(&config(&ci.registry.host, &db, ""), &db);
    second.wait_for("interrupted", |text| {
        text.contains("rb-1 was INTERRUPTED by a restart")
    });
    let text = second.channel_text("bob");
    assert!(
        text.contains("neither all moved nor untouched") && text.contains("latest at sha256:"),
        "{text}"
    );
    assert_eq!(
        latest(&ci),
        builds[0].digest,
        "rollbot does not touch a state nobody approved"
    );
    assert!(
        second.say("alice", "/rollback app:v2").0,
        "the image is free for a new request"
    );
}

#[test]
fn health_and_readiness_endpoints_answer() {
    let (ci, _) = published();
    let daemon = daemon(&ci, "");
    assert_eq!(daemon.get("/healthz"), (200, "ok\n".to_owned()));
    assert_eq!(daemon.get("/readyz"), (200, "ready\n".to_owned()));
    let page = daemon.get("/console");
    assert_eq!(page.0, 200);
    assert!(page.1.contains("rollbot console"));
    drop(ci); // the registry stops
    let (code, body) = daemon.get("/readyz");
    assert_eq!(code, 503, "{body}");
    assert!(body.contains("cannot reach registry"), "{body}");
}

#[test]
fn a_daemon_killed_before_any_tag_moved_resumes_the_approved_rollback() {
    let (ci, builds) = published();
    // rollbot reaches the registry through a proxy that holds the first tag write forever.
    let proxy = Proxy::start(
        &ci.registry.host,
        vec![Rule::HangPutTag {
            tag: "latest".into(),
        }],
    );
    let db = ci.cli.home.path().join("state/rollbot.db");
    let toml = config(&proxy.host, &db, "");
    let first = TestDaemon::start(&toml, &db);
    // An explicit target: the rollback manifests name the registry's own host, not the proxy's.
    let (ok, reply) = first.say("alice", "/rollback app:v2");
    assert!(ok, "{reply}");
    assert!(first.click("bob", "approve:rb-1").0);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !proxy
        .seen()
        .iter()
        .any(|r| r.starts_with("PUT ") && r.ends_with("/manifests/latest"))
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the write never started"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    first.crash();
    assert_eq!(latest(&ci), builds[2].digest, "nothing was written");

    proxy.set_rules(Vec::new());
    let second = TestDaemon::start(&toml, &db);
    second.wait_for("resumed success", |text| text.contains("rb-1 done."));
    let text = second.channel_text("bob");
    assert!(
        text.contains("rollbot restarted before any tag moved; resuming the approved rollback"),
        "{text}"
    );
    assert_eq!(latest(&ci), builds[1].digest);
}

#[test]
fn history_and_release_from_chat() {
    let (ci, _) = published();
    let daemon = daemon(&ci, "");
    let (ok, history) = daemon.say("dave", "/rollback history app");
    assert!(ok, "{history}");
    assert!(
        history.contains("History of app from latest")
            && history.contains("live; complete")
            && history.contains("end: the oldest entry is the first build"),
        "{history}"
    );

    assert!(daemon.say("alice", "/rollback app").0);
    assert!(daemon.click("bob", "approve:rb-1").0);
    daemon.wait_for("success", |text| text.contains("rb-1 done."));
    assert_eq!(ci.cli.run(&["gate", &ci.image()]).code, 1);

    let (ok, reply) = daemon.say("dave", "/rollback release app");
    assert!(
        !ok && reply.contains("only approvers of app can release its hold"),
        "{reply}"
    );
    let (ok, reply) = daemon.say("carol", "/rollback release app fixed in v4");
    assert!(ok, "{reply}");
    daemon.wait_for("the release announcement", |text| {
        text.contains("<@carol> released the hold")
    });
    assert_eq!(
        ci.cli.run(&["gate", &ci.image()]).code,
        0,
        "CI may push again"
    );
    let (ok, reply) = daemon.say("carol", "/rollback release app");
    assert!(ok && reply.contains("no active hold"), "{reply}");
}

/// The audit log of the daemon's store, one JSON object per entry.
pub(crate) fn audit_entries(db: &std::path::Path) -> Vec<serde_json::Value> {
    let audit = crate::support::Cli::new()
        .config(&format!("[store]\npath = \"{}\"\n", db.display()))
        .run(&["audit", "--json"]);
    assert_eq!(audit.code, 0, "{}", audit.stderr);
    audit
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("json"))
        .collect()
}

#[test]
fn every_refusal_is_an_audit_entry_with_its_reason() {
    let (ci, _) = published();
    let db = ci.cli.home.path().join("state/rollbot.db");
    // Only bob approves app: a request by bob could never be approved.
    let toml = config(&ci.registry.host, &db, "").replace(
        "[images.app]\n",
        "[images.app]\napprovers = [\"bob\", \"carol\"]\nrequired_approvals = 2\n",
    );
    let daemon = TestDaemon::start(&toml, &db);
    let (ok, reply) = daemon.say("bob", "/rollback app");
    assert!(!ok);
    assert!(
        reply.contains("could never be approved: 2 approvals are required but only 1 person could ever approve (the requester cannot approve their own request)"),
        "{reply}"
    );
    assert!(daemon.say("alice", "/rollback app").0);
    let refusals = [
        (
            "carol",
            "/rollback app:v1",
            "already has a rollback in progress",
        ),
        ("alice", "/rollback other", "is not on rollbot's allowlist"),
        (
            "dave",
            "/rollback cancel rb-1",
            "only Alice (who requested rb-1) can cancel it",
        ),
        ("dave", "/rollback approve soon", "Usage:"),
    ];
    for (user, text, why) in refusals {
        let (ok, reply) = daemon.say(user, text);
        assert!(!ok, "{text}: {reply}");
        assert!(reply.contains(why), "{text}: {reply}");
    }
    let db = daemon.db.clone();
    assert!(daemon.stop());
    let entries = audit_entries(&db);
    let refused: Vec<String> = entries
        .iter()
        .filter(|e| e["kind"] == "refused")
        .map(|e| {
            format!(
                "{} {} {}",
                e["actor"]["id"], e["detail"]["command"], e["detail"]["why"]
            )
        })
        .collect();
    for (who, command, why) in [
        ("bob", "request", "could never be approved"),
        ("carol", "request", "already has a rollback in progress"),
        ("alice", "request", "is not on rollbot's allowlist"),
        ("dave", "cancel", "can cancel it"),
        ("dave", "malformed", ""),
    ] {
        assert!(
            refused
                .iter()
                .any(|r| r.contains(&format!("\"{who}\" \"{command}\"")) && r.contains(why)),
            "no refusal of {who}'s {command} ({why}) in {refused:#?}"
        );
    }
}

#[test]
fn malformed_commands_count_against_the_rate_limit_and_the_console_stays_bounded() {
    let (ci, _) = published();
    let daemon = daemon(
        &ci,
        "[limits]\ncommands_per_minute = 5\n\n[console]\nhistory = 40\n",
    );
    let mut usage = 0;
    let mut too_fast = 0;
    for n in 0..60 {
        let (ok, reply) = daemon.say(
            "dave",
            &format!("/rollback approve x{n} {}", "x".repeat(500)),
        );
        assert!(!ok);
        if reply.contains("Usage:") {
            usage += 1;
        } else if reply.contains("too fast (limit 5 per minute)") {
            too_fast += 1;
        }
    }
    assert_eq!(
        (usage, too_fast),
        (5, 55),
        "malformed text is rate limited like any command"
    );
    assert!(
        daemon.say("alice", "/rollback status").0,
        "other users are not affected"
    );

    let (status, body) = daemon.get("/console/api/state?user=dave");
    assert_eq!(status, 200);
    let state: serde_json::Value = serde_json::from_str(&body).expect("json");
    let messages = state["messages"].as_array().expect("messages");
    assert!(
        messages.len() <= 40,
        "the channel keeps 40 messages: {}",
        messages.len()
    );
    assert!(body.len() < 100_000, "bounded answer: {} bytes", body.len());
    let (_, page) = daemon.get("/console/api/state?user=dave&limit=7");
    let page: serde_json::Value = serde_json::from_str(&page).expect("json");
    assert_eq!(page["messages"].as_array().map(Vec::len), Some(7));
    assert_eq!(page["truncated"], true);
    let newest = page["messages"][6]["id"].as_u64();
    assert_eq!(
        newest,
        messages.last().and_then(|m| m["id"].as_u64()),
        "the newest page"
    );

    let db = daemon.db.clone();
    assert!(daemon.stop());
    let entries = audit_entries(&db);
    let limited = entries
        .iter()
        .filter(|e| e["kind"] == "rate_limited" && e["detail"]["command"] == "malformed")
        .count();
    assert_eq!(limited, 55);
}

#[test]
fn a_dead_engine_fails_the_probes_and_ends_the_daemon() {
    let (ci, _) = published();
    let mut daemon = daemon(&ci, "");
    assert_eq!(daemon.get("/healthz").0, 200);
    daemon
        .daemon
        .as_ref()
        .expect("running")
        .abort_engine_for_tests();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (status, body) = daemon.get("/healthz");
        // The engine first: the sink that stopped with it is a consequence.
        if status == 503 && body.contains("the engine") {
            assert!(
                body.starts_with("unhealthy: the engine was cancelled unexpectedly"),
                "{body}"
            );
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "healthz stayed {status}: {body}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let (status, body) = daemon.get("/readyz");
    assert_eq!(status, 503, "{body}");
    let (ok, reply) = daemon.say("alice", "/rollback status");
    assert!(!ok, "{reply}");
    // `rollbot serve` returns at once, unclean: the process exits non-zero and its supervisor
    // restarts it.
    let running = daemon.daemon.take().expect("running");
    let clean = daemon
        .runtime
        .block_on(running.run_until(std::future::pending()));
    assert!(!clean);
}
