//! The retag: the target's exact bytes written under each floating tag, compare-and-swap, and
//! every tag read back when it stops.

use std::time::{Duration, Instant};

use super::plan::{head_tag, read_tags_timed, Plan};
use crate::domain::model::{Digest, ImageRef, Reference, Tag, TagNow};
use crate::domain::record::PlannedTag;
use crate::manifest::{self, ArtifactError, Hold};
use crate::registry::{RegistryClient, RegistryError};

/// How long to wait before reading the tags back after a write whose answer never came (a
/// timeout, a dropped connection) or was a server error: such a write may still land, and a
/// report that says "not moved" about a tag that moved leaves it half-moved and unprotected.
pub const SETTLE: Duration = Duration::from_secs(1);

/// How old a tag's compare-and-swap read may be when rollbot sends its write: a read answered
/// longer ago than this (before the hold's write, or an earlier tag's, took their time) is made
/// again right before the write. (On a registry with bearer tokens, the push token is fetched
/// before this age is taken.)
pub const MAX_READ_AGE: Duration = Duration::from_millis(100);

/// A floating tag after the retag, as read back from the registry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TagOutcome {
    pub tag: Tag,
    pub from: Digest,
    /// What the tag points at now, or that it could not be read.
    pub now: TagNow,
    /// This run moved it to the target.
    pub moved: bool,
    /// Its write got no clear answer and it did not read back as moved: it may still move.
    pub unanswered: bool,
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
    #[error("could not record the rollback in the hold before moving any tag: {error}")]
    Intent { error: ArtifactError },
    #[error("target {digest} {problem}; stopped before writing anything (rollbot does not put back a manifest someone deleted)")]
    Target { digest: Digest, problem: String },
}

/// What became of the hold a run writes before its first tag write, when the retag stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IntentRecord {
    /// No hold was to be written (`--no-hold`), or the retag stopped before writing it.
    None,
    /// Kept: tags moved (or may have), and the hold records the unfinished rollback.
    Kept,
    /// No tag moved: the hold is back as it was before the run.
    Restored,
    /// No tag moved, but the hold could not be put back: it still says a rollback is in
    /// progress (CI stays stopped until `rollbot hold release`).
    RestoreFailed(String),
}

/// A retag that stopped, with every tag's state afterwards.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetagFailure {
    pub error: RetagError,
    pub tags: Vec<TagOutcome>,
    pub intent: IntentRecord,
    /// The write that failed got no clear answer (a timeout, a dropped connection, a server
    /// error): even read back as not moved, it may still land.
    pub uncertain: bool,
}

impl RetagFailure {
    /// Something may have changed: a tag moved, a tag could not be read back, or a write
    /// without an answer may still land.
    pub fn is_partial(&self) -> bool {
        self.uncertain || self.tags.iter().any(|t| t.moved || t.now.is_unknown())
    }
}

/// Whether the plan's reads of the tags can be the compare-and-swap reads of the first write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Reads {
    /// The run writes straight after planning (approved beforehand: no prompt, no other write
    /// in between), so the plan's reads are the compare-and-swap reads of the first write.
    Fresh,
    /// Time may have passed since the plan (a prompt, an approval, a plan made earlier): every
    /// tag is read again before anything is written.
    Stale,
}

/// Writes the target's bytes under every tag not already at the target, compare-and-swap: every
/// tag is read again before anything is written, and read once more right before its own write
/// when that read is older than [`MAX_READ_AGE`] by then.
///
/// With `intent`, that hold (state `in_progress`) is written after the compare-and-swap reads
/// and before the first tag write, so a run that stops part-way leaves its target on record; if
/// in the end no tag moved, the hold is put back as it was.
///
/// Registry cost: one HEAD per tag and one of the target's digest before the first write (with
/// `intent`, also the hold tag's), one PUT per tag, the hold's manifest PUT (and the empty
/// blob's upload with a second PUT, the first time in a repository), and one more HEAD of a
/// tag whose read is older than [`MAX_READ_AGE`] when its write is due. No GET: the bytes
/// come from the plan.
///
/// # Errors
/// A [`RetagFailure`] with the tags' real state afterwards.
pub async fn retag(
    registry: &RegistryClient,
    plan: &Plan,
    intent: Option<&Hold>,
    on_moved: impl FnMut(&Tag, Duration),
) -> Result<Vec<TagOutcome>, RetagFailure> {
    retag_after(registry, plan, Reads::Stale, intent, None, on_moved).await
}

/// What a run read about the hold before its first write: the hold tag's manifest, to put it
/// back if no tag moves.
#[derive(Debug)]
pub(super) struct HoldReads {
    previous: Result<Option<Digest>, RegistryError>,
    answered: Instant,
}

impl HoldReads {
    /// A HEAD of the hold tag; nothing written.
    pub(super) async fn read(registry: &RegistryClient, image: &ImageRef) -> HoldReads {
        let previous = head_tag(registry, &image.repository, &manifest::hold_tag()).await;
        HoldReads {
            previous: previous.map(|head| head.map(|h| h.digest)),
            answered: Instant::now(),
        }
    }
}

/// [`retag`], where the plan's `reads` may be the compare-and-swap reads (when still younger
/// than [`MAX_READ_AGE`]), and `hold_reads` those the run made while it planned (`None`: read
/// with the gate). With [`Reads::Fresh`] nothing is read before the first write; otherwise the
/// tags and the target's digest are.
pub(super) async fn retag_after(
    registry: &RegistryClient,
    plan: &Plan,
    reads: Reads,
    intent: Option<&Hold>,
    hold_reads: Option<HoldReads>,
    mut on_moved: impl FnMut(&Tag, Duration),
) -> Result<Vec<TagOutcome>, RetagFailure> {
    let repository = &plan.image.repository;
    let reads = match reads {
        Reads::Fresh if plan.tags_read_at.elapsed() > MAX_READ_AGE => Reads::Stale,
        reads => reads,
    };
    // The hold's state before the run is read again with the tags (after a prompt, or when the
    // plan's read of it is older than theirs may be): it is what a run that moves nothing puts
    // back.
    let hold_reads =
        hold_reads.filter(|done| reads == Reads::Fresh && done.answered.elapsed() <= MAX_READ_AGE);
    let to_move: Vec<&PlannedTag> = plan.tags.iter().filter(|t| !t.already_at_target).collect();
    let mut stop = Stop {
        registry,
        plan,
        intent: intent.filter(|_| !to_move.is_empty()),
        previous_hold: None,
    };

    // Gate: every tag still where the plan saw it, before anything is written (unless the
    // plan's reads are that); and, with a hold to write, the hold's current manifest (to put it
    // back if nothing moves) and the empty blob it names.
    let to_read: Vec<Tag> = to_move.iter().map(|planned| planned.tag.clone()).collect();
    let heads = async {
        match reads {
            Reads::Stale => Some(read_tags_timed(registry, repository, &to_read).await),
            Reads::Fresh => None,
        }
    };
    let hold_reads = async {
        match (stop.intent, hold_reads) {
            (Some(_), Some(done)) => Some(done),
            (Some(_), None) => Some(HoldReads::read(registry, &plan.image).await),
            (None, _) => None,
        }
    };
    // Time passed since the plan (a prompt, a slow plan): the target may have been deleted
    // meanwhile, and its PUT under a tag would put it back.
    let target = async {
        match reads {
            Reads::Stale => {
                let digest = Reference::Digest(plan.target.digest.clone());
                Some(registry.head_manifest(repository, &digest).await)
            }
            Reads::Fresh => None,
        }
    };
    // A registry with bearer tokens hands out the push token now, not between a tag's read
    // and its write.
    let push_token = registry.prepare_push(repository);
    let (heads, hold_reads, target, ()) =
        futures_util::future::join4(heads, hold_reads, target, push_token).await;
    let problem = match target {
        None | Some(Ok(Some(_))) => None,
        Some(Ok(None)) => Some("is no longer in the registry (deleted after the plan)".to_owned()),
        Some(Err(error)) => Some(format!("could not be read again: {error}")),
    };
    if let Some(problem) = problem {
        let digest = plan.target.digest.clone();
        return Err(stop
            .nothing_written(RetagError::Target { digest, problem })
            .await);
    }
    // When the oldest of the tags' compare-and-swap reads was answered: the gate's, or the
    // plan's.
    let (heads, read_at) = match heads {
        Some((heads, oldest)) => (heads, oldest),
        None => (Vec::new(), plan.tags_read_at),
    };
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
        return Err(stop.nothing_written(error).await);
    }
    if let (Some(hold), Some(reads)) = (stop.intent, hold_reads) {
        match reads.previous {
            Ok(previous) => stop.previous_hold = Some(previous),
            Err(error) => {
                let error = RetagError::Intent {
                    error: ArtifactError::Registry(error),
                };
                return Err(stop.nothing_written(error).await);
            }
        }
        if let Err(error) = manifest::write_hold(registry, hold).await {
            let landed = match &error {
                ArtifactError::Registry(error) => error.write_may_have_landed(),
                _ => false,
            };
            let error = RetagError::Intent { error };
            if !landed {
                // Refused: nothing was written, nothing to put back.
                return Err(stop.nothing_written(error).await);
            }
            return Err(stop.after(error, true).await);
        }
    }

    for planned in &to_move {
        let started = Instant::now();
        if read_at.elapsed() > MAX_READ_AGE {
            // Read again right before this write: earlier writes (of the hold, or of tags) took
            // time, and a tag that moved meanwhile must not be overwritten.
            match head_tag(registry, repository, &planned.tag).await {
                Ok(Some(head)) if head.digest == planned.from => {}
                Ok(found) => {
                    let error = RetagError::Conflict {
                        tag: planned.tag.clone(),
                        expected: planned.from.clone(),
                        found: found.map(|h| h.digest),
                    };
                    return Err(stop.after(error, false).await);
                }
                Err(error) => {
                    let error = RetagError::Write {
                        tag: planned.tag.clone(),
                        error,
                    };
                    return Err(stop.after(error, false).await);
                }
            }
        }
        if let Err(error) = registry
            .put_manifest(repository, &planned.tag, &plan.target)
            .await
        {
            let settle = error.write_may_have_landed();
            let error = RetagError::Write {
                tag: planned.tag.clone(),
                error,
            };
            return Err(stop.after(error, settle).await);
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
            now: TagNow::At(plan.target.digest.clone()),
            moved: !planned.already_at_target,
            unanswered: false,
        })
        .collect())
}

/// Ends a retag that stopped: reads every tag back, and settles the hold it wrote.
struct Stop<'a> {
    registry: &'a RegistryClient,
    plan: &'a Plan,
    intent: Option<&'a Hold>,
    /// The hold tag's manifest before the run (`Some(None)`: there was none), once read.
    previous_hold: Option<Option<Digest>>,
}

impl Stop<'_> {
    /// Stopped before the hold or any tag was written.
    async fn nothing_written(self, error: RetagError) -> RetagFailure {
        let Stop { registry, plan, .. } = self;
        let tags = read_back(registry, plan).await;
        tracing::warn!(image = %plan.image, %error, "Retag stopped before any write.");
        RetagFailure {
            error,
            tags,
            intent: IntentRecord::None,
            uncertain: false,
        }
    }

    /// Stopped after the hold was (or may have been) written. With `uncertain`, the write that
    /// failed may still land: wait [`SETTLE`] before reading the tags back, and keep the hold
    /// whatever they say.
    async fn after(self, error: RetagError, uncertain: bool) -> RetagFailure {
        if uncertain {
            tokio::time::sleep(SETTLE).await;
        }
        let mut tags = read_back(self.registry, self.plan).await;
        if let RetagError::Write { tag, .. } = &error {
            for outcome in tags.iter_mut().filter(|t| t.tag == *tag && !t.moved) {
                outcome.unanswered = uncertain;
            }
        }
        let changed = uncertain || tags.iter().any(|t| t.moved || t.now.is_unknown());
        let intent = match self.intent {
            None => IntentRecord::None,
            Some(_) if changed => IntentRecord::Kept,
            Some(hold) => match self.restore_hold(hold, &error).await {
                Ok(()) => IntentRecord::Restored,
                Err(problem) => IntentRecord::RestoreFailed(problem.to_string()),
            },
        };
        tracing::warn!(image = %self.plan.image, %error, ?intent, "Retag stopped.");
        RetagFailure {
            error,
            tags,
            intent,
            uncertain,
        }
    }

    /// Puts the hold back as it was before the run: the previous manifest under the hold tag,
    /// or, where there was none, a released hold saying why (registries like Docker Hub do not
    /// allow deletes; released and absent both let CI through).
    async fn restore_hold(&self, intent: &Hold, why: &RetagError) -> Result<(), ArtifactError> {
        let repository = &self.plan.image.repository;
        match &self.previous_hold {
            Some(Some(previous)) => {
                let manifest = self
                    .registry
                    .get_manifest(repository, &Reference::Digest(previous.clone()))
                    .await?;
                self.registry
                    .put_manifest(repository, &manifest::hold_tag(), &manifest)
                    .await?;
                Ok(())
            }
            None => Err(ArtifactError::Conflict(
                "the hold's state before the run was never read, so it cannot be put back"
                    .to_owned(),
            )),
            Some(None) => {
                let released = intent.clone().released(
                    "rollbot".to_owned(),
                    manifest::now_rfc3339(),
                    Some(format!("the rollback moved no tag ({why})")),
                );
                manifest::write_hold(self.registry, &released).await
            }
        }
    }
}

/// Reads every tag back so a failure report says where each one really points; a tag that
/// cannot be read is `Unknown`, never "not moved".
async fn read_back(registry: &RegistryClient, plan: &Plan) -> Vec<TagOutcome> {
    let tags: Vec<Tag> = plan.tags.iter().map(|t| t.tag.clone()).collect();
    let now = super::verify::read_tags(registry, &plan.image, &tags).await;
    plan.tags
        .iter()
        .zip(now)
        .map(|(planned, now)| TagOutcome {
            tag: planned.tag.clone(),
            from: planned.from.clone(),
            moved: !planned.already_at_target && now.is(&plan.target.digest),
            now,
            unanswered: false,
        })
        .collect()
}
