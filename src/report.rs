//! Plain-text rendering of pipeline progress and reports for the CLI (the JSON form is the
//! `Report` itself, serialised), and the duration texts chat messages and templates share.

use std::fmt::Write as _;

use crate::domain::model::Digest;
use crate::domain::record::StepReport;
use crate::pipeline::{DrillReport, Outcome, Plan, Progress, Report, TagStatus};

/// A duration for people: `840 ms` under ten seconds, else `12.3 s`.
pub fn duration_text(ms: u64) -> String {
    if ms < 10_000 {
        format!("{ms} ms")
    } else {
        format!("{:.1} s", ms as f64 / 1000.0)
    }
}

/// `total_ms` as a share of the RTO budget, for people: `0.13%`, or `<0.01%`.
pub fn rto_share_text(total_ms: u64, rto: std::time::Duration) -> String {
    let rto_ms = u64::try_from(rto.as_millis()).unwrap_or(u64::MAX).max(1);
    let share = total_ms as f64 * 100.0 / rto_ms as f64;
    if share < 0.01 {
        "<0.01%".to_owned()
    } else {
        format!("{share:.2}%")
    }
}

/// The lines to print for one progress event.
pub fn progress(event: &Progress<'_>) -> String {
    match event {
        Progress::Planned(plan, step) => {
            let mut out = step_line(step);
            out.push_str(&plan_lines(plan));
            out
        }
        Progress::TagMoved { tag, duration } => {
            format!("  moved {tag} ({} ms)\n", duration.as_millis())
        }
        Progress::Step(step) => step_line(step),
        Progress::Check(check) => format!(
            "  {} {} ({}, {} ms{}): {}\n",
            if check.passed { "passed" } else { "FAILED" },
            check.name,
            check.kind,
            check.duration_ms,
            if check.attempts > 1 {
                format!(", {} attempts", check.attempts)
            } else {
                String::new()
            },
            check.detail
        ),
    }
}

fn step_line(step: &StepReport) -> String {
    format!(
        "{:<7} {:<6} {:>6} ms  {}\n",
        step.name,
        if step.ok { "ok" } else { "FAILED" },
        step.duration_ms,
        step.detail
    )
}

/// The plan: target, platforms, and each tag's move.
pub fn plan_lines(plan: &Plan) -> String {
    let mut out = String::new();
    let platforms = plan.platforms();
    let _ = writeln!(
        out,
        "  image   {}\n  target  {} ({}{})",
        plan.image,
        plan.target.digest,
        plan.target.media_type.describe(),
        if platforms.is_empty() {
            String::new()
        } else {
            format!(": {}", platforms.join(", "))
        }
    );
    for tag in &plan.tags {
        if tag.already_at_target {
            let _ = writeln!(out, "  {:<7} already at target", tag.tag.as_str());
        } else {
            let _ = writeln!(out, "  {:<7} {} -> target", tag.tag.as_str(), tag.from);
        }
    }
    out
}

/// The closing lines: outcome, tag state after a failure, time against the RTO, registry cost.
pub fn summary(report: &Report) -> String {
    let mut out = String::new();
    let headline = match report.outcome {
        Outcome::Succeeded => "rolled back and verified".to_owned(),
        Outcome::Verified => "verified".to_owned(),
        Outcome::AlreadyAtTarget => "already at target; nothing written".to_owned(),
        Outcome::DryRun => "dry run; nothing written".to_owned(),
        Outcome::Declined | Outcome::NotConfirmed => "not confirmed; nothing written".to_owned(),
        Outcome::BadInput | Outcome::PrecheckFailed => {
            "stopped before any change; nothing written".to_owned()
        }
        Outcome::RetagFailed => "retag stopped part-way; tags now:".to_owned(),
        Outcome::VerifyFailed if report.command == "verify" => "verification failed".to_owned(),
        Outcome::VerifyFailed => "tags moved, but verification failed".to_owned(),
    };
    let _ = writeln!(out, "{headline}");
    if report.outcome == Outcome::RetagFailed {
        for tag in &report.tags {
            let _ = writeln!(
                out,
                "  {:<7} {} ({})",
                tag.tag.as_str(),
                tag.now.as_ref().map_or(
                    if tag.status == TagStatus::Unknown {
                        "(could not be read)"
                    } else {
                        "(missing)"
                    },
                    Digest::as_str
                ),
                tag.status.text()
            );
        }
    }
    let requests = &report.registry.requests;
    let _ = writeln!(
        out,
        "total {} ({} of the {} RTO budget); registry: {} manifest GET, {} manifest HEAD, {} PUT, {} blob HEAD{}{}",
        duration_text(report.total_ms),
        if report.rto_used_percent < 0.01 {
            "<0.01%".to_owned()
        } else {
            format!("{}%", report.rto_used_percent)
        },
        humantime::format_duration(std::time::Duration::from_millis(report.rto_ms)),
        requests.manifest_get,
        requests.manifest_head,
        requests.manifest_put,
        requests.blob_head,
        if requests.token > 0 {
            format!(", {} token", requests.token)
        } else {
            String::new()
        },
        report
            .registry
            .ratelimit_remaining
            .as_ref()
            .map(|r| format!("; rate limit remaining {r}"))
            .unwrap_or_default()
    );
    out
}

/// The closing lines of a drill: how it ended, its steps' times, the total against the RTO,
/// and what cleaning the scratch repository left.
pub fn drill_summary(report: &DrillReport) -> String {
    let mut out = String::new();
    let headline = match report.outcome {
        Outcome::Succeeded => format!(
            "DRILL succeeded: rolling {} back to {} works (rehearsed on {}); production unchanged",
            report.image,
            report.target.short(),
            report.scratch
        ),
        outcome => format!(
            "DRILL FAILED ({}): a rollback of {} would not have gone through; production unchanged",
            serde_json::to_value(outcome)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default(),
            report.image
        ),
    };
    let _ = writeln!(out, "{headline}");
    let steps: Vec<String> = report
        .steps
        .iter()
        .map(|s| {
            format!(
                "{} {}{}",
                s.name,
                duration_text(s.ms),
                if s.ok { "" } else { " FAILED" }
            )
        })
        .collect();
    let _ = writeln!(out, "  steps: {}", steps.join(", "));
    let rto = std::time::Duration::from_millis(report.rto_ms);
    let _ = writeln!(
        out,
        "total {} ({} of the {} RTO budget): {}",
        duration_text(report.total_ms),
        rto_share_text(report.total_ms, rto),
        humantime::format_duration(rto),
        if report.within_rto {
            "within the RTO"
        } else {
            "OVER the RTO"
        }
    );
    if let Some(refused) = &report.cleanup.refused {
        let _ = writeln!(
            out,
            "cleanup: the registry would not delete {} manifest{} from {} ({refused})",
            report.cleanup.left.len(),
            if report.cleanup.left.len() == 1 {
                ""
            } else {
                "s"
            },
            report.scratch
        );
    }
    out
}

/// The history table: one line per build, newest first.
pub fn history(history: &crate::manifest::History) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "  {:<3} {:<19} {:<20} {:<10} {:<24} state",
        "#", "digest", "created", "git", "tags"
    );
    for (index, entry) in history.entries.iter().enumerate() {
        let (created, git, tags) = match &entry.manifest {
            Some(m) => (
                m.created_at.clone(),
                m.git_sha
                    .as_deref()
                    .map(|s| s.chars().take(10).collect())
                    .unwrap_or_else(|| "-".to_owned()),
                m.current_tags
                    .iter()
                    .map(crate::domain::model::Tag::as_str)
                    .collect::<Vec<_>>()
                    .join(","),
            ),
            None => (
                "(no rollback manifest)".to_owned(),
                "-".to_owned(),
                "-".to_owned(),
            ),
        };
        let mut state = Vec::new();
        if index == 0 {
            state.push("live".to_owned());
        }
        match entry.complete {
            Some(true) => state.push("complete".to_owned()),
            Some(false) => state.push(format!("INCOMPLETE: missing {}", entry.missing.join(", "))),
            None => {}
        }
        if let Some(mark) = &entry.bad {
            state.push(format!("BAD: {} (by {})", mark.reason, mark.marked_by));
        }
        let _ = writeln!(
            out,
            "  {:<3} {:<19} {:<20} {:<10} {:<24} {}",
            index,
            entry.digest.short(),
            created,
            git,
            tags,
            state.join("; ")
        );
    }
    let _ = writeln!(out, "  end: {}", history.end.describe());
    out
}
