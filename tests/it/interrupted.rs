//! A rollback that stops part-way (a failed or timed-out write, a write that lands late): the
//! report says where every tag really is and how to finish; running the same command again
//! finishes the same rollback and never moves a tag further back; chat does the same.

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
    assert_eq!(report["tags"][1]["status"], "not_moved");
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
