//! Break-glass tells people too: `rollbot rollback` from the command line announces like the
//! daemon (GitHub Discussion, Docker Hub banner) when they are configured; a failure to announce
//! is a warning and the exit code stays about the registry; `--no-announce` and `--dry-run`
//! announce nothing.

use crate::notify::{World, OWNER_TEXT};
use crate::support::block_on;
use crate::support::Cli;

/// The world's config as the command line's, and v2's digest.
fn cli(world: &World) -> (Cli, String) {
    let v2 = block_on(world.ci.seeder.digest_of("acme/app", "v2")).expect("v2");
    (Cli::new().config(&world.toml), v2)
}

#[test]
fn a_command_line_rollback_is_announced_like_the_daemons() {
    let world = World::new(OWNER_TEXT, 4);
    let (cli, v2) = cli(&world);
    let run = cli.run(&[
        "rollback",
        "app",
        "--to",
        &v2,
        "--yes",
        "--reason",
        "v3 crashes",
    ]);
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    assert!(
        run.stderr.contains("announced: GitHub Discussion"),
        "{}",
        run.stderr
    );
    let discussions = world.github.discussions();
    assert_eq!(discussions.len(), 1, "{discussions:?}");
    let title = discussions[0]["title"].as_str().unwrap_or_default();
    assert!(
        title.starts_with("Rollback of docker.io/acme/app to sha256:") && title.contains("(cli-"),
        "{title}"
    );
    let body = discussions[0]["body"].as_str().unwrap_or_default();
    assert!(body.contains("v3 crashes"), "{body}");
    let description = world.hub.description("acme/app");
    assert!(
        description.starts_with("<!-- rollbot:banner:start cli-"),
        "{description}"
    );
    assert!(
        description.ends_with(OWNER_TEXT),
        "the owner's text is kept"
    );
    assert!(
        description.contains(discussions[0]["url"].as_str().unwrap_or("no url")),
        "the banner links the Discussion: {description}"
    );
    assert!(
        world.github.invalid().is_empty(),
        "{:?}",
        world.github.invalid()
    );
}

#[test]
fn no_announce_and_dry_run_announce_nothing() {
    let world = World::new(OWNER_TEXT, 4);
    let (cli, v2) = cli(&world);
    let dry = cli.run(&["rollback", "app", "--to", &v2, "--dry-run"]);
    assert_eq!(dry.code, 0, "{}", dry.stderr);
    let run = cli.run(&["rollback", "app", "--to", &v2, "--yes", "--no-announce"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(world.github.discussions().is_empty());
    assert_eq!(world.hub.patches(), 0);
    assert_eq!(world.hub.description("acme/app"), OWNER_TEXT);
    // Already at the target: the registry did not change, nothing to announce.
    let again = cli.run(&["rollback", "app", "--to", &v2, "--yes"]);
    assert_eq!(again.code, 0, "{}", again.stderr);
    assert!(world.github.discussions().is_empty());
}

#[test]
fn a_failure_to_announce_is_a_warning_and_the_exit_code_stays_about_the_registry() {
    let world = World::new(OWNER_TEXT, 4);
    world.github.set_down(true);
    world.hub.set_down(true);
    let (cli, v2) = cli(&world);
    let run = cli.run(&["rollback", "app", "--to", &v2, "--yes", "--json"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(
        run.json()["outcome"],
        "succeeded",
        "stdout stays one JSON report"
    );
    assert!(
        run.stderr
            .contains("warning: the GitHub Discussion was not created"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr
            .contains("warning: the Docker Hub banner of acme/app was not set"),
        "{}",
        run.stderr
    );
    assert_eq!(world.ci.latest().as_deref(), Some(v2.as_str()));
}
