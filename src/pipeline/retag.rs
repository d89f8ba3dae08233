//! The retag: the target's exact bytes written under each floating tag, compare-and-swap, and
//! every tag read back when it stops.

use std::time::{Duration, Instant};

use futures_util::future::join_all;
use serde::Serialize;

use super::plan::{head_tag, Plan, PlannedTag};
use crate::domain::model::{Digest, Tag};
use crate::registry::{RegistryClient, RegistryError};

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
