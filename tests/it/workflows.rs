//! Shipping rollbot: its image (deploy/docker/Dockerfile), the workflows that publish it and its
//! release binaries, and the composite action that installs them in CI, read as YAML and held
//! to what they promise. The action's script and the release's packaging steps really run,
//! against a fake `gh` serving a local release.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::support::workflows::{
    assert_parses, list, load, read, rollbot_commands, step_rollbot_commands, step_using, steps,
    text, Yaml, CI_VARS,
};

const EXAMPLE: &str = "deploy/github-actions/publish-with-rollback-manifest.yml";
const IMAGE_WORKFLOW: &str = "deploy/github-actions/rollbot-image.yml";
const RELEASE: &str = "deploy/github-actions/release.yml";
const ACTION: &str = "deploy/github-actions/rollbot/action.yml";
const DOCKERFILE: &str = "deploy/docker/Dockerfile";
const TARGETS: [&str; 2] = ["aarch64-unknown-linux-gnu", "x86_64-unknown-linux-gnu"];

fn script_of(step: &Yaml) -> Option<&str> {
    step["run"].as_str()
}

/// Every `run:` script of `steps`, one after the other.
fn scripts(steps: &[&Yaml]) -> String {
    steps.iter().filter_map(|s| script_of(s)).collect()
}

#[test]
fn the_image_workflow_builds_both_platforms_by_digest_and_publishes_with_the_rollbot_it_ships() {
    let workflow = load(IMAGE_WORKFLOW);
    let steps = steps(&workflow);
    let (qemu, _) = step_using(&steps, "docker/setup-qemu-action");
    let (buildx, _) = step_using(&steps, "docker/setup-buildx-action");
    let (built, build) = step_using(&steps, "docker/build-push-action");
    assert!(
        qemu < built && buildx < built,
        "buildx is set up before the build"
    );

    let mut platforms: Vec<&str> = text(&build["with"]["platforms"], "platforms")
        .split(',')
        .map(str::trim)
        .collect();
    platforms.sort_unstable();
    assert_eq!(platforms, ["linux/amd64", "linux/arm64"]);
    let outputs: Vec<&str> = text(&build["with"]["outputs"], "outputs")
        .split(',')
        .collect();
    for needed in ["type=image", "push-by-digest=true", "push=true"] {
        assert!(
            outputs.contains(&needed),
            "the build pushes by digest: {outputs:?}"
        );
    }
    let file = text(&build["with"]["file"], "the build's file");
    assert_eq!(file, DOCKERFILE);
    assert!(Path::new(env!("CARGO_MANIFEST_DIR")).join(file).is_file());

    // The same rollbot commands as the reference example, in the same order, each one a real
    // rollbot command line.
    let commands = step_rollbot_commands(&steps);
    let lines: Vec<&str> = commands.iter().map(|(_, c)| c.as_str()).collect();
    assert_eq!(lines, rollbot_commands(&read(EXAMPLE)));
    for (_, command) in &commands {
        assert_parses(command, CI_VARS);
    }

    // rollbot comes from the image just built, and runs only after it is on PATH.
    let first_rollbot = commands[0].0;
    let installs = steps
        .iter()
        .position(|s| script_of(s).is_some_and(|r| r.contains("GITHUB_PATH")))
        .expect("a step puts rollbot on PATH");
    assert!(built < installs && installs < first_rollbot);

    // Every digest the steps use is the build's output, and used after it.
    let digest = format!(
        "${{{{ steps.{}.outputs.digest }}}}",
        text(&build["id"], "the build's id")
    );
    let users: Vec<usize> = (0..steps.len())
        .filter(|&i| steps[i]["env"]["DIGEST"].as_str().is_some())
        .collect();
    assert!(users.len() >= 3, "install, generate and tag use the digest");
    for i in users {
        assert_eq!(steps[i]["env"]["DIGEST"].as_str(), Some(digest.as_str()));
        assert!(i > built);
    }

    // The tags move last: after the manifest is stored, right after the second gate.
    let tag_move = steps
        .iter()
        .position(|s| script_of(s).is_some_and(|r| r.contains("skopeo copy")))
        .expect("a step moves the tags");
    assert!(commands.iter().all(|(i, _)| *i < tag_move));
    assert!(commands[commands.len() - 1].1.starts_with("rollbot gate "));
    assert_eq!(commands[commands.len() - 1].0 + 1, tag_move);
}

#[test]
fn the_release_builds_both_targets_natively_and_writes_sha256sums() {
    let release = load(RELEASE);
    let tags = list(&release["on"]["push"]["tags"], "on.push.tags");
    assert_eq!(tags, [Yaml::String("v*".to_owned())]);

    let build = &release["jobs"]["build"];
    let matrix = list(&build["strategy"]["matrix"]["include"], "the build matrix");
    let targets: BTreeSet<&str> = matrix
        .iter()
        .map(|e| text(&e["target"], "target"))
        .collect();
    assert_eq!(targets, BTreeSet::from(TARGETS));
    for entry in matrix {
        let (target, runner) = (
            text(&entry["target"], "target"),
            text(&entry["runner"], "runner"),
        );
        assert_eq!(
            target.starts_with("aarch64-"),
            runner.ends_with("-arm"),
            "{target} builds on a runner of its own architecture, not on {runner}"
        );
    }
    let build_steps: Vec<&Yaml> = list(&build["steps"], "build steps").iter().collect();
    let build_scripts = scripts(&build_steps);
    assert!(
        build_scripts.contains("cargo build --release --locked --bin rollbot --target \"$TARGET\"")
    );
    assert!(build_scripts.contains("name=\"rollbot-${GITHUB_REF_NAME#v}-$TARGET\""));
    assert!(build_scripts.contains("\"dist/$name.tar.gz\""));

    let publish = &release["jobs"]["publish"];
    assert_eq!(publish["needs"].as_str(), Some("build"));
    assert_eq!(publish["permissions"]["contents"].as_str(), Some("write"));
    let publish_steps: Vec<&Yaml> = list(&publish["steps"], "publish steps").iter().collect();
    let publish_scripts = scripts(&publish_steps);
    assert!(publish_scripts.contains("sha256sum rollbot-*.tar.gz > SHA256SUMS"));
    assert!(publish_scripts
        .contains("gh release upload \"$GITHUB_REF_NAME\" rollbot-*.tar.gz SHA256SUMS"));
}

#[test]
fn the_action_is_composite_takes_a_pinned_version_and_verifies_with_sha256sum() {
    let action = load(ACTION);
    assert_eq!(text(&action["runs"]["using"], "runs.using"), "composite");
    assert_eq!(
        action["inputs"]["version"]["required"].as_bool(),
        Some(true)
    );
    assert_eq!(
        action["inputs"]["sha256"]["required"].as_bool(),
        Some(false)
    );
    let steps = steps(&action);
    for step in &steps {
        if script_of(step).is_some() {
            assert_eq!(
                step["shell"].as_str(),
                Some("bash"),
                "a composite run step names its shell"
            );
        }
    }
    let script = scripts(&steps);
    assert!(script.contains("sha256sum -c"));
    assert!(script.contains(">> \"$GITHUB_PATH\""));
    assert!(steps
        .iter()
        .any(|s| script_of(s).map(str::trim) == Some("rollbot --version")));
    // Each runner architecture maps to a target the release builds.
    let mapped: BTreeSet<&str> = script
        .lines()
        .filter_map(|line| line.split_once(") target=").map(|(_, rest)| rest))
        .map(|rest| rest.split_whitespace().next().unwrap_or_default())
        .collect();
    assert_eq!(mapped, BTreeSet::from(TARGETS));
    assert!(script.contains("X64) target=x86_64-unknown-linux-gnu"));
    assert!(script.contains("ARM64) target=aarch64-unknown-linux-gnu"));
    assert!(script.contains("asset=\"rollbot-${VERSION#v}-${target}.tar.gz\""));
}

#[test]
fn the_example_workflow_installs_rollbot_with_the_pinned_action_not_cargo_install() {
    let workflow = load(EXAMPLE);
    let steps = steps(&workflow);
    let (at, install) = step_using(&steps, "rollbot/rollbot/deploy/github-actions/rollbot");
    let uses = text(&install["uses"], "uses");
    let (_, reference) = uses.split_once('@').expect("a ref");
    assert!(
        is_release_tag(reference),
        "the action is pinned to a release: {uses}"
    );
    assert_eq!(install["with"]["version"].as_str(), Some(reference));
    let commands = step_rollbot_commands(&steps);
    assert!(
        commands.iter().all(|(i, _)| *i > at),
        "rollbot runs after it is installed"
    );
    assert!(!read(EXAMPLE).contains("cargo install"));
    assert!(!scripts(&steps).contains("cargo "));
}

fn is_release_tag(reference: &str) -> bool {
    let parts: Vec<&str> = reference
        .strip_prefix('v')
        .unwrap_or("")
        .split('.')
        .collect();
    parts.len() == 3
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
}

#[test]
fn every_third_party_action_is_pinned_by_its_major_version() {
    for file in [EXAMPLE, IMAGE_WORKFLOW, RELEASE, ACTION] {
        let document = load(file);
        for step in steps(&document) {
            let Some(uses) = step["uses"].as_str() else {
                continue;
            };
            let (action, reference) = uses.split_once('@').expect("uses names a ref");
            if action.starts_with("rollbot/rollbot/") {
                assert!(is_release_tag(reference), "{file}: {uses}");
            } else {
                let major = reference.strip_prefix('v').unwrap_or("");
                assert!(
                    !major.is_empty() && major.bytes().all(|b| b.is_ascii_digit()),
                    "{file}: {uses} is not pinned by a major version tag"
                );
            }
        }
    }
}

/// The instructions of the Dockerfile's last stage (the image itself): (KEYWORD, arguments),
/// continuation lines joined, comments left out.
fn image_instructions(dockerfile: &str) -> Vec<(String, String)> {
    let mut instructions = Vec::new();
    let mut current = String::new();
    for line in dockerfile.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        current.push_str(line.trim_end_matches('\\'));
        current.push(' ');
        if !line.ends_with('\\') {
            let joined = std::mem::take(&mut current);
            let (keyword, arguments) = joined.trim().split_once(' ').expect("an instruction");
            instructions.push((keyword.to_uppercase(), arguments.trim().to_owned()));
        }
    }
    let last_from = instructions
        .iter()
        .rposition(|(keyword, _)| keyword == "FROM")
        .expect("a FROM");
    instructions.split_off(last_from)
}

/// The arguments of the one `keyword` instruction.
fn only<'a>(instructions: &'a [(String, String)], keyword: &str) -> &'a str {
    let found: Vec<&str> = instructions
        .iter()
        .filter(|(k, _)| k == keyword)
        .map(|(_, arguments)| arguments.as_str())
        .collect();
    assert_eq!(found.len(), 1, "one {keyword} in the image stage");
    found[0]
}

#[test]
fn the_image_runs_rollbot_serve_with_settings_rollbot_accepts() {
    let dockerfile = read(DOCKERFILE);
    assert!(dockerfile.starts_with("# syntax=docker/dockerfile:1\n"));
    assert!(dockerfile.contains("cargo build --release --locked"));
    let image = image_instructions(&dockerfile);
    let one = |keyword: &str| only(&image, keyword);

    // The environment is real config: ROLLBOT__SECTION__KEY names keys rollbot has.
    let env: HashMap<String, String> = one("ENV")
        .split_whitespace()
        .map(|pair| pair.split_once('=').expect("ENV KEY=value"))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    assert!(env.keys().all(|k| k.starts_with("ROLLBOT__")), "{env:?}");
    let settings: rollbot::config::Settings =
        rollbot::config::load(None, &env).expect("the image's environment is valid config");
    let daemon = &settings.daemon;
    assert_eq!(
        daemon.store.location.sqlite_path(),
        Some(Path::new("/var/lib/rollbot/rollbot.db"))
    );
    assert!(
        daemon
            .store
            .location
            .sqlite_path()
            .is_some_and(|path| path.starts_with(one("VOLUME"))),
        "the state is on the volume"
    );
    assert!(
        daemon.listen.ip().is_unspecified(),
        "reachable from outside the container"
    );
    assert_eq!(
        rollbot::config::listen_refusal(daemon.listen, daemon.allow_non_loopback),
        None
    );
    assert_eq!(one("EXPOSE"), daemon.listen.port().to_string());
    assert_eq!(one("USER"), "65532:65532");

    // `docker run IMAGE` is `rollbot serve --config /etc/rollbot/rollbot.toml`.
    let entrypoint: Vec<String> = serde_json::from_str(one("ENTRYPOINT")).expect("exec form");
    assert_eq!(entrypoint, ["/usr/local/bin/rollbot"]);
    let cmd: Vec<String> = serde_json::from_str(one("CMD")).expect("exec form");
    let cli = <rollbot::cli::Cli as clap::Parser>::try_parse_from(
        std::iter::once("rollbot".to_owned()).chain(cmd),
    )
    .expect("the image's CMD is a rollbot command line");
    assert!(matches!(cli.command, rollbot::cli::Command::Serve(_)));
    assert_eq!(cli.config, Some(PathBuf::from("/etc/rollbot/rollbot.toml")));

    // The image's builder and the release binaries use one toolchain (and glibc), at least
    // the crate's rust-version.
    let rust = dockerfile
        .lines()
        .find_map(|l| l.strip_prefix("ARG RUST_VERSION="))
        .expect("ARG RUST_VERSION");
    assert!(dockerfile.contains("rust:${RUST_VERSION}-bookworm AS builder"));
    let release = load(RELEASE);
    let container = format!("rust:{rust}-bookworm");
    assert_eq!(
        release["jobs"]["build"]["container"].as_str(),
        Some(container.as_str())
    );
    let version =
        |v: &str| -> Vec<u32> { v.split('.').map(|n| n.parse().expect("number")).collect() };
    assert!(version(rust) >= version(env!("CARGO_PKG_RUST_VERSION")));
}

/// Runs a step's script as GitHub Actions does (`bash --noprofile --norc -eo pipefail`), in
/// `dir`, with `env` and PATH = `path` before the system's.
fn run_step(script: &str, dir: &Path, env: &[(&str, &str)], path: &[&Path]) -> Output {
    assert!(
        !script.contains("${{"),
        "the test sets every expression through env"
    );
    let file = tempfile::NamedTempFile::new().expect("script file");
    std::fs::write(file.path(), script).expect("write script");
    let mut search =
        std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()).collect::<Vec<_>>();
    for (i, extra) in path.iter().enumerate() {
        search.insert(i, extra.to_path_buf());
    }
    Command::new("bash")
        .args(["--noprofile", "--norc", "-eo", "pipefail"])
        .arg(file.path())
        .current_dir(dir)
        .env("PATH", std::env::join_paths(search).expect("PATH"))
        .envs(env.iter().copied())
        .output()
        .expect("run bash")
}

fn ok(output: &Output, what: &str) -> String {
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "{what} failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

fn write_executable(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
    std::fs::write(path, text).expect("write");
    let mut permissions = std::fs::metadata(path).expect("metadata").permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut permissions, 0o755);
    std::fs::set_permissions(path, permissions).expect("chmod");
}

/// A `gh` that serves `release download TAG --repo OWNER/NAME --pattern FILE…` from
/// `$FAKE_RELEASES/OWNER/NAME/TAG/` and logs its arguments to `$FAKE_GH_LOG`.
const FAKE_GH: &str = r#"#!/usr/bin/env bash
set -euo pipefail
echo "$*" >> "$FAKE_GH_LOG"
[ "$1 $2" = "release download" ] || { echo "fake gh: $*" >&2; exit 2; }
tag=$3; shift 3
while [ $# -gt 0 ]; do
  case "$1" in
    --repo) repo=$2 ;;
    --pattern) cp "$FAKE_RELEASES/$repo/$tag/$2" . ;;
    *) echo "fake gh: unexpected $1" >&2; exit 2 ;;
  esac
  shift 2
done
"#;

/// The release as release.yml makes it (its packaging and SHA256SUMS steps, on stand-in
/// binaries), in `releases/rollbot/rollbot/v0.1.0/`.
fn make_release(root: &Path) -> PathBuf {
    let release = load(RELEASE);
    let build = &release["jobs"]["build"];
    let assets = root.join("releases/rollbot/rollbot/v0.1.0");
    std::fs::create_dir_all(&assets).expect("assets dir");
    for target in TARGETS {
        let work = root.join("work").join(target);
        write_executable(
            &work.join(format!("target/{target}/release/rollbot")),
            "#!/bin/sh\necho \"rollbot 0.1.0\"\n",
        );
        std::fs::write(work.join("README.md"), "# rollbot\n").expect("README");
        std::fs::create_dir_all(work.join("config")).expect("config dir");
        std::fs::write(work.join("config/default.toml"), "").expect("default.toml");
        for step in list(&build["steps"], "build steps") {
            let Some(script) = script_of(step) else {
                continue;
            };
            if script.contains("cargo build") {
                continue;
            }
            let env = [("TARGET", target), ("GITHUB_REF_NAME", "v0.1.0")];
            ok(&run_step(script, &work, &env, &[]), "a release build step");
        }
        let tarball = format!("rollbot-0.1.0-{target}.tar.gz");
        std::fs::copy(work.join("dist").join(&tarball), assets.join(&tarball)).expect("asset");
    }
    let publish = &release["jobs"]["publish"];
    let sums = list(&publish["steps"], "publish steps")
        .iter()
        .find(|s| script_of(s).is_some_and(|r| r.contains("> SHA256SUMS")))
        .expect("the SHA256SUMS step");
    assert_eq!(sums["working-directory"].as_str(), Some("dist"));
    ok(
        &run_step(script_of(sums).unwrap_or_default(), &assets, &[], &[]),
        "SHA256SUMS",
    );
    assets
}

/// One run of the action: its install step, then (when that passed) the steps after it with
/// the PATH it set. Returns the install step's output and what `rollbot --version` printed.
struct ActionRun {
    install: Output,
    version: Option<String>,
    gh_log: String,
}

fn run_action(root: &Path, arch: &str, sha256: &str) -> ActionRun {
    let action = load(ACTION);
    let steps = steps(&action);
    static RUNS: AtomicUsize = AtomicUsize::new(0);
    let run = root.join(format!("run-{}", RUNS.fetch_add(1, Ordering::Relaxed)));
    let fake_bin = run.join("fake-bin");
    write_executable(&fake_bin.join("gh"), FAKE_GH);
    let (github_path, github_output) = (run.join("github_path"), run.join("github_output"));
    for file in [&github_path, &github_output] {
        std::fs::write(file, "").expect("runner file");
    }
    let action_path =
        "/home/runner/work/_actions/rollbot/rollbot/v0.1.0/deploy/github-actions/rollbot";
    let releases = root.join("releases");
    let gh_log = run.join("gh.log");
    let env = [
        ("VERSION", "v0.1.0"),
        ("SHA256", sha256),
        ("REPOSITORY", ""),
        ("GH_TOKEN", "token"),
        ("RUNNER_ARCH_NAME", arch),
        ("RUNNER_OS_NAME", "Linux"),
        ("ACTION_PATH", action_path),
        ("RUNNER_TEMP", run.to_str().expect("utf-8")),
        ("GITHUB_PATH", github_path.to_str().expect("utf-8")),
        ("GITHUB_OUTPUT", github_output.to_str().expect("utf-8")),
        ("GITHUB_REPOSITORY", "acme/app"),
        ("FAKE_RELEASES", releases.to_str().expect("utf-8")),
        ("FAKE_GH_LOG", gh_log.to_str().expect("utf-8")),
    ];
    let install = steps[0];
    let declared: BTreeSet<&str> = install["env"]
        .as_hash()
        .expect("the install step's env")
        .keys()
        .map(|k| text(k, "an env name"))
        .collect();
    let given: BTreeSet<&str> = env[..7].iter().map(|(k, _)| *k).collect();
    assert_eq!(declared, given, "the test sets what the step's env sets");
    let output = run_step(
        script_of(install).expect("a script"),
        &run,
        &env,
        &[&fake_bin],
    );
    let added = std::fs::read_to_string(&github_path).expect("GITHUB_PATH");
    let version = output.status.success().then(|| {
        let dir = PathBuf::from(added.trim());
        let rest = scripts(&steps[1..]);
        ok(&run_step(&rest, &run, &[], &[&dir]), "rollbot --version")
    });
    if !output.status.success() {
        assert_eq!(added, "", "nothing is put on PATH when the check fails");
    }
    ActionRun {
        install: output,
        version,
        gh_log: std::fs::read_to_string(&gh_log).unwrap_or_default(),
    }
}

#[test]
fn the_action_installs_what_the_release_packages_and_refuses_a_tampered_tarball() {
    let root = tempfile::tempdir().expect("tempdir");
    let assets = make_release(root.path());
    let sums = std::fs::read_to_string(assets.join("SHA256SUMS")).expect("SHA256SUMS");
    assert_eq!(sums.lines().count(), 2, "{sums}");

    for arch in ["X64", "ARM64"] {
        let run = run_action(root.path(), arch, "");
        ok(&run.install, "the action");
        assert_eq!(run.version.as_deref(), Some("rollbot 0.1.0\n"));
        // The release comes from the repository the action was used from.
        assert!(
            run.gh_log.contains("--repo rollbot/rollbot"),
            "{}",
            run.gh_log
        );
        assert!(
            run.gh_log.contains("--pattern SHA256SUMS"),
            "{}",
            run.gh_log
        );
    }

    // A pinned checksum: the right one passes, any other fails the job.
    let x64 = "rollbot-0.1.0-x86_64-unknown-linux-gnu.tar.gz";
    let pinned = sums
        .lines()
        .find(|l| l.ends_with(x64))
        .and_then(|l| l.split_whitespace().next())
        .expect("the x64 line");
    ok(
        &run_action(root.path(), "X64", &pinned.to_uppercase()).install,
        "a pinned checksum",
    );
    let wrong = run_action(root.path(), "X64", &"0".repeat(64));
    assert!(!wrong.install.status.success() && wrong.version.is_none());

    // A tarball replaced after SHA256SUMS was written fails the job before anything runs.
    let mut bytes = std::fs::read(assets.join(x64)).expect("tarball");
    bytes.push(0);
    std::fs::write(assets.join(x64), bytes).expect("tamper");
    let tampered = run_action(root.path(), "X64", "");
    assert!(!tampered.install.status.success() && tampered.version.is_none());
    let said = String::from_utf8_lossy(&tampered.install.stdout).into_owned()
        + &String::from_utf8_lossy(&tampered.install.stderr);
    assert!(said.contains("FAILED"), "sha256sum says why: {said}");
}
