//! Telling everyone: GitHub Discussions and the Docker Hub banner, through the outbox, against
//! loopback fakes of both services, with the real daemon and registry. The image is named
//! `docker.io/acme/app` and the registry for `docker.io` is pointed at the test registry.

use std::time::{Duration, Instant};

use crate::manifests::Ci;
use crate::support::block_on;
use crate::support::daemon::TestDaemon;
use crate::support::services::{
    wait_until, FakeDockerHub, FakeGitHub, GitHubFailure, HubFailure, HUB_TOKEN, HUB_USER,
};

pub(crate) const OWNER_TEXT: &str =
    "# acme/app\n\nThe app. Pull it with `docker pull acme/app`.\r\nTrailing spaces   \n\n";

/// A registry with v1..v3 published, both fakes, and a config (`toml`) for all of them.
pub(crate) struct World {
    pub(crate) ci: Ci,
    pub(crate) github: FakeGitHub,
    pub(crate) hub: FakeDockerHub,
    pub(crate) db: std::path::PathBuf,
    pub(crate) toml: String,
}

impl World {
    pub(crate) fn new(description: &str, max_attempts: u32) -> World {
        let ci = Ci::docker_io();
        for version in ["v1", "v2", "v3"] {
            ci.build(version);
        }
        let github = FakeGitHub::start();
        let hub = FakeDockerHub::start("acme/app", description);
        let home = ci.cli.home.path();
        std::fs::write(home.join("github-token"), "ghp-test-token\n").expect("token");
        std::fs::write(home.join("hub-token"), HUB_TOKEN).expect("token");
        let db = home.join("state/rollbot.db");
        let toml = format!(
            r#"
[registries."docker.io"]
insecure = true
endpoint = "{registry}"

[images.app]
image = "docker.io/acme/app"
dockerhub = true

[store]
path = "{db}"

[server]
listen = "127.0.0.1:0"

[approvals]
approvers = ["bob"]

[[console.users]]
id = "alice"
name = "Alice"

[[console.users]]
id = "bob"
name = "Bob"

[github]
enabled = true
repository = "acme/app"
category = "Announcements"
token_file = "{github_token}"
api_url = "{github_url}"

[dockerhub]
enabled = true
username = "{HUB_USER}"
token_file = "{hub_token}"
api_url = "{hub_url}"

[notify]
max_attempts = {max_attempts}
retry_base = "100ms"
retry_max = "300ms"
"#,
            registry = ci.registry.host,
            db = db.display(),
            github_token = home.join("github-token").display(),
            github_url = github.url(),
            hub_token = home.join("hub-token").display(),
            hub_url = hub.url(),
        );
        World {
            ci,
            github,
            hub,
            db,
            toml,
        }
    }

    pub(crate) fn daemon(&self) -> TestDaemon {
        TestDaemon::start(&self.toml, &self.db)
    }

    /// Alice asks for v2, Bob approves, the rollback finishes.
    fn roll_back(&self, daemon: &TestDaemon, id: &str) {
        let (ok, reply) = daemon.say("alice", "/rollback app:v2 v3 crashes on start");
        assert!(ok, "{reply}");
        assert!(daemon.click("bob", &format!("approve:{id}")).0);
        daemon.wait_for("the rollback", |text| text.contains(&format!("{id} done.")));
    }
}

/// The label of the banner on top of `description` (`rb-1 0123456789abcdef`): the rollback and
/// 16 hex digits of the banner's hash.
fn banner_label(description: &str) -> String {
    let label = description
        .strip_prefix("<!-- rollbot:banner:start ")
        .and_then(|rest| rest.split_once(" -->"))
        .map(|(label, _)| label.to_owned())
        .unwrap_or_else(|| panic!("no banner on top: {description}"));
    let hash = label
        .rsplit_once(' ')
        .map(|(_, hash)| hash)
        .unwrap_or_default();
    assert!(
        hash.len() == 16 && hash.bytes().all(|b| b.is_ascii_hexdigit()),
        "{label}"
    );
    label
}

#[test]
fn one_discussion_per_rollback_then_comments_and_the_url_in_the_chat_thread() {
    let world = World::new(OWNER_TEXT, 4);
    let daemon = world.daemon();
    world.roll_back(&daemon, "rb-1");
    let discussion = world.github.wait_for_discussion();
    let title = discussion["title"].as_str().unwrap_or_default();
    assert!(
        title.starts_with("Rollback of docker.io/acme/app to sha256:") && title.ends_with("(rb-1)"),
        "{discussion}"
    );
    assert_eq!(discussion["categoryId"], "DIC_kwDOAnnounce");
    let body = discussion["body"].as_str().unwrap_or_default();
    assert!(
        body.contains("because: v3 crashes on start")
            && body.contains("skopeo copy --all --preserve-digests"),
        "{body}"
    );
    let comments = world.github.wait_for_comments(1);
    assert!(
        comments[0]["body"]
            .as_str()
            .unwrap_or_default()
            .starts_with("**Done.**"),
        "{comments:?}"
    );
    assert_eq!(comments[0]["discussionId"], discussion["id"]);
    daemon.wait_for("the Discussion's URL in the thread", |text| {
        text.contains("GitHub Discussion: https://github.com/acme/app/discussions/1")
    });

    // Releasing the hold is one more comment on the same Discussion.
    let (ok, reply) = daemon.say("bob", "/rollback release app fixed in v4");
    assert!(ok, "{reply}");
    let comments = world.github.wait_for_comments(2);
    assert!(
        comments[1]["body"]
            .as_str()
            .unwrap_or_default()
            .contains("**Hold released** by Bob: fixed in v4"),
        "{comments:?}"
    );
    assert_eq!(world.github.discussions().len(), 1, "created once");
    assert!(
        world.github.invalid().is_empty(),
        "every GraphQL document validated: {:?}",
        world.github.invalid()
    );
}

#[test]
fn the_docker_hub_banner_goes_on_is_replaced_and_comes_off_leaving_the_owners_text() {
    let world = World::new(OWNER_TEXT, 4);
    let daemon = world.daemon();
    world.roll_back(&daemon, "rb-1");
    let with = world
        .hub
        .wait_for_description("acme/app", "the banner", |d| {
            d.contains("rollbot:banner:start")
        });
    let label = banner_label(&with);
    assert!(
        label.starts_with("rb-1 "),
        "the start marker names the rollback: {with}"
    );
    assert!(
        with.starts_with(&format!(
            "<!-- rollbot:banner:start {label} -->\n> ⚠️ **Rolled back:** `latest` now points at `sha256:"
        )),
        "{with}"
    );
    assert!(
        with.contains(&format!(
            "\n<!-- rollbot:banner:end {label} -->\n\n{OWNER_TEXT}"
        )),
        "{with}"
    );
    assert!(
        with.ends_with(OWNER_TEXT),
        "the owner's text follows, byte for byte"
    );

    // A second rollback replaces the banner rather than stacking another.
    let (ok, reply) = daemon.say("alice", "/rollback app:v1 v2 is slow too");
    assert!(ok, "{reply}");
    assert!(daemon.click("bob", "approve:rb-2").0);
    daemon.wait_for("the second rollback", |text| text.contains("rb-2 done."));
    let replaced = world
        .hub
        .wait_for_description("acme/app", "the new banner", |d| {
            d.contains("v2 is slow too")
        });
    assert_eq!(
        replaced.matches("rollbot:banner:start").count(),
        1,
        "{replaced}"
    );
    assert!(replaced.ends_with(OWNER_TEXT));

    let (ok, reply) = daemon.say("bob", "/rollback release app");
    assert!(ok, "{reply}");
    let after = world
        .hub
        .wait_for_description("acme/app", "the banner removed", |d| {
            !d.contains("rollbot:banner")
        });
    assert_eq!(after, OWNER_TEXT, "exactly the owner's text again");
}

#[test]
fn the_25000_byte_limit_shortens_the_banner_and_never_cuts_the_owners_text() {
    // Room for the short banner only.
    let owner = format!("{}\n", "x".repeat(24_750));
    let world = World::new(&owner, 4);
    let daemon = world.daemon();
    world.roll_back(&daemon, "rb-1");
    let with = world
        .hub
        .wait_for_description("acme/app", "the short banner", |d| {
            d.contains("rollbot:banner:start")
        });
    assert!(with.len() <= 25_000, "{} bytes", with.len());
    assert!(
        with.contains("> ⚠️ **Rolled back** to `sha256:"),
        "the short form"
    );
    assert!(with.ends_with(&owner));
    drop(daemon);

    // No room at all: nothing is written, and the chat thread says why.
    let owner = "y".repeat(24_990);
    let world = World::new(&owner, 4);
    let daemon = world.daemon();
    world.roll_back(&daemon, "rb-1");
    daemon.wait_for("the failure notice", |text| {
        text.contains("rollbot could not put the banner on the Docker Hub description")
            && text.contains("without cutting the owner's text")
    });
    assert_eq!(world.hub.description("acme/app"), owner);
    assert_eq!(world.hub.patches(), 0);
    let (_, metrics) = daemon.get("/metrics");
    assert!(
        metrics.contains("rollbot_notification_failures_total{sink=\"dockerhub\"} 1"),
        "{metrics}"
    );
}

#[test]
fn docker_hub_429_is_retried_after_its_time_and_403_names_the_scope() {
    let world = World::new(OWNER_TEXT, 4);
    world.hub.fail_next_patch(HubFailure::RateLimited);
    let daemon = world.daemon();
    let started = Instant::now();
    world.roll_back(&daemon, "rb-1");
    world
        .hub
        .wait_for_description("acme/app", "the banner after the 429", |d| {
            d.contains("rollbot:banner:start")
        });
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "waited for X-Retry-After"
    );

    world.hub.fail_next_patch(HubFailure::Status(403));
    let (ok, _) = daemon.say("bob", "/rollback release app");
    assert!(ok);
    daemon.wait_for("the 403 notice", |text| {
        text.contains("Read, Write, Delete scope")
    });
    assert!(
        world
            .hub
            .description("acme/app")
            .contains("rollbot:banner:start"),
        "nothing changed on a 403"
    );
}

#[test]
fn a_slow_github_does_not_hold_up_the_banner_which_gets_the_discussions_link_once_it_exists() {
    let world = World::new(OWNER_TEXT, 4);
    let hold = world.github.hold_next("RollbotAnnounce");
    let daemon = world.daemon();
    world.roll_back(&daemon, "rb-1");
    hold.wait_until_arrived("the Discussion's creation");
    let with = world
        .hub
        .wait_for_description("acme/app", "the banner", |d| {
            d.contains("rollbot:banner:start")
        });
    // GitHub has not answered the one call it got, and rollbot is still waiting for it.
    assert!(
        hold.open(),
        "the banner came while the Discussion's creation was in flight"
    );
    assert!(world.github.discussions().is_empty());
    assert_eq!(world.github.requests("RollbotAnnounce"), 0, "still held");
    assert!(
        with.contains("New images are held until the problem is fixed."),
        "no link yet: {with}"
    );

    hold.release();
    world.github.wait_for_discussion();
    let linked = world
        .hub
        .wait_for_description("acme/app", "the banner with the link", |d| {
            d.contains("Details and updates: https://github.com/acme/app/discussions/1")
        });
    assert!(banner_label(&linked).starts_with("rb-1 "), "{linked}");
    assert_eq!(linked.matches("rollbot:banner:start").count(), 1);
    assert!(linked.ends_with(OWNER_TEXT), "{linked}");
    assert_eq!(world.github.requests("RollbotAnnounce"), 1);

    // Released: the banner comes off, and a late link update does not bring it back.
    let (ok, reply) = daemon.say("bob", "/rollback release app");
    assert!(ok, "{reply}");
    world
        .hub
        .wait_for_description("acme/app", "the banner removed", |d| d == OWNER_TEXT);
}

#[test]
fn a_discussion_created_after_the_release_does_not_bring_the_banner_back() {
    let world = World::new(OWNER_TEXT, 4);
    let hold = world.github.hold_next("RollbotAnnounce");
    let daemon = world.daemon();
    world.roll_back(&daemon, "rb-1");
    hold.wait_until_arrived("the Discussion's creation");
    world
        .hub
        .wait_for_description("acme/app", "the banner", |d| {
            d.contains("rollbot:banner:start")
        });
    let (ok, reply) = daemon.say("bob", "/rollback release app");
    assert!(ok, "{reply}");
    world
        .hub
        .wait_for_description("acme/app", "the banner removed", |d| d == OWNER_TEXT);

    hold.release();
    world.github.wait_for_discussion();
    let store = block_on(rollbot::store::Store::open(&world.db)).expect("store");
    wait_until("the link update to be done", || {
        let status = block_on(store.delivery_status("dockerhub:link:rb-1")).expect("status");
        (status.as_deref() == Some("done")).then_some(())
    });
    assert_eq!(world.hub.description("acme/app"), OWNER_TEXT);
}

#[test]
fn reasons_and_names_cannot_corrupt_the_description_or_mention_anyone_on_github() {
    let world = World::new(OWNER_TEXT, 4);
    let daemon = world.daemon();
    let reason =
        "x <!-- rollbot:banner:end --> y --!> @alice @acme/sre #1 GH-2 acme/app#3\n```\n| z |";
    let (ok, reply) = daemon.say("alice", &format!("/rollback app:v2 {reason}"));
    assert!(ok, "{reply}");
    assert!(daemon.click("bob", "approve:rb-1").0);
    daemon.wait_for("the rollback", |text| text.contains("rb-1 done."));
    let with = world
        .hub
        .wait_for_description("acme/app", "the banner", |d| {
            d.contains("rollbot:banner:start")
        });
    let label = banner_label(&with);
    assert_eq!(
        with.matches("<!--").count(),
        2,
        "only rollbot's two markers open comments: {with}"
    );
    assert_eq!(with.matches("-->").count(), 2, "{with}");
    assert!(!with.contains("--!>"), "{with}");
    assert!(
        with.contains(&format!(
            "\n<!-- rollbot:banner:end {label} -->\n\n{OWNER_TEXT}"
        )),
        "{with}"
    );

    let z = '\u{200B}';
    let discussion = world.github.wait_for_discussion();
    let comments = world.github.wait_for_comments(1);
    for text in [
        discussion["body"].as_str().unwrap_or_default(),
        comments[0]["body"].as_str().unwrap_or_default(),
    ] {
        for forbidden in ["<!--", "-->", "@alice", "@acme", "#1", "GH-2", "\n```\n| z"] {
            assert!(!text.contains(forbidden), "{forbidden:?} in {text}");
        }
    }
    let body = discussion["body"].as_str().unwrap_or_default();
    assert!(
        body.contains(&format!("because: x \\<!\\-\\- rollbot:banner:end \\-\\-\\> y \\-\\-!\\> @{z}alice @{z}acme/sre \\#{z}1 GH\\-{z}2 acme/app\\#{z}3 \\`\\`\\` \\| z \\|.")),
        "the reason is there, as text: {body}"
    );

    let (ok, reply) = daemon.say("bob", "/rollback release app");
    assert!(ok, "{reply}");
    let after = world
        .hub
        .wait_for_description("acme/app", "the banner removed", |d| {
            !d.contains("rollbot:banner")
        });
    assert_eq!(after, OWNER_TEXT, "exactly the owner's text again");
}

/// A health check that prints the GitHub token (read from the file rollbot reads it from) and
/// a long line, then fails.
fn leaky_check(world: &World) -> String {
    let home = world.ci.cli.home.path();
    let script = home.join("leaky-check.sh");
    std::fs::write(
        &script,
        format!(
            "echo starting\necho \"token $(cat {}) @alice $(printf '%0600d' 0)\" >&2\nexit 1\n",
            home.join("github-token").display()
        ),
    )
    .expect("script");
    world.toml.replace(
        "dockerhub = true\n",
        &format!(
            "dockerhub = true\n\n[[images.app.checks]]\nname = \"smoke\"\ncommand = [\"sh\", \"{}\"]\n",
            script.display()
        ),
    )
}

#[test]
fn failed_check_output_is_cut_redacted_and_kept_out_of_the_discussion() {
    let world = World::new(OWNER_TEXT, 4);
    let toml = leaky_check(&world);
    let daemon = TestDaemon::start(&toml, &world.db);
    let (ok, reply) = daemon.say("alice", "/rollback app:v2 v3 crashes on start");
    assert!(ok, "{reply}");
    assert!(daemon.click("bob", "approve:rb-1").0);
    daemon.wait_for("the failure", |text| text.contains("rb-1 FAILED"));
    let chat = daemon.channel_text("bob");
    assert!(
        chat.contains("check 'smoke' failed: 'sh' exited 1: token [redacted] @alice 0000"),
        "{chat}"
    );
    assert!(chat.contains("… (cut, "), "{chat}");
    assert!(!chat.contains("ghp-test-token"), "{chat}");

    let comments = world.github.wait_for_comments(1);
    let comment = comments[0]["body"].as_str().unwrap_or_default();
    assert!(
        comment.starts_with("**The rollback failed:** check 'smoke' failed: 'sh' exited 1 (its output is not published here)"),
        "{comment}"
    );
    // As read: markdown's backslash escapes resolved.
    let read = comment.replace('\\', "");
    for leaked in ["ghp-test-token", "token", "[redacted]", "0000", "alice"] {
        assert!(!read.contains(leaked), "{leaked:?} in {comment}");
    }
}

#[test]
fn failed_check_output_reaches_the_discussion_only_when_published_and_still_redacted() {
    let world = World::new(OWNER_TEXT, 4);
    let toml =
        leaky_check(&world).replace("[dockerhub]", "publish_check_output = true\n\n[dockerhub]");
    let daemon = TestDaemon::start(&toml, &world.db);
    let (ok, reply) = daemon.say("alice", "/rollback app:v2 v3 crashes on start");
    assert!(ok, "{reply}");
    assert!(daemon.click("bob", "approve:rb-1").0);
    daemon.wait_for("the failure", |text| text.contains("rb-1 FAILED"));
    let comments = world.github.wait_for_comments(1);
    let comment = comments[0]["body"].as_str().unwrap_or_default();
    let z = '\u{200B}';
    assert!(
        comment.contains(&format!(
            "'sh' exited 1: token \\[redacted\\] @{z}alice 0000"
        )),
        "{comment}"
    );
    assert!(comment.contains("… (cut, "), "{comment}");
    assert!(
        !comment.replace('\\', "").contains("ghp-test-token"),
        "{comment}"
    );
}

#[test]
fn graphql_errors_and_rate_limits_are_retried_and_create_the_discussion_once() {
    let world = World::new(OWNER_TEXT, 4);
    world.github.fail_next(
        "RollbotAnnounce",
        GitHubFailure::Errors("Something went wrong while executing your query"),
    );
    world
        .github
        .fail_next("RollbotAnnounce", GitHubFailure::RateLimited);
    let daemon = world.daemon();
    world.roll_back(&daemon, "rb-1");
    world.github.wait_for_discussion();
    world.github.wait_for_comments(1);
    assert_eq!(world.github.discussions().len(), 1);
    assert!(
        world.github.requests("RollbotAnnounce") >= 3,
        "two failures, then success"
    );
    assert!(
        world.github.invalid().is_empty(),
        "{:?}",
        world.github.invalid()
    );
}

#[test]
fn services_down_for_the_whole_rollback_do_not_delay_it_and_deliver_later_even_across_a_restart() {
    let world = World::new(OWNER_TEXT, 100);
    let daemon = world.daemon();
    world.github.set_down(true);
    world.hub.set_down(true);
    let started = Instant::now();
    world.roll_back(&daemon, "rb-1");
    let rollback_time = started.elapsed();
    assert!(
        rollback_time < Duration::from_secs(5),
        "the rollback did not wait for GitHub or Docker Hub: {rollback_time:?}"
    );
    assert_eq!(
        world.ci.latest().as_deref(),
        crate::support::block_on(world.ci.seeder.digest_of("acme/app", "v2")).as_deref()
    );
    std::thread::sleep(Duration::from_millis(300));
    assert!(world.github.discussions().is_empty());

    // rollbot restarts while both are still down; they come back afterwards.
    assert!(daemon.stop());
    let daemon = world.daemon();
    std::thread::sleep(Duration::from_millis(200));
    world.github.set_down(false);
    world.hub.set_down(false);
    world.github.wait_for_discussion();
    world.github.wait_for_comments(1);
    world
        .hub
        .wait_for_description("acme/app", "the banner", |d| {
            d.contains("rollbot:banner:start")
        });
    assert_eq!(world.github.discussions().len(), 1);
    daemon.wait_for("the URL in the thread", |text| {
        text.contains("GitHub Discussion: https://github.com/acme/app/discussions/1")
    });
}

#[test]
fn your_own_templates_are_used_and_a_broken_one_stops_the_start() {
    let world = World::new(OWNER_TEXT, 4);
    let home = world.ci.cli.home.path();
    let summary = home.join("summary.md");
    std::fs::write(&summary, "<@{{ requester.id }}>: {{ rollback_id }} is {{ state }} — {{ tags | join(\"+\") }} at {{ to_digest_short }}").expect("template");
    let toml = format!(
        "{}\n[templates]\nchat_summary = \"{}\"\n",
        world.toml,
        summary.display()
    );
    let daemon = TestDaemon::start(&toml, &world.db);
    let (ok, reply) = daemon.say("alice", "/rollback app:v2 broken");
    assert!(ok, "{reply}");
    assert!(daemon.click("bob", "approve:rb-1").0);
    daemon.wait_for("the custom summary", |text| {
        text.contains("rb-1 is succeeded — latest at sha256:")
    });
    drop(daemon);

    std::fs::write(&summary, "{{ rollback_id }} {{ requestr.name }}").expect("template");
    let path = world.db.with_extension("toml");
    std::fs::write(&path, &toml).expect("config");
    let settings =
        rollbot::config::load(Some(&path), &std::collections::HashMap::new()).expect("config");
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let error = runtime
        .block_on(rollbot::daemon::start(
            settings,
            rollbot::daemon::DaemonOptions::default(),
        ))
        .expect_err("broken template");
    let text = format!("{error:#}");
    assert!(
        text.contains("templates.chat_summary: undefined value"),
        "{text}"
    );
}

#[test]
fn rollbot_hold_release_from_the_cli_removes_the_banner_too() {
    let world = World::new(OWNER_TEXT, 4);
    let daemon = world.daemon();
    world.roll_back(&daemon, "rb-1");
    world
        .hub
        .wait_for_description("acme/app", "the banner", |d| {
            d.contains("rollbot:banner:start")
        });
    drop(daemon);
    let cli = crate::support::Cli::new().config(&world.toml);
    let run = cli.run(&[
        "hold", "release", "app", "--reason", "fixed", "--by", "carol",
    ]);
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    assert!(
        run.stdout
            .contains("removed the rollback banner from the Docker Hub description of acme/app"),
        "{}",
        run.stdout
    );
    assert_eq!(world.hub.description("acme/app"), OWNER_TEXT);
}

#[test]
fn a_drain_with_a_stuck_delivery_ends_within_the_documented_bound() {
    let world = World::new(OWNER_TEXT, 4);
    let toml = world.toml.replace(
        "listen = \"127.0.0.1:0\"\n",
        "listen = \"127.0.0.1:0\"\nshutdown_grace = \"1s\"\n",
    );
    // GitHub takes the Discussion and never answers: the delivery lane is stuck on it.
    let hold = world.github.hold_next("RollbotAnnounce");
    let daemon = TestDaemon::start(&toml, &world.db);
    world.roll_back(&daemon, "rb-1");
    hold.wait_until_arrived("the Discussion being created");

    let started = std::time::Instant::now();
    let clean = daemon.stop();
    let took = started.elapsed();
    let bound = Duration::from_secs(1) + rollbot::daemon::DRAIN_MARGIN;
    assert!(!clean, "a delivery still running is not a clean drain");
    // The bound is the property under test; the slack only absorbs a slow machine.
    assert!(
        took < bound + Duration::from_secs(5),
        "the drain took {took:?}; the documented bound is {bound:?}"
    );
}

/// A rollback someone finished in the state database while its run went on: rollbot lets it
/// go, says so in the thread, and closes the Discussion announced at the approval with a
/// comment instead of leaving it "rolling back" for ever.
#[test]
fn a_rollback_finished_in_the_database_by_someone_else_gets_a_closing_comment() {
    let world = World::new(OWNER_TEXT, 4);
    let go = world.ci.cli.home.path().join("go");
    // The run waits in its health check until the test has finished the row.
    let toml = world.toml.replace(
        "dockerhub = true\n",
        &format!(
            "dockerhub = true\n\n[[images.app.checks]]\nname = \"wait\"\ncommand = [\"sh\", \"-c\", \"while [ ! -e {} ]; do sleep 0.02; done\"]\ntimeout = \"60s\"\n",
            go.display()
        ),
    );
    let daemon = TestDaemon::start(&toml, &world.db);
    let (ok, reply) = daemon.say("alice", "/rollback app:v2 v3 crashes on start");
    assert!(ok, "{reply}");
    assert!(daemon.click("bob", "approve:rb-1").0);
    world.github.wait_for_discussion();
    block_on(async {
        use rollbot::domain::rollback::{RollbackId, State};
        let store = rollbot::store::Store::open(&world.db).await.expect("store");
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut record = loop {
            let record = store.get(RollbackId(1)).await.expect("readable");
            if let Some(record) = record.filter(|r| r.state == State::Verifying) {
                break record;
            }
            assert!(Instant::now() < deadline, "never verifying");
            tokio::time::sleep(Duration::from_millis(10)).await;
        };
        record.state = State::Cancelled;
        record.error = Some("cancelled by an operator".to_owned());
        store.save(&record, &[]).await.expect("finished by hand");
    });
    std::fs::write(&go, "").expect("go");

    daemon.wait_for("the notice", |text| {
        text.contains("rb-1 is cancelled in the state database")
    });
    let comments = world.github.wait_for_comments(1);
    let body = comments[0]["body"].as_str().unwrap_or_default();
    assert!(
        body.starts_with("**Finished outside rollbot:** the rollback is cancelled")
            && body.contains("Check where latest points"),
        "{body}"
    );
    assert!(
        world.hub.description("acme/app") == OWNER_TEXT,
        "no banner for a rollback rollbot did not finish"
    );
}
