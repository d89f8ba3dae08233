//! Verification by HEAD: every tag points at the target and every reference is present (read
//! again, or, right after this run's own plan found them all, taken from it).

use futures_util::future::join_all;
use serde::Serialize;

use super::plan::head_tag;
use crate::domain::model::{Digest, ImageRef, Tag, TagNow};
use crate::registry::missing_references;
use crate::registry::oci;
use crate::registry::{RegistryClient, RegistryError};

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

/// What verification says of the target's references.
#[derive(Debug, Clone, Copy)]
pub enum References<'a> {
    /// HEAD each one: it must exist.
    Read(&'a [oci::Reference]),
    /// This many, every one found present by the run's own plan, made after the run was
    /// approved and just before its first write (and named by the tag writes the registry
    /// accepted since): not read again.
    CheckedByPlan(usize),
}

impl References<'_> {
    /// "3 references present", for the verify step's detail.
    pub fn describe(&self) -> String {
        match self {
            References::Read(references) => format!("{} references present", references.len()),
            References::CheckedByPlan(count) => {
                format!("{count} references present (checked by the plan)")
            }
        }
    }
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

/// Where each of `tags` points now, read concurrently; a tag the registry does not answer for
/// is [`TagNow::Unknown`] with the error, never taken for "not moved".
pub async fn read_tags(registry: &RegistryClient, image: &ImageRef, tags: &[Tag]) -> Vec<TagNow> {
    join_all(
        tags.iter()
            .map(|tag| head_tag(registry, &image.repository, tag)),
    )
    .await
    .into_iter()
    .map(|head| match head {
        Ok(head) => TagNow::from(head.map(|h| h.digest)),
        Err(error) => TagNow::Unknown {
            unknown: error.to_string(),
        },
    })
    .collect()
}
