//! The records rollbot keeps and shows: a rollback with its plan, votes, steps and checks, and
//! the audit log's entries. The storage adapter persists them, the engine changes them, chat and
//! notifications render them; none of those owns them.

use serde::{Deserialize, Serialize};

use super::model::{Digest, ImageRef, MediaType, Tag, TagNow};
use super::policy::RecordedVote;
use super::rollback::{Actor, ChannelRef, RollbackId, State, Timestamp};

/// Everything the daemon knows about one rollback.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RollbackRecord {
    pub id: RollbackId,
    pub image: ImageRef,
    /// The allowlist alias it was requested by.
    pub alias: String,
    /// Where it was requested: `console:releases`, `slack:C0123`, …
    pub channel: ChannelRef,
    pub requester: Actor,
    pub reason: Option<String>,
    /// The target as asked for (`previous build`, a tag, a digest).
    pub requested_target: String,
    /// How the target was chosen when it was not named.
    pub target_source: Option<String>,
    pub target: TargetReport,
    /// The approved state: each floating tag and the digest it pointed at when planned.
    pub tags: Vec<PlannedTag>,
    pub state: State,
    pub created_at: Timestamp,
    pub expires_at: Timestamp,
    pub updated_at: Timestamp,
    pub approved_at: Option<Timestamp>,
    pub finished_at: Option<Timestamp>,
    pub votes: Vec<RecordedVote>,
    pub steps: Vec<StepReport>,
    pub checks: Vec<CheckReport>,
    /// Per tag, where it points after the run (or as found on reconcile).
    pub tags_now: Vec<(Tag, TagNow)>,
    /// Why it failed, was interrupted, rejected or cancelled.
    pub error: Option<String>,
    /// The chat platform's id of the status message, once posted.
    pub status_ref: Option<String>,
    /// A drill: the rollback is rehearsed on the image's scratch repository (production is
    /// only read), announced as a DRILL, never to GitHub or Docker Hub, and does not block a
    /// real rollback of the image. Records from before drills read as `false`.
    #[serde(default)]
    pub drill: bool,
}

/// One line of the audit log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// Assigned by the store.
    pub seq: i64,
    pub at: Timestamp,
    pub rollback: Option<RollbackId>,
    pub actor: Option<Actor>,
    /// `command`, `vote`, `state`, `step`, `refused`, `reconcile`, …
    pub kind: String,
    pub detail: serde_json::Value,
}

impl AuditEntry {
    pub fn new(
        at: Timestamp,
        rollback: Option<RollbackId>,
        actor: Option<&Actor>,
        kind: &str,
        detail: serde_json::Value,
    ) -> AuditEntry {
        AuditEntry {
            seq: 0,
            at,
            rollback,
            actor: actor.cloned(),
            kind: kind.to_owned(),
            detail,
        }
    }
}

/// One floating tag as found when planning.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct PlannedTag {
    pub tag: Tag,
    /// Its digest when the plan was made: the compare-and-swap value.
    pub from: Digest,
    pub already_at_target: bool,
}

/// A step of a rollback, as reports and records name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StepName {
    /// The request was approved (its duration: request to approval).
    Approve,
    Plan,
    Retag,
    Verify,
    Checks,
    Hold,
    /// A drill: the live and target builds copied to the scratch repository, its floating tags
    /// pointed at the live one.
    Prepare,
    /// A drill: the scratch repository's hold released again.
    Release,
    /// A drill: what it wrote to the scratch repository deleted.
    Cleanup,
}

impl StepName {
    pub fn as_str(self) -> &'static str {
        match self {
            StepName::Approve => "approve",
            StepName::Plan => "plan",
            StepName::Retag => "retag",
            StepName::Verify => "verify",
            StepName::Checks => "checks",
            StepName::Hold => "hold",
            StepName::Prepare => "prepare",
            StepName::Release => "release",
            StepName::Cleanup => "cleanup",
        }
    }
}

impl std::fmt::Display for StepName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One timed step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct StepReport {
    pub name: StepName,
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

/// What one check did.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct CheckReport {
    pub name: String,
    pub kind: String,
    pub passed: bool,
    pub attempts: u32,
    pub duration_ms: u64,
    /// Why it failed, or a short note on what passed. Includes [`CheckReport::output`].
    pub detail: String,
    /// What a failed command printed (its last non-empty line, secrets redacted, at most
    /// [`MAX_OUTPUT_BYTES`]), as it appears at the end of `detail`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<String>,
}

impl CheckReport {
    /// `detail` without what the check printed, for places that must not publish it; `None`
    /// when there is no output to leave out.
    pub fn withheld_detail(&self) -> Option<String> {
        let output = self.output.as_deref()?;
        let summary = self.detail.strip_suffix(output)?.strip_suffix(": ")?;
        Some(format!("{summary} (its output is not published here)"))
    }
}
