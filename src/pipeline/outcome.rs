//! How a run ended and its report: steps with durations, each tag's state, the registry traffic.

use std::time::{Duration, Instant};

use serde::Serialize;

use super::plan::Plan;
use super::retag::TagOutcome;
use super::verify::VerifyProblem;
use crate::checks::millis;
use crate::domain::model::{Digest, ImageRef, Reference, Tag};
use crate::domain::record::{CheckReport, StepName, StepReport, TargetReport};
use crate::registry::{RegistryClient, RequestCounts, RequestTiming};

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

/// Per tag: where it was, where it should go, where it is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TagReport {
    pub tag: Tag,
    pub from: Option<Digest>,
    pub to: Option<Digest>,
    /// `None`: the tag does not exist, or (status `unknown`) could not be read.
    pub now: Option<Digest>,
    pub status: TagStatus,
}

/// A tag's part in a run, as the report (and `--json`) says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TagStatus {
    /// Planned, not written (a dry run, or before the retag).
    Planned,
    AlreadyAtTarget,
    Moved,
    NotMoved,
    /// It may have moved: it could not be read back after a failed write, or its write got no
    /// clear answer and may still land; `rollbot verify` tells.
    Unknown,
    /// `rollbot verify`: the tag points at the expected digest.
    AtTarget,
    /// `rollbot verify`: it does not.
    NotAtTarget,
}

impl TagStatus {
    /// For people: `moved`, `already at target`, `not moved`, `unknown`, …
    pub fn text(self) -> &'static str {
        match self {
            TagStatus::Planned => "planned",
            TagStatus::AlreadyAtTarget => "already at target",
            TagStatus::Moved => "moved",
            TagStatus::NotMoved => "not moved",
            TagStatus::Unknown => "unknown",
            TagStatus::AtTarget => "at target",
            TagStatus::NotAtTarget => "not at target",
        }
    }
}

/// Registry traffic of the run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RegistryUsage {
    pub requests: RequestCounts,
    /// Requests that count against a pull rate limit (Docker Hub: manifest GETs, not HEADs).
    pub counted_pulls: u32,
    pub ratelimit_remaining: Option<String>,
    /// Every request, timed, when the client was asked to keep them
    /// (`RegistryClient::keep_timeline`; the command line's `--json`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub timeline: Vec<RequestTiming>,
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
    /// After a retag that stopped part-way: the command that finishes it (the same target and
    /// tags; tags already there are skipped).
    pub finish_command: Option<String>,
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
                    status: TagStatus::NotMoved,
                })
                .collect(),
            steps: Vec::new(),
            checks: Vec::new(),
            problems: Vec::new(),
            outcome: Outcome::PrecheckFailed,
            error: None,
            finish_command: None,
            total_ms: 0,
            rto_ms: 0,
            rto_used_percent: 0.0,
            registry: RegistryUsage {
                requests: RequestCounts::default(),
                counted_pulls: 0,
                ratelimit_remaining: None,
                timeline: Vec::new(),
            },
        }
    }

    /// Records a finished step, timed from `started`, and tells `progress` about it.
    pub fn record_step(
        &mut self,
        name: StepName,
        ok: bool,
        started: Instant,
        detail: String,
        progress: &mut (dyn FnMut(Progress<'_>) + Send),
    ) {
        self.steps
            .push(finished_step(name, ok, started, detail, progress));
    }

    /// Fills target and tags from a plan (the engine uses this for approved plans too).
    pub fn record_plan(&mut self, plan: &Plan) {
        self.target = Some(plan.target_report());
        self.tags = plan
            .tags
            .iter()
            .map(|planned| TagReport {
                tag: planned.tag.clone(),
                from: Some(planned.from.clone()),
                to: Some(plan.target.digest.clone()),
                now: Some(planned.from.clone()),
                status: if planned.already_at_target {
                    TagStatus::AlreadyAtTarget
                } else {
                    TagStatus::Planned
                },
            })
            .collect();
    }

    pub(super) fn record_tags(&mut self, outcomes: &[TagOutcome]) {
        for (report, outcome) in self.tags.iter_mut().zip(outcomes) {
            report.now = outcome.now.digest().cloned();
            report.status = if outcome.moved {
                TagStatus::Moved
            } else if report.status == TagStatus::AlreadyAtTarget {
                TagStatus::AlreadyAtTarget
            } else if outcome.now.is_unknown() || outcome.unanswered {
                TagStatus::Unknown
            } else {
                TagStatus::NotMoved
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
            let requests = registry.requests();
            self.registry = RegistryUsage {
                requests,
                counted_pulls: requests.counted_pulls(),
                ratelimit_remaining: registry.ratelimit_remaining(),
                timeline: registry.timeline(),
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

/// A finished step, timed from `started`, after telling `progress` about it.
pub(crate) fn finished_step(
    name: StepName,
    ok: bool,
    started: Instant,
    detail: String,
    progress: &mut (dyn FnMut(Progress<'_>) + Send),
) -> StepReport {
    let step = StepReport {
        name,
        ok,
        duration_ms: millis(started.elapsed()),
        detail,
    };
    progress(Progress::Step(&step));
    step
}
