//! Health checks run after a retag: commands (argv, no shell) and HTTP probes, with timeouts.
//!
//! Placeholders in a command's arguments and in an HTTP URL: `{image}` (`host/repo`),
//! `{digest}` (`sha256:…`), `{ref}` (`host/repo@sha256:…`); `{{` and `}}` are literal braces.
//! Commands also get them as `ROLLBOT_IMAGE`, `ROLLBOT_DIGEST` and `ROLLBOT_REF` in their
//! environment. They do not inherit rollbot's secrets: every variable a `*_env` key of an
//! enabled section or a registry names, and every other `ROLLBOT_*` variable, is removed from
//! their environment.

use std::time::{Duration, Instant};

use futures_util::future::join_all;
use serde::Serialize;

use crate::domain::model::{Digest, ImageRef};

/// One configured check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckSpec {
    pub name: String,
    pub kind: CheckKind,
    /// Per attempt.
    pub timeout: Duration,
    /// Tries before the check counts as failed (a deployment may need a moment to pick up the
    /// rolled-back image).
    pub attempts: u32,
    /// Pause between attempts.
    pub interval: Duration,
    /// Environment variables a command must not see: those the config reads secrets from.
    /// (Every `ROLLBOT_…` variable is withheld too, except the three set for the check.)
    pub hidden_env: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CheckKind {
    /// Runs `argv[0]` with the rest as arguments; passes on exit status 0.
    Command { argv: Vec<String> },
    /// `GET url`; passes when the answer has `expect_status`.
    Http { url: String, expect_status: u16 },
}

impl CheckSpec {
    /// Checks placeholders and, for HTTP checks, that the URL is an absolute http(s) URL.
    ///
    /// # Errors
    /// A message naming the unknown placeholder or the bad URL.
    pub fn validate(&self) -> Result<(), String> {
        let sample = Placeholders {
            image: "registry.example.com/acme/app".into(),
            digest: format!("sha256:{}", "0".repeat(64)),
            reference: format!("registry.example.com/acme/app@sha256:{}", "0".repeat(64)),
        };
        match &self.kind {
            CheckKind::Command { argv } => {
                for arg in argv {
                    sample.expand(arg)?;
                }
            }
            CheckKind::Http { url, .. } => {
                let expanded = sample.expand(url)?;
                let parsed = reqwest::Url::parse(&expanded)
                    .map_err(|error| format!("http = '{url}' is not a URL: {error}"))?;
                if !matches!(parsed.scheme(), "http" | "https") {
                    return Err(format!(
                        "http = '{url}' must start with http:// or https://"
                    ));
                }
            }
        }
        Ok(())
    }

    fn kind_name(&self) -> &'static str {
        match self.kind {
            CheckKind::Command { .. } => "command",
            CheckKind::Http { .. } => "http",
        }
    }
}

/// What one check did.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct CheckReport {
    pub name: String,
    pub kind: String,
    pub passed: bool,
    pub attempts: u32,
    pub duration_ms: u64,
    /// Why it failed, or a short note on what passed.
    pub detail: String,
}

struct Placeholders {
    image: String,
    digest: String,
    reference: String,
}

impl Placeholders {
    fn expand(&self, template: &str) -> Result<String, String> {
        let mut out = String::with_capacity(template.len());
        let mut rest = template;
        while let Some(index) = rest.find(['{', '}']) {
            out.push_str(&rest[..index]);
            let tail = &rest[index..];
            if tail.starts_with("{{") || tail.starts_with("}}") {
                out.push_str(&tail[..1]);
                rest = &tail[2..];
                continue;
            }
            if tail.starts_with('}') {
                return Err(format!(
                    "unmatched '}}' in '{template}' (write '}}}}' for a literal brace)"
                ));
            }
            let Some(end) = tail.find('}') else {
                return Err(format!(
                    "unmatched '{{' in '{template}' (write '{{{{' for a literal brace)"
                ));
            };
            let value = match &tail[1..end] {
                "image" => &self.image,
                "digest" => &self.digest,
                "ref" => &self.reference,
                other => {
                    return Err(format!(
                        "unknown placeholder {{{other}}} in '{template}' (known: {{image}}, {{digest}}, {{ref}})"
                    ))
                }
            };
            out.push_str(value);
            rest = &tail[end + 1..];
        }
        out.push_str(rest);
        Ok(out)
    }
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
    let detail = loop {
        attempt += 1;
        let result = match &spec.kind {
            CheckKind::Command { argv } => {
                run_command(argv, spec.timeout, placeholders, &spec.hidden_env).await
            }
            CheckKind::Http { url, expect_status } => match http {
                Some(client) => {
                    run_http(client, url, *expect_status, spec.timeout, placeholders).await
                }
                None => Err("no HTTP client".to_owned()),
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
                    detail: note,
                }
            }
            Err(why) if attempt >= spec.attempts => break why,
            Err(why) => {
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
        detail,
    }
}

async fn run_command(
    argv: &[String],
    timeout: Duration,
    placeholders: &Placeholders,
    hidden_env: &[String],
) -> Result<String, String> {
    let expanded: Vec<String> = argv
        .iter()
        .map(|arg| placeholders.expand(arg))
        .collect::<Result<_, _>>()?;
    let (program, args) = expanded
        .split_first()
        .ok_or_else(|| "empty command".to_owned())?;
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
        .map_err(|error| format!("cannot run '{program}': {error}"))?;
    // On timeout the future (and with it the child) is dropped, and kill_on_drop kills it.
    let output = match tokio::time::timeout(timeout, child.wait_with_output()).await {
        Ok(Ok(output)) => output,
        Ok(Err(error)) => return Err(format!("'{program}' failed to run: {error}")),
        Err(_) => {
            return Err(format!(
                "'{program}' did not finish within {}",
                humantime::format_duration(timeout)
            ))
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
            .map(|line| line.chars().take(300).collect::<String>())
    };
    let said = last_line(&output.stderr).or_else(|| last_line(&output.stdout));
    let status = match output.status.code() {
        Some(code) => format!("exited {code}"),
        None => "was killed by a signal".to_owned(),
    };
    Err(match said {
        Some(line) => format!("'{program}' {status}: {line}"),
        None => format!("'{program}' {status}"),
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

/// `reqwest` hides the useful part ("Connection refused") in its source chain.
pub(crate) fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
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
        assert_eq!(failed, Err("'sh' exited 3: boom".to_owned()));
        let slow = run_command(
            &["sleep".into(), "5".into()],
            Duration::from_millis(100),
            &p,
            &[],
        )
        .await;
        assert_eq!(slow, Err("'sleep' did not finish within 100ms".to_owned()));
        let missing =
            run_command(&["/nonexistent/x".into()], Duration::from_secs(1), &p, &[]).await;
        assert!(missing
            .expect_err("missing")
            .starts_with("cannot run '/nonexistent/x'"));
    }
}
