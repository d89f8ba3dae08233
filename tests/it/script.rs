//! deploy/scripts/rollback-docker-image.sh against a real registry, both ways it works: with the
//! built rollbot on PATH, and with only skopeo (a PATH of symlinks to exactly what the script
//! needs, so rollbot cannot be found). Tags move to the exact previous digest, an index stays the
//! same index, and bad input changes nothing.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::support::block_on;
use crate::support::images::{Kind, Pushed, Seeder};
use crate::support::registry::TestRegistry;
use crate::support::Run;

const REPO: &str = "acme/app";
const SCRIPT: &str = "deploy/scripts/rollback-docker-image.sh";
/// What the script runs besides rollbot; the skopeo-only PATH has exactly these.
const TOOLS: [&str; 4] = ["bash", "cat", "sha256sum", "skopeo"];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// The built rollbot first on PATH (skopeo is there too, for the read-back).
    Rollbot,
    /// No rollbot anywhere on PATH: the skopeo copy path.
    Skopeo,
}

/// A registry with v1 and v2 of `acme/app` pushed; `latest` and `stable` at v2 (live).
struct Fixture {
    registry: TestRegistry,
    seeder: Seeder,
    v1: Pushed,
    v2: Pushed,
    home: tempfile::TempDir,
    tools: tempfile::TempDir,
}

impl Fixture {
    fn new(kind: Kind) -> Fixture {
        let registry = TestRegistry::start();
        let seeder = Seeder::new(&registry.host);
        let v1 = block_on(seeder.push(REPO, kind, "v1", &["v1"]));
        let v2 = block_on(seeder.push(REPO, kind, "v2", &["v2", "latest", "stable"]));
        let tools = tempfile::tempdir().expect("tools dir");
        for tool in TOOLS {
            let target = ["/usr/bin", "/bin"]
                .iter()
                .map(|dir| Path::new(dir).join(tool))
                .find(|path| path.exists())
                .unwrap_or_else(|| {
                    panic!("{tool} is not installed (deploy/dev/test.sh installs skopeo)")
                });
            std::os::unix::fs::symlink(target, tools.path().join(tool)).expect("symlink");
        }
        Fixture {
            registry,
            seeder,
            v1,
            v2,
            home: tempfile::tempdir().expect("home"),
            tools,
        }
    }

    fn image(&self) -> String {
        format!("{}/{REPO}", self.registry.host)
    }

    fn path(&self, mode: Mode) -> String {
        match mode {
            Mode::Rollbot => {
                let bin = Path::new(env!("CARGO_BIN_EXE_rollbot"))
                    .parent()
                    .expect("rollbot's directory");
                format!("{}:{}", bin.display(), self.tools.path().display())
            }
            Mode::Skopeo => self.tools.path().display().to_string(),
        }
    }

    /// Runs the script with `env` (IMAGE, TAGS, …) and `args`; plain HTTP via INSECURE=1.
    fn run(&self, mode: Mode, env: &[(&str, &str)], args: &[&str]) -> Run {
        let script: PathBuf = Path::new(env!("CARGO_MANIFEST_DIR")).join(SCRIPT);
        let mut command = Command::new(&script);
        command
            .env_clear()
            .env("PATH", self.path(mode))
            .env("HOME", self.home.path())
            .env("USER", "script-test")
            .stdin(Stdio::null());
        for (key, value) in env {
            command.env(key, value);
        }
        let output = command.args(args).output().expect("run the script");
        Run {
            code: output.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }

    /// IMAGE and INSECURE=1 plus `extra`, rolling back to `digest`.
    fn rollback(&self, mode: Mode, extra: &[(&str, &str)], digest: &str) -> Run {
        let image = self.image();
        let mut env = vec![("IMAGE", image.as_str()), ("INSECURE", "1")];
        env.extend_from_slice(extra);
        self.run(mode, &env, &[digest])
    }

    fn digest_of(&self, tag: &str) -> Option<String> {
        block_on(self.seeder.digest_of(REPO, tag))
    }

    fn tags(&self) -> Vec<Option<String>> {
        ["latest", "stable", "v1", "v2", "rollbot-hold"]
            .iter()
            .map(|tag| self.digest_of(tag))
            .collect()
    }
}

fn explain(run: &Run) -> String {
    format!(
        "exit {}\n--- stdout\n{}--- stderr\n{}",
        run.code, run.stdout, run.stderr
    )
}

fn moves_latest_and_stable_to_the_previous_index_unchanged(mode: Mode, kind: Kind) {
    let f = Fixture::new(kind);
    let run = f.rollback(mode, &[("TAGS", "latest,stable")], &f.v1.digest);
    assert_eq!(run.code, 0, "{}", explain(&run));
    for tag in ["latest", "stable"] {
        assert_eq!(
            f.digest_of(tag).as_deref(),
            Some(f.v1.digest.as_str()),
            "{tag}"
        );
        let (bytes, media_type) = block_on(f.seeder.get_raw(REPO, tag));
        assert_eq!(
            bytes, f.v1.bytes,
            "{tag} serves the exact bytes of v1's index"
        );
        assert_eq!(
            media_type, f.v1.media_type,
            "{tag} is still a multi-platform list"
        );
        assert!(
            run.stdout
                .lines()
                .any(|l| l.contains(tag) && l.contains("OK") && l.contains(&f.v1.digest)),
            "a per-tag OK line for {tag}:\n{}",
            explain(&run)
        );
    }
    for (platform, child) in &f.v1.children {
        assert_eq!(
            f.digest_of(child).as_deref(),
            Some(child.as_str()),
            "{platform} is still there"
        );
    }
    assert_eq!(f.digest_of("v2").as_deref(), Some(f.v2.digest.as_str()));
    let hold = f.digest_of("rollbot-hold");
    match mode {
        Mode::Rollbot => assert!(hold.is_some(), "rollbot set its hold:\n{}", explain(&run)),
        Mode::Skopeo => {
            assert!(hold.is_none(), "skopeo sets no hold");
            assert!(
                run.stdout.contains("rollbot is not on PATH"),
                "{}",
                explain(&run)
            );
        }
    }
    // Again: nothing to do, still verified.
    let again = f.rollback(mode, &[("TAGS", "latest,stable")], &f.v1.digest);
    assert_eq!(again.code, 0, "{}", explain(&again));
    assert_eq!(f.digest_of("latest").as_deref(), Some(f.v1.digest.as_str()));
}

#[test]
fn with_rollbot_latest_and_stable_move_to_the_previous_index_and_are_verified() {
    moves_latest_and_stable_to_the_previous_index_unchanged(Mode::Rollbot, Kind::OciIndex);
}

#[test]
fn without_rollbot_skopeo_moves_latest_and_stable_and_keeps_every_platform() {
    moves_latest_and_stable_to_the_previous_index_unchanged(Mode::Skopeo, Kind::OciIndex);
    moves_latest_and_stable_to_the_previous_index_unchanged(Mode::Skopeo, Kind::DockerList);
}

#[test]
fn the_default_tag_is_latest_only() {
    let f = Fixture::new(Kind::OciIndex);
    let run = f.rollback(Mode::Skopeo, &[], &f.v1.digest);
    assert_eq!(run.code, 0, "{}", explain(&run));
    assert_eq!(f.digest_of("latest").as_deref(), Some(f.v1.digest.as_str()));
    assert_eq!(f.digest_of("stable").as_deref(), Some(f.v2.digest.as_str()));
}

#[test]
fn bad_input_exits_2_and_changes_nothing_either_way() {
    let f = Fixture::new(Kind::OciIndex);
    let unknown = format!("sha256:{}", "0".repeat(64));
    let upper = f.v1.digest.to_uppercase().replace("SHA256:", "sha256:");
    let malformed = [
        "sha256:abc",
        upper.as_str(),
        &f.v1.digest[7..],
        "v1",
        "md5:0123456789abcdef0123456789abcdef",
    ];
    let before = f.tags();
    for mode in [Mode::Rollbot, Mode::Skopeo] {
        for digest in malformed {
            let run = f.rollback(mode, &[("TAGS", "latest,stable")], digest);
            assert_eq!(run.code, 2, "{mode:?} {digest}: {}", explain(&run));
            assert!(run.stderr.contains("not a digest"), "{}", explain(&run));
        }
        let run = f.rollback(mode, &[("TAGS", "latest,stable")], &unknown);
        assert_eq!(run.code, 2, "{mode:?} unknown digest: {}", explain(&run));
        let run = f.rollback(mode, &[("TAGS", "latest,nope")], &f.v1.digest);
        assert_eq!(run.code, 2, "{mode:?} unknown tag: {}", explain(&run));
        let run = f.rollback(mode, &[("TAGS", "latest,no tag")], &f.v1.digest);
        assert_eq!(run.code, 2, "{mode:?} malformed tag: {}", explain(&run));
        for image in [format!("{}:latest", f.image()), "acme/app".to_owned()] {
            let run = f.run(
                mode,
                &[("IMAGE", &image), ("INSECURE", "1")],
                &[&f.v1.digest],
            );
            assert_eq!(run.code, 2, "{mode:?} IMAGE={image}: {}", explain(&run));
        }
        let run = f.run(mode, &[("INSECURE", "1")], &[&f.v1.digest]);
        assert_eq!(run.code, 2, "{mode:?} no IMAGE: {}", explain(&run));
        assert!(run.stderr.contains("IMAGE is not set"), "{}", explain(&run));
        assert!(
            run.stderr.contains("Usage:"),
            "usage on stderr: {}",
            explain(&run)
        );
        let image = f.image();
        let run = f.run(mode, &[("IMAGE", &image)], &[]);
        assert_eq!(run.code, 2, "{mode:?} no digest: {}", explain(&run));
        assert_eq!(
            f.tags(),
            before,
            "{mode:?}: nothing changed, no hold written"
        );
    }
}

#[test]
fn an_incomplete_target_is_refused_with_3_and_help_exits_0() {
    let f = Fixture::new(Kind::OciIndex);
    let (_, arm64) = f.v1.children[1].clone();
    block_on(f.seeder.delete_manifest(REPO, &arm64));
    let before = f.tags();
    for mode in [Mode::Rollbot, Mode::Skopeo] {
        let run = f.rollback(mode, &[("TAGS", "latest,stable")], &f.v1.digest);
        assert_eq!(run.code, 3, "{mode:?}: {}", explain(&run));
        assert_eq!(f.tags(), before, "{mode:?}: nothing changed");
        let help = f.run(mode, &[], &["--help"]);
        assert_eq!(help.code, 0, "{}", explain(&help));
        assert!(help.stdout.starts_with("Usage:"), "{}", explain(&help));
        assert!(help.stdout.contains("Exit codes"), "{}", explain(&help));
    }
}

/// (review) TAGS is one comma-separated list: a newline in it is not a separator, and what
/// follows it must not be dropped silently (moving `latest` only, exit 0, `stable` untouched).
#[test]
fn a_newline_in_tags_is_bad_input_not_a_silently_shorter_list() {
    let f = Fixture::new(Kind::OciIndex);
    let before = f.tags();
    for mode in [Mode::Rollbot, Mode::Skopeo] {
        let run = f.rollback(mode, &[("TAGS", "latest\nstable")], &f.v1.digest);
        assert_eq!(run.code, 2, "{mode:?}: {}", explain(&run));
        assert_eq!(f.tags(), before, "{mode:?}: nothing changed");
    }
}

/// (review) REASON is free text: one that starts with '-' is still the reason, not an option
/// rollbot refuses (which made the rollback exit 2 with nothing changed).
#[test]
fn a_reason_starting_with_a_dash_is_still_the_reason() {
    let f = Fixture::new(Kind::OciIndex);
    let run = f.rollback(
        Mode::Rollbot,
        &[
            ("TAGS", "latest"),
            ("REASON", "-x: the deploy broke logins"),
        ],
        &f.v1.digest,
    );
    assert_eq!(run.code, 0, "{}", explain(&run));
    assert_eq!(f.digest_of("latest").as_deref(), Some(f.v1.digest.as_str()));
}
