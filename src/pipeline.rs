//! The rollback pipeline: plan → retag → verify → checks, with a timed report.
//!
//! The same functions serve the CLI (`rollbot rollback`, the break-glass path) and, later, the
//! daemon's engine, which plans when a rollback is requested and executes after approval.
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

use futures_util::future::join_all;
use serde::Serialize;

use crate::checks::{self, millis, CheckReport, CheckSpec};
use crate::domain::model::{Digest, ImageRef, Reference, Tag};
use crate::manifest;
use crate::registry::oci::{self, MediaType, RawManifest};
use crate::registry::{RegistryClient, RegistryError, RequestCounts};

/// What to roll back: which tags of which image, to what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RollbackRequest {
    pub image: ImageRef,
    /// A digest, or a tag resolved to its digest when planning.
    pub target: Reference,
    /// The floating tags to move.
    pub tags: Vec<Tag>,
    /// Digests tags must still point at when planning: the live digest a target was chosen
    /// from, or the state a request was approved against. Empty: no expectation.
    pub expect_from: Vec<(Tag, Digest)>,
    /// How the target was chosen, for the report (`None` when named explicitly).
    pub target_source: Option<String>,
    /// The target's manifest when it was already read (while choosing it from the history);
    /// used instead of a second GET if its digest is the target.
    pub prefetched: Option<RawManifest>,
}

/// One floating tag as found when planning.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct PlannedTag {
    pub tag: Tag,
    /// Its digest when the plan was made: the compare-and-swap value.
    pub from: Digest,
    pub already_at_target: bool,
}

/// A checked plan: the target's bytes, and the state every write will be compared against.
#[derive(Debug, Clone)]
pub struct Plan {
    pub image: ImageRef,
    pub requested: Reference,
    pub target: RawManifest,
    /// What the target references (platform manifests, or config and layers); all present.
    pub references: Vec<oci::Reference>,
    pub tags: Vec<PlannedTag>,
}

impl Plan {
    /// Every tag already points at the target.
    pub fn is_noop(&self) -> bool {
        self.tags.iter().all(|t| t.already_at_target)
    }

    pub fn platforms(&self) -> Vec<String> {
        self.target.platforms()
    }
}

/// Why a plan could not be made. Nothing was written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error("{image} has no tag '{tag}'; rollbot only moves tags that exist (check --tag or the image's tags in the config)")]
    TagMissing { image: ImageRef, tag: Tag },
    #[error("target {digest} is incomplete, refusing to roll back to it: missing {}", missing.join(", "))]
    Incomplete {
        digest: Digest,
        missing: Vec<String>,
    },
    #[error("target {digest} is an artifact ({artifact_type}), not a container image; refusing to point tags at it")]
    NotAnImage {
        digest: Digest,
        artifact_type: String,
    },
    #[error("tag '{tag}' moved from {expected} to {found} since the rollback was planned; nothing was changed (request the rollback again to act on the new state)")]
    LiveMoved {
        tag: Tag,
        expected: Digest,
        found: Digest,
    },
}

impl PlanError {
    /// The user named something that does not exist (repository, target tag or digest,
    /// floating tag), as opposed to a registry or target problem.
    pub fn is_bad_input(&self) -> bool {
        matches!(
            self,
            PlanError::TagMissing { .. }
                | PlanError::NotAnImage { .. }
                | PlanError::Registry(
                    RegistryError::RepositoryUnknown { .. } | RegistryError::ManifestUnknown { .. }
                )
        )
    }
}

/// Resolves the target, reads every floating tag's digest and checks the target is complete.
///
/// Registry cost: one manifest GET (the target's bytes, which the retag reuses), one HEAD per
/// tag, one HEAD per referenced manifest or blob, all HEADs concurrent.
///
/// # Errors
/// See [`PlanError`].
pub async fn plan(registry: &RegistryClient, request: &RollbackRequest) -> Result<Plan, PlanError> {
    let repository = &request.image.repository;
    // GET first: its error body tells an unknown repository from an unknown tag or digest.
    let target = match (&request.prefetched, &request.target) {
        (Some(manifest), Reference::Digest(digest)) if manifest.digest == *digest => {
            manifest.clone()
        }
        _ => registry.get_manifest(repository, &request.target).await?,
    };
    if let Some(artifact_type) = target.artifact_type() {
        return Err(PlanError::NotAnImage {
            digest: target.digest.clone(),
            artifact_type,
        });
    }
    let references = target.references().map_err(|e| {
        PlanError::Registry(RegistryError::InvalidResponse {
            registry: registry.host().clone(),
            request: format!("GET {}", request.target),
            detail: e.to_string(),
        })
    })?;

    let tag_heads = join_all(
        request
            .tags
            .iter()
            .map(|tag| head_tag(registry, repository, tag)),
    );
    let missing = missing_references(registry, &request.image, &references);
    let (tag_heads, missing) = futures_util::future::join(tag_heads, missing).await;

    let mut tags = Vec::with_capacity(request.tags.len());
    for (tag, head) in request.tags.iter().zip(tag_heads) {
        let Some(head) = head? else {
            return Err(PlanError::TagMissing {
                image: request.image.clone(),
                tag: tag.clone(),
            });
        };
        tags.push(PlannedTag {
            tag: tag.clone(),
            already_at_target: head.digest == target.digest,
            from: head.digest,
        });
    }
    for (tag, expected) in &request.expect_from {
        if let Some(planned) = tags.iter().find(|t| t.tag == *tag) {
            if planned.from != *expected {
                return Err(PlanError::LiveMoved {
                    tag: tag.clone(),
                    expected: expected.clone(),
                    found: planned.from.clone(),
                });
            }
        }
    }
    let missing = missing?;
    if !missing.is_empty() {
        return Err(PlanError::Incomplete {
            digest: target.digest.clone(),
            missing: missing
                .iter()
                .map(|r| format!("{} ({})", r.label, r.digest.short()))
                .collect(),
        });
    }
    Ok(Plan {
        image: request.image.clone(),
        requested: request.target.clone(),
        target,
        references,
        tags,
    })
}

async fn head_tag(
    registry: &RegistryClient,
    repository: &crate::domain::model::Repository,
    tag: &Tag,
) -> Result<Option<crate::registry::ManifestHead>, RegistryError> {
    registry
        .head_manifest(repository, &Reference::Tag(tag.clone()))
        .await
}

/// The references that do not answer a HEAD, checked concurrently.
///
/// # Errors
/// The first registry error (other than "not found").
pub async fn missing_references(
    registry: &RegistryClient,
    image: &ImageRef,
    references: &[oci::Reference],
) -> Result<Vec<oci::Reference>, RegistryError> {
    let repository = &image.repository;
    let answers = join_all(references.iter().map(|reference| async move {
        let present = if reference.is_manifest {
            registry
                .head_manifest(repository, &Reference::Digest(reference.digest.clone()))
                .await?
                .is_some()
        } else {
            registry.blob_exists(repository, &reference.digest).await?
        };
        Ok::<_, RegistryError>((reference, present))
    }))
    .await;
    let mut missing = Vec::new();
    for answer in answers {
        let (reference, present) = answer?;
        if !present {
            missing.push(reference.clone());
        }
    }
    Ok(missing)
}

/// A floating tag after the retag, as read back from the registry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TagOutcome {
    pub tag: Tag,
    pub from: Digest,
    /// What the tag points at now (`None`: it could not be read, or no longer exists).
    pub now: Option<Digest>,
    /// This run moved it to the target.
    pub moved: bool,
}

/// Why the retag stopped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RetagError {
    #[error("tag '{tag}' moved since the plan (expected {expected}, found {}); stopped so that nothing is applied to a state nobody approved", found.as_ref().map_or("no tag".to_owned(), Digest::to_string))]
    Conflict {
        tag: Tag,
        expected: Digest,
        found: Option<Digest>,
    },
    #[error("writing tag '{tag}' failed: {error}")]
    Write { tag: Tag, error: RegistryError },
}

/// A retag that stopped, with every tag's state afterwards.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetagFailure {
    pub error: RetagError,
    pub tags: Vec<TagOutcome>,
}

impl RetagFailure {
    /// Some tags moved before the failure.
    pub fn is_partial(&self) -> bool {
        self.tags.iter().any(|t| t.moved)
    }
}

/// Writes the target's bytes under every tag not already at the target, compare-and-swap.
///
/// Registry cost: one HEAD per tag before the first write, one more HEAD before each later
/// write, one PUT per tag. No GET: the bytes come from the plan.
///
/// # Errors
/// A [`RetagFailure`] with the tags' real state afterwards.
pub async fn retag(
    registry: &RegistryClient,
    plan: &Plan,
    mut on_moved: impl FnMut(&Tag, Duration),
) -> Result<Vec<TagOutcome>, RetagFailure> {
    let repository = &plan.image.repository;
    let to_move: Vec<&PlannedTag> = plan.tags.iter().filter(|t| !t.already_at_target).collect();

    // Gate: every tag still where the plan saw it, before anything is written.
    let heads = join_all(
        to_move
            .iter()
            .map(|planned| head_tag(registry, repository, &planned.tag)),
    )
    .await;
    for (planned, head) in to_move.iter().zip(heads) {
        let error = match head {
            Ok(Some(head)) if head.digest == planned.from => continue,
            Ok(found) => RetagError::Conflict {
                tag: planned.tag.clone(),
                expected: planned.from.clone(),
                found: found.map(|h| h.digest),
            },
            Err(error) => RetagError::Write {
                tag: planned.tag.clone(),
                error,
            },
        };
        return Err(failure(registry, plan, error).await);
    }

    for (index, planned) in to_move.iter().enumerate() {
        let started = Instant::now();
        if index > 0 {
            // Re-check right before this write: earlier writes took time.
            match head_tag(registry, repository, &planned.tag).await {
                Ok(Some(head)) if head.digest == planned.from => {}
                Ok(found) => {
                    let error = RetagError::Conflict {
                        tag: planned.tag.clone(),
                        expected: planned.from.clone(),
                        found: found.map(|h| h.digest),
                    };
                    return Err(failure(registry, plan, error).await);
                }
                Err(error) => {
                    let error = RetagError::Write {
                        tag: planned.tag.clone(),
                        error,
                    };
                    return Err(failure(registry, plan, error).await);
                }
            }
        }
        if let Err(error) = registry
            .put_manifest(repository, &planned.tag, &plan.target)
            .await
        {
            let error = RetagError::Write {
                tag: planned.tag.clone(),
                error,
            };
            return Err(failure(registry, plan, error).await);
        }
        tracing::info!(image = %plan.image, tag = %planned.tag, digest = %plan.target.digest, "Tag moved.");
        on_moved(&planned.tag, started.elapsed());
    }

    Ok(plan
        .tags
        .iter()
        .map(|planned| TagOutcome {
            tag: planned.tag.clone(),
            from: planned.from.clone(),
            now: Some(plan.target.digest.clone()),
            moved: !planned.already_at_target,
        })
        .collect())
}

/// Reads every tag back so a failure report says where each one really points.
async fn failure(registry: &RegistryClient, plan: &Plan, error: RetagError) -> RetagFailure {
    let repository = &plan.image.repository;
    let heads = join_all(
        plan.tags
            .iter()
            .map(|planned| head_tag(registry, repository, &planned.tag)),
    )
    .await;
    let tags = plan
        .tags
        .iter()
        .zip(heads)
        .map(|(planned, head)| {
            let now = head.ok().flatten().map(|h| h.digest);
            TagOutcome {
                tag: planned.tag.clone(),
                from: planned.from.clone(),
                moved: !planned.already_at_target && now.as_ref() == Some(&plan.target.digest),
                now,
            }
        })
        .collect();
    tracing::warn!(image = %plan.image, %error, "Retag stopped.");
    RetagFailure { error, tags }
}

/// A verification finding.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VerifyProblem {
    pub subject: String,
    pub detail: String,
}

/// What verification saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verification {
    /// Each tag and the digest it points at (`None`: the tag does not exist).
    pub tags: Vec<(Tag, Option<Digest>)>,
    pub problems: Vec<VerifyProblem>,
}

/// HEADs every tag (must be `digest`) and every reference (must exist), concurrently.
///
/// # Errors
/// A registry error that prevented verification.
pub async fn verify(
    registry: &RegistryClient,
    image: &ImageRef,
    tags: &[Tag],
    digest: &Digest,
    references: &[oci::Reference],
) -> Result<Verification, RegistryError> {
    let repository = &image.repository;
    let heads = join_all(tags.iter().map(|tag| head_tag(registry, repository, tag)));
    let missing = missing_references(registry, image, references);
    let (heads, missing) = futures_util::future::join(heads, missing).await;
    let mut seen = Vec::with_capacity(tags.len());
    let mut problems = Vec::new();
    for (tag, head) in tags.iter().zip(heads) {
        let now = head?.map(|h| h.digest);
        match &now {
            Some(found) if found == digest => {}
            Some(found) => problems.push(VerifyProblem {
                subject: format!("tag {tag}"),
                detail: format!("points at {found}, expected {digest}"),
            }),
            None => problems.push(VerifyProblem {
                subject: format!("tag {tag}"),
                detail: "does not exist".to_owned(),
            }),
        }
        seen.push((tag.clone(), now));
    }
    for reference in missing? {
        problems.push(VerifyProblem {
            subject: reference.label.clone(),
            detail: format!("{} is missing", reference.digest),
        });
    }
    Ok(Verification {
        tags: seen,
        problems,
    })
}

// ---- the whole run, as one report ---------------------------------------------------------

/// How a run ended. Each has one exit code (see `cli::exit_code`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Tags moved and verified, checks passed.
    Succeeded,
    /// Verification (or `rollbot verify`) found everything as expected.
    Verified,
    /// Every tag already pointed at the target; nothing was written.
    AlreadyAtTarget,
    /// `--dry-run`: planned, nothing written.
    DryRun,
    /// The operator answered no at the confirmation prompt; nothing written.
    Declined,
    /// No `--yes` and no terminal to ask on; nothing written.
    NotConfirmed,
    /// The input named something that does not exist; nothing written.
    BadInput,
    /// A pre-check failed (registry, incomplete target, tag moved before the first write);
    /// nothing written.
    PrecheckFailed,
    /// The retag stopped after moving some tags; the report lists each tag's digest now.
    RetagFailed,
    /// Tags moved, but verification or a health check failed.
    VerifyFailed,
}

/// One timed step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct StepReport {
    pub name: String,
    pub ok: bool,
    pub duration_ms: u64,
    pub detail: String,
}

/// The target as planned.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct TargetReport {
    pub digest: Digest,
    pub media_type: MediaType,
    pub kind: String,
    /// Platforms of an index; empty for a single manifest.
    pub platforms: Vec<String>,
    /// How many referenced manifests or blobs were checked present.
    pub references_checked: usize,
}

impl TargetReport {
    pub fn of(plan: &Plan) -> TargetReport {
        TargetReport {
            digest: plan.target.digest.clone(),
            media_type: plan.target.media_type,
            kind: plan.target.media_type.describe().to_owned(),
            platforms: plan.platforms(),
            references_checked: plan.references.len(),
        }
    }
}

/// Per tag: where it was, where it should go, where it is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TagReport {
    pub tag: Tag,
    pub from: Option<Digest>,
    pub to: Option<Digest>,
    pub now: Option<Digest>,
    /// `moved`, `already_at_target`, `planned` (dry run), `not_moved`; for `rollbot verify`:
    /// `at_target`, `not_at_target`.
    pub status: &'static str,
}

/// Registry traffic of the run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RegistryUsage {
    pub requests: RequestCounts,
    pub ratelimit_remaining: Option<String>,
}

/// Everything a run did, for people (rendered by `report.rs`) and machines (`--json`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    pub command: &'static str,
    pub image: ImageRef,
    pub requested_target: String,
    /// How the target was chosen when it was not named (from the rollback manifests).
    pub target_source: Option<String>,
    pub target: Option<TargetReport>,
    pub tags: Vec<TagReport>,
    pub steps: Vec<StepReport>,
    pub checks: Vec<CheckReport>,
    pub problems: Vec<VerifyProblem>,
    pub outcome: Outcome,
    pub error: Option<String>,
    pub total_ms: u64,
    pub rto_ms: u64,
    /// `total_ms` as a share of the RTO budget, in percent.
    pub rto_used_percent: f64,
    pub registry: RegistryUsage,
}

impl Report {
    pub fn new(
        command: &'static str,
        image: &ImageRef,
        requested: &Reference,
        tags: &[Tag],
    ) -> Report {
        Report {
            command,
            image: image.clone(),
            requested_target: requested.to_string(),
            target_source: None,
            target: None,
            tags: tags
                .iter()
                .map(|tag| TagReport {
                    tag: tag.clone(),
                    from: None,
                    to: None,
                    now: None,
                    status: "not_moved",
                })
                .collect(),
            steps: Vec::new(),
            checks: Vec::new(),
            problems: Vec::new(),
            outcome: Outcome::PrecheckFailed,
            error: None,
            total_ms: 0,
            rto_ms: 0,
            rto_used_percent: 0.0,
            registry: RegistryUsage {
                requests: RequestCounts::default(),
                ratelimit_remaining: None,
            },
        }
    }

    /// Records a finished step, timed from `started`, and tells `progress` about it.
    pub fn record_step(
        &mut self,
        name: &str,
        ok: bool,
        started: Instant,
        detail: String,
        progress: &mut (dyn FnMut(Progress<'_>) + Send),
    ) {
        let step = StepReport {
            name: name.to_owned(),
            ok,
            duration_ms: millis(started.elapsed()),
            detail,
        };
        progress(Progress::Step(&step));
        self.steps.push(step);
    }

    /// Fills target and tags from a plan (the engine uses this for approved plans too).
    pub fn record_plan(&mut self, plan: &Plan) {
        self.target = Some(TargetReport::of(plan));
        self.tags = plan
            .tags
            .iter()
            .map(|planned| TagReport {
                tag: planned.tag.clone(),
                from: Some(planned.from.clone()),
                to: Some(plan.target.digest.clone()),
                now: Some(planned.from.clone()),
                status: if planned.already_at_target {
                    "already_at_target"
                } else {
                    "planned"
                },
            })
            .collect();
    }

    fn record_tags(&mut self, outcomes: &[TagOutcome]) {
        for (report, outcome) in self.tags.iter_mut().zip(outcomes) {
            report.now = outcome.now.clone();
            report.status = if outcome.moved {
                "moved"
            } else if report.status == "already_at_target" {
                "already_at_target"
            } else {
                "not_moved"
            };
        }
    }

    /// Closes the report: outcome, error, totals and registry usage.
    pub fn finish(
        mut self,
        outcome: Outcome,
        error: Option<String>,
        started: Instant,
        rto: Duration,
        registry: Option<&RegistryClient>,
    ) -> Report {
        self.outcome = outcome;
        self.error = error;
        let total = started.elapsed();
        self.total_ms = millis(total);
        self.rto_ms = millis(rto);
        self.rto_used_percent = (total.as_secs_f64() / rto.as_secs_f64() * 1e4).round() / 1e2;
        if let Some(registry) = registry {
            self.registry = RegistryUsage {
                requests: registry.requests(),
                ratelimit_remaining: registry.ratelimit_remaining(),
            };
        }
        self
    }
}

/// What a run tells its caller as it goes (the CLI prints these lines as they happen).
#[derive(Debug)]
pub enum Progress<'a> {
    Planned(&'a Plan, &'a StepReport),
    TagMoved { tag: &'a Tag, duration: Duration },
    Step(&'a StepReport),
    Check(&'a CheckReport),
}

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
    Proceed,
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
            report.record_step("plan", false, step_started, error.to_string(), progress);
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
        name: "plan".to_owned(),
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
    match confirm(&plan) {
        Confirmation::Proceed => {}
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
    }

    execute(registry, &plan, options, &mut report, progress).await;
    let tags: Vec<Tag> = plan.tags.iter().map(|t| t.tag.clone()).collect();
    hold_moved_tags(
        registry,
        &plan.image,
        &plan.target.digest,
        &tags,
        options.hold.as_ref(),
        &mut report,
        progress,
    )
    .await;
    let outcome = report.outcome;
    let error = report.error.take();
    finish(report, outcome, error)
}

/// Once any tag moved (whatever verification said), writes a hold naming the target and
/// embedding the report, so the next CI push stops at `rollbot gate` instead of silently
/// undoing the rollback. Nothing happens without `hold` or when no tag moved. A failed hold
/// makes the run fail verification (exit 5): the tags moved, but nothing protects them.
pub async fn hold_moved_tags(
    registry: &RegistryClient,
    image: &ImageRef,
    digest: &Digest,
    tags: &[Tag],
    hold: Option<&HoldOptions>,
    report: &mut Report,
    progress: &mut (dyn FnMut(Progress<'_>) + Send),
) {
    let Some(hold) = hold else {
        return;
    };
    if !report.tags.iter().any(|t| t.status == "moved") {
        return;
    }
    let started = Instant::now();
    let record = manifest::Hold {
        report: serde_json::to_value(&*report).ok(),
        ..manifest::Hold::active(
            image.clone(),
            digest.clone(),
            tags.to_vec(),
            hold.reason.clone(),
            hold.by.clone(),
        )
    };
    let written = manifest::write_hold(registry, &record).await;
    let detail = match &written {
        Ok(()) => format!(
            "{image}:{} set; CI's `rollbot gate` now stops pushes until `rollbot hold release`",
            manifest::HOLD_TAG
        ),
        Err(error) => format!("could not set the hold: {error}"),
    };
    report.record_step("hold", written.is_ok(), started, detail, progress);
    if let Err(error) = written {
        report.outcome = Outcome::VerifyFailed;
        let message = format!(
            "tags moved but the hold could not be set ({error}); run `rollbot hold set {image} --reason …` so CI does not undo the rollback"
        );
        report.error = Some(match report.error.take() {
            Some(earlier) => format!("{earlier}; {message}"),
            None => message,
        });
    }
}

/// Retag, verify and check an already planned (and approved) rollback, recording into `report`.
/// Sets `report.outcome` and `report.error`; the caller calls [`Report::finish`].
pub async fn execute(
    registry: &RegistryClient,
    plan: &Plan,
    options: &RunOptions,
    report: &mut Report,
    progress: &mut (dyn FnMut(Progress<'_>) + Send),
) {
    let step_started = Instant::now();
    let retagged = retag(registry, plan, |tag, duration| {
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
            report.record_step("retag", true, step_started, detail, progress);
        }
        Err(failure) => {
            report.record_tags(&failure.tags);
            let detail = failure.error.to_string();
            report.record_step("retag", false, step_started, detail, progress);
            report.outcome = if failure.is_partial() {
                Outcome::RetagFailed
            } else {
                Outcome::PrecheckFailed
            };
            report.error = Some(failure.error.to_string());
            return;
        }
    }

    let tags: Vec<Tag> = plan.tags.iter().map(|t| t.tag.clone()).collect();
    verify_and_check(
        registry,
        &plan.image,
        &tags,
        &plan.target.digest,
        &plan.references,
        &options.checks,
        report,
        progress,
    )
    .await;
    if report.outcome != Outcome::VerifyFailed {
        report.outcome = Outcome::Succeeded;
    }
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
                        "at_target"
                    } else {
                        "not_at_target"
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
    report.record_step("verify", ok, step_started, detail.clone(), progress);
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
        report.record_step("checks", failed.is_empty(), step_started, detail, progress);
        report.checks = results;
        if !failed.is_empty() {
            report.outcome = Outcome::VerifyFailed;
            report.error = Some(failed.join("; "));
            return;
        }
    }
    report.outcome = Outcome::Verified;
}
