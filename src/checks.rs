//! Health checks run after a retag: commands (argv, no shell) and HTTP probes, with timeouts.
//!
//! Placeholders in a command's arguments and in an HTTP URL: `{image}` (`host/repo`),
//! `{digest}` (`sha256:…`), `{ref}` (`host/repo@sha256:…`); `{{` and `}}` are literal braces.
//! Commands also get them as `ROLLBOT_IMAGE`, `ROLLBOT_DIGEST` and `ROLLBOT_REF` in their
//! environment. They do not inherit rollbot's secrets: every variable a `*_env` key of an
//! enabled section or a registry names, and every other `ROLLBOT_*` variable, is removed from
//! their environment.
//!
//! What a failing command printed (its last non-empty line) is reported, but only after every
//! secret value rollbot holds is replaced by `[redacted]`, and cut to
//! [`MAX_OUTPUT_BYTES`]; it is kept apart ([`CheckReport::output`]) so public notifications can
//! leave it out.

use std::time::{Duration, Instant};

use futures_util::future::join_all;

use crate::config::{CheckKind, CheckSpec, Placeholders};
use crate::domain::model::{Digest, ImageRef};
use crate::domain::record::CheckReport;
use crate::error_chain;
use crate::secret::Secret;

/// The most of a check's own output a report carries (a few hundred bytes say what went wrong;
/// a log dump does not belong in chat).
pub const MAX_OUTPUT_BYTES: usize = 300;

/// What replaces a secret's value in a check's report.
pub const REDACTED: &str = "[redacted]";

/// Why an attempt failed: rollbot's own words, and what the check printed.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Failure {
    summary: String,
    output: Option<String>,
}

impl Failure {
    fn new(summary: String) -> Failure {
        Failure {
            summary,
            output: None,
        }
    }

    /// Secrets redacted (summary and output) and the output cut to [`MAX_OUTPUT_BYTES`].
    fn safe(self, secrets: &[Secret]) -> Failure {
        Failure {
            summary: redact(&self.summary, secrets),
            output: self.output.map(|output| cap(&redact(&output, secrets))),
        }
    }

    fn detail(&self) -> String {
        match &self.output {
            Some(output) => format!("{}: {output}", self.summary),
            None => self.summary.clone(),
        }
    }
}

/// `text` with every non-empty secret value replaced by [`REDACTED`] (longest first, so a
/// secret that contains another is not left half visible).
pub fn redact(text: &str, secrets: &[Secret]) -> String {
    let mut values: Vec<&str> = secrets
        .iter()
        .map(Secret::expose)
        .filter(|v| !v.is_empty())
        .collect();
    values.sort_by_key(|v| std::cmp::Reverse(v.len()));
    let mut out = text.to_owned();
    for value in values {
        if out.contains(value) {
            out = out.replace(value, REDACTED);
        }
    }
    out
}

/// `text` cut to at most [`MAX_OUTPUT_BYTES`] (on a character boundary), saying so.
fn cap(text: &str) -> String {
    if text.len() <= MAX_OUTPUT_BYTES {
        return text.to_owned();
    }
    let mut end = MAX_OUTPUT_BYTES;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… (cut, {} bytes in all)", &text[..end], text.len())
}

/// Runs every check against `image@digest`, concurrently, and reports each.
pub async fn run_all(checks: &[CheckSpec], image: &ImageRef, digest: &Digest) -> Vec<CheckReport> {
    if checks.is_empty() {
        return Vec::new();
    }
    let placeholders = Placeholders {
        image: image.to_string(),
        digest: digest.to_string(),
        reference: image.at(digest),
    };
    let needs_http = checks
        .iter()
        .any(|c| matches!(c.kind, CheckKind::Http { .. }));
    let http = if needs_http {
        match reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .build()
        {
            Ok(client) => Some(client),
            Err(error) => {
                let detail = format!("cannot build the HTTP client for checks: {error}");
                return checks
                    .iter()
                    .map(|spec| CheckReport {
                        name: spec.name.clone(),
                        kind: spec.kind_name().to_owned(),
                        passed: false,
                        attempts: 0,
                        duration_ms: 0,
                        detail: detail.clone(),
                        output: None,
                    })
                    .collect();
            }
        }
    } else {
        None
    };
    join_all(
        checks
            .iter()
            .map(|spec| run_one(spec, &placeholders, http.as_ref())),
    )
    .await
}

async fn run_one(
    spec: &CheckSpec,
    placeholders: &Placeholders,
    http: Option<&reqwest::Client>,
) -> CheckReport {
    let started = Instant::now();
    let mut attempt = 0;
    let failure = loop {
        attempt += 1;
        let result = match &spec.kind {
            CheckKind::Command { argv } => {
                run_command(argv, spec.timeout, placeholders, &spec.hidden_env).await
            }
            CheckKind::Http { url, expect_status } => match http {
                Some(client) => run_http(client, url, *expect_status, spec.timeout, placeholders)
                    .await
                    .map_err(Failure::new),
                None => Err(Failure::new("no HTTP client".to_owned())),
            },
        };
        match result {
            Ok(note) => {
                return CheckReport {
                    name: spec.name.clone(),
                    kind: spec.kind_name().to_owned(),
                    passed: true,
                    attempts: attempt,
                    duration_ms: millis(started.elapsed()),
                    detail: redact(&note, &spec.redact),
                    output: None,
                }
            }
            Err(failure) if attempt >= spec.attempts => break failure.safe(&spec.redact),
            Err(failure) => {
                let why = failure.safe(&spec.redact).detail();
                tracing::info!(check = %spec.name, attempt, %why, "Health check failed, retrying.");
                tokio::time::sleep(spec.interval).await;
            }
        }
    };
    CheckReport {
        name: spec.name.clone(),
        kind: spec.kind_name().to_owned(),
        passed: false,
        attempts: attempt,
        duration_ms: millis(started.elapsed()),
        detail: failure.detail(),
        output: failure.output,
    }
}

async fn run_command(
    argv: &[String],
    timeout: Duration,
    placeholders: &Placeholders,
    hidden_env: &[String],
) -> Result<String, Failure> {
    let expanded: Vec<String> = argv
        .iter()
        .map(|arg| placeholders.expand(arg))
        .collect::<Result<_, _>>()
        .map_err(Failure::new)?;
    let (program, args) = expanded
        .split_first()
        .ok_or_else(|| Failure::new("empty command".to_owned()))?;
    let mut command = tokio::process::Command::new(program);
    // Secrets rollbot holds (registry passwords, chat and API tokens) stay with rollbot.
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("ROLLBOT_") {
            command.env_remove(&name);
        }
    }
    for name in hidden_env {
        command.env_remove(name);
    }
    let child = command
        .args(args)
        .env("ROLLBOT_IMAGE", &placeholders.image)
        .env("ROLLBOT_DIGEST", &placeholders.digest)
        .env("ROLLBOT_REF", &placeholders.reference)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|error| Failure::new(format!("cannot run '{program}': {error}")))?;
    // On timeout the future (and with it the child) is dropped, and kill_on_drop kills it.
    let output = match tokio::time::timeout(timeout, child.wait_with_output()).await {
        Ok(Ok(output)) => output,
        Ok(Err(error)) => return Err(Failure::new(format!("'{program}' failed to run: {error}"))),
        Err(_) => {
            return Err(Failure::new(format!(
                "'{program}' did not finish within {}",
                humantime::format_duration(timeout)
            )))
        }
    };
    if output.status.success() {
        return Ok(format!("'{program}' exited 0"));
    }
    let last_line = |bytes: &[u8]| {
        String::from_utf8_lossy(bytes)
            .lines()
            .rev()
            .map(str::trim)
            .find(|line| !line.is_empty())
            .map(str::to_owned)
    };
    let said = last_line(&output.stderr).or_else(|| last_line(&output.stdout));
    let status = match output.status.code() {
        Some(code) => format!("exited {code}"),
        None => "was killed by a signal".to_owned(),
    };
    Err(Failure {
        summary: format!("'{program}' {status}"),
        output: said,
    })
}

async fn run_http(
    client: &reqwest::Client,
    url: &str,
    expect_status: u16,
    timeout: Duration,
    placeholders: &Placeholders,
) -> Result<String, String> {
    let url = placeholders.expand(url)?;
    let response = client
        .get(&url)
        .timeout(timeout)
        .send()
        .await
        .map_err(|error| {
            if error.is_timeout() {
                format!(
                    "GET {url} did not answer within {}",
                    humantime::format_duration(timeout)
                )
            } else {
                format!("GET {url} failed: {}", error_chain(&error))
            }
        })?;
    let status = response.status().as_u16();
    if status == expect_status {
        Ok(format!("GET {url} answered {status}"))
    } else {
        Err(format!(
            "GET {url} answered {status}, expected {expect_status}"
        ))
    }
}

pub(crate) fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn placeholders() -> Placeholders {
        Placeholders {
            image: "r/a".into(),
            digest: "sha256:d".into(),
            reference: "r/a@sha256:d".into(),
        }
    }

    #[test]
    fn placeholders_expand_and_braces_escape() {
        let p = placeholders();
        assert_eq!(
            p.expand("docker://{ref} {image} {digest}").expect("ok"),
            "docker://r/a@sha256:d r/a sha256:d"
        );
        assert_eq!(p.expand("{{\"a\":1}}").expect("ok"), "{\"a\":1}");
        assert!(p
            .expand("{tag}")
            .expect_err("unknown")
            .contains("unknown placeholder {tag}"));
        assert!(p.expand("{image").is_err());
        assert!(p.expand("image}").is_err());
    }

    #[test]
    fn command_checks_report_exit_status_output_and_timeouts() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        runtime.block_on(command_checks());
    }

    async fn command_checks() {
        let p = placeholders();
        let ok = run_command(
            &[
                "sh".into(),
                "-c".into(),
                "test \"$ROLLBOT_REF\" = {ref}".into(),
            ],
            Duration::from_secs(5),
            &p,
            &[],
        )
        .await;
        assert!(ok.is_ok(), "{ok:?}");
        let failed = run_command(
            &["sh".into(), "-c".into(), "echo boom >&2; exit 3".into()],
            Duration::from_secs(5),
            &p,
            &[],
        )
        .await;
        assert_eq!(
            failed.map_err(|f| f.detail()),
            Err("'sh' exited 3: boom".to_owned())
        );
        let slow = run_command(
            &["sleep".into(), "5".into()],
            Duration::from_millis(100),
            &p,
            &[],
        )
        .await;
        assert_eq!(
            slow.map_err(|f| f.detail()),
            Err("'sleep' did not finish within 100ms".to_owned())
        );
        let missing =
            run_command(&["/nonexistent/x".into()], Duration::from_secs(1), &p, &[]).await;
        assert!(missing
            .expect_err("missing")
            .detail()
            .starts_with("cannot run '/nonexistent/x'"));
    }

    #[test]
    fn check_output_is_redacted_then_cut_and_can_be_withheld() {
        let secrets = [
            Secret::new("ghp-token"),
            Secret::new("ghp-token-long"),
            Secret::new(""),
        ];
        let cases: &[(&str, &str)] = &[
            ("boom", "boom"),
            ("token=ghp-token-long!", "token=[redacted]!"),
            ("a ghp-token b ghp-token", "a [redacted] b [redacted]"),
            ("no secret here", "no secret here"),
        ];
        for (said, expected) in cases {
            let failure = Failure {
                summary: "'sh' exited 1".into(),
                output: Some((*said).to_owned()),
            }
            .safe(&secrets);
            assert_eq!(failure.output.as_deref(), Some(*expected));
            assert_eq!(failure.detail(), format!("'sh' exited 1: {expected}"));
        }
        // Redacted before it is cut: a secret straddling the limit does not leave its start.
        let said = format!(
            "{}ghp-token-long{}",
            "x".repeat(MAX_OUTPUT_BYTES - 5),
            "y".repeat(900)
        );
        let failure = Failure {
            summary: "'sh' exited 1".into(),
            output: Some(said.clone()),
        }
        .safe(&secrets);
        let output = failure.output.expect("output");
        assert!(!output.contains("ghp"), "{output}");
        assert!(
            output.ends_with(&format!("… (cut, {} bytes in all)", said.len() - 14 + 10)),
            "{output}"
        );
        assert!(output.len() <= MAX_OUTPUT_BYTES + 40, "{}", output.len());
        // A multi-byte character at the limit is not split.
        let wide = "é".repeat(MAX_OUTPUT_BYTES);
        assert!(cap(&wide).starts_with(&"é".repeat(MAX_OUTPUT_BYTES / 2)));

        let report = CheckReport {
            name: "smoke".into(),
            kind: "command".into(),
            passed: false,
            attempts: 1,
            duration_ms: 3,
            detail: "'sh' exited 1: it broke".into(),
            output: Some("it broke".into()),
        };
        assert_eq!(
            report.withheld_detail().as_deref(),
            Some("'sh' exited 1 (its output is not published here)")
        );
        let quiet = CheckReport {
            output: None,
            detail: "'sh' exited 1".into(),
            ..report
        };
        assert_eq!(quiet.withheld_detail(), None);
    }

    #[test]
    fn a_failing_command_reports_its_last_line_redacted_and_capped() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let spec = CheckSpec {
            name: "leaky".into(),
            kind: CheckKind::Command {
                argv: vec![
                    "sh".into(),
                    "-c".into(),
                    format!(
                        "echo first; echo \"token s3cr3t-value {}\"; exit 1",
                        "z".repeat(600)
                    ),
                ],
            },
            timeout: Duration::from_secs(5),
            attempts: 1,
            interval: Duration::from_millis(1),
            hidden_env: Vec::new(),
            redact: vec![Secret::new("s3cr3t-value")],
        };
        let report = runtime.block_on(run_one(&spec, &placeholders(), None));
        assert!(!report.passed);
        let output = report.output.clone().expect("output");
        assert!(output.starts_with("token [redacted] zzz"), "{output}");
        assert!(output.contains("… (cut, "), "{output}");
        assert!(!report.detail.contains("s3cr3t"), "{}", report.detail);
        assert_eq!(report.detail, format!("'sh' exited 1: {output}"));
    }
}
