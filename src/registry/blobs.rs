//! Blob requests: HEAD (does it exist), GET of a small blob checked against its digest (rollbot's
//! own artifacts), a one-request upload (POST, then PUT with the digest) of a blob that is
//! not there yet, split in two ([`BlobUpload`]) for callers that start the upload before they
//! know the bytes, and a cross-repository mount (a drill's copy of an image), which falls back to
//! copying the bytes when the registry will not mount.

use bytes::Bytes;
use reqwest::StatusCode;

use super::answers::header_str;
use super::counts::Kind;
use super::request::Op;
use super::{RegistryClient, RegistryError};
use crate::domain::model::{Digest, Repository};

/// The Content-Type of every blob upload.
const OCTET_STREAM: &str = "application/octet-stream";
/// The largest blob copied through rollbot's memory when a registry will not mount it.
pub const MAX_COPIED_BLOB_BYTES: usize = 256 * 1024 * 1024;

/// An upload the registry has started (`POST /v2/<name>/blobs/uploads/` answered 202 with its
/// Location) and that [`RegistryClient::finish_upload`] completes with the bytes. Starting it
/// needs nothing but the repository, so a caller can start it while it still works out what the
/// blob says (a hold's report, during verification).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobUpload {
    repository: Repository,
    /// From `/v2/` on, with the registry's query (its upload state) if any.
    path: String,
}

/// How a blob got into a repository.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlobCopy {
    /// It was there already.
    Present,
    /// The registry mounted it from the other repository (no bytes moved).
    Mounted,
    /// The registry would not mount it, so its bytes were read and uploaded.
    Copied,
}

impl RegistryClient {
    /// GET a blob of at most `max_bytes`, checked against its digest.
    ///
    /// # Errors
    /// A missing blob (`Status` 404), a larger blob, bytes that do not hash to `digest`, and
    /// transport, auth and server errors.
    pub async fn get_blob(
        &self,
        repository: &Repository,
        digest: &Digest,
        max_bytes: usize,
    ) -> Result<Bytes, RegistryError> {
        let op = Op::get(
            Kind::BlobGet,
            repository,
            format!("/v2/{repository}/blobs/{digest}"),
        );
        let response = self.call(&op).await?;
        let bytes = self
            .body_within(&op, response, max_bytes, || {
                format!("the blob is larger than {max_bytes} bytes")
            })
            .await?;
        let actual = Digest::of(&bytes);
        if actual != *digest {
            return Err(self.invalid(&op, format!("the bytes hash to {actual}")));
        }
        Ok(bytes)
    }

    /// HEAD a blob.
    ///
    /// # Errors
    /// Transport, auth and server errors.
    pub async fn blob_exists(
        &self,
        repository: &Repository,
        digest: &Digest,
    ) -> Result<bool, RegistryError> {
        let op = Op::head(
            Kind::BlobHead,
            repository,
            format!("/v2/{repository}/blobs/{digest}"),
        );
        Ok(self.call_if_found(&op).await?.is_some())
    }

    /// Uploads a blob in one request (POST, then PUT with the digest) unless it already exists.
    ///
    /// # Errors
    /// Transport, auth and server errors, or an upload the registry does not confirm.
    pub async fn push_blob(
        &self,
        repository: &Repository,
        bytes: Bytes,
    ) -> Result<Digest, RegistryError> {
        let digest = Digest::of(&bytes);
        if self.blob_exists(repository, &digest).await? {
            return Ok(digest);
        }
        let upload = self.start_upload(repository).await?;
        self.finish_upload(&upload, bytes).await
    }

    /// Starts an upload (`POST /v2/<name>/blobs/uploads/`, answered 202 with the upload's
    /// Location); [`RegistryClient::finish_upload`] completes it.
    ///
    /// # Errors
    /// Transport, auth and server errors, or an answer without a usable Location.
    pub async fn start_upload(&self, repository: &Repository) -> Result<BlobUpload, RegistryError> {
        let start = Op::post(
            Kind::BlobUpload,
            repository,
            format!("/v2/{repository}/blobs/uploads/"),
            Bytes::new(),
            OCTET_STREAM,
        )
        .expecting(StatusCode::ACCEPTED);
        let response = self.call(&start).await?;
        self.upload_location(&start, &response)
    }

    /// Completes `upload` with all of `bytes` in one PUT (`?digest=`); returns their digest.
    ///
    /// # Errors
    /// Transport, auth and server errors, or an upload the registry does not confirm.
    pub async fn finish_upload(
        &self,
        upload: &BlobUpload,
        bytes: Bytes,
    ) -> Result<Digest, RegistryError> {
        let digest = Digest::of(&bytes);
        let separator = if upload.path.contains('?') { '&' } else { '?' };
        let finish = Op::put(
            Kind::BlobUpload,
            &upload.repository,
            format!("{}{separator}digest={digest}", upload.path),
            bytes,
            OCTET_STREAM,
        );
        self.call(&finish).await?;
        Ok(digest)
    }

    /// Puts blob `digest` of `size` bytes into `repository` from `from` (same registry): nothing
    /// when it is there already, else a cross-repository mount
    /// (`POST /v2/<repository>/blobs/uploads/?mount=<digest>&from=<from>`). A registry that
    /// will not mount answers by starting an upload instead; then the blob's bytes (at most
    /// [`MAX_COPIED_BLOB_BYTES`]) are read from `from` and uploaded, checked against `digest`.
    ///
    /// # Errors
    /// Transport, auth and server errors; a blob too large to copy; an upload the registry does
    /// not confirm.
    pub async fn mount_blob(
        &self,
        repository: &Repository,
        from: &Repository,
        digest: &Digest,
        size: u64,
    ) -> Result<BlobCopy, RegistryError> {
        if self.blob_exists(repository, digest).await? {
            return Ok(BlobCopy::Present);
        }
        let mount = Op::post(
            Kind::BlobMount,
            repository,
            format!("/v2/{repository}/blobs/uploads/?mount={digest}&from={from}"),
            Bytes::new(),
            OCTET_STREAM,
        )
        .pulling_from(from);
        let response = self.call(&mount).await?;
        match response.status() {
            StatusCode::CREATED => return Ok(BlobCopy::Mounted),
            StatusCode::ACCEPTED => {}
            other => {
                return Err(self.invalid(
                    &mount,
                    format!("answered {other} instead of 201 (mounted) or 202 (upload started)"),
                ))
            }
        }
        if size > MAX_COPIED_BLOB_BYTES as u64 {
            return Err(self.invalid(
                &mount,
                format!(
                    "the registry would not mount {digest} from {from}, and at {size} bytes it is too large to copy through rollbot (at most {MAX_COPIED_BLOB_BYTES})"
                ),
            ));
        }
        let upload = self.upload_location(&mount, &response)?;
        let bytes = self.get_blob(from, digest, MAX_COPIED_BLOB_BYTES).await?;
        self.finish_upload(&upload, bytes).await?;
        Ok(BlobCopy::Copied)
    }

    /// The upload `start` began, from its answer's Location (absolute or a path, perhaps with a
    /// query).
    fn upload_location(
        &self,
        start: &Op<'_>,
        response: &reqwest::Response,
    ) -> Result<BlobUpload, RegistryError> {
        let location = header_str(response.headers(), "location")
            .ok_or_else(|| self.invalid(start, "no Location header for the upload".to_owned()))?;
        let Some(index) = location.find("/v2/") else {
            return Err(self.invalid(start, format!("unexpected upload Location {location}")));
        };
        Ok(BlobUpload {
            repository: start.repository.clone(),
            path: location[index..].to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::testing::{answer, repository, scripted};

    #[tokio::test]
    async fn a_blob_is_mounted_when_the_registry_mounts_and_copied_when_it_starts_an_upload() {
        let layer = b"a layer".as_slice();
        let digest = Digest::of(layer);
        let from = Repository::parse("acme/app").expect("repository");
        let scratch = Repository::parse("acme/app-rollbot-drill").expect("repository");
        let upload =
            "202 Accepted\r\nLocation: /v2/acme/app-rollbot-drill/blobs/uploads/u1?_state=x";
        let (client, seen) = scripted(vec![
            // Present already: one HEAD.
            answer("200 OK", b""),
            // Mounted: HEAD 404, then the mount answered 201.
            answer("404 Not Found", b""),
            answer("201 Created", b""),
            // Refused: HEAD 404, the mount starts an upload, the bytes are read and uploaded.
            answer("404 Not Found", b""),
            answer(upload, b""),
            answer("200 OK", layer),
            answer("201 Created", b""),
        ])
        .await;
        let size = layer.len() as u64;
        for expected in [BlobCopy::Present, BlobCopy::Mounted, BlobCopy::Copied] {
            assert_eq!(
                client.mount_blob(&scratch, &from, &digest, size).await,
                Ok(expected)
            );
        }
        let mount = format!(
            "POST /v2/acme/app-rollbot-drill/blobs/uploads/?mount={digest}&from=acme/app HTTP/1.1"
        );
        let head = format!("HEAD /v2/acme/app-rollbot-drill/blobs/{digest} HTTP/1.1");
        assert_eq!(
            *crate::lock(&seen),
            [
                head.clone(),
                head.clone(),
                mount.clone(),
                head,
                mount,
                format!("GET /v2/acme/app/blobs/{digest} HTTP/1.1"),
                format!(
                    "PUT /v2/acme/app-rollbot-drill/blobs/uploads/u1?_state=x&digest={digest} HTTP/1.1"
                ),
            ]
        );
        let counts = client.requests();
        assert_eq!(
            (
                counts.blob_head,
                counts.blob_mount,
                counts.blob_get,
                counts.blob_upload
            ),
            (3, 2, 1, 1)
        );
    }

    #[tokio::test]
    async fn a_blob_too_large_to_copy_is_refused_with_the_reason() {
        let digest = Digest::of(b"big");
        let (client, _) = scripted(vec![
            answer("404 Not Found", b""),
            answer("202 Accepted\r\nLocation: /v2/x/blobs/uploads/u", b""),
        ])
        .await;
        let error = client
            .mount_blob(
                &Repository::parse("acme/app-drill").expect("repository"),
                &repository(),
                &digest,
                MAX_COPIED_BLOB_BYTES as u64 + 1,
            )
            .await
            .expect_err("too large");
        assert!(
            error.to_string().contains("would not mount")
                && error.to_string().contains("too large to copy"),
            "{error}"
        );
    }
}
