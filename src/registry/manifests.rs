//! Manifest requests: HEAD (digest and media type, not a pull), GET (the exact bytes, checked
//! against every digest in sight; the one request Docker Hub counts), PUT under a tag (checked
//! against the digest the registry says it stored), and the tag list that explains an unknown
//! manifest.

use reqwest::header::CONTENT_TYPE;

use super::answers::header_str;
use super::counts::Kind;
use super::oci::{RawManifest, ACCEPT_MANIFESTS};
use super::request::Op;
use super::{RegistryClient, RegistryError};
use crate::domain::model::{Digest, ImageRef, Reference, Repository, Tag};

/// Manifests larger than this are refused (the spec asks registries to accept at least 4 MiB).
const MAX_MANIFEST_BYTES: usize = 4 * 1024 * 1024;
/// Tag lists larger than this are refused: far more than a page of tags (at most 128
/// characters each), and a registry that ignores `n` cannot make rollbot read without end.
const MAX_TAG_LIST_BYTES: usize = 4 * 1024 * 1024;

/// What a manifest HEAD says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestHead {
    pub digest: Digest,
    pub media_type: Option<String>,
}

fn manifest_path(repository: &Repository, reference: &dyn std::fmt::Display) -> String {
    format!("/v2/{repository}/manifests/{reference}")
}

impl RegistryClient {
    /// HEAD a manifest: its digest, or `None` when the tag or digest does not exist.
    ///
    /// # Errors
    /// Transport, auth and server errors; an answer without a valid `Docker-Content-Digest`.
    pub async fn head_manifest(
        &self,
        repository: &Repository,
        reference: &Reference,
    ) -> Result<Option<ManifestHead>, RegistryError> {
        let op = Op::head(
            Kind::ManifestHead,
            repository,
            manifest_path(repository, reference),
        )
        .accepting(ACCEPT_MANIFESTS);
        let Some(response) = self.call_if_found(&op).await? else {
            return Ok(None);
        };
        let headers = response.headers();
        let digest = self.digest_header(&op, headers)?.ok_or_else(|| {
            self.invalid(
                &op,
                "no Docker-Content-Digest header; rollbot compares digests by HEAD so that checks do not count as pulls".to_owned(),
            )
        })?;
        if let Reference::Digest(asked) = reference {
            if *asked != digest {
                return Err(
                    self.invalid(&op, format!("asked for {asked}, the answer names {digest}"))
                );
            }
        }
        Ok(Some(ManifestHead {
            digest,
            media_type: header_str(headers, CONTENT_TYPE.as_str()).map(str::to_owned),
        }))
    }

    /// GET a manifest's exact bytes, checked against the digest asked for and the
    /// `Docker-Content-Digest` header. This is the request Docker Hub counts as a pull.
    ///
    /// # Errors
    /// `RepositoryUnknown`, `ManifestUnknown`, a digest or media type that does not match,
    /// an unsupported manifest type, and transport, auth and server errors.
    pub async fn get_manifest(
        &self,
        repository: &Repository,
        reference: &Reference,
    ) -> Result<RawManifest, RegistryError> {
        let op = Op::get(
            Kind::ManifestGet,
            repository,
            manifest_path(repository, reference),
        )
        .accepting(ACCEPT_MANIFESTS);
        let response = match self.call(&op).await {
            Ok(response) => response,
            Err(RegistryError::ManifestUnknown { image, what, .. }) => {
                return Err(self
                    .explain_unknown_manifest(repository, reference, image, what)
                    .await)
            }
            Err(other) => return Err(other),
        };
        let header_digest = self.digest_header(&op, response.headers())?;
        let content_type = header_str(response.headers(), CONTENT_TYPE.as_str()).map(str::to_owned);
        let bytes = self
            .body_within(&op, response, MAX_MANIFEST_BYTES, || {
                "the manifest is larger than 4 MiB".to_owned()
            })
            .await?;
        let manifest = RawManifest::parse(bytes, content_type.as_deref())
            .map_err(|e| self.invalid(&op, e.to_string()))?;
        if let Reference::Digest(asked) = reference {
            if manifest.digest != *asked {
                return Err(self.invalid(
                    &op,
                    format!(
                        "the bytes hash to {}, not to the digest asked for",
                        manifest.digest
                    ),
                ));
            }
        }
        if let Some(header) = header_digest {
            if header != manifest.digest {
                return Err(self.invalid(
                    &op,
                    format!(
                        "Docker-Content-Digest says {header} but the bytes hash to {}",
                        manifest.digest
                    ),
                ));
            }
        }
        Ok(manifest)
    }

    /// PUT `manifest`'s exact bytes under `tag` with its media type as Content-Type.
    ///
    /// # Errors
    /// A refusal by the registry, or a `Docker-Content-Digest` in the answer that is not the
    /// manifest's digest (the registry stored something else).
    pub async fn put_manifest(
        &self,
        repository: &Repository,
        tag: &Tag,
        manifest: &RawManifest,
    ) -> Result<(), RegistryError> {
        self.put_manifest_at(repository, tag, manifest).await
    }

    /// PUT `manifest`'s exact bytes by its own digest (no tag): copying an image, or a platform
    /// manifest of an index, into another repository.
    ///
    /// # Errors
    /// As [`RegistryClient::put_manifest`].
    pub async fn put_manifest_by_digest(
        &self,
        repository: &Repository,
        manifest: &RawManifest,
    ) -> Result<(), RegistryError> {
        self.put_manifest_at(repository, &manifest.digest, manifest)
            .await
    }

    async fn put_manifest_at(
        &self,
        repository: &Repository,
        reference: &(dyn std::fmt::Display + Sync),
        manifest: &RawManifest,
    ) -> Result<(), RegistryError> {
        let op = Op::put(
            Kind::ManifestPut,
            repository,
            manifest_path(repository, reference),
            manifest.bytes.clone(),
            manifest.media_type.as_str(),
        );
        let response = self.call(&op).await?;
        if let Some(stored) = self.digest_header(&op, response.headers())? {
            if stored != manifest.digest {
                return Err(self.invalid(
                    &op,
                    format!(
                        "the registry stored {stored} instead of {}; the tag may now point at it",
                        manifest.digest
                    ),
                ));
            }
        }
        Ok(())
    }

    /// DELETE the manifest `digest` (and with it, in distribution, every tag pointing at it).
    /// `Ok(false)` when it is not there.
    ///
    /// # Errors
    /// A refusal: distribution answers `405 UNSUPPORTED` unless `storage.delete.enabled`,
    /// Docker Hub does not allow it; transport, auth and server errors.
    pub async fn delete_manifest(
        &self,
        repository: &Repository,
        digest: &Digest,
    ) -> Result<bool, RegistryError> {
        let op = Op::delete(
            Kind::ManifestDelete,
            repository,
            manifest_path(repository, digest),
        );
        Ok(self.call_if_found(&op).await?.is_some())
    }

    /// distribution answers MANIFEST_UNKNOWN for unknown repositories too: the tag list tells
    /// them apart, and for an unknown tag names the tags that do exist.
    async fn explain_unknown_manifest(
        &self,
        repository: &Repository,
        reference: &Reference,
        image: ImageRef,
        what: String,
    ) -> RegistryError {
        let hint = match self.list_tags(repository, 100).await {
            Err(error @ RegistryError::RepositoryUnknown { .. }) => return error,
            Ok(tags) if !tags.is_empty() && matches!(reference, Reference::Tag(_)) => {
                let mut shown: Vec<&str> = tags.iter().map(String::as_str).take(10).collect();
                if tags.len() > 10 {
                    shown.push("…");
                }
                format!(" (its tags include: {})", shown.join(", "))
            }
            _ => String::new(),
        };
        RegistryError::ManifestUnknown { image, what, hint }
    }

    /// Up to `n` tags of a repository (`GET /v2/<name>/tags/list`; not a pull).
    ///
    /// # Errors
    /// `RepositoryUnknown`, transport, auth and server errors, or an answer that is not a tag
    /// list or is larger than 4 MiB.
    pub async fn list_tags(
        &self,
        repository: &Repository,
        n: u32,
    ) -> Result<Vec<String>, RegistryError> {
        #[derive(serde::Deserialize)]
        struct TagList {
            tags: Option<Vec<String>>,
        }
        let op = Op::get(
            Kind::TagsList,
            repository,
            format!("/v2/{repository}/tags/list?n={n}"),
        );
        let response = self.call(&op).await?;
        let body = self
            .body_within(&op, response, MAX_TAG_LIST_BYTES, || {
                "the tag list is larger than 4 MiB".to_owned()
            })
            .await?;
        let list: TagList = serde_json::from_slice(&body)
            .map_err(|e| self.invalid(&op, format!("not a tag list: {e}")))?;
        Ok(list.tags.unwrap_or_default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::testing::{answer, repository, scripted};

    #[tokio::test]
    async fn a_manifest_is_deleted_by_digest_and_a_refusal_is_an_error() {
        let digest = Digest::of(b"{}");
        let unsupported =
            br#"{"errors":[{"code":"UNSUPPORTED","message":"The operation is unsupported."}]}"#;
        let (client, seen) = scripted(vec![
            answer("202 Accepted", b""),
            answer("404 Not Found", b""),
            answer("405 Method Not Allowed", unsupported),
        ])
        .await;
        let repository = repository();
        assert_eq!(client.delete_manifest(&repository, &digest).await, Ok(true));
        assert_eq!(
            client.delete_manifest(&repository, &digest).await,
            Ok(false)
        );
        let error = client
            .delete_manifest(&repository, &digest)
            .await
            .expect_err("refused");
        assert_eq!(
            error.to_string(),
            format!("registry registry.test answered 405 to DELETE /v2/acme/app/manifests/{digest}: UNSUPPORTED: The operation is unsupported.")
        );
        assert_eq!(client.requests().manifest_delete, 3);
        assert_eq!(
            crate::lock(&seen).first().cloned(),
            Some(format!("DELETE /v2/acme/app/manifests/{digest} HTTP/1.1"))
        );
    }

    #[tokio::test]
    async fn a_tag_list_is_read_up_to_4_mib() {
        let (client, seen) = scripted(vec![
            answer("200 OK", br#"{"tags":["latest","v1"]}"#),
            // Refused by its Content-Length, before reading.
            answer("200 OK\r\nContent-Length: 4194305", b""),
            // Refused by what arrived.
            answer("200 OK", &vec![b' '; MAX_TAG_LIST_BYTES + 1]),
        ])
        .await;
        let repository = repository();
        assert_eq!(
            client.list_tags(&repository, 100).await,
            Ok(vec!["latest".to_owned(), "v1".to_owned()])
        );
        for _ in 0..2 {
            let error = client
                .list_tags(&repository, 100)
                .await
                .expect_err("too large");
            assert_eq!(
                error.to_string(),
                "registry registry.test sent an unusable answer to GET /v2/acme/app/tags/list?n=100: the tag list is larger than 4 MiB"
            );
        }
        assert_eq!(client.requests().tags_list, 3);
        assert_eq!(
            crate::lock(&seen).first().map(String::as_str),
            Some("GET /v2/acme/app/tags/list?n=100 HTTP/1.1")
        );
    }
}
