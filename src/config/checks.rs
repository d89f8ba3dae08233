//! Health checks as configured (`[[images.<alias>.checks]]`): what to run after a rollback and
//! how its placeholders expand. `crate::checks` runs them.

use std::time::Duration;

use crate::secret::Secret;

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
    /// The values of rollbot's secrets: replaced by `[redacted]` wherever a report would show
    /// them (a check may print a token it read from a file rollbot also reads).
    pub redact: Vec<Secret>,
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

    pub(crate) fn kind_name(&self) -> &'static str {
        match self.kind {
            CheckKind::Command { .. } => "command",
            CheckKind::Http { .. } => "http",
        }
    }
}

/// The values of a check's `{image}`, `{digest}` and `{ref}` placeholders.
#[derive(Debug, Clone)]
pub struct Placeholders {
    pub image: String,
    pub digest: String,
    pub reference: String,
}

impl Placeholders {
    /// `template` with its placeholders filled in (`{{` and `}}` for literal braces).
    ///
    /// # Errors
    /// An unknown placeholder or an unmatched brace, named.
    pub fn expand(&self, template: &str) -> Result<String, String> {
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
