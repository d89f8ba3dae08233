//! The default rollback target (`rollbot rollback IMAGE`, `/rollback IMAGE`, no target named):
//! finish a rollback the hold records as unfinished, else the previous build from the rollback
//! manifests. Shared by the CLI and the daemon.
//!
//! The rule this keeps: running the same command again never moves a tag further back than the
//! target of a rollback recorded in the hold. After a run that stopped part-way (a failed or
//! timed-out write, kill -9) some tags are at its target and the others where they were; the live
//! digest of the first tag would otherwise make "the build before it" the next target, two builds
//! back. Tags that disagree with no hold to explain them are refused, not guessed.

use std::time::Instant;

use futures_util::future::join_all;

use super::outcome::Outcome;
use super::plan::{head_tag, Prefetched};
use crate::domain::model::{Digest, ImageRef, Tag};
use crate::manifest::{self, History, HoldReading, Selection};
use crate::registry::{RegistryClient, RegistryError};

/// A chosen default target, with what a plan needs to act on it.
#[derive(Debug, Clone)]
pub struct DefaultTarget {
    pub digest: Digest,
    /// Every floating tag's live digest when the target was chosen: the plan's
    /// compare-and-swap values, so a tag that moves in between stops the rollback.
    pub expect_from: Vec<(Tag, Digest)>,
    /// How it was chosen, for people.
    pub source: String,
    /// Its manifest when already read while choosing it.
    pub prefetched: Option<Prefetched>,
}

/// No default target: why, and what a person could name instead.
#[derive(Debug, Clone)]
pub struct TargetRefusal {
    /// `BadInput` (a tag that does not exist, an unknown repository) or `PrecheckFailed`.
    pub outcome: Outcome,
    pub reason: String,
    /// A digest to offer as an explicit target.
    pub suggestion: Option<Digest>,
    /// The history read, to show the options.
    pub history: Option<History>,
}

impl TargetRefusal {
    fn precheck(reason: String) -> TargetRefusal {
        TargetRefusal {
            outcome: Outcome::PrecheckFailed,
            reason,
            suggestion: None,
            history: None,
        }
    }

    fn registry(error: RegistryError) -> TargetRefusal {
        let outcome = match error {
            RegistryError::RepositoryUnknown { .. } | RegistryError::ManifestUnknown { .. } => {
                Outcome::BadInput
            }
            _ => Outcome::PrecheckFailed,
        };
        TargetRefusal {
            outcome,
            ..TargetRefusal::precheck(error.to_string())
        }
    }
}

/// Chooses the target of a rollback of `tags` (the first one's history decides) when none was
/// named.
///
/// Registry cost: a HEAD per tag and one for the hold; when a hold exists, a manifest GET and a
/// blob GET to read it; then, unless the hold decides, the rollback manifests as
/// [`manifest::select_target`] reads them.
///
/// # Errors
/// A [`TargetRefusal`] saying why no target is chosen automatically.
pub async fn default_target(
    registry: &RegistryClient,
    image: &ImageRef,
    tags: &[Tag],
) -> Result<DefaultTarget, TargetRefusal> {
    let Some(first) = tags.first() else {
        return Err(TargetRefusal {
            outcome: Outcome::BadInput,
            ..TargetRefusal::precheck("no floating tag to roll back".to_owned())
        });
    };
    let heads = join_all(
        tags.iter()
            .map(|tag| head_tag(registry, &image.repository, tag)),
    );
    let (heads, hold) =
        futures_util::future::join(heads, manifest::read_hold(registry, image)).await;
    let mut live = Vec::with_capacity(tags.len());
    for (tag, head) in tags.iter().zip(heads) {
        match head.map_err(TargetRefusal::registry)? {
            Some(head) => live.push((tag.clone(), head.digest)),
            None => {
                return Err(TargetRefusal {
                    outcome: Outcome::BadInput,
                    ..TargetRefusal::precheck(format!("{image} has no tag '{tag}'"))
                })
            }
        }
    }
    let hold = hold.map_err(|error| {
        TargetRefusal::precheck(format!(
            "cannot read the hold of {image} ({error}), which records unfinished rollbacks; name the target explicitly"
        ))
    })?;

    if let Some(hold) = &hold {
        match hold.reading(&live) {
            HoldReading::Unfinished => {
                return Ok(DefaultTarget {
                    digest: hold.digest.clone(),
                    expect_from: live,
                    source: format!(
                        "finishing the rollback to {} that stopped part-way (recorded in the hold by {} at {}: {})",
                        hold.digest.short(),
                        hold.held_by,
                        hold.held_at,
                        hold.reason
                    ),
                    prefetched: None,
                })
            }
            HoldReading::Done => {
                let suggestion = match manifest::select_target(registry, image, first, &hold.digest).await {
                    Selection::Chosen { digest, .. } => Some(digest),
                    Selection::Refused { suggestion, .. } => suggestion,
                };
                return Err(TargetRefusal {
                    suggestion,
                    ..TargetRefusal::precheck(format!(
                        "every tag of {image} already points at {}, the target of the rollback recorded in the hold (by {} at {}: {}); check it with `rollbot verify {image} --expect {}`, and to roll back further name the target explicitly",
                        hold.digest, hold.held_by, hold.held_at, hold.reason, hold.digest
                    ))
                });
            }
            HoldReading::Nothing => {}
        }
    }
    if live.iter().any(|(_, digest)| *digest != live[0].1) {
        return Err(TargetRefusal::precheck(format!(
            "the floating tags of {image} point at different digests ({}): an earlier rollback or push may have stopped part-way, and no hold records its target; name the target explicitly",
            describe_live(&live)
        )));
    }

    let live_digest = live[0].1.clone();
    let asked_at = Instant::now();
    match manifest::select_target(registry, image, first, &live_digest).await {
        Selection::Chosen {
            digest,
            manifest,
            source,
        } => Ok(DefaultTarget {
            digest,
            expect_from: live,
            source,
            prefetched: manifest.map(|manifest| Prefetched { manifest, asked_at }),
        }),
        Selection::Refused {
            reason,
            suggestion,
            history,
        } => Err(TargetRefusal {
            outcome: Outcome::PrecheckFailed,
            reason,
            suggestion,
            history: Some(history),
        }),
    }
}

/// `latest at sha256:…, stable at sha256:…`
fn describe_live(live: &[(Tag, Digest)]) -> String {
    live.iter()
        .map(|(tag, digest)| format!("{tag} at {}", digest.short()))
        .collect::<Vec<_>>()
        .join(", ")
}
