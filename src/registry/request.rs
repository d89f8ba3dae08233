//! The one request path: an [`Op`] says what is specific to a request (method, path, kind,
//! rights, what it sends and which status is a success); [`RegistryClient::call`] sends it and
//! turns any other answer into the error it means; [`RegistryClient::body_within`] reads a body
//! up to a size limit.

use bytes::Bytes;
use reqwest::{Method, Response, StatusCode};

use super::counts::Kind;
use super::{RegistryClient, RegistryError};
use crate::domain::model::Repository;

/// One request, described so it can be re-sent after an auth challenge or a retryable answer.
pub(super) struct Op<'a> {
    pub(super) method: Method,
    /// From `/v2/` on, with the query if any.
    pub(super) path: String,
    pub(super) repository: &'a Repository,
    pub(super) kind: Kind,
    pub(super) accept: Option<&'static str>,
    /// The body and its Content-Type.
    pub(super) body: Option<(Bytes, &'static str)>,
    /// Needs push rights (token scope `pull,push`).
    pub(super) push: bool,
    /// A cross-repository blob mount's source: the token must also allow pulling from it.
    pub(super) also_pulls: Option<&'a Repository>,
    /// The one status that is a success; `None`: any 2xx.
    expect: Option<StatusCode>,
}

impl<'a> Op<'a> {
    /// A HEAD: pull rights, no body.
    pub(super) fn head(kind: Kind, repository: &'a Repository, path: String) -> Op<'a> {
        Op::new(Method::HEAD, kind, repository, path, None)
    }

    /// A GET: pull rights, no body.
    pub(super) fn get(kind: Kind, repository: &'a Repository, path: String) -> Op<'a> {
        Op::new(Method::GET, kind, repository, path, None)
    }

    /// A PUT of `body` as `content_type`: push rights.
    pub(super) fn put(
        kind: Kind,
        repository: &'a Repository,
        path: String,
        body: Bytes,
        content_type: &'static str,
    ) -> Op<'a> {
        Op::new(
            Method::PUT,
            kind,
            repository,
            path,
            Some((body, content_type)),
        )
    }

    /// A DELETE: push rights (registries that allow deletes at all ask for no more).
    pub(super) fn delete(kind: Kind, repository: &'a Repository, path: String) -> Op<'a> {
        Op::new(Method::DELETE, kind, repository, path, None)
    }

    /// A POST of `body` as `content_type`: push rights.
    pub(super) fn post(
        kind: Kind,
        repository: &'a Repository,
        path: String,
        body: Bytes,
        content_type: &'static str,
    ) -> Op<'a> {
        Op::new(
            Method::POST,
            kind,
            repository,
            path,
            Some((body, content_type)),
        )
    }

    fn new(
        method: Method,
        kind: Kind,
        repository: &'a Repository,
        path: String,
        body: Option<(Bytes, &'static str)>,
    ) -> Op<'a> {
        Op {
            // Every write rollbot sends needs push rights; reads need pull rights.
            push: !matches!(method, Method::GET | Method::HEAD),
            also_pulls: None,
            method,
            path,
            repository,
            kind,
            accept: None,
            body,
            expect: None,
        }
    }

    /// Sends `Accept: media_types`.
    pub(super) fn accepting(mut self, media_types: &'static str) -> Op<'a> {
        self.accept = Some(media_types);
        self
    }

    /// A mount of a blob from `from`: the token must allow pulling from there too.
    pub(super) fn pulling_from(mut self, from: &'a Repository) -> Op<'a> {
        self.also_pulls = Some(from);
        self
    }

    /// Only `status` is a success (e.g. `202 Accepted` for starting an upload).
    pub(super) fn expecting(mut self, status: StatusCode) -> Op<'a> {
        self.expect = Some(status);
        self
    }

    /// `GET /v2/acme/app/manifests/latest`, for error messages and logs.
    pub(super) fn describe(&self) -> String {
        format!("{} {}", self.method, self.path)
    }

    /// May change what the registry stores (anything but GET and HEAD).
    pub(super) fn writes(&self) -> bool {
        !matches!(self.method, Method::GET | Method::HEAD)
    }

    fn succeeded(&self, status: StatusCode) -> bool {
        match self.expect {
            Some(expected) => status == expected,
            None => status.is_success(),
        }
    }
}

impl RegistryClient {
    /// Sends `op` (with auth and retries) and returns the answer when its status is a success
    /// for `op`.
    ///
    /// # Errors
    /// What [`RegistryClient::send`] fails with, and any other answer as the error it means
    /// (see `answers.rs`).
    pub(super) async fn call(&self, op: &Op<'_>) -> Result<Response, RegistryError> {
        let response = self.send(op).await?;
        self.successful(op, response).await
    }

    /// [`RegistryClient::call`] for a question whether something exists: `404` is `None`.
    ///
    /// # Errors
    /// As [`RegistryClient::call`].
    pub(super) async fn call_if_found(
        &self,
        op: &Op<'_>,
    ) -> Result<Option<Response>, RegistryError> {
        let response = self.send(op).await?;
        if response.status() == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        self.successful(op, response).await.map(Some)
    }

    async fn successful(&self, op: &Op<'_>, response: Response) -> Result<Response, RegistryError> {
        if op.succeeded(response.status()) {
            Ok(response)
        } else {
            Err(self.status_error(op, response).await)
        }
    }

    /// The answer's body, refused with `too_large()` when it is over `max_bytes` (by its
    /// Content-Length before reading, or by what arrived).
    ///
    /// # Errors
    /// `InvalidResponse` for a body that is too large, transport errors while reading it.
    pub(super) async fn body_within(
        &self,
        op: &Op<'_>,
        response: Response,
        max_bytes: usize,
        too_large: impl FnOnce() -> String,
    ) -> Result<Bytes, RegistryError> {
        if response
            .content_length()
            .is_some_and(|n| n > max_bytes as u64)
        {
            return Err(self.invalid(op, too_large()));
        }
        let bytes = response
            .bytes()
            .await
            .map_err(|e| self.transport_error(op, &e))?;
        if bytes.len() > max_bytes {
            return Err(self.invalid(op, too_large()));
        }
        Ok(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ops_say_what_they_need_and_what_succeeds() {
        let repository = Repository::parse("acme/app").expect("repository");
        let path = || "/v2/acme/app/blobs/uploads/".to_owned();

        let head = Op::head(Kind::BlobHead, &repository, path());
        assert!(!head.push && !head.writes() && head.body.is_none() && head.accept.is_none());
        assert!(head.succeeded(StatusCode::OK) && head.succeeded(StatusCode::NO_CONTENT));
        assert!(!head.succeeded(StatusCode::NOT_FOUND));

        let get = Op::get(Kind::ManifestGet, &repository, path()).accepting("a/b");
        assert_eq!((get.method.clone(), get.accept), (Method::GET, Some("a/b")));
        assert!(!get.push && !get.writes());

        let put = Op::put(Kind::ManifestPut, &repository, path(), Bytes::new(), "c/d");
        assert!(put.push && put.writes());
        assert_eq!(put.body.as_ref().map(|(_, t)| *t), Some("c/d"));
        assert!(put.succeeded(StatusCode::CREATED));

        let post = Op::post(Kind::BlobUpload, &repository, path(), Bytes::new(), "e/f")
            .expecting(StatusCode::ACCEPTED);
        assert!(post.push && post.writes());
        assert!(post.succeeded(StatusCode::ACCEPTED));
        assert!(!post.succeeded(StatusCode::CREATED) && !post.succeeded(StatusCode::OK));
        assert_eq!(post.describe(), "POST /v2/acme/app/blobs/uploads/");

        let delete = Op::delete(Kind::ManifestDelete, &repository, path());
        assert!(delete.push && delete.writes() && delete.body.is_none());
        assert!(delete.succeeded(StatusCode::ACCEPTED));
        assert!(post.also_pulls.is_none());
        let other = Repository::parse("acme/other").expect("repository");
        let mount = Op::post(Kind::BlobMount, &repository, path(), Bytes::new(), "g/h")
            .pulling_from(&other);
        assert_eq!(mount.also_pulls, Some(&other));
    }
}
