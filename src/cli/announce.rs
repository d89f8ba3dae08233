//! Break-glass tells people too: after `rollbot rollback` changed the registry, the same
//! announcement as the daemon's (GitHub Discussion, Docker Hub banner, same templates) when
//! `[github]` / `[dockerhub]` are configured. A failure to announce is a warning on stderr; the
//! exit code stays about the registry. `--no-announce` skips it.

use crate::config::ImageSettings;
use crate::daemon::ServeSettings;
use crate::domain::clock::{Clock as _, SystemClock};
use crate::domain::rollback::Timestamp;
use crate::notify::now::{announce_now, Announced};
use crate::notify::templates::{
    rollback_command, Context, Links, PersonContext, StepContext, TagDigest, Templates,
};
use crate::pipeline::{Outcome, Report, TagStatus};

/// Who did it and why, as the command line says.
pub(super) struct Who<'a> {
    pub alias: &'a str,
    pub by: String,
    pub reason: Option<String>,
    pub entry: Option<&'a ImageSettings>,
}

/// The event to announce: `succeeded`, or `failed` when tags may have moved; nothing when the
/// registry was not changed (dry run, refused, declined, already there).
fn event(report: &Report) -> Option<&'static str> {
    match report.outcome {
        Outcome::Succeeded => Some("succeeded"),
        Outcome::RetagFailed | Outcome::VerifyFailed
            if report
                .tags
                .iter()
                .any(|t| matches!(t.status, TagStatus::Moved | TagStatus::Unknown)) =>
        {
            Some("failed")
        }
        _ => None,
    }
}

/// Announces `report` if it changed the registry and a service is configured; prints what was
/// done on stderr (stdout may be `--json`).
pub(super) async fn announce(all: &ServeSettings, report: &Report, who: Who<'_>) {
    let sinks = &all.notify;
    if sinks.github.is_none() && sinks.dockerhub.is_none() {
        return;
    }
    let Some(event) = event(report) else {
        return;
    };
    let overrides: Vec<_> = sinks
        .templates
        .iter()
        .map(|(name, path)| (*name, path.as_path()))
        .collect();
    let templates = match Templates::load(&overrides) {
        Ok(templates) => templates,
        Err(problems) => {
            eprintln!("warning: not announced: templates: {}", problems.join("; "));
            return;
        }
    };
    let now = SystemClock.now();
    let label = label(now);
    let context = context(all, report, &who, event, &label, now);
    let repository = who.entry.and_then(|e| e.dockerhub.as_deref());
    let Announced {
        discussion,
        banner,
        warnings,
    } = announce_now(sinks, &templates, context, &label, repository).await;
    if let Some(url) = discussion {
        eprintln!("announced: GitHub Discussion {url}");
    }
    if let Some(repository) = banner {
        eprintln!("announced: Docker Hub banner on {repository}");
    }
    for warning in warnings {
        eprintln!("warning: {warning} (the rollback itself is as reported)");
    }
}

/// `cli-20261202-080512`: what marks this rollback's banner, and names it in the title.
fn label(now: Timestamp) -> String {
    let time = now.rfc3339();
    let digits: String = time.chars().take(19).filter(char::is_ascii_digit).collect();
    format!(
        "cli-{}-{}",
        &digits[..8.min(digits.len())],
        &digits[8.min(digits.len())..]
    )
}

/// The templates' context for a command-line rollback: as [`Context::of`] makes it for the
/// daemon's records, with the command line's person as requester and nobody as approver.
fn context(
    all: &ServeSettings,
    report: &Report,
    who: &Who<'_>,
    event: &str,
    label: &str,
    now: Timestamp,
) -> Context {
    let image = report.image.to_string();
    let rto = all.core.rollback.rto;
    let tags: Vec<String> = report.tags.iter().map(|t| t.tag.to_string()).collect();
    let to = report
        .target
        .as_ref()
        .map(|t| t.digest.to_string())
        .unwrap_or_else(|| report.requested_target.clone());
    let to_short = report
        .target
        .as_ref()
        .map(|t| t.digest.short().to_owned())
        .unwrap_or_else(|| to.clone());
    let tag_digests = |pick: fn(&crate::pipeline::TagReport) -> Option<String>| {
        report
            .tags
            .iter()
            .map(|t| TagDigest {
                tag: t.tag.to_string(),
                digest: pick(t).unwrap_or_else(|| "unknown".to_owned()),
            })
            .collect()
    };
    let started = Timestamp(now.0 - i64::try_from(report.total_ms).unwrap_or(0));
    Context {
        rollback_id: label.to_owned(),
        image: image.clone(),
        alias: who.alias.to_owned(),
        from: tag_digests(|t| t.from.as_ref().map(ToString::to_string)),
        now: tag_digests(|t| t.now.as_ref().map(ToString::to_string)),
        to_digest_short: to_short,
        platforms: report
            .target
            .as_ref()
            .map(|t| t.platforms.clone())
            .unwrap_or_default(),
        reason: who.reason.clone(),
        requester: PersonContext {
            id: who.by.clone(),
            name: who.by.clone(),
        },
        approvers: Vec::new(),
        state: event.to_owned(),
        event: event.to_owned(),
        steps: report.steps.iter().map(StepContext::of).collect(),
        total_ms: report.total_ms,
        total: crate::report::duration_text(report.total_ms),
        rto: humantime::format_duration(rto).to_string(),
        rto_used: crate::report::rto_share_text(report.total_ms, rto),
        rollback_command: rollback_command(&image, &to, &tags),
        manual_command: crate::manifest::manual_command(&image, &to, &tags, false),
        to_digest: to,
        tags,
        error: report.error.clone(),
        created_at: started.rfc3339(),
        finished_at: now.rfc3339(),
        released_by: None,
        release_reason: None,
        links: Links::default(),
        short: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_label_is_a_valid_banner_label() {
        let label = label(Timestamp(1_764_662_712_000));
        assert_eq!(label, "cli-20251202-080512");
    }
}
