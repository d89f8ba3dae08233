//! A drill's scratch repository: copying builds into it by digest (exact bytes, platform
//! manifests first, blobs mounted across repositories or copied when the registry will not
//! mount) and deleting again what the drill wrote. Only the scratch repository is written;
//! the production repository is only read.

use std::future::Future;
use std::pin::Pin;

use futures_util::future::join_all;
use serde::Serialize;

use crate::domain::model::{Digest, Reference, Repository};
use crate::registry::oci::RawManifest;
use crate::registry::{BlobCopy, RegistryClient, RegistryError};

/// What copying builds into the scratch repository wrote.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct Copied {
    /// Manifests written by digest, in write order (platform manifests before their index).
    pub(super) manifests: Vec<Digest>,
    /// Manifests the scratch repository held already: not written, and never deleted.
    pub(super) found: Vec<Digest>,
    pub(super) mounted: u32,
    pub(super) copied: u32,
    pub(super) present: u32,
}

impl Copied {
    /// `4 manifests; blobs: 6 mounted, 0 copied, 2 already there` (and how many manifests
    /// were there already, kept).
    pub(super) fn describe(&self) -> String {
        let mut text = format!(
            "{} manifest{}; blobs: {} mounted, {} copied, {} already there",
            self.manifests.len(),
            if self.manifests.len() == 1 { "" } else { "s" },
            self.mounted,
            self.copied,
            self.present
        );
        if !self.found.is_empty() {
            text.push_str(&format!(
                "; {} manifest{} already there, kept",
                self.found.len(),
                if self.found.len() == 1 { "" } else { "s" }
            ));
        }
        text
    }
}

/// Copies `manifest` (read from `from`) into `to` under its own digest: for an index, each
/// platform manifest first (read from `from` too); for an image, its config and layers by
/// mount. The bytes written are the bytes read. A manifest `to` holds already is not written
/// (nor recorded in `copied.manifests`, the list cleaning deletes).
///
/// # Errors
/// The first registry error.
pub(super) fn copy_manifest<'a>(
    registry: &'a RegistryClient,
    from: &'a Repository,
    to: &'a Repository,
    manifest: &'a RawManifest,
    copied: &'a mut Copied,
) -> Pin<Box<dyn Future<Output = Result<(), RegistryError>> + Send + 'a>> {
    Box::pin(async move {
        // Already there (an earlier drill's leftovers, say): not written, so never deleted.
        let reference = Reference::Digest(manifest.digest.clone());
        if registry.head_manifest(to, &reference).await?.is_some() {
            if !copied.manifests.contains(&manifest.digest)
                && !copied.found.contains(&manifest.digest)
            {
                copied.found.push(manifest.digest.clone());
            }
            return Ok(());
        }
        let references = manifest
            .references()
            .map_err(|e| RegistryError::InvalidResponse {
                registry: registry.host().clone(),
                request: format!("GET {}", manifest.digest),
                detail: e.to_string(),
            })?;
        if manifest.media_type.is_index() {
            for child in references.iter().filter(|r| r.is_manifest) {
                let child = registry
                    .get_manifest(from, &Reference::Digest(child.digest.clone()))
                    .await?;
                copy_manifest(registry, from, to, &child, copied).await?;
            }
        } else {
            let mounts = join_all(
                references
                    .iter()
                    .filter(|r| !r.is_manifest)
                    .map(|blob| registry.mount_blob(to, from, &blob.digest, blob.size)),
            )
            .await;
            for mount in mounts {
                match mount? {
                    BlobCopy::Present => copied.present += 1,
                    BlobCopy::Mounted => copied.mounted += 1,
                    BlobCopy::Copied => copied.copied += 1,
                }
            }
        }
        registry.put_manifest_by_digest(to, manifest).await?;
        if !copied.manifests.contains(&manifest.digest) {
            copied.manifests.push(manifest.digest.clone());
        }
        Ok(())
    })
}

/// What cleaning the scratch repository did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Cleanup {
    /// Manifests deleted (with them, in distribution, the tags pointing at them).
    pub deleted: Vec<Digest>,
    /// Why the registry would not delete (then nothing more was tried): Docker Hub never
    /// allows it, distribution only with `storage.delete.enabled`.
    pub refused: Option<String>,
    /// Manifests the drill wrote that are still there (with the tags pointing at them).
    pub left: Vec<Digest>,
}

impl Cleanup {
    /// For people: what was deleted, and what the registry would not let go.
    pub fn describe(&self, scratch: &dyn std::fmt::Display) -> String {
        let mut text = format!(
            "deleted {} manifest{} from {scratch}",
            self.deleted.len(),
            if self.deleted.len() == 1 { "" } else { "s" }
        );
        match &self.refused {
            Some(refused) => text.push_str(&format!(
                "; the registry would not delete the other {} ({refused}): they and their tags stay in the scratch repository",
                self.left.len()
            )),
            None => text.push_str(" (blobs and the replaced in-progress hold record, untagged, stay until the registry's garbage collection)"),
        }
        text
    }
}

/// Deletes `manifests` (the drill's own writes, each once) from the scratch repository `to`,
/// in the given order, until the registry refuses one; what it refused and what is left is
/// reported, never an error. A manifest already gone counts as deleted.
pub(super) async fn delete_manifests(
    registry: &RegistryClient,
    to: &Repository,
    manifests: &[Digest],
) -> Cleanup {
    let mut cleanup = Cleanup::default();
    for (index, digest) in manifests.iter().enumerate() {
        match registry.delete_manifest(to, digest).await {
            Ok(_) => cleanup.deleted.push(digest.clone()),
            Err(error) => {
                cleanup.refused = Some(refusal(&error));
                cleanup.left = manifests[index..].to_vec();
                break;
            }
        }
    }
    cleanup
}

/// A refused delete for people, with the usual fix.
fn refusal(error: &RegistryError) -> String {
    let text = error.to_string();
    match error {
        RegistryError::Status { status: 405, .. } => format!(
            "{text}; a distribution registry deletes only with storage.delete.enabled, and Docker Hub not at all"
        ),
        _ => text,
    }
}
