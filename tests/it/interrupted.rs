//! A rollback that stops part-way (a failed or timed-out write, a write that lands late): the
//! report says where every tag really is and how to finish; running the same command again
//! finishes the same rollback and never moves a tag further back; chat does the same.

use std::sync::atomic::AtomicUsize;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::manifests::Ci;
use crate::support::block_on;
use crate::support::daemon::{config, config_through, TestDaemon};
use crate::support::images::Pushed;
use crate::support::proxy::{Proxy, Rule};
use crate::support::Cli;

const REPO: &str = "acme/app";

/// v1 → v2 → v3 published by CI with rollback manifests; `latest` and `stable` are v3.
fn published() -> (Ci, [Pushed; 3]) {
    let ci = Ci::new();
    let v1 = ci.build("v1");
    let v2 = ci.build("v2");
    let v3 = ci.build("v3");
    block_on(ci.seeder.tag(REPO, &v3, "stable"));
    (ci, [v1, v2, v3])
}

/// Where `latest` and `stable` point must be `latest` and `stable`.
fn assert_tags(ci: &Ci, latest: &Pushed, stable: &Pushed) {
    assert_eq!(
        (digest_of(ci, "latest"), digest_of(ci, "stable")),
        (Some(latest.digest.clone()), Some(stable.digest.clone()))
    );
}

/// A proxy in front of `ci`'s registry that answers `status` to every write of `tag`.
fn failing_put(ci: &Ci, tag: &str, status: u16) -> Proxy {
    Proxy::start(
        &ci.registry.host,
        vec![Rule::FailPutTag {
            tag: tag.into(),
            status,
        }],
    )
}

/// A proxy in front of `ci`'s registry that forwards a write of `latest` only after `before`
/// and answers it `after` that.
fn delaying_put(ci: &Ci, before: Duration, after: Duration) -> Proxy {
    Proxy::start(
        &ci.registry.host,
        vec![Rule::DelayPutTag {
            tag: "latest".into(),
            before,
            after,
        }],
    )
}

fn digest_of(ci: &Ci, tag: &str) -> Option<String> {
    block_on(ci.seeder.digest_of(REPO, tag))
}

fn hold(ci: &Ci) -> serde_json::Value {
    let status = ci.cli.run(&["hold", "status", &ci.image(), "--json"]);
    assert_eq!(status.code, 0, "{}", status.stderr);
    status.json()["hold"].clone()
}

/// A CLI whose traffic to `ci`'s registry goes through `proxy` (the image keeps its name, so
/// its rollback manifests still describe it).
fn through(ci: &Ci, proxy: &Proxy, extra: &str) -> Cli {
    Cli::new().config(&format!(
        "[registries.\"{}\"]\ninsecure = true\nendpoint = \"{}\"\n{extra}",
        ci.registry.host, proxy.host
    ))
}

/// `rollbot rollback IMAGE --tag latest --tag stable --yes --json` plus `extra`.
fn rollback(cli: &Cli, image: &str, extra: &[&str]) -> crate::support::Run {
    let mut args = vec![
        "rollback", image, "--tag", "latest", "--tag", "stable", "--yes", "--json",
    ];
    args.extend_from_slice(extra);
    cli.run(&args)
}

#[test]
fn a_rerun_after_a_partial_retag_finishes_the_same_target_and_never_goes_two_builds_back() {
    let (ci, [v1, v2, v3]) = published();
    let proxy = failing_put(&ci, "stable", 500);
    let run = rollback(
        &through(&ci, &proxy, ""),
        &ci.image(),
        &["--reason", "v3 crashes", "--by", "alice"],
    );
    assert_eq!(run.code, 4, "{}", run.stderr);
    let report = run.json();
    assert_eq!(report["target"]["digest"], v2.digest.as_str());
    assert_eq!(report["tags"][0]["status"], "moved");
    // A 500 is no proof the write was not stored.
    assert_eq!(report["tags"][1]["status"], "unknown");
    assert_eq!(report["tags"][1]["now"], v3.digest.as_str());
    let finish = format!(
        "rollbot rollback {} --to {} --tag latest --tag stable --insecure",
        ci.image(),
        v2.digest
    );
    assert_eq!(report["finish_command"], finish.as_str());
    assert!(run.stderr.contains(&finish), "{}", run.stderr);
    assert_tags(&ci, &v2, &v3);

    // The intent was recorded before the first write: every other operator sees it, and CI
    // is stopped.
    let recorded = hold(&ci);
    assert_eq!(recorded["state"], "in_progress");
    assert_eq!(recorded["digest"], v2.digest.as_str());
    assert_eq!(recorded["from"][1]["tag"], "stable");
    assert_eq!(recorded["from"][1]["digest"], v3.digest.as_str());
    assert_eq!(ci.cli.run(&["gate", &ci.image()]).code, 1);

    // The same command again, once the registry is healthy: v2 for both, not v1.
    let again = rollback(&ci.cli, &ci.image(), &["--by", "alice"]);
    assert_eq!(again.code, 0, "{}", again.stderr);
    let report = again.json();
    assert_eq!(report["target"]["digest"], v2.digest.as_str());
    let source = report["target_source"].as_str().unwrap_or_default();
    assert!(source.starts_with("finishing the rollback to"), "{source}");
    assert_eq!(report["tags"][0]["status"], "already_at_target");
    assert_eq!(report["tags"][1]["status"], "moved");
    assert_tags(&ci, &v2, &v2);
    assert_eq!(hold(&ci)["state"], "active");

    // And once more: everything is at the recorded target. Going further back is a decision
    // a person names; the refusal says which build that would be.
    let third = rollback(&ci.cli, &ci.image(), &[]);
    assert_eq!(third.code, 3, "{}", third.stderr);
    assert!(
        third
            .stderr
            .contains(&format!("already points at {}", v2.digest))
            && third.stderr.contains(&format!("--to {}", v1.digest)),
        "{}",
        third.stderr
    );
    assert_tags(&ci, &v2, &v2);
}

#[test]
fn without_a_hold_floating_tags_that_disagree_are_refused_not_guessed() {
    let (ci, [_, v2, v3]) = published();
    let proxy = failing_put(&ci, "stable", 500);
    let run = rollback(&through(&ci, &proxy, ""), &ci.image(), &["--no-hold"]);
    assert_eq!(run.code, 4, "{}", run.stderr);
    assert_eq!(
        ci.cli.run(&["hold", "status", &ci.image()]).stdout.trim(),
        format!("no hold on {}", ci.image()),
        "--no-hold writes no hold"
    );

    let again = rollback(&ci.cli, &ci.image(), &[]);
    assert_eq!(again.code, 3, "{}", again.stderr);
    assert!(
        again.stderr.contains("point at different digests")
            && again.stderr.contains("name the target explicitly"),
        "{}",
        again.stderr
    );
    assert_tags(&ci, &v2, &v3);
}

#[test]
fn a_write_refused_before_any_tag_moved_puts_the_hold_back_and_changes_nothing() {
    let (ci, [_, _, v3]) = published();
    // A hold set by hand (a freeze) before the attempt must survive it unchanged.
    let set = ci.cli.run(&[
        "hold",
        "set",
        &ci.image(),
        "--reason",
        "freeze",
        "--by",
        "carol",
    ]);
    assert_eq!(set.code, 0, "{}", set.stderr);
    let before = hold(&ci);
    let proxy = failing_put(&ci, "latest", 403);
    let run = rollback(&through(&ci, &proxy, ""), &ci.image(), &["--to", "v2"]);
    assert_eq!(
        run.code, 3,
        "a refused first write changes nothing: {}",
        run.stderr
    );
    assert_eq!(run.json()["finish_command"], serde_json::Value::Null);
    assert_eq!(hold(&ci), before, "the hold is back, byte for byte");
    assert_eq!(
        digest_of(&ci, "latest").as_deref(),
        Some(v3.digest.as_str())
    );
}

#[test]
fn a_write_that_times_out_but_lands_is_reported_where_the_registry_says() {
    let (ci, [_, v2, v3]) = published();
    // The registry stores the write at once but answers only after the client gave up.
    let proxy = delaying_put(&ci, Duration::ZERO, Duration::from_secs(3));
    let cli = through(&ci, &proxy, "[rollback]\nregistry_timeout = \"500ms\"\n");
    let run = rollback(&cli, &ci.image(), &["--to", "v2"]);
    assert_eq!(run.code, 4, "{}", run.stderr);
    let report = run.json();
    assert_eq!(report["tags"][0]["status"], "moved", "{report}");
    assert_eq!(report["tags"][0]["now"], v2.digest.as_str());
    assert_eq!(report["tags"][1]["status"], "not_moved");
    assert!(
        run.stderr.contains("did not answer within"),
        "{}",
        run.stderr
    );
    assert_eq!(
        hold(&ci)["state"],
        "in_progress",
        "the half-moved image is held"
    );
    assert_eq!(
        digest_of(&ci, "stable").as_deref(),
        Some(v3.digest.as_str())
    );
}

#[test]
fn a_write_that_lands_after_the_read_back_is_not_called_failed_and_the_rerun_finishes_it() {
    let (ci, [_, v2, v3]) = published();
    // The write reaches the registry 3 s after it was sent: after the client gave up (0.5 s)
    // and after the read-back (1 s later).
    let proxy = delaying_put(&ci, Duration::from_secs(3), Duration::ZERO);
    let cli = through(&ci, &proxy, "[rollback]\nregistry_timeout = \"500ms\"\n");
    let run = rollback(&cli, &ci.image(), &["--to", "v2"]);
    assert_eq!(run.code, 4, "not 'nothing changed': {}", run.stderr);
    assert!(
        run.stderr.contains("may still land") && run.stderr.contains("rollbot verify"),
        "{}",
        run.stderr
    );
    assert_eq!(
        hold(&ci)["state"],
        "in_progress",
        "the intent stays recorded"
    );

    let deadline = Instant::now() + Duration::from_secs(15);
    while digest_of(&ci, "latest").as_deref() != Some(v2.digest.as_str()) {
        assert!(Instant::now() < deadline, "the delayed write never landed");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(
        digest_of(&ci, "stable").as_deref(),
        Some(v3.digest.as_str())
    );
    let again = rollback(&ci.cli, &ci.image(), &[]);
    assert_eq!(again.code, 0, "{}", again.stderr);
    assert_eq!(again.json()["target"]["digest"], v2.digest.as_str());
    assert_eq!(
        digest_of(&ci, "stable").as_deref(),
        Some(v2.digest.as_str())
    );
}

#[test]
fn in_chat_a_request_after_an_interrupted_rollback_finishes_it() {
    let (ci, [_, v2, _]) = published();
    let proxy = failing_put(&ci, "stable", 500);
    assert_eq!(
        rollback(&through(&ci, &proxy, ""), &ci.image(), &[]).code,
        4
    );

    let db = ci.cli.home.path().join("state/rollbot.db");
    let extra = "[rollback]\ntags = [\"latest\", \"stable\"]\n";
    let daemon = TestDaemon::start(&config(&ci.registry.host, &db, extra), &db);
    let (ok, reply) = daemon.say("alice", "/rollback app stable did not move");
    assert!(ok, "{reply}");
    assert!(reply.contains(&v2.digest[..19]), "{reply}");
    daemon.wait_for("the plan", |text| {
        text.contains("finishing the rollback to") && text.contains("approve:rb-1")
    });
    let (ok, reply) = daemon.click("bob", "approve:rb-1");
    assert!(ok, "{reply}");
    daemon.wait_for("success", |text| text.contains("rb-1 done."));
    assert_tags(&ci, &v2, &v2);

    // Asked again, chat refuses to go further back without a named target.
    let (ok, reply) = daemon.say("alice", "/rollback app");
    assert!(!ok, "{reply}");
    assert!(reply.contains("already points at"), "{reply}");
    assert!(daemon.stop());
}

#[test]
fn the_daemon_records_a_timed_out_write_where_the_registry_says_and_rereads_late_ones_on_restart() {
    let (ci, [_, v2, v3]) = published();
    let db = ci.cli.home.path().join("state/rollbot.db");
    let extra = "[rollback]\ntags = [\"latest\", \"stable\"]\nregistry_timeout = \"500ms\"\n";
    // The write of `latest` lands at once, but its answer comes after the client gave up.
    let proxy = delaying_put(&ci, Duration::ZERO, Duration::from_secs(3));
    let through_proxy = config_through(&ci.registry.host, Some(&proxy.host), &db, extra);
    let daemon = TestDaemon::start(&through_proxy, &db);
    assert!(daemon.say("alice", "/rollback app:v2").0);
    assert!(daemon.click("bob", "approve:rb-1").0);
    daemon.wait_for("failure", |text| text.contains("rb-1 FAILED"));
    let text = daemon.channel_text("bob");
    let short_v3 = &v3.digest[..19];
    assert!(
        text.contains(&format!("\nTag latest: `{short_v3}` → target (moved)\n"))
            && text.contains(&format!("\nTag stable: `{short_v3}` (not moved)\n")),
        "{text}"
    );
    assert!(
        text.contains("finish the rollback with: rollbot rollback"),
        "{text}"
    );
    assert_eq!(
        digest_of(&ci, "latest").as_deref(),
        Some(v2.digest.as_str())
    );
    assert!(daemon.stop());

    // Now a write that lands only after the daemon read the tags back and recorded the
    // rollback as failed: the next start reads them again, records and says what it found.
    block_on(ci.seeder.tag(REPO, &v3, "latest"));
    proxy.set_rules(vec![Rule::DelayPutTag {
        tag: "latest".into(),
        before: Duration::from_secs(3),
        after: Duration::ZERO,
    }]);
    let daemon = TestDaemon::start(&through_proxy, &db);
    assert!(daemon.say("alice", "/rollback app:v2 still broken").0);
    assert!(daemon.click("bob", "approve:rb-2").0);
    daemon.wait_for("failure", |text| text.contains("rb-2 FAILED"));
    assert!(daemon.channel_text("bob").contains("may still land"));
    assert!(daemon.stop());
    let deadline = Instant::now() + Duration::from_secs(15);
    while digest_of(&ci, "latest").as_deref() != Some(v2.digest.as_str()) {
        assert!(Instant::now() < deadline, "the delayed write never landed");
        std::thread::sleep(Duration::from_millis(100));
    }
    let daemon = TestDaemon::start(&config(&ci.registry.host, &db, extra), &db);
    daemon.wait_for("the re-read", |text| {
        text.contains("read the tags of rb-2 again")
            && text.contains(&format!("latest at {}", &v2.digest[..19]))
    });
    assert!(daemon.stop());
}

/// A 504 from a gateway whose backend stores the write later, then 429 on the client's retry:
/// the earlier attempt may still land, so the run is not "nothing changed" (exit 4), the hold
/// stays in progress, and the same command again does not go two builds back.
#[test]
fn a_gateway_timeout_retried_into_a_rate_limit_is_still_an_uncertain_write() {
    let (ci, [v1, v2, v3]) = published();
    let proxy = Proxy::start(
        &ci.registry.host,
        vec![Rule::GatewayTimeoutThenRateLimited {
            tag: "latest".into(),
            lands_after: Duration::from_millis(1500),
            seen: Arc::new(AtomicUsize::new(0)),
        }],
    );
    let run = through(&ci, &proxy, "").run(&[
        "rollback",
        &ci.image(),
        "--tag",
        "latest",
        "--yes",
        "--json",
        "--reason",
        "v3 crashes",
    ]);
    let first_code = run.code;
    let first_report = run.json();
    let hold_after_run = hold(&ci)["state"].clone();

    let deadline = Instant::now() + Duration::from_secs(15);
    while digest_of(&ci, "latest").as_deref() != Some(v2.digest.as_str()) {
        assert!(Instant::now() < deadline, "the delayed write never landed");
        std::thread::sleep(Duration::from_millis(100));
    }
    let gate = ci.cli.run(&["gate", &ci.image()]).code;

    // The operator was told nothing changed; they run the same command again.
    let again = ci.cli.run(&[
        "rollback",
        &ci.image(),
        "--tag",
        "latest",
        "--yes",
        "--json",
    ]);
    let facts = format!(
        "first run: exit {first_code}, outcome {}, latest status {}, error {}\nhold after the run: {hold_after_run}\ngate after the write landed: exit {gate}\nre-run: exit {}, target {} (v1 = {}, v2 = {}, v3 = {})\nlatest now: {:?}",
        first_report["outcome"],
        first_report["tags"][0]["status"],
        first_report["error"],
        again.code,
        again.json()["target"]["digest"],
        v1.digest,
        v2.digest,
        v3.digest,
        digest_of(&ci, "latest"),
    );
    assert_eq!(
        first_code, 4,
        "an uncertain write is never 'nothing changed'\n{facts}"
    );
    assert_eq!(hold_after_run, "in_progress", "{facts}");
    assert_eq!(gate, 1, "{facts}");
    assert_ne!(
        digest_of(&ci, "latest").as_deref(),
        Some(v1.digest.as_str()),
        "two builds back\n{facts}"
    );
}

/// kill -9 after the retag, before verification: the restart verifies and writes the `active`
/// hold with the rollback's from-digests, so `/rollback app` (and the CLI) again refuses to go
/// further back.
#[test]
fn a_rollback_finished_by_restart_reconciliation_still_refuses_to_go_further_back() {
    let (ci, [v1, v2, _v3]) = published();
    let db = ci.cli.home.path().join("state/rollbot.db");
    let slow = "[[images.app.checks]]\nname = \"slow\"\ncommand = [\"sleep\", \"30\"]\ntimeout = \"60s\"\n";
    let first = TestDaemon::start(
        &config(&ci.registry.host, &db, "").replace("[store]", &format!("{slow}\n[store]")),
        &db,
    );
    assert!(first.say("alice", "/rollback app").0);
    assert!(first.click("bob", "approve:rb-1").0);
    first.wait_for("the slow check", |text| text.contains("✓ verify"));
    first.crash();
    assert_eq!(
        digest_of(&ci, "latest").as_deref(),
        Some(v2.digest.as_str())
    );
    assert_eq!(
        hold(&ci)["from"][0]["tag"],
        "latest",
        "the in_progress hold records it"
    );

    let second = TestDaemon::start(&config(&ci.registry.host, &db, ""), &db);
    second.wait_for("reconciled success", |text| text.contains("rb-1 done."));
    let recorded = hold(&ci);

    let (ok, reply) = second.say("alice", "/rollback app");
    let cli = ci
        .cli
        .run(&["rollback", &ci.image(), "--dry-run", "--json"]);
    let facts = format!(
        "hold after the restart: state {} from {}\nchat: ok={ok} {reply}\nCLI dry run: exit {} target {} (v1 = {})",
        recorded["state"],
        recorded["from"],
        cli.code,
        cli.json()["target"]["digest"],
        v1.digest
    );
    assert_eq!(recorded["state"], "active", "{facts}");
    assert!(!ok && reply.contains("already points at"), "{facts}");
    assert_eq!(cli.code, 3, "{facts}");
}

/// The compare-and-swap read of the first tag happens before the `in_progress` hold is written:
/// when that write takes longer than `MAX_READ_AGE` (here 1.5 s), the tag is read again right
/// before its own write, so a push that landed meanwhile stops the retag instead of being
/// overwritten.
#[test]
fn a_push_during_the_intent_hold_write_stops_the_retag() {
    let (ci, [v1, _v2, _v3]) = published();
    let proxy = Proxy::start(
        &ci.registry.host,
        vec![Rule::DelayPutTag {
            tag: "rollbot-hold".into(),
            before: Duration::from_millis(1500),
            after: Duration::ZERO,
        }],
    );
    let cli = through(&ci, &proxy, "");
    let image = ci.image();
    let runner = std::thread::spawn(move || {
        let run = cli.run(&[
            "rollback", &image, "--to", "v2", "--tag", "latest", "--yes", "--json",
        ]);
        (run.code, run.json())
    });
    let deadline = Instant::now() + Duration::from_secs(10);
    while !proxy
        .seen()
        .iter()
        .any(|r| r.starts_with("PUT ") && r.ends_with("/manifests/rollbot-hold"))
    {
        assert!(Instant::now() < deadline, "the hold write never started");
        std::thread::sleep(Duration::from_millis(10));
    }
    // CI (or another operator) moves latest while rollbot writes its hold.
    block_on(ci.seeder.tag(REPO, &v1, "latest"));
    let (code, report) = runner.join().expect("run");
    assert_eq!(
        digest_of(&ci, "latest").as_deref(),
        Some(v1.digest.as_str()),
        "a tag that moved since the compare-and-swap read was overwritten; run exit {code}, report {report}"
    );
}

/// A write that timed out and had not landed 1 s later is `unknown` in the report's tag list
/// (`--json` and the human report), never `not_moved`: it may land any moment.
#[test]
fn a_write_without_an_answer_is_not_reported_as_not_moved() {
    let (ci, _) = published();
    let proxy = Proxy::start(
        &ci.registry.host,
        vec![Rule::DelayPutTag {
            tag: "latest".into(),
            before: Duration::from_secs(3),
            after: Duration::ZERO,
        }],
    );
    let cli = Cli::new().config(&format!(
        "[registries.\"{}\"]\ninsecure = true\nendpoint = \"{}\"\n[rollback]\nregistry_timeout = \"500ms\"\n",
        ci.registry.host, proxy.host
    ));
    let json = cli.run(&["rollback", &ci.image(), "--to", "v2", "--yes", "--json"]);
    assert_eq!(json.code, 4, "{}", json.stderr);
    assert_ne!(
        json.json()["tags"][0]["status"],
        "not_moved",
        "{}\n{}",
        json.json()["tags"][0],
        json.stderr
    );
}

/// kill -9 while the first tag write is in flight; the restart comes after the approval expired.
/// Reconciliation never says "nothing changed" then: the write may still land (it does) and the
/// `in_progress` hold the run wrote keeps CI stopped.
#[test]
fn a_restart_after_expiry_does_not_say_nothing_changed_while_a_write_may_land() {
    let (ci, [_v1, v2, _v3]) = published();
    let proxy = Proxy::start(
        &ci.registry.host,
        vec![Rule::DelayPutTag {
            tag: "latest".into(),
            before: Duration::from_secs(3),
            after: Duration::ZERO,
        }],
    );
    let db = ci.cli.home.path().join("state/rollbot.db");
    let toml =
        crate::support::daemon::config_through(&ci.registry.host, Some(&proxy.host), &db, "");
    let first = TestDaemon::start(&toml, &db);
    assert!(first.say("alice", "/rollback app:v2").0);
    assert!(first.click("bob", "approve:rb-1").0);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !proxy
        .seen()
        .iter()
        .any(|r| r.starts_with("PUT ") && r.ends_with("/manifests/latest"))
    {
        assert!(Instant::now() < deadline, "the write never started");
        std::thread::sleep(Duration::from_millis(10));
    }
    first.crash();

    let later = rollbot::engine::Clock::now(&rollbot::engine::SystemClock)
        .plus(Duration::from_secs(15 * 60));
    let second = TestDaemon::start_with_clock(
        &toml,
        &db,
        Arc::new(rollbot::engine::ManualClock::new(later)),
    );
    second.wait_for("reconciled", |text| text.contains("INTERRUPTED"));
    let text = second.channel_text("bob");
    let hold_state = hold(&ci)["state"].clone();
    let deadline = Instant::now() + Duration::from_secs(15);
    while digest_of(&ci, "latest").as_deref() != Some(v2.digest.as_str()) {
        assert!(Instant::now() < deadline, "the delayed write never landed");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        !text.contains("nothing changed"),
        "hold: {hold_state}; latest is now v2; channel:\n{text}"
    );
}

/// After a partial retag of latest+stable, `--tag` subsets never go past the target.
#[test]
fn tag_subsets_after_a_partial_retag_stay_on_the_recorded_target() {
    let (ci, [_v1, v2, v3]) = published();
    block_on(ci.seeder.tag(REPO, &v3, "stable"));
    let proxy = Proxy::start(
        &ci.registry.host,
        vec![Rule::FailPutTag {
            tag: "stable".into(),
            status: 500,
        }],
    );
    let run = through(&ci, &proxy, "").run(&[
        "rollback",
        &ci.image(),
        "--tag",
        "latest",
        "--tag",
        "stable",
        "--yes",
        "--json",
    ]);
    assert_eq!(run.code, 4, "{}", run.stderr);
    let latest_only = ci.cli.run(&[
        "rollback",
        &ci.image(),
        "--tag",
        "latest",
        "--yes",
        "--json",
    ]);
    assert_eq!(latest_only.code, 3, "{}", latest_only.stderr);
    let stable_only = ci.cli.run(&[
        "rollback",
        &ci.image(),
        "--tag",
        "stable",
        "--yes",
        "--json",
    ]);
    assert_eq!(stable_only.code, 0, "{}", stable_only.stderr);
    assert_eq!(stable_only.json()["target"]["digest"], v2.digest.as_str());
    assert_eq!(
        digest_of(&ci, "latest").as_deref(),
        Some(v2.digest.as_str())
    );
    assert_eq!(
        digest_of(&ci, "stable").as_deref(),
        Some(v2.digest.as_str())
    );
}

/// A slow answer in the plan must not make an older read look fresh: the target's GET is held
/// 1.5 s here, the HEAD of `latest` sent with it is answered at once, so by the write that read
/// is far older than `MAX_READ_AGE`; `latest` is read again first, and a push that landed
/// meanwhile stops the rollback instead of being overwritten.
#[test]
fn a_slow_answer_in_the_plan_does_not_make_an_older_read_look_fresh() {
    let (ci, [v1, v2, _v3]) = published();
    let proxy = Proxy::start(
        &ci.registry.host,
        vec![Rule::DelayFirstAnswer {
            method: "GET",
            suffix: v2.digest.clone(),
            delay: Duration::from_millis(1500),
            used: std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false)),
        }],
    );
    let cli = through(&ci, &proxy, "");
    let (image, target) = (ci.image(), v2.digest.clone());
    let runner = std::thread::spawn(move || {
        let run = cli.run(&[
            "rollback",
            &image,
            "--to",
            &target,
            "--tag",
            "latest",
            "--yes",
            "--no-hold",
            "--json",
        ]);
        (run.code, run.json())
    });
    let deadline = Instant::now() + Duration::from_secs(10);
    while !proxy
        .seen()
        .iter()
        .any(|r| r.starts_with("HEAD ") && r.ends_with("/manifests/latest"))
    {
        assert!(Instant::now() < deadline, "the plan never read latest");
        std::thread::sleep(Duration::from_millis(10));
    }
    // Its answer is back; CI pushes while the plan still waits for the target.
    std::thread::sleep(Duration::from_millis(300));
    block_on(ci.seeder.tag(REPO, &v1, "latest"));
    let (code, report) = runner.join().expect("run");
    assert_eq!(
        digest_of(&ci, "latest").as_deref(),
        Some(v1.digest.as_str()),
        "a push after the plan's read of latest was overwritten; exit {code}, report {report}"
    );
    assert_ne!(code, 0, "{report}");
}
