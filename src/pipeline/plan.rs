//! Planning a rollback: the one manifest GET (the target's bytes), every floating tag's digest,
//! and the completeness pre-check. Nothing is written.

use std::time::Instant;

use futures_util::future::join_all;

use crate::domain::model::{Digest, ImageRef, Reference, Tag};
use crate::domain::record::{PlannedTag, TargetReport};
use crate::registry::oci::{self, RawManifest};
use crate::registry::{missing_references, RegistryClient, RegistryError};
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
    /// The target's manifest when it was already read (while choosing it from the history, or
    /// when the request was planned); used instead of a second GET if its digest is the target.
    pub prefetched: Option<Prefetched>,
}

/// A manifest read earlier, and when the read was sent.
///
/// The bytes of a digest never change, but the manifest can be deleted: a read older than
/// [`MAX_READ_AGE`](super::MAX_READ_AGE) (an approval minutes after the request) is checked with
/// a HEAD by digest before anything is written, so a rollback never puts back a manifest
/// someone deleted in between.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prefetched {
    pub manifest: RawManifest,
    /// When the read was sent (before its answer: the age is never underestimated).
    pub asked_at: Instant,
}

impl Prefetched {
    /// A manifest this process has just read or written.
    pub fn now(manifest: RawManifest) -> Prefetched {
        Prefetched {
            manifest,
            asked_at: Instant::now(),
        }
    }
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
    /// When the first of the tags' reads was answered: the age of the oldest of them as
    /// compare-and-swap reads.
    pub tags_read_at: Instant,
    /// When the last read that found the target (its GET, a HEAD, or the request's read) was
    /// sent: the age of what the plan knows of its existence.
    pub target_read_at: Instant,
}

impl Plan {
    /// Every tag already points at the target.
    pub fn is_noop(&self) -> bool {
        self.tags.iter().all(|t| t.already_at_target)
    }

    pub fn platforms(&self) -> Vec<String> {
        self.target.platforms()
    }

    /// The target as a rollback record keeps it.
    pub fn target_report(&self) -> TargetReport {
        TargetReport {
            digest: self.target.digest.clone(),
            media_type: self.target.media_type,
            kind: self.target.media_type.describe().to_owned(),
            platforms: self.platforms(),
            references_checked: self.references.len(),
        }
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
    #[error("target {digest} is no longer in {image} (its manifest was deleted after it was read); nothing was changed")]
    TargetGone { image: ImageRef, digest: Digest },
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
/// Registry cost: one manifest GET (the target's bytes, which the retag reuses; none when the
/// request carries them, but a HEAD of the target's digest when they are older than
/// [`MAX_READ_AGE`](super::MAX_READ_AGE)) sent with one HEAD per tag, and one HEAD per
/// referenced manifest or blob as soon as the target is known, concurrently.
///
/// # Errors
/// See [`PlanError`].
pub async fn plan(registry: &RegistryClient, request: &RollbackRequest) -> Result<Plan, PlanError> {
    let repository = &request.image.repository;
    // The tags' HEADs go out with the target's GET, and the HEADs of what the target references
    // as soon as its bytes are there (at once, when the request read them already). The
    // target's answer is looked at first: its error body tells an unknown repository from an
    // unknown tag or digest.
    let target = async {
        let (target, read_at, earlier) = match (&request.prefetched, &request.target) {
            (Some(read), Reference::Digest(digest)) if read.manifest.digest == *digest => {
                (read.manifest.clone(), read.asked_at, true)
            }
            _ => {
                let asked_at = Instant::now();
                let target = registry.get_manifest(repository, &request.target).await?;
                (target, asked_at, false)
            }
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
        // The request's read gives the bytes, not the manifest's existence now.
        let read_again = async {
            if !earlier || read_at.elapsed() <= super::MAX_READ_AGE {
                return Ok(Some(read_at));
            }
            let asked_at = Instant::now();
            let head = registry
                .head_manifest(repository, &Reference::Digest(target.digest.clone()))
                .await?;
            Ok::<_, RegistryError>(head.map(|_| asked_at))
        };
        let (missing, read_at) = futures_util::future::join(
            missing_references(registry, &request.image, &references),
            read_again,
        )
        .await;
        let Some(read_at) = read_at? else {
            return Err(PlanError::TargetGone {
                image: request.image.clone(),
                digest: target.digest.clone(),
            });
        };
        Ok((target, read_at, references, missing))
    };
    let tag_heads = read_tags_timed(registry, repository, &request.tags);
    let (target, (tag_heads, tags_read_at)) = futures_util::future::join(target, tag_heads).await;
    let (target, target_read_at, references, missing) = target?;

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
        tags_read_at,
        target_read_at,
    })
}

/// HEADs of `tags`, concurrently, and when the first of them was answered: how old the oldest
/// of these reads is.
pub(super) async fn read_tags_timed(
    registry: &RegistryClient,
    repository: &crate::domain::model::Repository,
    tags: &[Tag],
) -> (
    Vec<Result<Option<crate::registry::ManifestHead>, RegistryError>>,
    Instant,
) {
    let started = Instant::now();
    let answers = join_all(tags.iter().map(|tag| async move {
        let head = head_tag(registry, repository, tag).await;
        (head, Instant::now())
    }))
    .await;
    let oldest = answers.iter().map(|(_, at)| *at).min().unwrap_or(started);
    (answers.into_iter().map(|(head, _)| head).collect(), oldest)
}

pub(super) async fn head_tag(
    registry: &RegistryClient,
    repository: &crate::domain::model::Repository,
    tag: &Tag,
) -> Result<Option<crate::registry::ManifestHead>, RegistryError> {
    registry
        .head_manifest(repository, &Reference::Tag(tag.clone()))
        .await
}
