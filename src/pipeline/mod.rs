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
//! - Compare-and-swap: all tags are checked against the plan before the first write (the
//!   plan's own reads, when approved beforehand), and a tag whose read is older than
//!   [`MAX_READ_AGE`] when its write is due is read again right before it. A tag that moved
//!   stops the retag.
//! - The hold: `in_progress` before the first tag write, `active` (written while verification
//!   and the checks run) before the run reports success.
//! - A partial failure is reported with every tag's real digest afterwards, read back from the
//!   registry. Nothing is reverted: the tags that moved point at the approved, known-good image,
//!   and running the same rollback again finishes the rest (tags already at target are skipped).

use std::time::{Duration, Instant};

use crate::checks::{self, millis};
use crate::config::CheckSpec;
use crate::domain::model::{Digest, ImageRef, Reference, Tag};
use crate::domain::record::{PlannedTag, StepName, StepReport};
use crate::manifest;
use crate::registry::RegistryClient;

mod drill;
mod outcome;
mod plan;
mod retag;
mod target;
mod verify;

pub use drill::{rehearse, Cleanup, DrillReport, DrillRequest, DrillStep};
pub use outcome::{Outcome, Progress, RegistryUsage, Report, TagReport, TagStatus};
pub use plan::{plan, Plan, PlanError, Prefetched, RollbackRequest};
pub use retag::{retag, IntentRecord, RetagError, RetagFailure, TagOutcome, MAX_READ_AGE, SETTLE};
use retag::{retag_after, HoldReads, Reads};
pub use target::{default_target, DefaultTarget, TargetRefusal};
pub use verify::{read_tags, verify, References, Verification, VerifyProblem};

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
    /// Approved before the plan was made (`--yes`, or the daemon's re-plan of an approved
    /// rollback): the run writes straight after planning, so the plan's reads of the tags are
    /// the compare-and-swap reads of the first write.
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
    // The hold's read (its tag, to put it back if nothing moves) goes out with the plan's: a
    // read only, which the retag uses when nothing came between the plan and the first write.
    let hold_reads = async {
        match &options.hold {
            Some(_) if !options.dry_run => Some(HoldReads::read(registry, &request.image).await),
            _ => None,
        }
    };
    let (planned, hold_reads) =
        futures_util::future::join(plan(registry, request), hold_reads).await;
    let plan = match planned {
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

    execute_with(
        registry,
        &plan,
        options,
        reads,
        hold_reads,
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
    for tag in &mut report.tags {
        tag.status = TagStatus::Moved;
    }
    let hold = options
        .hold
        .as_ref()
        .map(|hold| hold.active(image, target, tags, &report));
    verify_check_and_hold(
        registry,
        image,
        &names,
        target,
        References::Read(&references),
        &options.checks,
        hold.as_ref(),
        &mut report,
        progress,
    )
    .await;
    let outcome = report.outcome;
    let error = report.error.take();
    finish(report, outcome, error)
}

/// Verification and the checks ([`verify_and_check`]) with, at the same time, the `active`
/// `hold`'s write; then the hold step. Sets `report.outcome`: `Succeeded` unless verification,
/// a check or the hold's write failed.
#[allow(clippy::too_many_arguments)]
async fn verify_check_and_hold(
    registry: &RegistryClient,
    image: &ImageRef,
    tags: &[Tag],
    digest: &Digest,
    references: References<'_>,
    checks: &[CheckSpec],
    hold: Option<&manifest::Hold>,
    report: &mut Report,
    progress: &mut (dyn FnMut(Progress<'_>) + Send),
) {
    let hold_write = async {
        let hold = hold?;
        let started = Instant::now();
        let written = manifest::write_hold(registry, hold).await;
        Some((written, started.elapsed()))
    };
    let verified = verify_and_check(
        registry, image, tags, digest, references, checks, report, progress,
    );
    let ((), written) = futures_util::future::join(verified, hold_write).await;
    if report.outcome == Outcome::Verified {
        report.outcome = Outcome::Succeeded;
    }
    if let Some(written) = written {
        record_hold(image, written, report, progress);
    }
}

/// Records the `active` hold's write (it ran while verification did) as the hold step. A write
/// that failed makes the run fail verification (exit 5), saying how to set the hold by hand.
fn record_hold(
    image: &ImageRef,
    (written, took): (Result<(), manifest::ArtifactError>, Duration),
    report: &mut Report,
    progress: &mut (dyn FnMut(Progress<'_>) + Send),
) {
    let detail = match &written {
        Ok(()) => format!(
            "{image}:{} set; CI's `rollbot gate` now stops pushes until `rollbot hold release`",
            manifest::HOLD_TAG
        ),
        Err(error) => format!("could not set the hold: {error}"),
    };
    let started = Instant::now()
        .checked_sub(took)
        .unwrap_or_else(Instant::now);
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

    /// The hold a run writes once its tags moved, while it verifies: the target, the tags,
    /// where they were, and the report so far (what was planned and moved; verification's
    /// verdict is the run's own report, not the hold's).
    fn active(
        &self,
        image: &ImageRef,
        digest: &Digest,
        tags: &[PlannedTag],
        report: &Report,
    ) -> manifest::Hold {
        let report = serde_json::to_value(report).ok().map(|mut value| {
            if let Some(fields) = value.as_object_mut() {
                fields.remove("outcome");
                fields.remove("error");
            }
            value
        });
        manifest::Hold {
            report,
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
                self.reason.clone(),
                self.by.clone(),
            )
        }
    }
}

/// Retag, verify and check an already planned (and approved) rollback, recording into `report`,
/// and, with a hold in `options` and a tag moved, write the hold `active` while verifying.
/// Sets `report.outcome` and `report.error` (and, when the retag stopped part-way,
/// `report.finish_command`); the caller calls [`Report::finish`]. Every tag is read again
/// before anything is written.
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
        None,
        report,
        progress,
    )
    .await;
}

/// [`execute`] as [`run`] does it: the plan's `reads` may be the compare-and-swap reads, and
/// `hold_reads` the hold's reads made with the plan.
///
/// Once the tags moved, the `active` hold is written while verification and the checks run
/// (one manifest PUT), and the run reports
/// nothing before both are done. Like the `in_progress` hold before it, an `active` one stops
/// CI whatever verification then says; a failed write fails the run (exit 5).
async fn execute_with(
    registry: &RegistryClient,
    plan: &Plan,
    options: &RunOptions,
    reads: Reads,
    hold_reads: Option<HoldReads>,
    report: &mut Report,
    progress: &mut (dyn FnMut(Progress<'_>) + Send),
) {
    let intent = options.hold.as_ref().map(|hold| hold.intent(plan));
    let step_started = Instant::now();
    let retagged = retag_after(
        registry,
        plan,
        reads,
        intent.as_ref(),
        hold_reads,
        |tag, duration| {
            progress(Progress::TagMoved { tag, duration });
        },
    )
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
            return;
        }
    }

    let moved = report.tags.iter().any(|t| t.status == TagStatus::Moved);
    let hold = options
        .hold
        .as_ref()
        .filter(|_| moved)
        .map(|hold| hold.active(&plan.image, &plan.target.digest, &plan.tags, report));
    let tags: Vec<Tag> = plan.tags.iter().map(|t| t.tag.clone()).collect();
    // Right after a plan made once the run was approved, what it found present is not read
    // again; after a prompt (minutes, maybe), it is.
    let references = match reads {
        Reads::Fresh => References::CheckedByPlan(plan.references.len()),
        Reads::Stale => References::Read(&plan.references),
    };
    verify_check_and_hold(
        registry,
        &plan.image,
        &tags,
        &plan.target.digest,
        references,
        &options.checks,
        hold.as_ref(),
        report,
        progress,
    )
    .await;
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
    references: References<'_>,
    checks: &[CheckSpec],
    report: &mut Report,
    progress: &mut (dyn FnMut(Progress<'_>) + Send),
) {
    let step_started = Instant::now();
    let read = match references {
        References::Read(references) => references,
        References::CheckedByPlan(_) => &[],
    };
    let verified = verify(registry, image, tags, digest, read).await;
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
                "{} at {}, {}",
                tags.iter().map(Tag::as_str).collect::<Vec<_>>().join(", "),
                digest.short(),
                references.describe()
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
