//! Rollback manifests, history, bad marks, the hold and the CI gate, through the built binary
//! against a real registry. CI is simulated the way the example workflow publishes: push the
//! image by digest, `manifest generate`, `manifest push`, then move the tags.

use crate::support::images::{Kind, Pushed, Seeder};
use crate::support::proxy::{Proxy, Rule};
use crate::support::registry::{free_port, TestRegistry};
use crate::support::{block_on, workflows, Cli};

const REPO: &str = "acme/app";

/// A registry that CI publishes to, and a CLI sandbox configured for it.
pub struct Ci {
    pub registry: TestRegistry,
    pub seeder: Seeder,
    pub cli: Cli,
    /// The image as CI names it (in its rollback manifests too).
    image: String,
}

impl Ci {
    pub fn new() -> Ci {
        Ci::with(TestRegistry::start())
    }

    /// CI publishing to `registry`.
    pub fn with(registry: TestRegistry) -> Ci {
        let seeder = Seeder::new(&registry.host);
        let config = format!("[registries.\"{}\"]\ninsecure = true\n", registry.host);
        Ci {
            image: format!("{}/{REPO}", registry.host),
            registry,
            seeder,
            cli: Cli::new().config(&config),
        }
    }

    /// CI publishing `docker.io/acme/app`, whose registry is the test registry (as the notify
    /// tests' daemon sees it), so its rollback manifests describe that image.
    pub fn docker_io() -> Ci {
        let registry = TestRegistry::start();
        let seeder = Seeder::new(&registry.host);
        let config = format!(
            "[registries.\"docker.io\"]\ninsecure = true\nendpoint = \"{}\"\n",
            registry.host
        );
        Ci {
            image: format!("docker.io/{REPO}"),
            registry,
            seeder,
            cli: Cli::new().config(&config),
        }
    }

    pub fn image(&self) -> String {
        self.image.clone()
    }

    pub fn file(&self, name: &str) -> String {
        self.cli.home.path().join(name).display().to_string()
    }

    /// One CI run of the example workflow for `version`.
    pub fn build(&self, version: &str) -> Pushed {
        let pushed = block_on(self.seeder.push(REPO, Kind::OciIndex, version, &[]));
        let file = self.file(&format!("{version}.json"));
        let tags = format!("latest,{version}");
        let generate = self.cli.run(&[
            "manifest",
            "generate",
            &self.image(),
            "--digest",
            &pushed.digest,
            "--tags",
            &tags,
            "--git-sha",
            "0123abc",
            "--build-url",
            "https://ci.example.com/runs/1",
            "--output",
            &file,
        ]);
        assert_eq!(generate.code, 0, "generate {version}: {}", generate.stderr);
        let push = self
            .cli
            .run(&["manifest", "push", &self.image(), "--file", &file]);
        assert_eq!(push.code, 0, "push {version}: {}", push.stderr);
        block_on(async {
            self.seeder.tag(REPO, &pushed, "latest").await;
            self.seeder.tag(REPO, &pushed, version).await;
        });
        pushed
    }

    pub fn latest(&self) -> Option<String> {
        block_on(self.seeder.digest_of(REPO, "latest"))
    }
}

fn schema_validator() -> jsonschema::Validator {
    let schema: serde_json::Value =
        serde_json::from_str(include_str!("../../config/rollback-manifest.schema.json"))
            .expect("the schema is JSON");
    jsonschema::validator_for(&schema).expect("the schema is a valid JSON Schema")
}

#[test]
fn generate_push_show_round_trip_with_the_documented_fields() {
    let ci = Ci::new();
    let v1 = ci.build("v1");
    let v2 = block_on(ci.seeder.push(REPO, Kind::OciIndex, "v2", &[]));
    let file = ci.file("v2.json");
    let generate = ci.cli.run(&[
        "manifest",
        "generate",
        &ci.image(),
        "--digest",
        &v2.digest,
        "--tags",
        "latest,v2",
        "--output",
        &file,
    ]);
    assert_eq!(generate.code, 0, "{}", generate.stderr);
    let text = std::fs::read_to_string(&file).expect("written");
    let document: serde_json::Value = serde_json::from_str(&text).expect("json");
    let keys: Vec<&str> = document
        .as_object()
        .expect("object")
        .keys()
        .map(String::as_str)
        .collect();
    let mut expected = vec![
        "build_url",
        "created_at",
        "current_digest",
        "current_tags",
        "git_sha",
        "image",
        "manual_command",
        "previous_digest",
        "rollback_command",
        "schema_version",
    ];
    expected.sort_unstable();
    let mut sorted = keys.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, expected);
    assert_eq!(document["current_digest"], v2.digest.as_str());
    assert_eq!(
        document["previous_digest"],
        v1.digest.as_str(),
        "read from latest before it moves"
    );
    assert_eq!(
        document["current_tags"],
        serde_json::json!(["latest", "v2"])
    );
    assert_eq!(
        document["rollback_command"],
        format!(
            "rollbot rollback {} --to {} --tag latest --insecure",
            ci.image(),
            v1.digest
        )
        .as_str()
    );
    let manual = document["manual_command"].as_str().expect("manual command");
    assert!(
        manual.starts_with("skopeo copy --all --preserve-digests"),
        "{manual}"
    );
    assert!(!manual.contains("docker pull") && !manual.contains("docker push"));
    let validator = schema_validator();
    let errors: Vec<String> = validator
        .iter_errors(&document)
        .map(|e| e.to_string())
        .collect();
    assert!(
        errors.is_empty(),
        "generated manifest violates the schema: {errors:?}"
    );

    // The rollback command is a real command line of this CLI.
    let command = document["rollback_command"].as_str().expect("command");
    let words: Vec<&str> = command.split(' ').collect();
    <rollbot::cli::Cli as clap::Parser>::try_parse_from(&words).expect("rollback_command parses");

    let push = ci
        .cli
        .run(&["manifest", "push", &ci.image(), "--file", &file]);
    assert_eq!(push.code, 0, "{}", push.stderr);
    assert!(
        push.stdout
            .contains(&format!("sha256-{}.rollback (stored)", &v2.digest[7..])),
        "{}",
        push.stdout
    );
    let again = ci
        .cli
        .run(&["manifest", "push", &ci.image(), "--file", &file]);
    assert_eq!(again.code, 0, "{}", again.stderr);
    assert!(
        again.stdout.contains("already stored, nothing written"),
        "{}",
        again.stdout
    );

    let show = ci
        .cli
        .run(&["manifest", "show", &format!("{}@{}", ci.image(), v2.digest)]);
    assert_eq!(show.code, 0, "{}", show.stderr);
    let shown: serde_json::Value = serde_json::from_str(&show.stdout).expect("json");
    assert_eq!(shown, document);

    // A different document for the same digest is refused unless forced.
    std::fs::write(&file, text.replace("\"v2\"", "\"v2-rebuilt\"")).expect("rewrite");
    let conflict = ci
        .cli
        .run(&["manifest", "push", &ci.image(), "--file", &file]);
    assert_eq!(conflict.code, 3, "{}", conflict.stderr);
    assert!(
        conflict.stderr.contains("already holds another document"),
        "{}",
        conflict.stderr
    );
    let forced = ci
        .cli
        .run(&["manifest", "push", &ci.image(), "--file", &file, "--force"]);
    assert_eq!(forced.code, 0, "{}", forced.stderr);
    assert!(forced.stdout.contains("replaced"), "{}", forced.stdout);
}

#[test]
fn the_schema_rejects_what_rollbot_rejects() {
    let validator = schema_validator();
    let good = serde_json::json!({
        "schema_version": 1, "image": "ghcr.io/acme/app",
        "current_digest": format!("sha256:{}", "a".repeat(64)), "current_tags": ["latest"],
        "previous_digest": null, "rollback_command": null, "manual_command": null,
        "created_at": "2026-11-26T10:00:00Z", "build_url": null, "git_sha": null
    });
    assert!(validator.is_valid(&good));
    let good_text = good.to_string();
    assert!(rollbot::manifest::RollbackManifest::parse(good_text.as_bytes(), "x").is_ok());
    for (field, value) in [
        ("current_digest", serde_json::json!("sha256:123")),
        ("schema_version", serde_json::json!(2)),
        ("current_tags", serde_json::json!(["bad tag"])),
        ("created_at", serde_json::json!("yesterday")),
        ("surprise", serde_json::json!(true)),
    ] {
        let mut bad = good.clone();
        bad[field] = value;
        assert!(!validator.is_valid(&bad), "schema accepts a bad {field}");
        let text = bad.to_string();
        assert!(
            rollbot::manifest::RollbackManifest::parse(text.as_bytes(), "x").is_err(),
            "rollbot accepts a bad {field}"
        );
    }
}

#[test]
fn generate_refuses_when_latest_already_moved_and_handles_a_first_build() {
    let ci = Ci::new();
    let first = block_on(ci.seeder.push(REPO, Kind::OciIndex, "v1", &[]));
    let run = ci.cli.run(&[
        "manifest",
        "generate",
        &ci.image(),
        "--digest",
        &first.digest,
        "--tags",
        "latest,v1",
    ]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let document: serde_json::Value = serde_json::from_str(&run.stdout).expect("json");
    assert_eq!(
        document["previous_digest"],
        serde_json::Value::Null,
        "first build"
    );
    assert_eq!(document["rollback_command"], serde_json::Value::Null);

    block_on(ci.seeder.tag(REPO, &first, "latest"));
    let late = ci.cli.run(&[
        "manifest",
        "generate",
        &ci.image(),
        "--digest",
        &first.digest,
        "--tags",
        "latest,v1",
    ]);
    assert_eq!(late.code, 3, "{}", late.stderr);
    assert!(late.stderr.contains("already points at"), "{}", late.stderr);
}

#[test]
fn history_walks_a_chain_of_four_builds_and_stops_cleanly() {
    let ci = Ci::new();
    let builds: Vec<Pushed> = ["v1", "v2", "v3", "v4"]
        .iter()
        .map(|v| ci.build(v))
        .collect();
    let run = ci.cli.run(&["history", &ci.image(), "--json"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let history = run.json();
    let digests: Vec<&str> = history["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .map(|e| e["digest"].as_str().expect("digest"))
        .collect();
    let expected: Vec<&str> = builds.iter().rev().map(|b| b.digest.as_str()).collect();
    assert_eq!(digests, expected, "newest first");
    assert_eq!(history["end"]["reason"], "first_build");
    assert!(
        history["entries"]
            .as_array()
            .expect("entries")
            .iter()
            .all(|e| e["complete"] == true),
        "{history}"
    );
    assert_eq!(history["entries"][0]["manifest"]["git_sha"], "0123abc");

    let limited = ci.cli.run(&["history", &ci.image(), "--limit", "2"]);
    assert_eq!(limited.code, 0, "{}", limited.stderr);
    assert!(
        limited.stdout.contains("end: limit reached"),
        "{}",
        limited.stdout
    );
    assert!(
        limited.stdout.contains("live; complete"),
        "{}",
        limited.stdout
    );
    assert!(limited.stdout.contains("latest,v4"), "{}", limited.stdout);

    // A build pushed without a rollback manifest ends the chain, said plainly.
    let stray = block_on(ci.seeder.push(REPO, Kind::OciIndex, "hotfix", &["latest"]));
    let stopped = ci.cli.run(&["history", &ci.image()]);
    assert_eq!(stopped.code, 0, "{}", stopped.stderr);
    assert!(
        stopped.stdout.contains(&format!(
            "no rollback manifest for {}; history stops there",
            stray.digest
        )),
        "{}",
        stopped.stdout
    );
}

#[test]
fn rollback_without_to_picks_the_previous_build_and_sets_a_hold() {
    let ci = Ci::new();
    for version in ["v1", "v2"] {
        ci.build(version);
    }
    let v3 = ci.build("v3");
    let v2_digest = block_on(ci.seeder.digest_of(REPO, "v2")).expect("v2");
    let run = ci.cli.run(&[
        "rollback",
        &ci.image(),
        "--yes",
        "--json",
        "--reason",
        "v3 crashes on start",
        "--by",
        "alice",
    ]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let report = run.json();
    assert_eq!(report["target"]["digest"], v2_digest.as_str());
    let source = report["target_source"].as_str().expect("source");
    assert!(
        source.contains(&v3.digest[..19]) && source.contains("0123abc"),
        "{source}"
    );
    assert_eq!(ci.latest().as_deref(), Some(v2_digest.as_str()));
    // The two rollback manifests, and the target's image manifest, read once while choosing
    // it and reused by the plan.
    assert_eq!(
        report["registry"]["requests"]["manifest_get"], 3,
        "{}",
        report["registry"]
    );
    assert!(report["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .any(|s| s["name"] == "hold" && s["ok"] == true));

    // The hold stops CI; releasing it lets CI through.
    let status = ci.cli.run(&["hold", "status", &ci.image()]);
    assert_eq!(status.code, 0, "{}", status.stderr);
    assert!(
        status.stdout.starts_with("ACTIVE:")
            && status.stdout.contains("by alice")
            && status.stdout.contains("v3 crashes on start"),
        "{}",
        status.stdout
    );
    let gate = ci.cli.run(&["gate", &ci.image()]);
    assert_eq!(gate.code, 1, "{}", gate.stderr);
    assert!(
        gate.stderr.contains("held by alice since") || gate.stderr.contains("by alice since"),
        "{}",
        gate.stderr
    );
    assert!(
        gate.stderr.contains("v3 crashes on start") && gate.stderr.contains("rollbot hold release"),
        "{}",
        gate.stderr
    );

    let release = ci.cli.run(&[
        "hold",
        "release",
        &ci.image(),
        "--reason",
        "fixed in v4",
        "--by",
        "bob",
    ]);
    assert_eq!(release.code, 0, "{}", release.stderr);
    assert!(
        release.stdout.contains("released by bob"),
        "{}",
        release.stdout
    );
    let gate = ci.cli.run(&["gate", &ci.image()]);
    assert_eq!(gate.code, 0, "{}", gate.stderr);
    let status = ci.cli.run(&["hold", "status", &ci.image(), "--json"]);
    assert_eq!(status.json()["hold"]["state"], "released");
    // The rollback's report is kept: what it planned and moved (the hold was written while it
    // verified, so the verdict is the run's own report, not the hold's).
    let kept = &status.json()["hold"]["report"];
    assert_eq!(kept["tags"][0]["status"], "moved", "{kept}");
    assert!(kept.get("outcome").is_none(), "{kept}");
    let twice = ci.cli.run(&["hold", "release", &ci.image()]);
    assert_eq!(twice.code, 0);
    assert!(twice.stdout.contains("no active hold"), "{}", twice.stdout);

    // A hold set by hand works the same.
    let set = ci.cli.run(&[
        "hold",
        "set",
        &ci.image(),
        "--reason",
        "freeze for the audit",
        "--by",
        "carol",
    ]);
    assert_eq!(set.code, 0, "{}", set.stderr);
    assert_eq!(ci.cli.run(&["gate", &ci.image()]).code, 1);
}

/// Holds written by rollbot before the document moved into the manifest (an OCI artifact whose
/// one layer is the document) are still read: `rollbot gate` stops CI on them, `hold status`
/// shows them, and `hold release` replaces them.
#[test]
fn a_hold_stored_the_older_way_as_a_layer_is_still_read() {
    let ci = Ci::new();
    ci.build("v1");
    let document = br#"{"schema_version":1,"image":"IMAGE","state":"active","digest":"sha256:2222222222222222222222222222222222222222222222222222222222222222","tags":["latest"],"reason":"held the older way","held_by":"dave","held_at":"2026-11-20T10:00:00Z","released_by":null,"released_at":null,"release_reason":null,"report":null}"#;
    let document = String::from_utf8_lossy(document).replace("IMAGE", &ci.image());
    let empty = block_on(ci.seeder.push_blob(REPO, b"{}"));
    let layer = block_on(ci.seeder.push_blob(REPO, document.as_bytes()));
    let manifest = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","artifactType":"application/vnd.rollbot.hold.v1+json","config":{{"mediaType":"application/vnd.oci.empty.v1+json","digest":"{empty}","size":2,"data":"e30="}},"layers":[{{"mediaType":"application/vnd.rollbot.hold.v1+json","digest":"{layer}","size":{}}}],"annotations":{{"org.opencontainers.image.created":"2026-11-20T10:00:00Z"}}}}"#,
        document.len()
    );
    block_on(ci.seeder.put_manifest(
        REPO,
        "rollbot-hold",
        "application/vnd.oci.image.manifest.v1+json",
        manifest.as_bytes(),
    ));
    let gate = ci.cli.run(&["gate", &ci.image()]);
    assert_eq!(gate.code, 1, "{}", gate.stderr);
    assert!(
        gate.stderr.contains("held the older way"),
        "{}",
        gate.stderr
    );
    let status = ci.cli.run(&["hold", "status", &ci.image(), "--json"]);
    assert_eq!(
        status.json()["hold"]["held_by"],
        "dave",
        "{}",
        status.stdout
    );
    let release = ci
        .cli
        .run(&["hold", "release", &ci.image(), "--by", "erin"]);
    assert_eq!(release.code, 0, "{}", release.stderr);
    assert_eq!(ci.cli.run(&["gate", &ci.image()]).code, 0);
    // The release is written the new way: one manifest, its document inside.
    let (bytes, _) = block_on(ci.seeder.get_raw(REPO, "rollbot-hold"));
    let written: serde_json::Value = serde_json::from_slice(&bytes).expect("manifest");
    let inside: serde_json::Value = serde_json::from_str(
        written["annotations"]["vnd.rollbot.document"]
            .as_str()
            .unwrap_or_else(|| panic!("no document in {written}")),
    )
    .expect("document");
    assert_eq!(inside["state"], "released");
    assert_eq!(inside["released_by"], "erin");
    assert_eq!(written["layers"][0]["digest"], empty.as_str());
}

#[test]
fn target_selection_skips_bad_builds_and_refuses_incomplete_ones() {
    let ci = Ci::new();
    let v1 = ci.build("v1");
    let v2 = ci.build("v2");
    let v3 = ci.build("v3");
    ci.build("v4");

    // v3 marked bad: the default target is v2.
    let mark = ci.cli.run(&[
        "history",
        &ci.image(),
        "--mark-bad",
        &v3.digest,
        "--reason",
        "leaks memory",
        "--by",
        "dave",
    ]);
    assert_eq!(mark.code, 0, "{}", mark.stderr);
    let dry = ci
        .cli
        .run(&["rollback", &ci.image(), "--dry-run", "--json"]);
    assert_eq!(dry.code, 0, "{}", dry.stderr);
    assert_eq!(dry.json()["target"]["digest"], v2.digest.as_str());
    assert!(dry.json()["target_source"]
        .as_str()
        .expect("source")
        .contains("marked bad"));
    let history = ci.cli.run(&["history", &ci.image()]);
    assert!(
        history.stdout.contains("BAD: leaks memory (by dave)"),
        "{}",
        history.stdout
    );

    // v2 loses its arm64 image (a registry clean-up job): never chosen silently.
    let (platform, child) = v2.children[1].clone();
    block_on(ci.seeder.delete_manifest(REPO, &child));
    let refused = ci.cli.run(&["rollback", &ci.image(), "--yes"]);
    assert_eq!(refused.code, 3, "{}", refused.stderr);
    assert!(
        refused.stderr.contains(&format!(
            "the previous build {} is incomplete (missing {platform}",
            v2.digest
        )),
        "{}",
        refused.stderr
    );
    assert!(
        refused.stderr.contains(&format!("--to {}", v1.digest)),
        "suggests the next complete build: {}",
        refused.stderr
    );
    assert!(
        refused.stdout.contains("INCOMPLETE: missing linux/arm64"),
        "shows the history: {}",
        refused.stdout
    );
    assert_eq!(
        ci.latest().as_deref(),
        block_on(ci.seeder.digest_of(REPO, "v4")).as_deref(),
        "nothing changed"
    );

    // Clearing the mark makes v3 the target again.
    let clear = ci.cli.run(&[
        "history",
        &ci.image(),
        "--clear-bad",
        &v3.digest,
        "--reason",
        "false alarm",
    ]);
    assert_eq!(clear.code, 0, "{}", clear.stderr);
    let dry = ci
        .cli
        .run(&["rollback", &ci.image(), "--dry-run", "--json"]);
    assert_eq!(
        dry.json()["target"]["digest"],
        v3.digest.as_str(),
        "{}",
        dry.stderr
    );
}

#[test]
fn foreign_or_malformed_content_under_rollbot_tags_gives_a_clear_error() {
    let ci = Ci::new();
    ci.build("v1");
    let v2 = ci.build("v2");
    let v1_digest = block_on(ci.seeder.digest_of(REPO, "v1")).expect("v1");
    let rollback_tag = |digest: &str| format!("sha256-{}.rollback", &digest[7..]);

    // An ordinary image pushed under v2's .rollback tag.
    block_on(
        ci.seeder
            .put_manifest(REPO, &rollback_tag(&v2.digest), v2.media_type, &v2.bytes),
    );
    let show = ci
        .cli
        .run(&["manifest", "show", &format!("{}@{}", ci.image(), v2.digest)]);
    assert_eq!(show.code, 3, "{}", show.stderr);
    assert!(
        show.stderr
            .contains("is not a rollbot rollback manifest: it holds a OCI image index"),
        "{}",
        show.stderr
    );

    // An artifact of the right type whose document is not JSON, under v1's tag.
    let garbage = block_on(push_artifact(
        &ci.seeder,
        &rollback_tag(&v1_digest),
        b"<html>oops</html>",
    ));
    assert!(!garbage.is_empty());
    let show = ci
        .cli
        .run(&["manifest", "show", &format!("{}@{v1_digest}", ci.image())]);
    assert_eq!(show.code, 3, "{}", show.stderr);
    assert!(
        show.stderr.contains("is not a valid rollback manifest"),
        "{}",
        show.stderr
    );

    // History reports what it read and where it stopped, without panicking.
    let history = ci.cli.run(&["history", &ci.image()]);
    assert_eq!(history.code, 3, "{}", history.stderr);
    assert!(
        history.stdout.contains("end: stopped:"),
        "{}",
        history.stdout
    );
    let rollback = ci.cli.run(&["rollback", &ci.image(), "--yes"]);
    assert_eq!(rollback.code, 3, "{}", rollback.stderr);
    assert!(
        rollback.stderr.contains("could not read the history")
            || rollback.stderr.contains("no rollback manifest"),
        "{}",
        rollback.stderr
    );

    // A manifest file that is not a rollback manifest is refused before anything is written.
    let file = ci.file("foreign.json");
    std::fs::write(&file, r#"{"name": "something else"}"#).expect("write");
    let push = ci
        .cli
        .run(&["manifest", "push", &ci.image(), "--file", &file]);
    assert_eq!(push.code, 2, "{}", push.stderr);
    assert!(
        push.stderr.contains("is not a valid rollback manifest"),
        "{}",
        push.stderr
    );
}

/// Pushes a rollbot-shaped artifact (right artifactType) holding `document` under `tag`.
async fn push_artifact(seeder: &Seeder, tag: &str, document: &[u8]) -> String {
    let media = "application/vnd.rollbot.rollback-manifest.v1+json";
    let config = seeder.push_blob(REPO, b"{}").await;
    let layer = seeder.push_blob(REPO, document).await;
    let manifest = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","artifactType":"{media}","config":{{"mediaType":"application/vnd.oci.empty.v1+json","digest":"{config}","size":2}},"layers":[{{"mediaType":"{media}","digest":"{layer}","size":{}}}]}}"#,
        document.len()
    );
    seeder
        .put_manifest(
            REPO,
            tag,
            "application/vnd.oci.image.manifest.v1+json",
            manifest.as_bytes(),
        )
        .await;
    layer
}

#[test]
fn the_gate_fails_closed_when_the_registry_cannot_answer() {
    let closed = format!("127.0.0.1:{}/{REPO}", free_port());
    let run = Cli::new().run(&["gate", &closed, "--insecure"]);
    assert_eq!(run.code, 3, "{}", run.stderr);
    assert!(
        run.stderr.contains("the gate fails closed"),
        "{}",
        run.stderr
    );

    let registry = TestRegistry::start();
    let failing = Proxy::start(&registry.host, vec![Rule::FailAll(503)]);
    let run = Cli::new().run(&["gate", &format!("{}/{REPO}", failing.host), "--insecure"]);
    assert_eq!(run.code, 3, "{}", run.stderr);
}

#[test]
fn the_example_workflow_uses_real_rollbot_commands_in_the_documented_order() {
    let workflow = include_str!("../../deploy/github-actions/publish-with-rollback-manifest.yml");
    let commands = workflows::rollbot_commands(workflow);
    let subcommands: Vec<String> = commands
        .iter()
        .map(|c| c.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .collect();
    assert_eq!(
        subcommands,
        [
            "rollbot gate \"$IMAGE\"",
            "rollbot manifest generate",
            "rollbot manifest push",
            "rollbot gate \"$IMAGE\""
        ]
    );
    for command in &commands {
        workflows::assert_parses(command, workflows::CI_VARS);
    }
}
