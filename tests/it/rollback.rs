//! `rollbot rollback` and `rollbot verify`, the built binary end to end, against a real registry.

use crate::support::images::{sha256, Kind, Pushed, Seeder};
use crate::support::proxy::{Proxy, Rule};
use crate::support::registry::{free_port, TestRegistry, PASSWORD, USER};
use crate::support::{block_on, Cli};

const REPO: &str = "acme/app";

/// A registry with v1, v2, v3 of acme/app; `latest` and `stable` point at v3 (the bad one).
pub struct World {
    pub registry: TestRegistry,
    pub seeder: Seeder,
    pub v1: Pushed,
    pub v2: Pushed,
    pub v3: Pushed,
}

impl World {
    pub fn new(kind: Kind) -> World {
        let registry = TestRegistry::start();
        let seeder = Seeder::new(&registry.host);
        let (v1, v2, v3) = block_on(async {
            let v1 = seeder.push(REPO, kind, "v1", &["v1"]).await;
            let v2 = seeder.push(REPO, kind, "v2", &["v2"]).await;
            let v3 = seeder
                .push(REPO, kind, "v3", &["v3", "latest", "stable"])
                .await;
            (v1, v2, v3)
        });
        World {
            registry,
            seeder,
            v1,
            v2,
            v3,
        }
    }

    pub fn image(&self) -> String {
        format!("{}/{REPO}", self.registry.host)
    }

    pub fn digest_of(&self, tag: &str) -> Option<String> {
        block_on(self.seeder.digest_of(REPO, tag))
    }

    /// Nothing was written: both floating tags still on v3.
    pub fn assert_unchanged(&self) {
        assert_eq!(
            self.digest_of("latest").as_deref(),
            Some(self.v3.digest.as_str())
        );
        assert_eq!(
            self.digest_of("stable").as_deref(),
            Some(self.v3.digest.as_str())
        );
    }
}

#[test]
fn rollback_keeps_every_manifest_kind_byte_for_byte_with_one_manifest_get() {
    for kind in [Kind::OciIndex, Kind::DockerSchema2, Kind::DockerList] {
        let world = World::new(kind);
        let run = Cli::new().run(&[
            "rollback",
            &world.image(),
            "--to",
            "v2",
            "--yes",
            "--insecure",
            "--json",
        ]);
        assert_eq!(run.code, 0, "{kind:?}\n{}\n{}", run.stdout, run.stderr);
        let report = run.json();
        assert_eq!(report["outcome"], "succeeded", "{kind:?}");
        assert_eq!(report["exit_code"], 0);
        assert_eq!(report["target"]["digest"], world.v2.digest.as_str());
        assert_eq!(report["tags"][0]["status"], "moved");
        assert_eq!(
            report["registry"]["requests"]["manifest_get"], 1,
            "{kind:?}: one GET only"
        );
        // The tag, and the hold that keeps CI from undoing the rollback: written "in progress"
        // before the tag moves (so a run that stops part-way leaves its target on record), and
        // "active" while verifying. This repository has no rollbot artifact yet, so the first
        // hold PUT is refused until the empty blob it names is uploaded: one PUT more.
        assert_eq!(report["registry"]["requests"]["manifest_put"], 4);
        assert_eq!(report["registry"]["requests"]["blob_upload"], 2);

        block_on(async {
            let (bytes, content_type) = world.seeder.get_raw(REPO, "latest").await;
            assert_eq!(
                sha256(&bytes),
                world.v2.digest,
                "{kind:?}: latest hashes to the target"
            );
            assert_eq!(bytes, world.v2.bytes, "{kind:?}: exact bytes");
            assert_eq!(
                content_type, world.v2.media_type,
                "{kind:?}: still the same kind"
            );
            // Every platform still resolves through latest's index.
            let index: serde_json::Value = serde_json::from_slice(&bytes).expect("json");
            let children: Vec<String> = index["manifests"]
                .as_array()
                .map(|m| {
                    m.iter()
                        .map(|c| c["digest"].as_str().expect("digest").to_owned())
                        .collect()
                })
                .unwrap_or_default();
            let expected: Vec<String> = world.v2.children.iter().map(|(_, d)| d.clone()).collect();
            assert_eq!(children, expected, "{kind:?}");
            for child in &children {
                let (child_bytes, _) = world.seeder.get_raw(REPO, child).await;
                assert_eq!(&sha256(&child_bytes), child);
            }
            assert_eq!(
                world.seeder.digest_of(REPO, "v3").await.as_deref(),
                Some(world.v3.digest.as_str())
            );
            assert_eq!(
                world.seeder.digest_of(REPO, "stable").await.as_deref(),
                Some(world.v3.digest.as_str()),
                "only the named tag moves"
            );
        });
    }
}

#[test]
fn rollback_prints_the_plan_each_step_and_the_rto_budget() {
    let world = World::new(Kind::OciIndex);
    let run = Cli::new().run(&[
        "rollback",
        &world.image(),
        "--to",
        &world.v2.digest,
        "--tag",
        "latest",
        "--tag",
        "stable",
        "--yes",
        "--insecure",
    ]);
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    for expected in [
        "plan ",
        "linux/amd64, linux/arm64",
        &format!("latest  {} -> target", world.v3.digest),
        &format!(
            "target  {} (OCI image index: linux/amd64, linux/arm64)",
            world.v2.digest
        ),
        "moved latest",
        "moved stable",
        "retag ",
        "verify ",
        "rolled back and verified",
        "of the 15m RTO budget",
        "1 manifest GET",
    ] {
        assert!(
            run.stdout.contains(expected),
            "missing {expected:?} in:\n{}",
            run.stdout
        );
    }
    assert_eq!(
        world.digest_of("stable").as_deref(),
        Some(world.v2.digest.as_str())
    );
}

#[test]
fn dry_run_and_already_at_target_write_nothing() {
    let world = World::new(Kind::OciIndex);
    let cli = Cli::new();
    let dry = cli.run(&[
        "rollback",
        &world.image(),
        "--to",
        "v2",
        "--dry-run",
        "--insecure",
        "--json",
    ]);
    assert_eq!(dry.code, 0, "{}", dry.stderr);
    assert_eq!(dry.json()["outcome"], "dry_run");
    assert_eq!(dry.json()["tags"][0]["status"], "planned");
    assert_eq!(dry.json()["registry"]["requests"]["manifest_put"], 0);
    world.assert_unchanged();

    let same = cli.run(&["rollback", &world.image(), "--to", "v3", "--insecure"]);
    assert_eq!(same.code, 0, "{}", same.stderr);
    assert!(same.stdout.contains("already at target"), "{}", same.stdout);
    world.assert_unchanged();
}

#[test]
fn without_yes_and_without_a_terminal_nothing_is_changed() {
    let world = World::new(Kind::OciIndex);
    let run = Cli::new().run(&["rollback", &world.image(), "--to", "v2", "--insecure"]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(run.stderr.contains("pass --yes"), "{}", run.stderr);
    world.assert_unchanged();
}

#[test]
fn a_missing_platform_manifest_stops_before_any_change() {
    let world = World::new(Kind::OciIndex);
    let (platform, child) = world.v2.children[1].clone();
    block_on(world.seeder.delete_manifest(REPO, &child));
    let run = Cli::new().run(&[
        "rollback",
        &world.image(),
        "--to",
        "v2",
        "--yes",
        "--insecure",
        "--json",
    ]);
    assert_eq!(run.code, 3, "{}", run.stderr);
    assert_eq!(run.json()["outcome"], "precheck_failed");
    let errors = run.errors();
    assert_eq!(errors.len(), 1, "{}", run.stderr);
    assert!(
        errors[0].contains("incomplete") && errors[0].contains(&platform),
        "{}",
        errors[0]
    );
    world.assert_unchanged();
}

#[test]
fn bad_inputs_get_one_clear_line_and_change_nothing() {
    let world = World::new(Kind::OciIndex);
    let failing = Proxy::start(&world.registry.host, vec![Rule::FailAll(500)]);
    let closed = format!("127.0.0.1:{}/{REPO}", free_port());
    let image = world.image();
    let unknown_repo = format!("{}/acme/nope", world.registry.host);
    let behind_500 = format!("{}/{REPO}", failing.host);
    let zeros = format!("sha256:{}", "0".repeat(64));
    let cases: Vec<(&str, Vec<&str>, i32, String)> = vec![
        (
            "malformed digest",
            vec![&image, "--to", "sha256:123"],
            2,
            "digest 'sha256:123' is not valid".into(),
        ),
        (
            "unknown tag",
            vec![&image, "--to", "v9"],
            2,
            format!("{image} has no tag 'v9'"),
        ),
        (
            "unknown digest",
            vec![&image, "--to", &zeros],
            2,
            format!("{image} has no manifest {zeros}"),
        ),
        (
            "unknown repository",
            vec![&unknown_repo, "--to", "v2"],
            2,
            format!("repository {unknown_repo} does not exist"),
        ),
        (
            "unknown alias",
            vec!["nope", "--to", "v2"],
            2,
            "unknown image alias 'nope'".into(),
        ),
        (
            "image without host",
            vec!["acme/app", "--to", "v2"],
            2,
            "must be a registry host".into(),
        ),
        (
            "missing floating tag",
            vec![&image, "--to", "v2", "--tag", "lastest"],
            2,
            "has no tag 'lastest'".into(),
        ),
        (
            "registry not listening",
            vec![&closed, "--to", "v2"],
            3,
            "cannot reach registry".into(),
        ),
        (
            "registry answering 500",
            vec![&behind_500, "--to", "v2"],
            3,
            "answered 500".into(),
        ),
    ];
    let cli = Cli::new();
    for (name, args, code, expected) in cases {
        let mut full = vec!["rollback"];
        full.extend(args);
        full.extend(["--yes", "--insecure"]);
        let run = cli.run(&full);
        assert_eq!(run.code, code, "{name}: {}", run.stderr);
        let errors = run.errors();
        assert_eq!(errors.len(), 1, "{name}: one error line:\n{}", run.stderr);
        assert!(
            errors[0].contains(&expected),
            "{name}: {:?} should contain {expected:?}",
            errors[0]
        );
        world.assert_unchanged();
    }
}

#[test]
fn a_write_failing_half_way_reports_where_every_tag_is() {
    let world = World::new(Kind::OciIndex);
    let proxy = Proxy::start(
        &world.registry.host,
        vec![Rule::FailPutTag {
            tag: "stable".into(),
            status: 500,
        }],
    );
    let image = format!("{}/{REPO}", proxy.host);
    let run = Cli::new().run(&[
        "rollback",
        &image,
        "--to",
        "v2",
        "--tag",
        "latest",
        "--tag",
        "stable",
        "--yes",
        "--insecure",
        "--json",
    ]);
    assert_eq!(run.code, 4, "{}", run.stderr);
    let report = run.json();
    assert_eq!(report["outcome"], "retag_failed");
    assert_eq!(report["tags"][0]["tag"], "latest");
    assert_eq!(report["tags"][0]["status"], "moved");
    assert_eq!(report["tags"][0]["now"], world.v2.digest.as_str());
    assert_eq!(report["tags"][1]["tag"], "stable");
    // Still where it was when read back, but a registry that answered 500 may have stored the
    // write: "unknown" (with `rollbot verify` in the error), never "not moved" on faith.
    assert_eq!(report["tags"][1]["status"], "unknown");
    assert_eq!(report["tags"][1]["now"], world.v3.digest.as_str());
    assert!(
        run.stderr.contains("writing tag 'stable' failed"),
        "{}",
        run.stderr
    );
    assert_eq!(
        world.digest_of("latest").as_deref(),
        Some(world.v2.digest.as_str())
    );
    assert_eq!(
        world.digest_of("stable").as_deref(),
        Some(world.v3.digest.as_str())
    );

    // Running the same rollback again (once the registry is healthy) finishes the job.
    let again = Cli::new().run(&[
        "rollback",
        &world.image(),
        "--to",
        "v2",
        "--tag",
        "latest",
        "--tag",
        "stable",
        "--yes",
        "--insecure",
        "--json",
    ]);
    assert_eq!(again.code, 0, "{}", again.stderr);
    assert_eq!(again.json()["tags"][0]["status"], "already_at_target");
    assert_eq!(again.json()["tags"][1]["status"], "moved");
}

#[test]
fn basic_auth_registry_accepts_the_right_credentials_and_names_the_wrong_ones() {
    let registry = TestRegistry::start_with_htpasswd();
    let seeder = Seeder::with_basic(&registry.host, USER, PASSWORD);
    let (v1, v2) = block_on(async {
        let v1 = seeder
            .push(REPO, Kind::OciIndex, "v1", &["v1", "latest"])
            .await;
        (v1, seeder.push(REPO, Kind::OciIndex, "v2", &["v2"]).await)
    });
    let image = format!("{}/{REPO}", registry.host);
    let config = format!(
        "[registries.\"{}\"]\ninsecure = true\nusername = \"{USER}\"\npassword_env = \"REGISTRY_PASSWORD\"\n",
        registry.host
    );

    let anonymous = Cli::new().run(&["rollback", &image, "--to", "v2", "--yes", "--insecure"]);
    assert_eq!(anonymous.code, 3, "{}", anonymous.stderr);
    assert!(
        anonymous.stderr.contains("requires credentials"),
        "{}",
        anonymous.stderr
    );

    let wrong = Cli::new()
        .config(&config)
        .env("REGISTRY_PASSWORD", "not-the-password")
        .run(&["rollback", &image, "--to", "v2", "--yes"]);
    assert_eq!(wrong.code, 3, "{}", wrong.stderr);
    assert!(
        wrong.stderr.contains(
            "rejected the credentials of user 'bot' (from environment variable REGISTRY_PASSWORD)"
        ),
        "{}",
        wrong.stderr
    );
    assert!(
        !wrong.stderr.contains("not-the-password") && !wrong.stdout.contains("not-the-password")
    );
    assert_eq!(
        block_on(seeder.digest_of(REPO, "latest")).as_deref(),
        Some(v1.digest.as_str())
    );

    let right = Cli::new()
        .config(&config)
        .env("REGISTRY_PASSWORD", PASSWORD)
        .run(&["rollback", &image, "--to", "v2", "--yes"]);
    assert_eq!(right.code, 0, "{}", right.stderr);
    assert_eq!(
        block_on(seeder.digest_of(REPO, "latest")).as_deref(),
        Some(v2.digest.as_str())
    );
}

#[test]
fn docker_login_credentials_are_used_automatically() {
    let registry = TestRegistry::start_with_htpasswd();
    let seeder = Seeder::with_basic(&registry.host, USER, PASSWORD);
    let v1 = block_on(async {
        let v1 = seeder.push(REPO, Kind::DockerSchema2, "v1", &["v1"]).await;
        seeder
            .push(REPO, Kind::DockerSchema2, "v2", &["v2", "latest"])
            .await;
        v1
    });
    let cli = Cli::new();
    std::fs::create_dir_all(cli.home.path().join(".docker")).expect("mkdir");
    let auth = base64_encode(&format!("{USER}:{PASSWORD}"));
    std::fs::write(
        cli.home.path().join(".docker/config.json"),
        format!(
            r#"{{"auths": {{"{}": {{"auth": "{auth}"}}}}}}"#,
            registry.host
        ),
    )
    .expect("write docker config");
    let run = cli.run(&[
        "rollback",
        &format!("{}/{REPO}", registry.host),
        "--to",
        "v1",
        "--yes",
        "--insecure",
    ]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(
        block_on(seeder.digest_of(REPO, "latest")).as_deref(),
        Some(v1.digest.as_str())
    );
}

fn base64_encode(text: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(text)
}

#[test]
fn health_checks_run_after_the_retag_and_a_failure_exits_5_naming_the_check() {
    let world = World::new(Kind::OciIndex);
    let host = &world.registry.host;
    let config = |failing: bool| {
        let smoke = if failing {
            r#"["sh", "-c", "echo 'smoke test failed: HTTP 503' >&2; exit 1"]"#
        } else {
            r#"["sh", "-c", "test \"$ROLLBOT_REF\" = '{ref}' && test '{digest}' != ''"]"#
        };
        format!(
            r#"
[registries."{host}"]
insecure = true

[images.app]
image = "{host}/acme/app"

[[images.app.checks]]
name = "smoke"
command = {smoke}
timeout = "10s"

[[images.app.checks]]
name = "registry-api"
http = "http://{host}/v2/"
expect_status = 200
"#
        )
    };
    let passing = Cli::new()
        .config(&config(false))
        .run(&["rollback", "app", "--to", "v2", "--yes", "--json"]);
    assert_eq!(passing.code, 0, "{}\n{}", passing.stdout, passing.stderr);
    let report = passing.json();
    assert_eq!(report["checks"].as_array().map(Vec::len), Some(2));
    assert_eq!(report["checks"][0]["passed"], true, "{}", report["checks"]);
    assert_eq!(report["checks"][1]["passed"], true, "{}", report["checks"]);

    let failing = Cli::new()
        .config(&config(true))
        .run(&["rollback", "app", "--to", "v1", "--yes", "--json"]);
    assert_eq!(failing.code, 5, "{}", failing.stderr);
    let report = failing.json();
    assert_eq!(report["outcome"], "verify_failed");
    assert_eq!(report["checks"][0]["name"], "smoke");
    assert_eq!(report["checks"][0]["passed"], false);
    assert!(
        failing
            .stderr
            .contains("check 'smoke' failed: 'sh' exited 1: smoke test failed: HTTP 503"),
        "{}",
        failing.stderr
    );
    // The retag itself happened; exit 5 says so.
    assert_eq!(
        world.digest_of("latest").as_deref(),
        Some(world.v1.digest.as_str())
    );
}

#[test]
fn verify_checks_tags_and_platforms_without_writing() {
    let world = World::new(Kind::DockerList);
    let cli = Cli::new();
    let ok = cli.run(&[
        "verify",
        &world.image(),
        "--expect",
        &world.v3.digest,
        "--tag",
        "latest",
        "--tag",
        "stable",
        "--insecure",
        "--json",
    ]);
    assert_eq!(ok.code, 0, "{}", ok.stderr);
    assert_eq!(ok.json()["outcome"], "verified");
    assert_eq!(ok.json()["tags"][1]["status"], "at_target");

    let wrong = cli.run(&[
        "verify",
        &world.image(),
        "--expect",
        &world.v2.digest,
        "--insecure",
        "--json",
    ]);
    assert_eq!(wrong.code, 5, "{}", wrong.stderr);
    assert!(
        wrong
            .stderr
            .contains(&format!("tag latest points at {}", world.v3.digest)),
        "{}",
        wrong.stderr
    );
    assert_eq!(wrong.json()["tags"][0]["status"], "not_at_target");
    assert_eq!(wrong.json()["registry"]["requests"]["manifest_put"], 0);
    world.assert_unchanged();
}

#[test]
fn the_registry_rate_limit_header_is_reported() {
    let world = World::new(Kind::DockerSchema2);
    let proxy = Proxy::start(
        &world.registry.host,
        vec![Rule::AddHeader {
            name: "ratelimit-remaining".into(),
            value: "97;w=21600".into(),
        }],
    );
    let run = Cli::new().run(&[
        "rollback",
        &format!("{}/{REPO}", proxy.host),
        "--to",
        "v1",
        "--yes",
        "--insecure",
        "--json",
    ]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(run.json()["registry"]["ratelimit_remaining"], "97;w=21600");
    assert!(
        proxy
            .seen()
            .iter()
            .filter(|r| r.starts_with("GET "))
            .count()
            == 1,
        "{:?}",
        proxy.seen()
    );
}

#[test]
fn config_problems_are_listed_together_and_exit_2() {
    let run = Cli::new()
        .config("[rollback]\nrto = \"soon\"\n\n[images.app]\nimage = \"registry.example.com/acme/app\"\ntagz = [\"latest\"]\n")
        .run(&["rollback", "app", "--to", "v1", "--yes"]);
    assert_eq!(run.code, 2);
    assert!(
        run.stderr.contains("invalid config (2 problems)"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr
            .contains("images.app.tagz: unknown key (did you mean 'tags'?)"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr
            .contains("rollback.rto: 'soon' is not a duration"),
        "{}",
        run.stderr
    );
}

#[test]
fn help_documents_the_exit_codes() {
    let run = Cli::new().run(&["rollback", "--help"]);
    assert_eq!(run.code, 0);
    for expected in [
        "--to <DIGEST|TAG>",
        "--dry-run",
        "Exit codes:",
        "4  retag failed part-way",
    ] {
        assert!(
            run.stdout.contains(expected),
            "missing {expected:?}:\n{}",
            run.stdout
        );
    }
}

#[test]
fn health_check_commands_do_not_see_rollbots_secrets() {
    let registry = TestRegistry::start_with_htpasswd();
    let seeder = Seeder::with_basic(&registry.host, USER, PASSWORD);
    block_on(async {
        seeder.push(REPO, Kind::DockerSchema2, "v1", &["v1"]).await;
        seeder
            .push(REPO, Kind::DockerSchema2, "v2", &["v2", "latest"])
            .await;
    });
    let host = &registry.host;
    let config = format!(
        r#"
[registries."{host}"]
insecure = true
username = "{USER}"
password_env = "REGISTRY_PASSWORD"

[images.app]
image = "{host}/acme/app"

[[images.app.checks]]
name = "no-secrets-here"
command = ["sh", "-c", "if [ -n \"$REGISTRY_PASSWORD$ROLLBOT_SLACK_BOT_TOKEN\" ]; then echo leaked >&2; exit 1; fi; test -n \"$ROLLBOT_DIGEST\" && test -n \"$PATH\""]
"#
    );
    let run = Cli::new()
        .config(&config)
        .env("REGISTRY_PASSWORD", PASSWORD)
        .env("ROLLBOT_SLACK_BOT_TOKEN", "xoxb-not-for-checks")
        .run(&["rollback", "app", "--to", "v1", "--yes", "--json"]);
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    assert_eq!(
        run.json()["checks"][0]["passed"],
        true,
        "{}",
        run.json()["checks"]
    );
}
