//! [`RegistryClient`]: one registry host with one set of credentials; its construction from
//! config (credentials, plain HTTP or HTTPS, timeouts), `GET /v2/` and what it has seen so far
//! (request counts, answers by status, the rate-limit header, and when asked each request's
//! timing).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::auth::{self, Challenge, Credentials, Token};
use super::counts::{Counters, RequestCounts, RequestTiming, Timeline};
use super::RegistryError;
use crate::config::{RegistrySettings, Settings};
use crate::domain::model::{ImageRef, RegistryHost, Repository};
use crate::error_chain;
use crate::lock;

/// What the registry asked for so far, and the tokens fetched for it.
#[derive(Debug, Default)]
pub(super) struct AuthState {
    pub(super) challenge: Option<Challenge>,
    /// Bearer tokens by scope.
    pub(super) tokens: HashMap<String, Token>,
}

/// The most reads (GET, HEAD) one client has waiting for an answer at once; more wait their
/// turn, first come first served. A hundred rollbacks at once would otherwise open hundreds
/// of connections to one registry (memory here, connection limits there) for no gain: the
/// registry answers no faster. Writes never wait: a compare-and-swap read's age is judged
/// right before its write is sent, and a queue in between would make it older.
pub const MAX_READS_IN_FLIGHT: usize = 16;

/// A client for one registry host with one set of credentials.
#[derive(Debug)]
pub struct RegistryClient {
    pub(super) host: RegistryHost,
    /// `http(s)://host[:port]`, without a trailing slash.
    pub(super) base: String,
    pub(super) timeout: Duration,
    pub(super) insecure: bool,
    pub(super) http: reqwest::Client,
    pub(super) credentials: Credentials,
    pub(super) auth: Mutex<AuthState>,
    pub(super) counters: Counters,
    pub(super) timeline: Timeline,
    /// Answers by HTTP status (0: no answer), for `/metrics`.
    statuses: Mutex<BTreeMap<u16, u64>>,
    pub(super) ratelimit_remaining: Mutex<Option<String>>,
    /// When set, every write first asks it (a replica that lost the leader lease sends none).
    pub(super) leadership: Option<Arc<crate::leadership::Leadership>>,
    /// At most [`MAX_READS_IN_FLIGHT`] reads sent and not yet answered.
    pub(super) reads: tokio::sync::Semaphore,
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
            timeline: Timeline::default(),
            statuses: Mutex::new(BTreeMap::new()),
            ratelimit_remaining: Mutex::new(None),
            leadership: None,
            reads: tokio::sync::Semaphore::new(MAX_READS_IN_FLIGHT),
        })
    }

    /// Sends writes only while `leadership` says this process leads.
    #[must_use]
    pub fn led_by(mut self, leadership: Arc<crate::leadership::Leadership>) -> RegistryClient {
        self.leadership = Some(leadership);
        self
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

    /// Keeps each request from now on, timed from `origin` (a run's start), for
    /// [`RegistryClient::timeline`]: where a command-line run's time goes (`--json`). A client
    /// that is never asked keeps nothing.
    pub fn keep_timeline(&self, origin: Instant) {
        self.timeline.keep(origin);
    }

    /// The requests kept since [`RegistryClient::keep_timeline`], in the order answered.
    pub fn timeline(&self) -> Vec<RequestTiming> {
        self.timeline.snapshot()
    }

    /// Answers by HTTP status so far (0: no answer: connection error or timeout).
    pub fn statuses(&self) -> Vec<(u16, u64)> {
        lock(&self.statuses).iter().map(|(s, n)| (*s, *n)).collect()
    }

    pub(super) fn count_status(&self, status: u16) {
        *lock(&self.statuses).entry(status).or_default() += 1;
    }

    /// The last `ratelimit-remaining` header seen (Docker Hub sends it), e.g. `95;w=21600`.
    pub fn ratelimit_remaining(&self) -> Option<String> {
        lock(&self.ratelimit_remaining).clone()
    }

    pub(super) fn image(&self, repository: &Repository) -> ImageRef {
        ImageRef {
            registry: self.host.clone(),
            repository: repository.clone(),
        }
    }

    /// `GET /v2/`: reachable when it answers anything but a server error (401 is fine: the
    /// registry is there and asks for credentials).
    ///
    /// Not an `Op` (see `request.rs`): it sends no credentials, is never retried and is
    /// not counted as a request (only its status is, for `/metrics`).
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
}
