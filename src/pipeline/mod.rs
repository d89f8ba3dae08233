//! The rollback pipeline: plan → retag → verify → checks, with a timed report.
//!
//! The same functions serve the CLI (`rollbot rollback`, the break-glass path) and the daemon's
//! engine, which plans when a rollback is requested and executes after approval. A drill
//! (`drill/`, [`rehearse`]) runs the same [`run`] on a scratch repository.
//!
//! Safety rules this module keeps:
//! - The target must be complete before anything is written: every platform manifest of an
//!   index (or every blob of a single manifest) answers a HEAD.
//! - Only the target's exact bytes are written, under each floating tag, with its media type.
//! - Compare-and-swap: all tags are checked against the plan before the first write, and each
//!   tag again right before its own write. A tag that moved stops the retag.
//! - A partial failure is reported with every tag's real digest afterwards, read back from the
//!   registry. Nothing is reverted: the tags that moved point at the approved, known-good image,
//!   and running the same rollback again finishes the rest (tags already at target are skipped).

use std::time::{Duration, Instant};

use crate::checks::{self, millis};
use crate::config::CheckSpec;
use crate::domain::model::{Digest, ImageRef, Reference, Tag};
use crate::domain::record::{PlannedTag, StepName, StepReport};
use crate::manifest;
use crate::registry::oci;
use crate::registry::RegistryClient;

mod drill;
mod outcome;
mod plan;
mod retag;
mod target;
mod verify;

pub use drill::{rehearse, Cleanup, DrillReport, DrillRequest, DrillStep};
pub use outcome::{Outcome, Progress, RegistryUsage, Report, TagReport, TagStatus};
pub use plan::{plan, Plan, PlanError, RollbackRequest};
pub use retag::{retag, IntentRecord, RetagError, RetagFailure, TagOutcome, SETTLE};
use retag::{retag_after, Reads};
pub use target::{default_target, DefaultTarget, TargetRefusal};
pub use verify::{read_tags, verify, Verification, VerifyProblem};

/// Options of a full run.
#[derive(Debug, Clone)]
pub struct RunOptions {
    pub dry_run: bool,
    pub rto: Duration,
    pub checks: Vec<CheckSpec>,
    /// Set a hold after tags moved, so CI does not undo the rollback. `None`: no hold.
    pub hold: Option<HoldOptions>,
}

/// Who asked for the rollback and why, for the hold it sets.
#[derive(Debug, Clone)]
pub struct HoldOptions {
    pub reason: String,
    pub by: String,
}

/// The answer to "apply this plan?".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Confirmation {
    /// Approved, and time may have passed since the plan read the tags (a prompt answered):
    /// they are read again before anything is written.
    Proceed,
    /// Approved before the plan was made (`--yes`): the run writes straight after planning, so
    /// the plan's reads of the tags are the compare-and-swap reads of the first write.
    Preapproved,
    Declined,
    /// Nobody could be asked (no terminal) and the caller did not pre-confirm.
    NoTerminal,
}

/// Plan, confirm, retag, verify, check: the whole rollback as one report.
///
/// `confirm` is asked after the plan is shown and only when something would be written.
///
/// `started` is when the operator's request began (before choosing a target, say): the
/// report's total and its share of the RTO count from there.
pub async fn run(
    registry: &RegistryClient,
    request: &RollbackRequest,
    options: &RunOptions,
    started: Instant,
    confirm: impl FnOnce(&Plan) -> Confirmation,
    progress: &mut (dyn FnMut(Progress<'_>) + Send),
) -> Report {
    let mut report = Report::new("rollback", &request.image, &request.target, &request.tags);
    report.target_source = request.target_source.clone();
    let finish = |report: Report, outcome, error: Option<String>| {
        report.finish(outcome, error, started, options.rto, Some(registry))
    };

    let step_started = Instant::now();
    let plan = match plan(registry, request).await {
        Ok(plan) => plan,
        Err(error) => {
            report.record_step(
                StepName::Plan,
                false,
                step_started,
                error.to_string(),
                progress,
            );
            let outcome = if error.is_bad_input() {
                Outcome::BadInput
            } else {
                Outcome::PrecheckFailed
            };
            return finish(report, outcome, Some(error.to_string()));
        }
    };
    report.record_plan(&plan);
    let step = StepReport {
        name: StepName::Plan,
        ok: true,
        duration_ms: millis(step_started.elapsed()),
        detail: format!(
            "{} {} complete ({} references present)",
            plan.target.media_type.describe(),
            plan.target.digest.short(),
            plan.references.len()
        ),
    };
    progress(Progress::Planned(&plan, &step));
    report.steps.push(step);

    if plan.is_noop() {
        return finish(report, Outcome::AlreadyAtTarget, None);
    }
    if options.dry_run {
        return finish(report, Outcome::DryRun, None);
    }
    let reads = match confirm(&plan) {
        Confirmation::Preapproved => Reads::Fresh,
        Confirmation::Proceed => Reads::Stale,
        Confirmation::Declined => {
            return finish(
                report,
                Outcome::Declined,
                Some("not confirmed; nothing changed".to_owned()),
            )
        }
        Confirmation::NoTerminal => {
            let error = "refusing to change tags without confirmation: stdin is not a terminal; pass --yes to apply (or --dry-run to only plan)";
            return finish(report, Outcome::NotConfirmed, Some(error.to_owned()));
        }
    };

    let begun = execute_with(registry, &plan, options, reads, true, &mut report, progress).await;
    hold_moved_tags_begun(
        registry,
        &plan.image,
        &plan.target.digest,
        &plan.tags,
        options.hold.as_ref(),
        begun,
        &mut report,
        progress,
    )
    .await;
    let outcome = report.outcome;
    let error = report.error.take();
    finish(report, outcome, error)
}

/// The end of [`run`] for a rollback whose tags all moved already (a restart found them at the
/// target): verify, check and hold `tags` (as they were planned) at `target`.
pub async fn run_verification(
    registry: &RegistryClient,
    image: &ImageRef,
    target: &Digest,
    tags: &[PlannedTag],
    options: &RunOptions,
    started: Instant,
    progress: &mut (dyn FnMut(Progress<'_>) + Send),
) -> Report {
    let names: Vec<Tag> = tags.iter().map(|t| t.tag.clone()).collect();
    let mut report = Report::new(
        "rollback",
        image,
        &Reference::Digest(target.clone()),
        &names,
    );
    let finish = |report: Report, outcome, error| {
        report.finish(outcome, error, started, options.rto, Some(registry))
    };
    // The one manifest GET: the target, to learn what it references.
    let references = match registry
        .get_manifest(&image.repository, &Reference::Digest(target.clone()))
        .await
        .map_err(|e| e.to_string())
        .and_then(|m| m.references().map_err(|e| e.to_string()))
    {
        Ok(references) => references,
        Err(error) => {
            let error = format!("cannot read the target to verify it: {error}");
            return finish(report, Outcome::VerifyFailed, Some(error));
        }
    };
    verify_and_check(
        registry,
        image,
        &names,
        target,
        &references,
        &options.checks,
        &mut report,
        progress,
    )
    .await;
    for tag in &mut report.tags {
        tag.status = TagStatus::Moved;
    }
    if report.outcome == Outcome::Verified {
        report.outcome = Outcome::Succeeded;
    }
    hold_moved_tags(
        registry,
        image,
        target,
        tags,
        options.hold.as_ref(),
        &mut report,
        progress,
    )
    .await;
    let outcome = report.outcome;
    let error = report.error.take();
    finish(report, outcome, error)
}

/// Once tags moved and the run got as far as verification (whatever it said), writes the hold
/// as `active`, naming the target and embedding the report, so the next CI push stops at
/// `rollbot gate` instead of silently undoing the rollback. Nothing happens without `hold`,
/// when no tag moved, or when the retag stopped (its `in_progress` hold stays, recording the
/// unfinished rollback). A failed write makes the run fail verification (exit 5).
pub async fn hold_moved_tags(
    registry: &RegistryClient,
    image: &ImageRef,
    digest: &Digest,
    tags: &[PlannedTag],
    hold: Option<&HoldOptions>,
    report: &mut Report,
    progress: &mut (dyn FnMut(Progress<'_>) + Send),
) {
    hold_moved_tags_begun(registry, image, digest, tags, hold, None, report, progress).await;
}

/// [`hold_moved_tags`], finishing the hold write `begun` during verification when there is
/// one.
#[allow(clippy::too_many_arguments)]
async fn hold_moved_tags_begun(
    registry: &RegistryClient,
    image: &ImageRef,
    digest: &Digest,
    tags: &[PlannedTag],
    hold: Option<&HoldOptions>,
    begun: Option<manifest::HoldWrite>,
    report: &mut Report,
    progress: &mut (dyn FnMut(Progress<'_>) + Send),
) {
    let Some(hold) = hold else {
        return;
    };
    let verified_or_not = matches!(
        report.outcome,
        Outcome::Succeeded | Outcome::Verified | Outcome::VerifyFailed
    );
    if !verified_or_not || !report.tags.iter().any(|t| t.status == TagStatus::Moved) {
        return;
    }
    let started = Instant::now();
    let record = manifest::Hold {
        report: serde_json::to_value(&*report).ok(),
        from: tags
            .iter()
            .map(|t| manifest::HeldFrom {
                tag: t.tag.clone(),
                digest: t.from.clone(),
            })
            .collect(),
        ..manifest::Hold::active(
            image.clone(),
            digest.clone(),
            tags.iter().map(|t| t.tag.clone()).collect(),
            hold.reason.clone(),
            hold.by.clone(),
        )
    };
    // A write that could not begin during verification, or cannot go on (long health checks
    // outlived the registry's upload), is begun again: only its manifest PUT, the last step,
    // changes the hold.
    let staged = match begun {
        Some(write) => write.upload(registry, &record).await.ok(),
        None => None,
    };
    let written = match staged {
        Some(staged) => staged.commit(registry).await,
        None => manifest::write_hold(registry, &record).await,
    };
    let detail = match &written {
        Ok(()) => format!(
            "{image}:{} set; CI's `rollbot gate` now stops pushes until `rollbot hold release`",
            manifest::HOLD_TAG
        ),
        Err(error) => format!("could not set the hold: {error}"),
    };
    report.record_step(StepName::Hold, written.is_ok(), started, detail, progress);
    if let Err(error) = written {
        report.outcome = Outcome::VerifyFailed;
        let message = format!(
            "tags moved but the hold could not be updated ({error}); check it with `rollbot hold status {image}` and, unless it is active or in progress, run `rollbot hold set {image} --reason …` so CI does not undo the rollback"
        );
        report.error = Some(match report.error.take() {
            Some(earlier) => format!("{earlier}; {message}"),
            None => message,
        });
    }
}

impl HoldOptions {
    /// The hold a run writes before its first tag write: the plan's target and where every tag
    /// was.
    fn intent(&self, plan: &Plan) -> manifest::Hold {
        manifest::Hold::in_progress(
            plan.image.clone(),
            plan.target.digest.clone(),
            plan.tags
                .iter()
                .map(|t| manifest::HeldFrom {
                    tag: t.tag.clone(),
                    digest: t.from.clone(),
                })
                .collect(),
            self.reason.clone(),
            self.by.clone(),
        )
    }
}

/// Retag, verify and check an already planned (and approved) rollback, recording into `report`.
/// Sets `report.outcome` and `report.error` (and, when the retag stopped part-way,
/// `report.finish_command`); the caller calls [`Report::finish`]. Every tag is read again
/// before anything is written; [`hold_moved_tags`] writes the final hold.
pub async fn execute(
    registry: &RegistryClient,
    plan: &Plan,
    options: &RunOptions,
    report: &mut Report,
    progress: &mut (dyn FnMut(Progress<'_>) + Send),
) {
    execute_with(
        registry,
        plan,
        options,
        Reads::Stale,
        false,
        report,
        progress,
    )
    .await;
}

/// [`execute`] as [`run`] does it. The plan's `reads` may be the compare-and-swap reads; with
/// `begin_hold` and a hold in `options`, the final hold's write begins while verification runs
/// (the `in_progress` hold stored the empty config blob already, so that is one request), and
/// is returned for [`hold_moved_tags_begun`] to finish (`None`: it could not begin).
async fn execute_with(
    registry: &RegistryClient,
    plan: &Plan,
    options: &RunOptions,
    reads: Reads,
    begin_hold: bool,
    report: &mut Report,
    progress: &mut (dyn FnMut(Progress<'_>) + Send),
) -> Option<manifest::HoldWrite> {
    let intent = options.hold.as_ref().map(|hold| hold.intent(plan));
    let step_started = Instant::now();
    let retagged = retag_after(registry, plan, reads, intent.as_ref(), |tag, duration| {
        progress(Progress::TagMoved { tag, duration });
    })
    .await;
    match retagged {
        Ok(outcomes) => {
            report.record_tags(&outcomes);
            let moved: Vec<String> = outcomes
                .iter()
                .filter(|o| o.moved)
                .map(|o| o.tag.to_string())
                .collect();
            let detail = format!("moved {}", moved.join(", "));
            report.record_step(StepName::Retag, true, step_started, detail, progress);
        }
        Err(failure) => {
            report.record_tags(&failure.tags);
            let detail = failure.error.to_string();
            report.record_step(StepName::Retag, false, step_started, detail, progress);
            let tags: Vec<&Tag> = plan.tags.iter().map(|t| &t.tag).collect();
            let finish = manifest::rollback_command(
                &plan.image,
                &plan.target.digest,
                &tags,
                registry.is_insecure(),
            );
            report.outcome = if failure.is_partial() {
                report.finish_command = Some(finish.clone());
                Outcome::RetagFailed
            } else {
                Outcome::PrecheckFailed
            };
            report.error = Some(explain_retag_failure(&failure, plan, &finish, registry));
            return None;
        }
    }

    let tags: Vec<Tag> = plan.tags.iter().map(|t| t.tag.clone()).collect();
    let verified = verify_and_check(
        registry,
        &plan.image,
        &tags,
        &plan.target.digest,
        &plan.references,
        &options.checks,
        report,
        progress,
    );
    // Starting an upload changes nothing anyone reads; the hold itself is written after
    // verification, with its outcome.
    // The retag wrote the `in_progress` hold, and with it the empty config blob, when it had
    // one and a tag to move.
    let config_present = intent.is_some() && plan.tags.iter().any(|t| !t.already_at_target);
    let begin = async {
        match &options.hold {
            Some(_) if begin_hold => {
                manifest::HoldWrite::begin(registry, &plan.image, config_present)
                    .await
                    .ok()
            }
            _ => None,
        }
    };
    let ((), begun) = futures_util::future::join(verified, begin).await;
    if report.outcome != Outcome::VerifyFailed {
        report.outcome = Outcome::Succeeded;
    }
    begun
}

/// The error of a retag that stopped, for people: what failed, which tags may have moved
/// without the registry saying so, what became of the hold, and the command that finishes the
/// job.
fn explain_retag_failure(
    failure: &RetagFailure,
    plan: &Plan,
    finish: &str,
    registry: &RegistryClient,
) -> String {
    let mut text = failure.error.to_string();
    let mut unsure: Vec<String> = failure
        .tags
        .iter()
        .filter(|t| t.now.is_unknown())
        .map(|t| format!("'{}' (it could not be read back)", t.tag))
        .collect();
    if let RetagError::Write { tag, .. } = &failure.error {
        let read_as_moved = failure.tags.iter().any(|t| t.tag == *tag && t.moved);
        if failure.uncertain && !read_as_moved {
            unsure.push(format!(
                "'{tag}' (its write got no clear answer and may still land; {} s later it had not)",
                SETTLE.as_secs()
            ));
        }
    }
    if !unsure.is_empty() {
        let flags: String = failure
            .tags
            .iter()
            .map(|t| format!(" --tag {}", t.tag))
            .collect();
        text.push_str(&format!(
            "; unsure where {} point{}: check with `rollbot verify {} --expect {}{flags}{}`",
            unsure.join(" and "),
            if unsure.len() == 1 { "s" } else { "" },
            plan.image,
            plan.target.digest,
            if registry.is_insecure() {
                " --insecure"
            } else {
                ""
            },
        ));
    }
    match &failure.intent {
        IntentRecord::None | IntentRecord::Restored => {}
        IntentRecord::Kept => text.push_str(
            "; the hold records this unfinished rollback, so CI's `rollbot gate` stays closed",
        ),
        IntentRecord::RestoreFailed(problem) => text.push_str(&format!(
            "; no tag moved, but the hold written before the first write could not be put back ({problem}): it still stops CI until `rollbot hold release {}`",
            plan.image
        )),
    }
    if failure.is_partial() {
        text.push_str(&format!("; finish the rollback with: {finish}"));
    } else if matches!(failure.error, RetagError::Intent { .. }) {
        text.push_str(&format!(
            "; no tag was written (`{finish} --no-hold` rolls back without a hold, and without the record that lets a re-run finish an interrupted rollback)"
        ));
    }
    text
}

/// The verify step and the health checks; sets `Outcome::VerifyFailed` (with the error) when
/// either fails, `Outcome::Verified` otherwise.
#[allow(clippy::too_many_arguments)]
pub async fn verify_and_check(
    registry: &RegistryClient,
    image: &ImageRef,
    tags: &[Tag],
    digest: &Digest,
    references: &[oci::Reference],
    checks: &[CheckSpec],
    report: &mut Report,
    progress: &mut (dyn FnMut(Progress<'_>) + Send),
) {
    let step_started = Instant::now();
    let verified = verify(registry, image, tags, digest, references).await;
    if let Ok(verification) = &verified {
        for (tag, now) in &verification.tags {
            if let Some(entry) = report.tags.iter_mut().find(|t| t.tag == *tag) {
                entry.now = now.clone();
                entry.to = Some(digest.clone());
                if report.command == "verify" {
                    entry.status = if now.as_ref() == Some(digest) {
                        TagStatus::AtTarget
                    } else {
                        TagStatus::NotAtTarget
                    };
                }
            }
        }
    }
    let (ok, detail) = match verified.as_ref().map(|v| &v.problems) {
        Ok(problems) if problems.is_empty() => (
            true,
            format!(
                "{} at {}, {} references present",
                tags.iter().map(Tag::as_str).collect::<Vec<_>>().join(", "),
                digest.short(),
                references.len()
            ),
        ),
        Ok(problems) => (
            false,
            problems
                .iter()
                .map(|p| format!("{} {}", p.subject, p.detail))
                .collect::<Vec<_>>()
                .join("; "),
        ),
        Err(error) => (false, format!("could not verify: {error}")),
    };
    report.record_step(StepName::Verify, ok, step_started, detail.clone(), progress);
    if let Ok(verification) = verified {
        report.problems = verification.problems;
    }
    if !ok {
        report.outcome = Outcome::VerifyFailed;
        report.error = Some(format!("verification failed: {detail}"));
        return;
    }

    if !checks.is_empty() {
        let step_started = Instant::now();
        let results = checks::run_all(checks, image, digest).await;
        for result in &results {
            progress(Progress::Check(result));
        }
        let failed: Vec<String> = results
            .iter()
            .filter(|r| !r.passed)
            .map(|r| format!("check '{}' failed: {}", r.name, r.detail))
            .collect();
        let detail = if failed.is_empty() {
            format!("{} passed", results.len())
        } else {
            failed.join("; ")
        };
        report.record_step(
            StepName::Checks,
            failed.is_empty(),
            step_started,
            detail,
            progress,
        );
        report.checks = results;
        if !failed.is_empty() {
            report.outcome = Outcome::VerifyFailed;
            report.error = Some(failed.join("; "));
            return;
        }
    }
    report.outcome = Outcome::Verified;
}
