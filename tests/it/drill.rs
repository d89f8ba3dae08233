//! Drills against the real registry: `rollbot drill` rehearses the rollback on a scratch
//! repository and reports every step against the RTO; `/rollback drill` does the same through
//! the two-person flow, labelled DRILL and never announced to GitHub or Docker Hub. Production
//! tags are compared before and after, and every request that reaches the registry is seen by
//! a proxy: nothing is ever written to the production repository.

use serde_json::Value;

use crate::manifests::Ci;
use crate::notify::World;
use crate::support::block_on;
use crate::support::daemon::{config, TestDaemon};
use crate::support::images::Seeder;
use crate::support::proxy::{Proxy, Rule};
use crate::support::registry::TestRegistry;
use crate::support::services::wait_until;
use crate::support::Cli;

const REPO: &str = "acme/app";
const SCRATCH: &str = "acme/app-rollbot-drill";

/// Every tag of the production repository and the digest it points at.
fn production_tags(seeder: &Seeder) -> Vec<(String, Option<String>)> {
    block_on(async {
        let mut tags = Vec::new();
        for tag in ["latest", "v1", "v2", "v3", "rollbot-hold"] {
            tags.push((tag.to_owned(), seeder.digest_of(REPO, tag).await));
        }
        tags
    })
}

/// Requests that could change the production repository (anything but GET and HEAD under
/// `/v2/acme/app/`).
fn production_writes(proxy: &Proxy) -> Vec<String> {
    proxy
        .seen()
        .into_iter()
        .filter(|line| {
            !(line.starts_with("GET ") || line.starts_with("HEAD "))
                && line.contains(&format!("/v2/{REPO}/"))
        })
        .collect()
}

/// The scratch repository's tags (none when the registry no longer knows the repository).
fn scratch_tags(registry: &TestRegistry) -> Vec<String> {
    block_on(async {
        let url = format!("http://{}/v2/{SCRATCH}/tags/list", registry.host);
        let response = reqwest::get(url).await.expect("tags list");
        let body: Value = response.json().await.unwrap_or(Value::Null);
        body["tags"]
            .as_array()
            .map(|tags| {
                tags.iter()
                    .filter_map(|t| t.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    })
}

/// A CLI configured for `registry`, reached through `proxy`, with `extra` config.
fn cli_through(registry: &TestRegistry, proxy: &Proxy, extra: &str) -> Cli {
    Cli::new().config(&format!(
        "[registries.\"{}\"]\ninsecure = true\nendpoint = \"{}\"\n\n[images.app]\nimage = \"{}/{REPO}\"\n{extra}\n",
        registry.host, proxy.host, registry.host
    ))
}

fn step_names(report: &Value) -> Vec<String> {
    report["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .map(|s| {
            assert!(s["ms"].is_u64(), "every step has its time: {s}");
            s["name"].as_str().expect("name").to_owned()
        })
        .collect()
}

#[test]
fn a_cli_drill_rehearses_on_the_scratch_repository_reports_each_step_and_cleans_up() {
    let ci = Ci::new();
    for version in ["v1", "v2", "v3"] {
        ci.build(version);
    }
    let v2 = block_on(ci.seeder.digest_of(REPO, "v2")).expect("v2");
    let before = production_tags(&ci.seeder);
    let proxy = Proxy::start(&ci.registry.host, Vec::new());
    let state = ci.cli.home.path().join("state.db");
    block_on(rollbot::store::Store::open(&state)).expect("the daemon's database");
    let cli = cli_through(
        &ci.registry,
        &proxy,
        &format!("[store]\npath = \"{}\"\n", state.display()),
    );

    let run = cli.run(&[
        "drill",
        "app",
        "--json",
        "--by",
        "alice",
        "--reason",
        "quarterly",
    ]);

    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    let report = run.json();
    assert_eq!(report["outcome"], "succeeded", "{report}");
    assert_eq!(report["exit_code"], 0);
    assert!(report["total_ms"].is_u64(), "{report}");
    assert_eq!(report["rto_ms"], 15 * 60 * 1000);
    assert_eq!(report["within_rto"], true);
    assert_eq!(
        report["target"],
        v2.as_str(),
        "the target a rollback chooses"
    );
    assert_eq!(
        report["scratch"],
        format!("{}/{SCRATCH}", ci.registry.host).as_str()
    );
    assert_eq!(
        step_names(&report),
        ["prepare", "plan", "retag", "verify", "hold", "release", "cleanup"]
    );
    assert!(
        report["steps"]
            .as_array()
            .expect("steps")
            .iter()
            .all(|s| s["ok"] == true),
        "{report}"
    );
    let prepare = report["steps"][0]["detail"].as_str().expect("detail");
    assert!(prepare.contains("0 copied"), "blobs are mounted: {prepare}");
    // The rehearsed rollback moved the scratch repository's tags, not production's.
    let rollback = &report["rollback"];
    assert_eq!(rollback["image"], report["scratch"]);
    assert_eq!(rollback["tags"][0]["status"], "moved");
    assert_eq!(rollback["tags"][0]["now"], v2.as_str());
    assert!(rollback["registry"]["requests"]["blob_mount"].as_u64() > Some(0));

    // Production is exactly as before, and nothing was written to it.
    assert_eq!(production_tags(&ci.seeder), before);
    assert_eq!(production_writes(&proxy), Vec::<String>::new());
    assert!(
        proxy
            .seen()
            .iter()
            .any(|line| line.starts_with("PUT ") && line.contains(&format!("/v2/{SCRATCH}/"))),
        "the rehearsal wrote to the scratch repository"
    );

    // The scratch repository is clean again.
    assert_eq!(report["cleanup"]["refused"], Value::Null, "{report}");
    assert_eq!(report["cleanup"]["left"], serde_json::json!([]));
    // Two builds (an index and two platforms each), the last and the released hold record.
    assert_eq!(
        report["cleanup"]["deleted"].as_array().map(Vec::len),
        Some(8),
        "{report}"
    );
    assert_eq!(scratch_tags(&ci.registry), Vec::<String>::new());
    let live = before[0].1.clone().expect("latest");
    for digest in [&v2, &live] {
        assert_eq!(
            block_on(ci.seeder.digest_of(SCRATCH, digest)),
            None,
            "{digest}"
        );
    }

    // The drill is in the daemon's audit log, as a drill.
    let audit = cli.run(&["audit", "--json"]);
    assert_eq!(audit.code, 0, "{}", audit.stderr);
    let entries: Vec<Value> = audit
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("json"))
        .collect();
    assert_eq!(entries.len(), 1, "{entries:?}");
    assert_eq!(entries[0]["kind"], "drill");
    assert_eq!(entries[0]["actor"]["id"], "alice");
    assert_eq!(entries[0]["detail"]["via"], "cli");
    assert_eq!(entries[0]["detail"]["outcome"], "succeeded");
    assert_eq!(entries[0]["detail"]["reason"], "quarterly");

    // A second drill works the same (as text), the scratch repository having been cleaned.
    let again = cli.run(&["drill", "app"]);
    assert_eq!(again.code, 0, "{}\n{}", again.stdout, again.stderr);
    assert!(
        again
            .stdout
            .starts_with("DRILL: rehearsing the rollback of"),
        "{}",
        again.stdout
    );
    for expected in [
        "prepare",
        "release",
        "cleanup",
        "DRILL succeeded",
        "within the RTO",
    ] {
        assert!(
            again.stdout.contains(expected),
            "{expected}: {}",
            again.stdout
        );
    }
    assert_eq!(production_tags(&ci.seeder), before);
    assert_eq!(production_writes(&proxy), Vec::<String>::new());
}

#[test]
fn a_registry_that_will_not_mount_or_delete_gets_copies_and_a_report_of_what_stays() {
    let ci = Ci::with(TestRegistry::start_without_delete());
    for version in ["v1", "v2"] {
        ci.build(version);
    }
    let before = production_tags(&ci.seeder);
    let proxy = Proxy::start(&ci.registry.host, vec![Rule::RefuseMount]);
    let cli = cli_through(&ci.registry, &proxy, "");

    let run = cli.run(&["drill", "app", "--json"]);

    assert_eq!(
        run.code, 0,
        "a refused clean-up does not fail the drill: {}",
        run.stderr
    );
    let report = run.json();
    assert_eq!(report["outcome"], "succeeded", "{report}");
    let prepare = report["steps"][0]["detail"].as_str().expect("detail");
    assert!(prepare.contains(" 0 mounted"), "{prepare}");
    assert!(!prepare.contains(" 0 copied"), "{prepare}");
    let refused = report["cleanup"]["refused"].as_str().expect("refused");
    assert!(
        refused.contains("405") && refused.contains("storage.delete.enabled"),
        "{refused}"
    );
    assert!(!report["cleanup"]["left"]
        .as_array()
        .expect("left")
        .is_empty());
    let cleanup = report["steps"].as_array().expect("steps").last().cloned();
    assert_eq!(
        cleanup.as_ref().map(|s| &s["name"]),
        Some(&Value::from("cleanup"))
    );
    assert_eq!(
        cleanup.as_ref().map(|s| &s["ok"]),
        Some(&Value::from(false))
    );
    assert_eq!(production_tags(&ci.seeder), before);
    assert_eq!(production_writes(&proxy), Vec::<String>::new());

    let text = cli.run(&["drill", "app"]);
    assert_eq!(text.code, 0, "{}", text.stderr);
    assert!(
        text.stdout
            .contains("cleanup: the registry would not delete"),
        "{}",
        text.stdout
    );
}

#[test]
fn a_drill_that_cannot_choose_a_target_or_name_its_scratch_repository_writes_nothing() {
    let ci = Ci::new();
    ci.build("v1");
    let proxy = Proxy::start(&ci.registry.host, Vec::new());
    let cli = cli_through(&ci.registry, &proxy, "");

    // The first build has no previous one: the rollback it rehearses would be refused.
    let run = cli.run(&["drill", "app", "--json"]);
    assert_eq!(run.code, 3, "{}", run.stderr);
    assert_eq!(run.json()["outcome"], "precheck_failed");
    // Unknown aliases and bad images are bad input.
    assert_eq!(cli.run(&["drill", "nope"]).code, 2);
    assert_eq!(cli.run(&["drill", "app", "--tag", "-x"]).code, 2);
    let long = format!("{}/{}", ci.registry.host, "a".repeat(250));
    let unnamed = cli.run(&["drill", &long]);
    assert_eq!(unnamed.code, 2, "{}", unnamed.stderr);
    assert!(
        unnamed.stderr.contains("drill repository"),
        "{}",
        unnamed.stderr
    );
    assert!(
        proxy
            .seen()
            .iter()
            .all(|line| line.starts_with("GET ") || line.starts_with("HEAD ")),
        "{:?}",
        proxy.seen()
    );
    assert_eq!(scratch_tags(&ci.registry), Vec::<String>::new());
}

#[test]
fn a_chat_drill_needs_a_second_person_says_drill_and_never_reaches_github_or_docker_hub() {
    let world = World::new(crate::notify::OWNER_TEXT, 3);
    let seeder = &world.ci.seeder;
    let before = production_tags(seeder);
    let daemon = world.daemon();

    let (ok, reply) = daemon.say("alice", "/rollback drill app quarterly drill");
    assert!(ok, "{reply}");
    assert!(
        reply.starts_with("DRILL rb-1 requested: rehearse the rollback of app (latest) to sha256:"),
        "{reply}"
    );
    daemon.wait_for("the drill's plan", |text| {
        text.contains("DRILL rb-1 of app: waiting for approval") && text.contains("approve:rb-1")
    });
    let (ok, reply) = daemon.click("alice", "approve:rb-1");
    assert!(!ok, "the requester cannot approve: {reply}");
    let (ok, reply) = daemon.click("bob", "approve:rb-1");
    assert!(ok, "{reply}");
    assert_eq!(
        reply,
        "DRILL rb-1 approved; rehearsing on the scratch repository now."
    );
    daemon.wait_for("the drill's end", |text| text.contains("DRILL rb-1 done"));
    assert_eq!(
        daemon.status_header().as_deref(),
        Some("DRILL rb-1 of app: rehearsal succeeded")
    );
    let text = daemon.channel_text("alice");
    for expected in [
        "<@alice>: DRILL rb-1 approved by <@bob>; rehearsing on the scratch repository now.",
        "✓ prepare",
        "✓ retag",
        "✓ hold",
        "✓ release",
        "✓ cleanup",
        "works; rehearsed in",
        "of the 15m RTO budget). Production unchanged.",
        "production is only read",
    ] {
        assert!(text.contains(expected), "missing {expected:?} in {text}");
    }
    assert_eq!(production_tags(seeder), before, "production unchanged");

    // A real rollback afterwards is announced; the drill never was.
    let (ok, reply) = daemon.say("alice", "/rollback app:v2 v3 crashes on start");
    assert!(ok, "{reply}");
    assert!(daemon.click("bob", "approve:rb-2").0);
    daemon.wait_for("the rollback", |text| text.contains("rb-2 done."));
    let discussion = world.github.wait_for_discussion();
    world
        .hub
        .wait_for_description("acme/app", "the banner", |d| d.contains("rb-2"));
    assert_eq!(world.github.discussions().len(), 1, "only the rollback's");
    assert!(
        !discussion.to_string().contains("rb-1"),
        "the drill is not in it: {discussion}"
    );
    assert!(world
        .github
        .comments()
        .iter()
        .all(|c| !c.to_string().contains("rb-1")));
    let description = world.hub.description("acme/app");
    assert!(
        !description.contains("rb-1") && !description.contains("DRILL"),
        "{description}"
    );

    // The audit log has the drill, as one.
    let db = daemon.db.clone();
    assert!(daemon.stop(), "clean shutdown");
    let audit = Cli::new()
        .config(&format!("[store]\npath = \"{}\"\n", db.display()))
        .run(&["audit", "--json"]);
    assert_eq!(audit.code, 0, "{}", audit.stderr);
    let entries: Vec<Value> = audit
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("json"))
        .collect();
    let of_drill = |kind: &str| {
        entries
            .iter()
            .find(|e| e["kind"] == kind && e["rollback"] == 1)
            .unwrap_or_else(|| panic!("no {kind} entry of rb-1: {entries:?}"))
            .clone()
    };
    assert_eq!(of_drill("requested")["detail"]["drill"], true);
    assert_eq!(of_drill("finished")["detail"]["drill"], true);
    let drill = of_drill("drill");
    assert_eq!(drill["detail"]["via"], "chat");
    assert_eq!(drill["detail"]["outcome"], "succeeded");
    assert_eq!(drill["detail"]["cleanup"]["refused"], Value::Null);
    assert!(entries
        .iter()
        .any(|e| e["kind"] == "command"
            && e["detail"]["text"] == "/rollback drill app quarterly drill"));
}

#[test]
fn a_pending_drill_does_not_block_a_real_rollback_and_a_drill_planned_before_it_moved_tags_fails() {
    let ci = Ci::new();
    let builds: Vec<_> = ["v1", "v2", "v3"].iter().map(|v| ci.build(v)).collect();
    let db = ci.cli.home.path().join("state/rollbot.db");
    let daemon = TestDaemon::start(&config(&ci.registry.host, &db, ""), &db);

    let (ok, reply) = daemon.say("alice", "/rollback drill app");
    assert!(ok, "{reply}");
    let (ok, reply) = daemon.say("carol", "/rollback drill app");
    assert!(!ok);
    assert!(
        reply.starts_with("app already has a drill in progress: rb-1"),
        "{reply}"
    );

    // The real rollback goes ahead while the drill waits.
    let (ok, reply) = daemon.say("dave", "/rollback app v3 crashes on start");
    assert!(ok, "a pending drill does not block it: {reply}");
    assert!(
        reply.starts_with("rb-2 requested: roll back app"),
        "{reply}"
    );
    assert!(daemon.click("bob", "approve:rb-2").0);
    daemon.wait_for("the rollback", |text| text.contains("rb-2 done."));
    assert_eq!(ci.latest().as_deref(), Some(builds[1].digest.as_str()));

    // The drill was planned against v3: approved now, it stops before writing anything.
    let (ok, reply) = daemon.click("carol", "approve:rb-1");
    assert!(ok, "{reply}");
    daemon.wait_for("the drill's failure", |text| {
        text.contains("DRILL rb-1 FAILED")
    });
    let text = daemon.channel_text("alice");
    assert!(
        text.contains("moved from") && text.contains("since the drill was planned"),
        "{text}"
    );
    assert_eq!(
        ci.latest().as_deref(),
        Some(builds[1].digest.as_str()),
        "production stays where the real rollback put it"
    );
    assert_eq!(scratch_tags(&ci.registry), Vec::<String>::new());
    let (_, status) = daemon.say("alice", "/rollback status rb-1");
    assert!(
        status.starts_with("DRILL rb-1 app (latest)") && status.contains("failed"),
        "{status}"
    );
    assert!(daemon.stop());
}

#[test]
fn a_drill_left_running_by_a_crash_is_interrupted_without_touching_the_registry() {
    let ci = Ci::new();
    for version in ["v1", "v2", "v3"] {
        ci.build(version);
    }
    let before = production_tags(&ci.seeder);
    let db = ci.cli.home.path().join("state/rollbot.db");
    // The registry hangs on the scratch tag's write, so the drill is running when it crashes.
    let proxy = Proxy::start(
        &ci.registry.host,
        vec![Rule::HangPutTag {
            tag: "latest".to_owned(),
        }],
    );
    let toml =
        crate::support::daemon::config_through(&ci.registry.host, Some(&proxy.host), &db, "");
    let daemon = TestDaemon::start(&toml, &db);
    assert!(daemon.say("alice", "/rollback drill app").0);
    assert!(daemon.click("bob", "approve:rb-1").0);
    daemon.wait_for("the drill running", |text| {
        text.contains("DRILL rb-1 of app: rehearsing")
    });
    let hung = format!("PUT /v2/{SCRATCH}/manifests/latest");
    wait_until("the drill's write of the scratch tag", || {
        proxy.seen().contains(&hung).then_some(())
    });
    daemon.crash();

    proxy.set_rules(Vec::new());
    let seen = proxy.seen().len();
    let daemon = TestDaemon::start(&toml, &db);
    daemon.wait_for("the interruption", |text| {
        text.contains("DRILL rb-1 INTERRUPTED")
    });
    let text = daemon.channel_text("alice");
    assert!(
        text.contains("which is not resumed; production was only read"),
        "{text}"
    );
    assert_eq!(
        proxy.seen()[seen..]
            .iter()
            .filter(|line| line.contains(&format!("/v2/{REPO}/")) || line.contains(SCRATCH))
            .count(),
        0,
        "the restart reads and writes nothing for the drill: {:?}",
        &proxy.seen()[seen..]
    );
    assert_eq!(production_tags(&ci.seeder), before);
    assert!(daemon.stop());
}

/// (review) A `drill_repository` naming another configured image's repository: the drill
/// would point that image's floating tags at this image's build and then delete the manifests
/// (and with them, the tags) it copied there. Refused before anything is read or written.
#[test]
fn a_drill_repository_that_is_another_configured_image_is_refused_and_left_alone() {
    let ci = Ci::new();
    for version in ["v1", "v2"] {
        ci.build(version);
    }
    let web = block_on(ci.seeder.push(
        "acme/web",
        crate::support::images::Kind::OciIndex,
        "w1",
        &["latest"],
    ));
    let proxy = Proxy::start(&ci.registry.host, Vec::new());
    let extra = format!(
        "drill_repository = \"acme/web\"\n\n[images.web]\nimage = \"{}/acme/web\"\n",
        ci.registry.host
    );
    let cli = cli_through(&ci.registry, &proxy, &extra);

    let run = cli.run(&["drill", "app", "--json"]);

    assert_eq!(run.code, 2, "{}\n{}", run.stdout, run.stderr);
    assert!(run.stderr.contains("acme/web"), "{}", run.stderr);
    assert_eq!(
        block_on(ci.seeder.digest_of("acme/web", "latest")),
        Some(web.digest.clone())
    );
    assert!(
        proxy
            .seen()
            .iter()
            .all(|line| line.starts_with("GET ") || line.starts_with("HEAD ")),
        "{:?}",
        proxy.seen()
    );
}

/// (review) What the scratch repository held before the drill (a build under tags of its own,
/// a hold record) is not deleted by the drill's cleanup, whether the drill stopped while
/// preparing or succeeded: the drill deletes only what it wrote.
#[test]
fn a_drill_deletes_only_what_it_wrote_not_what_the_scratch_repository_held_before() {
    let ci = Ci::new();
    for version in ["v1", "v2"] {
        ci.build(version);
    }
    let live = block_on(ci.seeder.digest_of(REPO, "latest")).expect("latest");
    // The live build is in the scratch repository already (copied byte for byte), under tags.
    let host = &ci.registry.host;
    for tag in ["keep", "latest"] {
        let copy = std::process::Command::new("skopeo")
            .args([
                "copy",
                "--quiet",
                "--all",
                "--preserve-digests",
                "--src-tls-verify=false",
                "--dest-tls-verify=false",
                &format!("docker://{host}/{REPO}@{live}"),
                &format!("docker://{host}/{SCRATCH}:{tag}"),
            ])
            .output()
            .expect("skopeo (deploy/dev/test.sh installs it)");
        assert!(copy.status.success(), "{copy:?}");
    }
    let hold = Cli::new()
        .config(&format!("[registries.\"{host}\"]\ninsecure = true\n"))
        .run(&["hold", "set", &format!("{host}/{SCRATCH}"), "--reason", "x"]);
    assert_eq!(hold.code, 0, "{}", hold.stderr);
    let found_hold = block_on(ci.seeder.digest_of(SCRATCH, "rollbot-hold")).expect("hold");

    // Preparing stops at the scratch tag's write, after the builds were copied.
    let refusing = Proxy::start(
        host,
        vec![Rule::FailPutTag {
            tag: "latest".to_owned(),
            status: 403,
        }],
    );
    let stopped = cli_through(&ci.registry, &refusing, "").run(&["drill", "app", "--json"]);
    assert_eq!(stopped.code, 3, "{}\n{}", stopped.stdout, stopped.stderr);
    assert_eq!(
        block_on(ci.seeder.digest_of(SCRATCH, "rollbot-hold")),
        Some(found_hold.clone()),
        "{}",
        stopped.stdout
    );
    assert_eq!(
        block_on(ci.seeder.digest_of(SCRATCH, "keep")),
        Some(live.clone())
    );

    let proxy = Proxy::start(host, Vec::new());
    let run = cli_through(&ci.registry, &proxy, "").run(&["drill", "app", "--json"]);
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    let report = run.json();
    let deleted = report["cleanup"]["deleted"].as_array().expect("deleted");
    assert!(
        !deleted.contains(&Value::from(live.as_str())),
        "the drill did not write {live}: {report}"
    );
    assert_eq!(
        block_on(ci.seeder.digest_of(SCRATCH, "keep")),
        Some(live.clone())
    );
    assert_eq!(production_writes(&refusing), Vec::<String>::new());
    assert_eq!(production_writes(&proxy), Vec::<String>::new());
}
