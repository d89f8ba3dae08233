//! The registry port: the few distribution-spec calls a rollback needs, over one HTTP client.
//!
//! HEAD/GET/PUT manifests by tag or digest, HEAD blobs, with Basic or Bearer-token auth, retries
//! for 429/502/503/504, and a count of every request by kind (a rollback's registry cost is part
//! of its report: Docker Hub counts manifest GETs against pull limits, HEADs are free).
//!
//! This is a small client of our own rather than `oci-client`: a safe retag needs things that
//! crate does not expose: the `Docker-Content-Digest` of a PUT, the `Content-Type` of a GET,
//! the `ratelimit-remaining` header, and HEADs that never silently fall back to a counted GET
//! (see `shared/reference/api-facts.md` §3 and `registry-notes.md`).

pub mod auth;
pub mod oci;
mod pool;
mod presence;

pub use pool::Registries;
pub use presence::missing_references;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::Engine as _;
use bytes::Bytes;
use reqwest::header::{HeaderMap, ACCEPT, AUTHORIZATION, CONTENT_TYPE, WWW_AUTHENTICATE};
use reqwest::{Method, StatusCode};
use serde::Serialize;

use crate::config::{RegistrySettings, Settings};
use crate::domain::model::{Digest, ImageRef, Reference, RegistryHost, Repository, Tag};
use crate::error_chain;
use crate::lock;
use auth::{Challenge, Credentials, Token, TokenAnswer};
use oci::{ManifestError, RawManifest, ACCEPT_MANIFESTS};

/// Manifests larger than this are refused (the spec asks registries to accept at least 4 MiB).
const MAX_MANIFEST_BYTES: usize = 4 * 1024 * 1024;
/// Attempts for answers that say "try again" (429, 502, 503, 504).
const MAX_ATTEMPTS: u32 = 3;
/// Longest `Retry-After` rollbot waits inside one request; longer waits fail with the time.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(30);

/// What went wrong talking to a registry. Each message names the registry and, where it
/// helps, the fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegistryError {
    #[error("cannot reach registry {registry}: {detail}")]
    Unreachable {
        registry: RegistryHost,
        detail: String,
    },
    #[error("registry {registry} did not answer within {timeout}")]
    Timeout {
        registry: RegistryHost,
        timeout: String,
    },
    #[error("registry {registry} requires credentials for {repository}; configure [registries.\"{registry}\"] or run docker login {registry}")]
    AuthRequired {
        registry: RegistryHost,
        repository: Repository,
    },
    #[error("registry {registry} rejected the credentials of {who}")]
    CredentialsRejected { registry: RegistryHost, who: String },
    #[error("registry {registry} denied {action} on {repository} for {who}{detail}")]
    Denied {
        registry: RegistryHost,
        repository: Repository,
        action: &'static str,
        who: String,
        detail: String,
    },
    #[error("repository {image} does not exist")]
    RepositoryUnknown { image: ImageRef },
    #[error("{image} has no {what}{hint}")]
    ManifestUnknown {
        image: ImageRef,
        what: String,
        /// e.g. ` (its tags include: latest, v1, v2)`, or empty.
        hint: String,
    },
    #[error("registry {registry} is rate limiting requests{}", retry_after.map(|s| format!("; retry in {s} s")).unwrap_or_default())]
    RateLimited {
        registry: RegistryHost,
        retry_after: Option<u64>,
    },
    #[error("registry {registry} answered {status} to {request}: {detail}")]
    Status {
        registry: RegistryHost,
        request: String,
        status: u16,
        detail: String,
    },
    #[error("registry {registry} sent an unusable answer to {request}: {detail}")]
    InvalidResponse {
        registry: RegistryHost,
        request: String,
        detail: String,
    },
    #[error("cannot load credentials for {registry}: {detail}")]
    Credentials {
        registry: RegistryHost,
        detail: String,
    },
    #[error("cannot set up an HTTP client for {registry}: {detail}")]
    Client {
        registry: RegistryHost,
        detail: String,
    },
    /// A write failed for good after an earlier attempt got a server error: that attempt may
    /// still have been applied (a gateway's 504 says nothing about the registry behind it).
    #[error("{error} (an earlier attempt was answered {status} and may still have been applied)")]
    AfterUnclearAttempt {
        status: u16,
        error: Box<RegistryError>,
    },
}

impl RegistryError {
    /// Worth trying again later (the registry or the network is busy or briefly down).
    pub fn is_retryable(&self) -> bool {
        match self {
            RegistryError::Unreachable { .. }
            | RegistryError::Timeout { .. }
            | RegistryError::RateLimited { .. } => true,
            RegistryError::Status { status, .. } => *status >= 500,
            _ => false,
        }
    }

    /// A write that failed this way may still have happened (or happen later): the request may
    /// have reached the registry and its answer been lost (a timeout, a dropped connection), or
    /// the registry failed after storing (a server error, an answer it could not explain).
    /// Refusals (4xx, credentials, rate limits) mean the write did not happen.
    pub fn write_may_have_landed(&self) -> bool {
        match self {
            RegistryError::Unreachable { .. }
            | RegistryError::Timeout { .. }
            | RegistryError::InvalidResponse { .. }
            | RegistryError::AfterUnclearAttempt { .. } => true,
            RegistryError::Status { status, .. } => *status >= 500,
            _ => false,
        }
    }
}

/// What a manifest HEAD says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestHead {
    pub digest: Digest,
    pub media_type: Option<String>,
}

/// Requests sent, by kind. Retries and token fetches count.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct RequestCounts {
    pub manifest_get: u32,
    pub manifest_head: u32,
    pub manifest_put: u32,
    pub blob_head: u32,
    pub blob_upload: u32,
    pub token: u32,
    pub tags_list: u32,
    pub blob_get: u32,
}

impl RequestCounts {
    pub fn total(&self) -> u32 {
        self.manifest_get
            + self.manifest_head
            + self.manifest_put
            + self.blob_head
            + self.blob_upload
            + self.token
            + self.tags_list
            + self.blob_get
    }
}

/// Request kinds; the discriminant is the counter slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    ManifestGet = 0,
    ManifestHead = 1,
    ManifestPut = 2,
    BlobHead = 3,
    BlobUpload = 4,
    Token = 5,
    TagsList = 6,
    BlobGet = 7,
}

#[derive(Debug, Default)]
struct Counters {
    by_kind: [AtomicU32; 8],
}

impl Counters {
    fn add(&self, index: usize) {
        self.by_kind[index].fetch_add(1, Ordering::Relaxed);
    }

    fn snapshot(&self) -> RequestCounts {
        let get = |i: usize| self.by_kind[i].load(Ordering::Relaxed);
        RequestCounts {
            manifest_get: get(0),
            manifest_head: get(1),
            manifest_put: get(2),
            blob_head: get(3),
            blob_upload: get(4),
            token: get(5),
            tags_list: get(6),
            blob_get: get(7),
        }
    }
}

/// One request, described so it can be re-sent after an auth challenge or a retryable answer.
struct Op<'a> {
    method: Method,
    path: String,
    repository: &'a Repository,
    kind: Kind,
    accept: Option<&'static str>,
    body: Option<(Bytes, String)>,
    /// Needs push rights (token scope `pull,push`).
    push: bool,
}

impl Op<'_> {
    fn describe(&self) -> String {
        format!("{} {}", self.method, self.path)
    }
}

#[derive(Debug, Default)]
struct AuthState {
    challenge: Option<Challenge>,
    /// Bearer tokens by scope.
    tokens: HashMap<String, Token>,
}

/// A client for one registry host with one set of credentials.
#[derive(Debug)]
pub struct RegistryClient {
    host: RegistryHost,
    base: String,
    timeout: Duration,
    insecure: bool,
    http: reqwest::Client,
    credentials: Credentials,
    auth: Mutex<AuthState>,
    counters: Counters,
    /// Answers by HTTP status (0: no answer), for `/metrics`.
    statuses: Mutex<std::collections::BTreeMap<u16, u64>>,
    ratelimit_remaining: Mutex<Option<String>>,
}

impl RegistryClient {
    /// A client for `host` with the config's settings and credentials for it.
    ///
    /// `insecure_override` (the CLI's `--insecure`) forces plain HTTP.
    ///
    /// # Errors
    /// Credentials that cannot be loaded, or an HTTP client that cannot be built.
    pub fn for_host(
        host: &RegistryHost,
        settings: &Settings,
        insecure_override: bool,
    ) -> Result<RegistryClient, RegistryError> {
        let mut registry = settings.registry(host);
        registry.insecure |= insecure_override;
        let credentials = auth::resolve(
            host,
            &registry.auth,
            settings.docker_config_default.as_deref(),
        )
        .map_err(|e| RegistryError::Credentials {
            registry: host.clone(),
            detail: e.to_string(),
        })?;
        RegistryClient::new(
            host,
            &registry,
            credentials,
            settings.rollback.registry_timeout,
        )
    }

    /// # Errors
    /// An HTTP client that cannot be built (TLS setup).
    pub fn new(
        host: &RegistryHost,
        settings: &RegistrySettings,
        credentials: Credentials,
        timeout: Duration,
    ) -> Result<RegistryClient, RegistryError> {
        let scheme = if settings.insecure { "http" } else { "https" };
        let mut builder = reqwest::Client::builder()
            .user_agent(concat!("rollbot/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(timeout.min(Duration::from_secs(10)))
            .timeout(timeout)
            // A registry that is reached over HTTPS must never be downgraded by a redirect.
            .https_only(!settings.insecure);
        if settings.insecure {
            // Loading the system's root certificates costs milliseconds and a plain-HTTP
            // registry never needs them.
            builder = builder.tls_built_in_root_certs(false);
        }
        let http = builder.build().map_err(|e| RegistryError::Client {
            registry: host.clone(),
            detail: error_chain(&e),
        })?;
        tracing::debug!(registry = %host, scheme, credentials = %credentials.describe(), "Registry client ready.");
        Ok(RegistryClient {
            host: host.clone(),
            base: format!(
                "{scheme}://{}",
                settings.endpoint.as_deref().unwrap_or(host.api_host())
            ),
            timeout,
            insecure: settings.insecure,
            http,
            credentials,
            auth: Mutex::new(AuthState::default()),
            counters: Counters::default(),
            statuses: Mutex::new(std::collections::BTreeMap::new()),
            ratelimit_remaining: Mutex::new(None),
        })
    }

    /// Talks plain HTTP (`--insecure`, or `insecure = true` for the registry).
    pub fn is_insecure(&self) -> bool {
        self.base.starts_with("http://")
    }

    pub fn host(&self) -> &RegistryHost {
        &self.host
    }

    /// Requests sent so far.
    pub fn requests(&self) -> RequestCounts {
        self.counters.snapshot()
    }

    /// Answers by HTTP status so far (0: no answer: connection error or timeout).
    pub fn statuses(&self) -> Vec<(u16, u64)> {
        lock(&self.statuses).iter().map(|(s, n)| (*s, *n)).collect()
    }

    fn count_status(&self, status: u16) {
        *lock(&self.statuses).entry(status).or_default() += 1;
    }

    /// The last `ratelimit-remaining` header seen (Docker Hub sends it), e.g. `95;w=21600`.
    pub fn ratelimit_remaining(&self) -> Option<String> {
        lock(&self.ratelimit_remaining).clone()
    }

    fn image(&self, repository: &Repository) -> ImageRef {
        ImageRef {
            registry: self.host.clone(),
            repository: repository.clone(),
        }
    }

    /// `GET /v2/`: reachable when it answers anything but a server error (401 is fine: the
    /// registry is there and asks for credentials).
    ///
    /// # Errors
    /// A message saying why the registry is not reachable.
    pub async fn ping(&self) -> Result<(), String> {
        let url = format!("{}/v2/", self.base);
        match self.http.get(&url).send().await {
            Ok(response) => {
                self.count_status(response.status().as_u16());
                if response.status().is_server_error() {
                    Err(format!(
                        "registry {} answered {} to GET /v2/",
                        self.host,
                        response.status()
                    ))
                } else {
                    Ok(())
                }
            }
            Err(error) => {
                self.count_status(0);
                Err(format!(
                    "cannot reach registry {}: {}",
                    self.host,
                    error_chain(&error)
                ))
            }
        }
    }

    /// HEAD a manifest: its digest, or `None` when the tag or digest does not exist.
    ///
    /// # Errors
    /// Transport, auth and server errors; an answer without a valid `Docker-Content-Digest`.
    pub async fn head_manifest(
        &self,
        repository: &Repository,
        reference: &Reference,
    ) -> Result<Option<ManifestHead>, RegistryError> {
        let op = Op {
            method: Method::HEAD,
            path: format!("/v2/{repository}/manifests/{reference}"),
            repository,
            kind: Kind::ManifestHead,
            accept: Some(ACCEPT_MANIFESTS),
            body: None,
            push: false,
        };
        let response = self.send(&op).await?;
        if response.status() == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if !response.status().is_success() {
            return Err(self.status_error(&op, response).await);
        }
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
        let op = Op {
            method: Method::GET,
            path: format!("/v2/{repository}/manifests/{reference}"),
            repository,
            kind: Kind::ManifestGet,
            accept: Some(ACCEPT_MANIFESTS),
            body: None,
            push: false,
        };
        let response = self.send(&op).await?;
        if !response.status().is_success() {
            return Err(match self.status_error(&op, response).await {
                RegistryError::ManifestUnknown { image, what, .. } => {
                    self.explain_unknown_manifest(repository, reference, image, what)
                        .await
                }
                other => other,
            });
        }
        let header_digest = self.digest_header(&op, response.headers())?;
        let content_type = header_str(response.headers(), CONTENT_TYPE.as_str()).map(str::to_owned);
        let bytes = self
            .body_within(
                &op,
                response,
                MAX_MANIFEST_BYTES,
                "the manifest is larger than 4 MiB",
            )
            .await?;
        let manifest = RawManifest::parse(bytes, content_type.as_deref())
            .map_err(|e: ManifestError| self.invalid(&op, e.to_string()))?;
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
        let op = Op {
            method: Method::PUT,
            path: format!("/v2/{repository}/manifests/{tag}"),
            repository,
            kind: Kind::ManifestPut,
            accept: None,
            body: Some((
                manifest.bytes.clone(),
                manifest.media_type.as_str().to_owned(),
            )),
            push: true,
        };
        let response = self.send(&op).await?;
        if !response.status().is_success() {
            return Err(self.status_error(&op, response).await);
        }
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

    /// The answer's body, refused with `too_large` when it is over `max_bytes` (by its
    /// Content-Length before reading, or by what arrived).
    async fn body_within(
        &self,
        op: &Op<'_>,
        response: reqwest::Response,
        max_bytes: usize,
        too_large: &str,
    ) -> Result<Bytes, RegistryError> {
        if response
            .content_length()
            .is_some_and(|n| n > max_bytes as u64)
        {
            return Err(self.invalid(op, too_large.to_owned()));
        }
        let bytes = response
            .bytes()
            .await
            .map_err(|e| self.transport_error(op, &e))?;
        if bytes.len() > max_bytes {
            return Err(self.invalid(op, too_large.to_owned()));
        }
        Ok(bytes)
    }

    /// Up to `n` tags of a repository (`GET /v2/<name>/tags/list`; not a pull).
    ///
    /// # Errors
    /// `RepositoryUnknown`, transport, auth and server errors, or an answer that is not a tag list.
    pub async fn list_tags(
        &self,
        repository: &Repository,
        n: u32,
    ) -> Result<Vec<String>, RegistryError> {
        let op = Op {
            method: Method::GET,
            path: format!("/v2/{repository}/tags/list?n={n}"),
            repository,
            kind: Kind::TagsList,
            accept: None,
            body: None,
            push: false,
        };
        let response = self.send(&op).await?;
        if !response.status().is_success() {
            return Err(self.status_error(&op, response).await);
        }
        #[derive(serde::Deserialize)]
        struct TagList {
            tags: Option<Vec<String>>,
        }
        let body = response
            .bytes()
            .await
            .map_err(|e| self.transport_error(&op, &e))?;
        let list: TagList = serde_json::from_slice(&body)
            .map_err(|e| self.invalid(&op, format!("not a tag list: {e}")))?;
        Ok(list.tags.unwrap_or_default())
    }

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
        let op = Op {
            method: Method::GET,
            path: format!("/v2/{repository}/blobs/{digest}"),
            repository,
            kind: Kind::BlobGet,
            accept: None,
            body: None,
            push: false,
        };
        let response = self.send(&op).await?;
        if !response.status().is_success() {
            return Err(self.status_error(&op, response).await);
        }
        let bytes = self
            .body_within(
                &op,
                response,
                max_bytes,
                &format!("the blob is larger than {max_bytes} bytes"),
            )
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
        let op = Op {
            method: Method::HEAD,
            path: format!("/v2/{repository}/blobs/{digest}"),
            repository,
            kind: Kind::BlobHead,
            accept: None,
            body: None,
            push: false,
        };
        let response = self.send(&op).await?;
        match response.status() {
            StatusCode::NOT_FOUND => Ok(false),
            status if status.is_success() => Ok(true),
            _ => Err(self.status_error(&op, response).await),
        }
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
        let start = Op {
            method: Method::POST,
            path: format!("/v2/{repository}/blobs/uploads/"),
            repository,
            kind: Kind::BlobUpload,
            accept: None,
            body: Some((Bytes::new(), "application/octet-stream".to_owned())),
            push: true,
        };
        let response = self.send(&start).await?;
        if response.status() != StatusCode::ACCEPTED {
            return Err(self.status_error(&start, response).await);
        }
        let location = header_str(response.headers(), "location")
            .ok_or_else(|| self.invalid(&start, "no Location header for the upload".to_owned()))?
            .to_owned();
        // Location may be absolute or a path, and may already carry a query.
        let path = match location.find("/v2/") {
            Some(index) => location[index..].to_owned(),
            None => {
                return Err(self.invalid(&start, format!("unexpected upload Location {location}")))
            }
        };
        let separator = if path.contains('?') { '&' } else { '?' };
        let finish = Op {
            method: Method::PUT,
            path: format!("{path}{separator}digest={digest}"),
            repository,
            kind: Kind::BlobUpload,
            accept: None,
            body: Some((bytes, "application/octet-stream".to_owned())),
            push: true,
        };
        let response = self.send(&finish).await?;
        if !response.status().is_success() {
            return Err(self.status_error(&finish, response).await);
        }
        Ok(digest)
    }

    // ---- the request loop -------------------------------------------------------------

    /// Sends `op`, retrying 429 and 502-504 answers. A write that fails for good after an
    /// attempt got a server error fails as [`RegistryError::AfterUnclearAttempt`], whatever the
    /// last answer was: callers must not take it for a clean refusal.
    async fn send(&self, op: &Op<'_>) -> Result<reqwest::Response, RegistryError> {
        let mut unclear = None;
        let result = self.send_attempts(op, &mut unclear).await;
        let writes = !matches!(op.method, Method::GET | Method::HEAD);
        match (result, unclear) {
            (Err(error), Some(status)) if writes && !error.write_may_have_landed() => {
                Err(RegistryError::AfterUnclearAttempt {
                    status,
                    error: Box::new(error),
                })
            }
            (Ok(response), Some(status)) if writes && !response.status().is_success() => {
                let error = self.status_error(op, response).await;
                Err(RegistryError::AfterUnclearAttempt {
                    status,
                    error: Box::new(error),
                })
            }
            (result, _) => result,
        }
    }

    /// The attempts of [`RegistryClient::send`]; `unclear` is set to the status of an attempt
    /// that got a server error before another was made.
    async fn send_attempts(
        &self,
        op: &Op<'_>,
        unclear: &mut Option<u16>,
    ) -> Result<reqwest::Response, RegistryError> {
        let url = format!("{}{}", self.base, op.path);
        let mut answered_challenge = false;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let authorization = self.authorization(op).await?;
            let mut request = self.http.request(op.method.clone(), &url);
            if let Some(accept) = op.accept {
                request = request.header(ACCEPT, accept);
            }
            if let Some(value) = authorization {
                request = request.header(AUTHORIZATION, value);
            }
            if let Some((body, content_type)) = &op.body {
                request = request
                    .header(CONTENT_TYPE, content_type.as_str())
                    .body(body.clone());
            }
            self.counters.add(op.kind as usize);
            let started = Instant::now();
            let response = match request.send().await {
                Ok(response) => response,
                Err(error) => {
                    self.count_status(0);
                    return Err(self.transport_error(op, &error));
                }
            };
            let status = response.status();
            self.count_status(status.as_u16());
            tracing::debug!(registry = %self.host, request = %op.describe(), status = status.as_u16(), elapsed_ms = started.elapsed().as_millis() as u64, "Registry answered.");
            self.note_ratelimit(response.headers());

            if status == StatusCode::UNAUTHORIZED && !answered_challenge {
                answered_challenge = true;
                let challenge = header_str(response.headers(), WWW_AUTHENTICATE.as_str())
                    .and_then(Challenge::parse);
                match challenge {
                    Some(challenge) => {
                        self.answer_challenge(op, challenge)?;
                        continue;
                    }
                    None => return Err(self.unauthorized(op)),
                }
            }
            if status == StatusCode::UNAUTHORIZED {
                return Err(self.unauthorized(op));
            }
            let retry_in = match status.as_u16() {
                429 => {
                    let wait = retry_after(response.headers());
                    match wait {
                        Some(wait) if wait > MAX_RETRY_AFTER => {
                            return Err(RegistryError::RateLimited {
                                registry: self.host.clone(),
                                retry_after: Some(wait.as_secs()),
                            })
                        }
                        Some(wait) => Some(wait),
                        None => Some(Duration::from_millis(500 * u64::from(attempt))),
                    }
                }
                502..=504 => Some(Duration::from_millis(250 * u64::from(attempt))),
                _ => None,
            };
            match retry_in {
                Some(wait) if attempt < MAX_ATTEMPTS => {
                    if status.is_server_error() {
                        *unclear = Some(status.as_u16());
                    }
                    tracing::warn!(registry = %self.host, request = %op.describe(), status = status.as_u16(), wait_ms = wait.as_millis() as u64, "Registry asked to retry.");
                    tokio::time::sleep(wait).await;
                }
                Some(_) if status == StatusCode::TOO_MANY_REQUESTS => {
                    return Err(RegistryError::RateLimited {
                        registry: self.host.clone(),
                        retry_after: retry_after(response.headers()).map(|d| d.as_secs()),
                    })
                }
                _ => return Ok(response),
            }
        }
    }

    /// The Authorization header for `op` given what the registry asked for so far.
    async fn authorization(&self, op: &Op<'_>) -> Result<Option<String>, RegistryError> {
        let challenge = lock(&self.auth).challenge.clone();
        match challenge {
            None => Ok(None),
            Some(Challenge::Basic) => Ok(self.basic_header()),
            Some(Challenge::Bearer { realm, service }) => {
                let token = self.token(op, &realm, service.as_deref()).await?;
                Ok(Some(format!("Bearer {}", token.value.expose())))
            }
        }
    }

    fn basic_header(&self) -> Option<String> {
        match &self.credentials {
            Credentials::Anonymous => None,
            Credentials::Basic {
                username, password, ..
            } => {
                let pair = format!("{username}:{}", password.expose());
                Some(format!(
                    "Basic {}",
                    base64::engine::general_purpose::STANDARD.encode(pair)
                ))
            }
        }
    }

    fn answer_challenge(&self, op: &Op<'_>, challenge: Challenge) -> Result<(), RegistryError> {
        if challenge == Challenge::Basic && self.credentials == Credentials::Anonymous {
            return Err(RegistryError::AuthRequired {
                registry: self.host.clone(),
                repository: op.repository.clone(),
            });
        }
        let mut state = lock(&self.auth);
        // A new challenge (or an expired token) invalidates the cached tokens.
        state.tokens.clear();
        state.challenge = Some(challenge);
        Ok(())
    }

    async fn token(
        &self,
        op: &Op<'_>,
        realm: &str,
        service: Option<&str>,
    ) -> Result<Token, RegistryError> {
        let pull = format!("repository:{}:pull", op.repository);
        let push = format!("repository:{}:pull,push", op.repository);
        {
            let state = lock(&self.auth);
            let now = Instant::now();
            let usable = |scope: &str| state.tokens.get(scope).filter(|t| t.expires > now).cloned();
            // A push token also allows pulls.
            if let Some(token) =
                usable(&push).or_else(|| if op.push { None } else { usable(&pull) })
            {
                return Ok(token);
            }
        }
        let scope = if op.push { push } else { pull };
        let realm_url = reqwest::Url::parse(realm).map_err(|e| {
            self.invalid(op, format!("the token realm '{realm}' is not a URL: {e}"))
        })?;
        if realm_url.scheme() != "https" && !self.insecure {
            return Err(self.invalid(
                op,
                format!(
                    "the token realm {realm} is not HTTPS; rollbot does not send credentials there"
                ),
            ));
        }
        let mut request = self.http.get(realm_url).query(&[("scope", scope.as_str())]);
        if let Some(service) = service {
            request = request.query(&[("service", service)]);
        }
        if let Credentials::Basic {
            username, password, ..
        } = &self.credentials
        {
            request = request.basic_auth(username, Some(password.expose()));
        }
        self.counters.add(Kind::Token as usize);
        let token_op = format!("GET {realm}");
        let response = request
            .send()
            .await
            .map_err(|e| RegistryError::Unreachable {
                registry: self.host.clone(),
                detail: format!("token service {realm}: {}", error_chain(&e)),
            })?;
        match response.status() {
            status if status.is_success() => {}
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
                return Err(match self.credentials {
                    Credentials::Anonymous => RegistryError::AuthRequired {
                        registry: self.host.clone(),
                        repository: op.repository.clone(),
                    },
                    Credentials::Basic { .. } => RegistryError::CredentialsRejected {
                        registry: self.host.clone(),
                        who: self.credentials.describe(),
                    },
                });
            }
            status => {
                let detail = error_detail(response).await;
                return Err(RegistryError::Status {
                    registry: self.host.clone(),
                    request: token_op,
                    status: status.as_u16(),
                    detail,
                });
            }
        }
        let body = response
            .bytes()
            .await
            .map_err(|e| RegistryError::Unreachable {
                registry: self.host.clone(),
                detail: format!("token service {realm}: {}", error_chain(&e)),
            })?;
        let answer: TokenAnswer =
            serde_json::from_slice(&body).map_err(|e| RegistryError::InvalidResponse {
                registry: self.host.clone(),
                request: token_op.clone(),
                detail: format!("not a token answer: {e}"),
            })?;
        let token =
            answer
                .into_token(Instant::now())
                .ok_or_else(|| RegistryError::InvalidResponse {
                    registry: self.host.clone(),
                    request: token_op,
                    detail: "the answer has no token".to_owned(),
                })?;
        lock(&self.auth).tokens.insert(scope, token.clone());
        Ok(token)
    }

    // ---- answers into errors ----------------------------------------------------------

    fn unauthorized(&self, op: &Op<'_>) -> RegistryError {
        match (&self.credentials, op.push) {
            (Credentials::Anonymous, _) => RegistryError::AuthRequired {
                registry: self.host.clone(),
                repository: op.repository.clone(),
            },
            // Token registries answer 401 when the token lacks the push scope.
            (Credentials::Basic { .. }, true)
                if matches!(lock(&self.auth).challenge, Some(Challenge::Bearer { .. })) =>
            {
                RegistryError::Denied {
                    registry: self.host.clone(),
                    repository: op.repository.clone(),
                    action: "push",
                    who: self.credentials.describe(),
                    detail: "; the account needs write access to the repository".to_owned(),
                }
            }
            (Credentials::Basic { .. }, _) => RegistryError::CredentialsRejected {
                registry: self.host.clone(),
                who: self.credentials.describe(),
            },
        }
    }

    async fn status_error(&self, op: &Op<'_>, response: reqwest::Response) -> RegistryError {
        let status = response.status();
        let codes = if op.method == Method::HEAD {
            ErrorBody::default()
        } else {
            ErrorBody::read(response).await
        };
        match status {
            StatusCode::NOT_FOUND if codes.has("NAME_UNKNOWN") => {
                RegistryError::RepositoryUnknown {
                    image: self.image(op.repository),
                }
            }
            StatusCode::NOT_FOUND if op.kind == Kind::ManifestGet => {
                let reference = op.path.rsplit('/').next().unwrap_or_default();
                let what = if reference.starts_with("sha256:") {
                    format!("manifest {reference}")
                } else {
                    format!("tag '{reference}'")
                };
                RegistryError::ManifestUnknown {
                    image: self.image(op.repository),
                    what,
                    hint: String::new(),
                }
            }
            StatusCode::FORBIDDEN => RegistryError::Denied {
                registry: self.host.clone(),
                repository: op.repository.clone(),
                action: if op.push { "push" } else { "pull" },
                who: self.credentials.describe(),
                detail: if codes.text.is_empty() {
                    String::new()
                } else {
                    format!(": {}", codes.text)
                },
            },
            _ => RegistryError::Status {
                registry: self.host.clone(),
                request: op.describe(),
                status: status.as_u16(),
                detail: if codes.text.is_empty() {
                    status
                        .canonical_reason()
                        .unwrap_or("no reason given")
                        .to_owned()
                } else {
                    codes.text
                },
            },
        }
    }

    fn transport_error(&self, op: &Op<'_>, error: &reqwest::Error) -> RegistryError {
        if error.is_timeout() {
            RegistryError::Timeout {
                registry: self.host.clone(),
                timeout: humantime::format_duration(self.timeout).to_string(),
            }
        } else {
            let mut detail = error_chain(error);
            // reqwest repeats the URL; the registry is already named.
            if let Some(stripped) = detail.strip_prefix(&format!(
                "error sending request for url ({}{}): ",
                self.base, op.path
            )) {
                detail = stripped.to_owned();
            }
            RegistryError::Unreachable {
                registry: self.host.clone(),
                detail,
            }
        }
    }

    fn invalid(&self, op: &Op<'_>, detail: String) -> RegistryError {
        RegistryError::InvalidResponse {
            registry: self.host.clone(),
            request: op.describe(),
            detail,
        }
    }

    fn digest_header(
        &self,
        op: &Op<'_>,
        headers: &HeaderMap,
    ) -> Result<Option<Digest>, RegistryError> {
        match header_str(headers, "docker-content-digest") {
            None => Ok(None),
            Some(text) => Digest::parse(text)
                .map(Some)
                .map_err(|e| self.invalid(op, format!("Docker-Content-Digest: {e}"))),
        }
    }

    fn note_ratelimit(&self, headers: &HeaderMap) {
        if let Some(remaining) = header_str(headers, "ratelimit-remaining") {
            let mut last = lock(&self.ratelimit_remaining);
            if last.as_deref() != Some(remaining) {
                tracing::info!(registry = %self.host, ratelimit_remaining = remaining, "Registry rate limit.");
                *last = Some(remaining.to_owned());
            }
        }
    }
}

fn header_str<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
}

/// `Retry-After` in seconds (HTTP dates are treated as "soon").
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = header_str(headers, "retry-after")?;
    value
        .parse::<u64>()
        .ok()
        .map(Duration::from_secs)
        .or(Some(Duration::from_secs(1)))
}

/// The distribution spec's error body: `{"errors":[{"code","message","detail"}]}`.
#[derive(Debug, Default)]
struct ErrorBody {
    codes: Vec<String>,
    text: String,
}

impl ErrorBody {
    async fn read(response: reqwest::Response) -> ErrorBody {
        let bytes = response.bytes().await.unwrap_or_default();
        ErrorBody::parse(&bytes)
    }

    fn parse(bytes: &[u8]) -> ErrorBody {
        #[derive(serde::Deserialize)]
        struct Body {
            errors: Vec<Entry>,
        }
        #[derive(serde::Deserialize)]
        struct Entry {
            code: Option<String>,
            message: Option<String>,
        }
        if let Ok(body) = serde_json::from_slice::<Body>(bytes) {
            let codes = body.errors.iter().filter_map(|e| e.code.clone()).collect();
            let text = body
                .errors
                .iter()
                .map(|e| match (&e.code, &e.message) {
                    (Some(code), Some(message)) => format!("{code}: {message}"),
                    (Some(code), None) => code.clone(),
                    (None, Some(message)) => message.clone(),
                    (None, None) => String::new(),
                })
                .collect::<Vec<_>>()
                .join("; ");
            return ErrorBody { codes, text };
        }
        let text: String = String::from_utf8_lossy(bytes)
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
            .chars()
            .take(200)
            .collect();
        ErrorBody {
            codes: Vec::new(),
            text,
        }
    }

    fn has(&self, code: &str) -> bool {
        self.codes.iter().any(|c| c == code)
    }
}

async fn error_detail(response: reqwest::Response) -> String {
    let status = response.status();
    let body = ErrorBody::read(response).await;
    if body.text.is_empty() {
        status
            .canonical_reason()
            .unwrap_or("no reason given")
            .to_owned()
    } else {
        body.text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_bodies_become_one_line() {
        let body = ErrorBody::parse(
            br#"{"errors":[{"code":"MANIFEST_INVALID","message":"manifest invalid","detail":{}}]}"#,
        );
        assert!(body.has("MANIFEST_INVALID"));
        assert_eq!(body.text, "MANIFEST_INVALID: manifest invalid");
        let html = ErrorBody::parse(b"<html>\n  <body>502 Bad Gateway</body>\n</html>");
        assert_eq!(html.text, "<html> <body>502 Bad Gateway</body> </html>");
    }
}
