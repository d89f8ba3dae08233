//! Drills: the rollback rollbot would make now, rehearsed on a scratch repository in the same
//! registry, timed step by step against the RTO budget.
//!
//! The target is the one the real rollback chooses ([`super::default_target`], on the
//! production repository, which is only read). The drill then copies the live build and the
//! target into the scratch repository by digest (`scratch.rs`: exact bytes, blobs mounted),
//! points the same floating tags there at the live build, runs the one real pipeline ([`run`]:
//! plan, retag, verify, checks, hold) on the scratch repository, releases the scratch hold,
//! and deletes what it wrote. Every write names the scratch repository, which is never the
//! production one: a drill cannot move a production tag.

mod scratch;

use std::time::Instant;

use serde::Serialize;

use super::outcome::{Outcome, Progress, Report};
use super::plan::{head_tag, Plan, Prefetched, RollbackRequest};
use super::{run, Confirmation, RunOptions};
use crate::checks::millis;
use crate::domain::model::{Digest, ImageRef, Reference, Tag};
use crate::domain::record::{StepName, StepReport};
use crate::manifest;
use crate::registry::oci::RawManifest;
use crate::registry::{RegistryClient, RegistryError};

pub use scratch::Cleanup;
use scratch::{copy_manifest, delete_manifests, Copied};

/// What to rehearse: the rollback of `live` tags of `production` to `target`, on `scratch`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DrillRequest {
    /// The image whose rollback is rehearsed: only read.
    pub production: ImageRef,
    /// Where it is rehearsed: same registry, another repository.
    pub scratch: ImageRef,
    /// Each floating tag and the digest it points at in production (what the real rollback
    /// would compare-and-swap against); the scratch tags are pointed at exactly these.
    pub live: Vec<(Tag, Digest)>,
    /// The target the real rollback chooses.
    pub target: Digest,
    /// How it was chosen, for people.
    pub target_source: Option<String>,
    /// The target's manifest, when already read from production while choosing it.
    pub prefetched: Option<RawManifest>,
}

/// One timed step of a drill, as `--json` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DrillStep {
    pub name: StepName,
    pub ok: bool,
    pub ms: u64,
    pub detail: String,
}

/// Everything a drill did: its steps and total against the RTO, the rehearsal's own report,
/// and what cleaning the scratch repository left.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DrillReport {
    pub command: &'static str,
    /// The production image (never written).
    pub image: ImageRef,
    /// The scratch repository the rollback was rehearsed on.
    pub scratch: ImageRef,
    pub outcome: Outcome,
    pub error: Option<String>,
    pub target: Digest,
    pub target_source: Option<String>,
    pub tags: Vec<Tag>,
    /// Every step: prepare, then the pipeline's (plan, retag, verify, checks, hold), release,
    /// cleanup.
    pub steps: Vec<DrillStep>,
    pub total_ms: u64,
    pub rto_ms: u64,
    pub rto_used_percent: f64,
    pub within_rto: bool,
    pub cleanup: Cleanup,
    /// The rehearsed rollback's own report (on the scratch repository); absent when the drill
    /// stopped before it.
    pub rollback: Option<Report>,
}

/// Rehearses `request`: prepare, the whole pipeline on the scratch repository, release the
/// scratch hold, clean up. `started` is when the drill began (before choosing the target, say):
/// the total counts from there. Steps go to `progress` as they finish.
pub async fn rehearse(
    registry: &RegistryClient,
    request: &DrillRequest,
    options: &RunOptions,
    started: Instant,
    progress: &mut (dyn FnMut(Progress<'_>) + Send),
) -> DrillReport {
    let mut drill = Drill {
        report: DrillReport {
            command: "drill",
            image: request.production.clone(),
            scratch: request.scratch.clone(),
            outcome: Outcome::PrecheckFailed,
            error: None,
            target: request.target.clone(),
            target_source: request.target_source.clone(),
            tags: request.live.iter().map(|(tag, _)| tag.clone()).collect(),
            steps: Vec::new(),
            total_ms: 0,
            rto_ms: 0,
            rto_used_percent: 0.0,
            within_rto: false,
            cleanup: Cleanup::default(),
            rollback: None,
        },
        written: Copied::default(),
        holds: Vec::new(),
        found_hold: None,
    };
    if request.scratch.registry != request.production.registry
        || request.scratch.repository == request.production.repository
    {
        drill.report.outcome = Outcome::BadInput;
        drill.report.error = Some(format!(
            "a drill of {} needs a scratch repository of its own in the same registry, not {}",
            request.production, request.scratch
        ));
        return drill.finish(started, options);
    }

    let step_started = Instant::now();
    // The scratch repository's hold record before the drill writes anything: not the drill's,
    // so never released nor deleted by it.
    drill.found_hold = match head_hold(registry, request).await {
        Ok(found) => found,
        Err(error) => {
            let detail = format!("cannot read the scratch repository's hold: {error}");
            drill.step(
                StepName::Prepare,
                false,
                step_started,
                detail.clone(),
                progress,
            );
            drill.report.error = Some(format!(
                "preparing the scratch repository failed (nothing was written): {detail}"
            ));
            return drill.finish(started, options);
        }
    };
    let prepared = drill.prepare(registry, request).await;
    let (ok, detail) = match &prepared {
        Ok(target) => (
            true,
            format!(
                "copied {} to {} ({}); {} at the live build there, target {}",
                describe_builds(request),
                request.scratch,
                drill.written.describe(),
                drill
                    .report
                    .tags
                    .iter()
                    .map(Tag::as_str)
                    .collect::<Vec<_>>()
                    .join(", "),
                target.digest.short()
            ),
        ),
        Err(error) => (false, error.clone()),
    };
    drill.step(StepName::Prepare, ok, step_started, detail, progress);
    let target = match prepared {
        Ok(target) => target,
        Err(error) => {
            drill.report.error = Some(format!(
                "preparing the scratch repository failed (production was only read): {error}"
            ));
            drill.clean(registry, request, progress).await;
            return drill.finish(started, options);
        }
    };

    let rehearsal = RollbackRequest {
        image: request.scratch.clone(),
        target: Reference::Digest(request.target.clone()),
        tags: drill.report.tags.clone(),
        expect_from: request.live.clone(),
        target_source: request.target_source.clone(),
        prefetched: Some(Prefetched::now(target)),
    };
    let mut pass_on = |event: Progress<'_>| {
        if let Progress::Planned(_, step) | Progress::Step(step) = &event {
            drill.report.steps.push(DrillStep::of(step));
        }
        progress(event);
    };
    let proceed = |_: &Plan| Confirmation::Proceed;
    let report = run(
        registry,
        &rehearsal,
        options,
        Instant::now(),
        proceed,
        &mut pass_on,
    )
    .await;
    drill.report.outcome = report.outcome;
    drill.report.error.clone_from(&report.error);
    drill.report.rollback = Some(report);

    drill.release(registry, request, options, progress).await;
    drill.clean(registry, request, progress).await;
    drill.finish(started, options)
}

/// A drill in progress: its report and what it wrote to the scratch repository.
struct Drill {
    report: DrillReport,
    written: Copied,
    /// Hold records seen under the scratch repository's `rollbot-hold` (the last one the
    /// rehearsal wrote, then the released one). The `in_progress` record the rehearsal wrote
    /// before its first tag write was replaced unseen: untagged, it stays until the registry's
    /// garbage collection, like the blobs.
    holds: Vec<Digest>,
    /// The scratch repository's hold record before the drill: someone else's, left alone.
    found_hold: Option<Digest>,
}

impl Drill {
    fn step(
        &mut self,
        name: StepName,
        ok: bool,
        started: Instant,
        detail: String,
        progress: &mut (dyn FnMut(Progress<'_>) + Send),
    ) {
        let step = super::outcome::finished_step(name, ok, started, detail, progress);
        self.report.steps.push(DrillStep::of(&step));
    }

    /// Checks that production's tags are still where the drill was planned against, copies
    /// the live builds and the target into the scratch repository, and points its floating
    /// tags at the live builds. Returns the target's manifest.
    async fn prepare(
        &mut self,
        registry: &RegistryClient,
        request: &DrillRequest,
    ) -> Result<RawManifest, String> {
        let production = &request.production.repository;
        let scratch = &request.scratch.repository;
        for (tag, expected) in &request.live {
            let now = head_tag(registry, production, tag)
                .await
                .map_err(|e| e.to_string())?
                .map(|head| head.digest);
            if now.as_ref() != Some(expected) {
                return Err(format!(
                    "tag '{tag}' of {} moved from {} to {} since the drill was planned; nothing was written (request the drill again)",
                    request.production,
                    expected.short(),
                    now.as_ref().map_or("(missing)", Digest::short)
                ));
            }
        }
        let target = match &request.prefetched {
            Some(manifest) if manifest.digest == request.target => manifest.clone(),
            _ => read(registry, request, &request.target).await?,
        };
        copy_manifest(registry, production, scratch, &target, &mut self.written)
            .await
            .map_err(|e| e.to_string())?;
        let mut live: Vec<RawManifest> = Vec::new();
        for (tag, digest) in &request.live {
            let manifest = match live.iter().find(|m| m.digest == *digest) {
                Some(manifest) => manifest.clone(),
                None => {
                    let manifest = read(registry, request, digest).await?;
                    copy_manifest(registry, production, scratch, &manifest, &mut self.written)
                        .await
                        .map_err(|e| e.to_string())?;
                    live.push(manifest.clone());
                    manifest
                }
            };
            registry
                .put_manifest(scratch, tag, &manifest)
                .await
                .map_err(|e| e.to_string())?;
        }
        Ok(target)
    }

    /// Releases the hold the rehearsal left on the scratch repository (after a run that
    /// stopped part-way too), as `rollbot hold release` would.
    async fn release(
        &mut self,
        registry: &RegistryClient,
        request: &DrillRequest,
        options: &RunOptions,
        progress: &mut (dyn FnMut(Progress<'_>) + Send),
    ) {
        let started = Instant::now();
        self.note_hold(registry, request).await;
        if self.holds.is_empty() {
            // The rehearsal wrote no hold: whatever is there is not the drill's to release.
            return;
        }
        let held = match manifest::read_hold(registry, &request.scratch).await {
            // Only a record of the scratch repository itself: releasing writes to the image
            // the record names.
            Ok(Some(hold)) if hold.is_active() && hold.image == request.scratch => hold,
            Ok(_) => return,
            Err(error) => {
                let detail = format!("cannot read the scratch repository's hold: {error}");
                self.step(StepName::Release, false, started, detail.clone(), progress);
                self.fail_release(detail);
                return;
            }
        };
        let by = options
            .hold
            .as_ref()
            .map_or_else(|| "rollbot drill".to_owned(), |h| h.by.clone());
        let released = held.released(
            by,
            manifest::now_rfc3339(),
            Some("drill finished".to_owned()),
        );
        let (ok, detail) = match manifest::write_hold(registry, &released).await {
            Ok(()) => (
                true,
                format!("{}:{} released", request.scratch, manifest::HOLD_TAG),
            ),
            Err(error) => (
                false,
                format!("could not release the scratch hold: {error}"),
            ),
        };
        self.step(StepName::Release, ok, started, detail.clone(), progress);
        if !ok {
            self.fail_release(detail);
        }
    }

    /// Remembers the hold record under the scratch repository's `rollbot-hold` now, to delete.
    async fn note_hold(&mut self, registry: &RegistryClient, request: &DrillRequest) {
        if let Ok(Some(digest)) = head_hold(registry, request).await {
            if !self.holds.contains(&digest) && self.found_hold.as_ref() != Some(&digest) {
                self.holds.push(digest);
            }
        }
    }

    fn fail_release(&mut self, detail: String) {
        if self.report.outcome == Outcome::Succeeded {
            self.report.outcome = Outcome::VerifyFailed;
        }
        self.report.error = Some(match self.report.error.take() {
            Some(earlier) => format!("{earlier}; {detail}"),
            None => detail,
        });
    }

    /// Deletes what the drill wrote to the scratch repository: the hold records it can name,
    /// then each image (taking its tags with it), then the platform manifests. A registry that
    /// refuses is reported, not a failure.
    async fn clean(
        &mut self,
        registry: &RegistryClient,
        request: &DrillRequest,
        progress: &mut (dyn FnMut(Progress<'_>) + Send),
    ) {
        let started = Instant::now();
        let scratch = &request.scratch.repository;
        self.note_hold(registry, request).await;
        let mut manifests: Vec<Digest> = self.holds.iter().rev().cloned().collect();
        manifests.extend(self.written.manifests.iter().rev().cloned());
        if manifests.is_empty() {
            return;
        }
        let cleanup = delete_manifests(registry, scratch, &manifests).await;
        let detail = cleanup.describe(&request.scratch);
        self.step(
            StepName::Cleanup,
            cleanup.refused.is_none(),
            started,
            detail,
            progress,
        );
        self.report.cleanup = cleanup;
    }

    fn finish(mut self, started: Instant, options: &RunOptions) -> DrillReport {
        let total = started.elapsed();
        let report = &mut self.report;
        report.total_ms = millis(total);
        report.rto_ms = millis(options.rto);
        report.rto_used_percent =
            (total.as_secs_f64() / options.rto.as_secs_f64() * 1e4).round() / 1e2;
        report.within_rto = total <= options.rto;
        self.report
    }
}

impl DrillReport {
    /// What the audit log keeps of a drill (kind `drill`): where, the outcome, each step's time,
    /// the total against the RTO, and what cleaning left.
    pub fn audit_detail(&self) -> serde_json::Value {
        serde_json::json!({
            "image": self.image.to_string(),
            "scratch": self.scratch.to_string(),
            "target": self.target.to_string(),
            "tags": self.tags.iter().map(Tag::as_str).collect::<Vec<_>>(),
            "outcome": self.outcome,
            "error": self.error,
            "total_ms": self.total_ms,
            "rto_ms": self.rto_ms,
            "within_rto": self.within_rto,
            "steps": self.steps.iter().map(|s| serde_json::json!({ "name": s.name, "ok": s.ok, "ms": s.ms })).collect::<Vec<_>>(),
            "cleanup": self.cleanup,
        })
    }
}

impl DrillStep {
    fn of(step: &StepReport) -> DrillStep {
        DrillStep {
            name: step.name,
            ok: step.ok,
            ms: step.duration_ms,
            detail: step.detail.clone(),
        }
    }
}

/// The manifest under the scratch repository's `rollbot-hold` tag, if any.
async fn head_hold(
    registry: &RegistryClient,
    request: &DrillRequest,
) -> Result<Option<Digest>, RegistryError> {
    let tag = Reference::Tag(manifest::hold_tag());
    let head = registry
        .head_manifest(&request.scratch.repository, &tag)
        .await?;
    Ok(head.map(|head| head.digest))
}

/// Reads a build of the production image by digest (to copy it).
async fn read(
    registry: &RegistryClient,
    request: &DrillRequest,
    digest: &Digest,
) -> Result<RawManifest, String> {
    registry
        .get_manifest(
            &request.production.repository,
            &Reference::Digest(digest.clone()),
        )
        .await
        .map_err(|error: RegistryError| error.to_string())
}

/// `the live build sha256:… and the target sha256:…`
fn describe_builds(request: &DrillRequest) -> String {
    let mut live: Vec<&str> = Vec::new();
    for (_, digest) in &request.live {
        if !live.contains(&digest.short()) {
            live.push(digest.short());
        }
    }
    format!(
        "the live build {} and the target {}",
        live.join(", "),
        request.target.short()
    )
}
