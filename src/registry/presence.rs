//! Whether what a manifest references is still in the registry: every platform manifest of an
//! index, or the config and layers of an image manifest (registry clean-ups delete them).

use futures_util::future::join_all;

use super::oci;
use super::{RegistryClient, RegistryError};
use crate::domain::model::{ImageRef, Reference};

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
