//! Blob requests: HEAD (does it exist), GET of a small blob checked against its digest (rollbot's
//! own artifacts), and a one-request upload (POST, then PUT with the digest) of a blob that is
//! not there yet.

use bytes::Bytes;
use reqwest::StatusCode;

use super::answers::header_str;
use super::counts::Kind;
use super::request::Op;
use super::{RegistryClient, RegistryError};
use crate::domain::model::{Digest, Repository};

/// The Content-Type of every blob upload.
const OCTET_STREAM: &str = "application/octet-stream";

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
        let start = Op::post(
            Kind::BlobUpload,
            repository,
            format!("/v2/{repository}/blobs/uploads/"),
            Bytes::new(),
            OCTET_STREAM,
        )
        .expecting(StatusCode::ACCEPTED);
        let response = self.call(&start).await?;
        let location = header_str(response.headers(), "location")
            .ok_or_else(|| self.invalid(&start, "no Location header for the upload".to_owned()))?;
        // Location may be absolute or a path, and may already carry a query.
        let Some(index) = location.find("/v2/") else {
            return Err(self.invalid(&start, format!("unexpected upload Location {location}")));
        };
        let path = &location[index..];
        let separator = if path.contains('?') { '&' } else { '?' };
        let finish = Op::put(
            Kind::BlobUpload,
            repository,
            format!("{path}{separator}digest={digest}"),
            bytes,
            OCTET_STREAM,
        );
        self.call(&finish).await?;
        Ok(digest)
    }
}
