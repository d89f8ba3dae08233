//! deploy/RUNBOOK.md works as written: every ```` ```sh runnable ```` block is run, in order, with
//! `bash -euo pipefail` against a real registry where CI published v1, v2 and v3 (v3 live and
//! bad), with the built rollbot and Debian's skopeo on PATH; each must exit 0 (or the code its
//! `# expect-exit: N` line documents), and afterwards `latest` is at the good build.

use std::path::Path;
use std::process::{Command, Stdio};

use crate::manifests::Ci;

const RUNBOOK: &str = "deploy/RUNBOOK.md";
/// The info string that marks a block to run. Any other fence mentioning "runnable" is an error,
/// so a typo cannot silently skip a block.
const RUNNABLE: &str = "sh runnable";
/// Fewer runnable blocks than this means the extraction broke (a renamed info string), not that
/// the runbook got shorter: lower it only together with the runbook.
const MIN_BLOCKS: usize = 12;
/// Seconds one block may take (they take well under one each).
const BLOCK_TIMEOUT: &str = "120";

/// One runnable block: the line its fence opens on, its text, the exit code it documents.
#[derive(Debug, PartialEq, Eq)]
struct Block {
    line: usize,
    script: String,
    expect_exit: i32,
}

/// Every runnable block of `markdown`, in order. Panics on a fence whose info string mentions
/// "runnable" but is not exactly [`RUNNABLE`], on a malformed `# expect-exit:` line, and on an
/// unclosed runnable block.
fn runnable_blocks(markdown: &str) -> Vec<Block> {
    let mut blocks = Vec::new();
    // (fence, opening line, runnable?, lines so far)
    let mut open: Option<(String, usize, bool, Vec<&str>)> = None;
    for (index, line) in markdown.lines().enumerate() {
        let number = index + 1;
        let trimmed = line.trim_start();
        let fence_len = trimmed.chars().take_while(|&c| c == '`').count();
        let tilde_len = trimmed.chars().take_while(|&c| c == '~').count();
        let fence = if fence_len >= 3 {
            Some("`".repeat(fence_len))
        } else if tilde_len >= 3 {
            Some("~".repeat(tilde_len))
        } else {
            None
        };
        match (&mut open, fence) {
            (None, Some(fence)) => {
                let info = trimmed[fence.len()..].trim();
                let runnable = info == RUNNABLE;
                assert!(
                    runnable || !info.contains("runnable"),
                    "{RUNBOOK}:{number}: fence info string '{info}' mentions runnable but is not exactly '{RUNNABLE}'"
                );
                open = Some((fence, number, runnable, Vec::new()));
            }
            (Some((fence, opened, runnable, lines)), found) => {
                let closes = found.is_some_and(|f| f.starts_with(fence.as_str()))
                    && trimmed.trim_end().chars().all(|c| c == '`' || c == '~');
                if !closes {
                    lines.push(line);
                    continue;
                }
                if *runnable {
                    let script = lines.join("\n") + "\n";
                    blocks.push(Block {
                        line: *opened,
                        expect_exit: expected_exit(&script, *opened),
                        script,
                    });
                }
                open = None;
            }
            (None, None) => {}
        }
    }
    if let Some((_, opened, runnable, _)) = open {
        assert!(!runnable, "{RUNBOOK}:{opened}: runnable block never closed");
    }
    blocks
}

/// The code a `# expect-exit: N` line documents, else 0.
fn expected_exit(script: &str, opened: usize) -> i32 {
    let mut expected = None;
    for line in script.lines() {
        if let Some(rest) = line.trim().strip_prefix("# expect-exit:") {
            let code = rest.trim().parse::<i32>().unwrap_or_else(|_| {
                panic!("{RUNBOOK}:{opened}: '# expect-exit:{rest}' is not a number")
            });
            assert!(
                expected.replace(code).is_none(),
                "{RUNBOOK}:{opened}: two expect-exit lines"
            );
        }
    }
    expected.unwrap_or(0)
}

#[test]
fn extraction_finds_runnable_blocks_only_with_their_documented_exit_codes() {
    let markdown = "intro\n\n```sh\nnot run\n```\n\n```sh runnable\nrollbot gate \"$IMAGE\"\necho two\n```\n\n````text\n```sh runnable\nquoted, not run\n```\n````\n\n~~~sh runnable\n# expect-exit: 3\nfalse\n~~~\n";
    let blocks = runnable_blocks(markdown);
    assert_eq!(
        blocks,
        vec![
            Block {
                line: 7,
                script: "rollbot gate \"$IMAGE\"\necho two\n".to_owned(),
                expect_exit: 0,
            },
            Block {
                line: 18,
                script: "# expect-exit: 3\nfalse\n".to_owned(),
                expect_exit: 3,
            },
        ]
    );
}

#[test]
#[should_panic(expected = "mentions runnable but is not exactly")]
fn a_misspelt_runnable_fence_is_an_error_not_a_skipped_block() {
    runnable_blocks("```bash runnable\nrollbot gate x\n```\n");
}

#[test]
#[should_panic(expected = "is not a number")]
fn a_malformed_expect_exit_is_an_error() {
    runnable_blocks("```sh runnable\n# expect-exit: two\nfalse\n```\n");
}

/// Runs `script` with bash the way the runbook's reader would (strict mode, no stdin).
fn run_block(script: &str, env: &[(&str, String)], dir: &Path) -> (i32, String, String) {
    let mut command = Command::new("timeout");
    command
        .args([BLOCK_TIMEOUT, "bash", "-euo", "pipefail", "-c", script])
        .current_dir(dir)
        .env_clear()
        .stdin(Stdio::null());
    for (key, value) in env {
        command.env(key, value);
    }
    let output = command.output().expect("run bash");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn every_runnable_block_of_the_runbook_runs_and_latest_ends_at_the_good_build() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let markdown = std::fs::read_to_string(root.join(RUNBOOK)).expect("read the runbook");
    let blocks = runnable_blocks(&markdown);
    assert!(
        blocks.len() >= MIN_BLOCKS,
        "{RUNBOOK} has {} runnable blocks, expected at least {MIN_BLOCKS}: is the info string still '{RUNNABLE}'?",
        blocks.len()
    );
    for block in &blocks {
        // Only what the test machine has: rollbot and skopeo (docker, crane and buildx are
        // documented in plain `sh` blocks), and no command that does not exist yet.
        for word in block.script.split_whitespace() {
            assert!(
                !matches!(word, "docker" | "crane" | "drill"),
                "{RUNBOOK}:{}: a runnable block uses '{word}', which the tests cannot run",
                block.line
            );
        }
    }

    let ci = Ci::new();
    ci.build("v1");
    let good = ci.build("v2");
    let bad = ci.build("v3");
    assert_eq!(ci.latest().as_deref(), Some(bad.digest.as_str()));

    // The reader's environment: rollbot's config and skopeo's registries.conf say the test
    // registry speaks plain HTTP (as a reader's would for a local registry), so the blocks
    // run exactly as written.
    let home = tempfile::tempdir().expect("home");
    let config = home.path().join("rollbot.toml");
    std::fs::write(
        &config,
        format!("[registries.\"{}\"]\ninsecure = true\n", ci.registry.host),
    )
    .expect("write rollbot config");
    let containers = home.path().join(".config/containers");
    std::fs::create_dir_all(&containers).expect("containers config dir");
    std::fs::write(
        containers.join("registries.conf"),
        format!(
            "[[registry]]\nlocation = \"{}\"\ninsecure = true\n",
            ci.registry.host
        ),
    )
    .expect("write registries.conf");
    let bin = Path::new(env!("CARGO_BIN_EXE_rollbot"))
        .parent()
        .expect("rollbot's directory");
    let env = [
        (
            "PATH",
            format!("{}:/usr/local/bin:/usr/bin:/bin", bin.display()),
        ),
        ("HOME", home.path().display().to_string()),
        ("USER", "runbook".to_owned()),
        ("ROLLBOT_CONFIG", config.display().to_string()),
        ("REGISTRY", ci.registry.host.clone()),
        ("IMAGE", ci.image()),
        ("GOOD", good.digest.clone()),
        ("BAD", bad.digest.clone()),
    ];

    let mut moved_by = None;
    for block in &blocks {
        let before = ci.latest();
        let (code, stdout, stderr) = run_block(&block.script, &env, root);
        // Shown with --nocapture, or for the test that failed.
        println!(
            "=== {RUNBOOK}:{} exited {code}\n{}--- stdout\n{stdout}--- stderr\n{stderr}",
            block.line, block.script
        );
        assert_eq!(
            code, block.expect_exit,
            "{RUNBOOK}:{}: the block exited {code}, expected {} (124: it timed out)\n--- block\n{}--- stdout\n{stdout}--- stderr\n{stderr}",
            block.line, block.expect_exit, block.script
        );
        let after = ci.latest();
        if moved_by.is_none()
            && before.as_deref() == Some(bad.digest.as_str())
            && after.as_deref() == Some(good.digest.as_str())
        {
            moved_by = Some(block.line);
        }
    }
    assert!(
        moved_by.is_some(),
        "no runnable block moved latest from the bad build to the good one"
    );
    assert_eq!(
        ci.latest().as_deref(),
        Some(good.digest.as_str()),
        "after the runbook, latest is at the good build"
    );
}
