//! The Docker Hub description banner: log in (`POST /v2/auth/token`, the token cached until
//! shortly before its 10 minutes run out), read the description (`GET
//! /v2/namespaces/{ns}/repositories/{repo}`), and write it back with the banner inserted,
//! replaced or removed (`PATCH /v2/repositories/{ns}/{repo}`, the endpoint Docker's own tools
//! use; it is not in the published spec). The owner's text is kept byte for byte; Docker Hub's
//! 25,000-byte limit is met by shortening the banner, never the owner's text.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::checks::error_chain;
use crate::config::DockerHubSettings;

/// Docker Hub's limit on `full_description`, in bytes.
pub const MAX_DESCRIPTION_BYTES: usize = 25_000;
pub const BANNER_START: &str = "<!-- rollbot:banner:start -->";
pub const BANNER_END: &str = "<!-- rollbot:banner:end -->";
/// What separates the banner block from the owner's text (and is removed with it).
const SEPARATOR: &str = "\n\n";

/// The description without rollbot's banner block (if any): the owner's text, byte for byte.
pub fn without_banner(description: &str) -> String {
    let Some(start) = description.find(BANNER_START) else {
        return description.to_owned();
    };
    let Some(end_offset) = description[start..].find(BANNER_END) else {
        return description.to_owned();
    };
    let mut end = start + end_offset + BANNER_END.len();
    if description[end..].starts_with(SEPARATOR) {
        end += SEPARATOR.len();
    }
    format!("{}{}", &description[..start], &description[end..])
}

/// The description with `banner` on top of the owner's text. The long banner is used when it
/// fits Docker Hub's limit, else the short one.
///
/// # Errors
/// Even the short banner does not fit; nothing should be written (the owner's text is never
/// cut).
pub fn with_banner(description: &str, long: &str, short: &str) -> Result<String, String> {
    let owner = without_banner(description);
    for banner in [long, short] {
        let text = format!("{BANNER_START}\n{banner}\n{BANNER_END}{SEPARATOR}{owner}");
        if text.len() <= MAX_DESCRIPTION_BYTES {
            return Ok(text);
        }
    }
    Err(format!(
        "the Docker Hub description is {} bytes; no banner fits within the {MAX_DESCRIPTION_BYTES}-byte limit without cutting the owner's text",
        owner.len()
    ))
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HubError {
    #[error("Docker Hub rejected the credentials of {0} (401); check dockerhub.username and dockerhub.token_env")]
    Unauthorized(String),
    #[error("Docker Hub refused the change (403): {0}; the access token needs the Read, Write, Delete scope and the user must administer the repository")]
    Forbidden(String),
    #[error("Docker Hub has no repository {0} (404)")]
    NotFound(String),
    /// Try again in this many seconds.
    #[error("Docker Hub rate limit reached; retrying in {0} s")]
    RateLimited(u64),
    #[error("Docker Hub is unavailable: {0}")]
    Unavailable(String),
    #[error("Docker Hub refused the description: {0}")]
    Rejected(String),
    /// No banner fits: see [`with_banner`].
    #[error("{0}")]
    TooLong(String),
}

impl HubError {
    pub fn is_retryable(&self) -> bool {
        matches!(self, HubError::RateLimited(_) | HubError::Unavailable(_))
    }
}

#[derive(Debug)]
pub struct DockerHub {
    settings: DockerHubSettings,
    http: reqwest::Client,
    token: Mutex<Option<(String, Instant)>>,
}

impl DockerHub {
    /// # Errors
    /// The HTTP client cannot be built.
    pub fn new(settings: DockerHubSettings) -> Result<DockerHub, String> {
        let http = reqwest::Client::builder()
            .user_agent(concat!("rollbot/", env!("CARGO_PKG_VERSION")))
            .timeout(Duration::from_secs(15))
            // A redirected PATCH must not silently become a GET that changes nothing.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| format!("cannot build the Docker Hub client: {}", error_chain(&e)))?;
        Ok(DockerHub {
            settings,
            http,
            token: Mutex::new(None),
        })
    }

    fn cached_token(&self) -> Option<String> {
        let token = crate::lock(&self.token);
        token
            .as_ref()
            .filter(|(_, expires)| Instant::now() < *expires)
            .map(|(value, _)| value.clone())
    }

    /// Logs in (or reuses the cached token: access tokens last 10 minutes, reused for 9).
    ///
    /// # Errors
    /// Wrong credentials, Docker Hub unavailable.
    pub async fn login(&self) -> Result<String, HubError> {
        if let Some(token) = self.cached_token() {
            return Ok(token);
        }
        let response = self
            .http
            .post(format!("{}/v2/auth/token", self.settings.api_url))
            .json(&json!({ "identifier": self.settings.username, "secret": self.settings.token.expose() }))
            .send()
            .await
            .map_err(|e| HubError::Unavailable(error_chain(&e)))?;
        let status = response.status().as_u16();
        if status == 401 || status == 403 {
            return Err(HubError::Unauthorized(self.settings.username.clone()));
        }
        let retry = retry_after(response.headers());
        if status == 429 {
            return Err(HubError::RateLimited(retry.unwrap_or(60)));
        }
        if status >= 300 {
            return Err(HubError::Unavailable(format!(
                "login answered HTTP {status}"
            )));
        }
        let body: Value = response
            .json()
            .await
            .map_err(|e| HubError::Unavailable(format!("login answer: {e}")))?;
        let token = body["access_token"]
            .as_str()
            .ok_or_else(|| HubError::Unavailable("login answer has no access_token".to_owned()))?
            .to_owned();
        *crate::lock(&self.token) =
            Some((token.clone(), Instant::now() + Duration::from_secs(9 * 60)));
        Ok(token)
    }

    fn forget_token(&self) {
        *crate::lock(&self.token) = None;
    }

    /// The repository's `full_description`.
    ///
    /// # Errors
    /// See [`HubError`].
    pub async fn description(&self, repository: &str) -> Result<String, HubError> {
        let (namespace, name) = split(repository);
        let url = format!(
            "{}/v2/namespaces/{namespace}/repositories/{name}",
            self.settings.api_url
        );
        let body = self
            .call(repository, |token| self.http.get(&url).bearer_auth(token))
            .await?;
        Ok(body["full_description"]
            .as_str()
            .unwrap_or_default()
            .to_owned())
    }

    /// Writes the repository's `full_description`.
    ///
    /// # Errors
    /// See [`HubError`].
    pub async fn set_description(&self, repository: &str, text: &str) -> Result<(), HubError> {
        if text.len() > MAX_DESCRIPTION_BYTES {
            return Err(HubError::TooLong(format!(
                "the description would be {} bytes, over Docker Hub's limit of {MAX_DESCRIPTION_BYTES}",
                text.len()
            )));
        }
        let (namespace, name) = split(repository);
        let url = format!(
            "{}/v2/repositories/{namespace}/{name}",
            self.settings.api_url
        );
        let body = json!({ "full_description": text });
        self.call(repository, |token| {
            self.http.patch(&url).bearer_auth(token).json(&body)
        })
        .await?;
        Ok(())
    }

    /// Reads the description, applies `edit`, and writes the result back when it differs.
    /// Returns whether anything was written.
    ///
    /// # Errors
    /// See [`HubError`]; an error from `edit` is returned as is, with nothing written.
    pub async fn edit_description(
        &self,
        repository: &str,
        edit: impl FnOnce(&str) -> Result<String, HubError>,
    ) -> Result<bool, HubError> {
        let description = self.description(repository).await?;
        let updated = edit(&description)?;
        if updated == description {
            return Ok(false);
        }
        self.set_description(repository, &updated).await?;
        Ok(true)
    }

    /// One call with the access token; a 401 logs in again once (the cached token may have
    /// been revoked or expired early).
    async fn call(
        &self,
        repository: &str,
        request: impl Fn(&str) -> reqwest::RequestBuilder,
    ) -> Result<Value, HubError> {
        for attempt in 0..2 {
            let token = self.login().await?;
            let response = request(&token)
                .send()
                .await
                .map_err(|e| HubError::Unavailable(error_chain(&e)))?;
            match self.check(response, repository).await {
                Err(HubError::Unauthorized(_)) if attempt == 0 => self.forget_token(),
                answer => return answer,
            }
        }
        Err(HubError::Unauthorized(self.settings.username.clone()))
    }

    async fn check(
        &self,
        response: reqwest::Response,
        repository: &str,
    ) -> Result<Value, HubError> {
        let status = response.status().as_u16();
        let retry = retry_after(response.headers());
        let body: Value = response.json().await.unwrap_or(Value::Null);
        let message = body["message"]
            .as_str()
            .or_else(|| body["detail"].as_str())
            .or_else(|| body["error"].as_str())
            .unwrap_or("no message")
            .to_owned();
        match status {
            200..=299 => Ok(body),
            401 => Err(HubError::Unauthorized(self.settings.username.clone())),
            403 => Err(HubError::Forbidden(message)),
            404 => Err(HubError::NotFound(repository.to_owned())),
            429 => Err(HubError::RateLimited(retry.unwrap_or(60))),
            300..=399 => Err(HubError::Rejected(format!(
                "HTTP {status} redirect (not followed)"
            ))),
            400..=499 => Err(HubError::Rejected(format!("HTTP {status}: {message}"))),
            _ => Err(HubError::Unavailable(format!("HTTP {status}"))),
        }
    }
}

fn split(repository: &str) -> (&str, &str) {
    repository
        .split_once('/')
        .unwrap_or(("library", repository))
}

/// Seconds to wait: `X-Retry-After` (a Unix timestamp, Docker Hub's older docs) or
/// `Retry-After` (seconds, the current docs).
fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<u64> {
    let get = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
    };
    if let Some(at) = get("x-retry-after") {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        // A small number is seconds, not a timestamp.
        return Some(if at > 1_000_000_000 {
            at.saturating_sub(now).max(1)
        } else {
            at
        });
    }
    get("retry-after")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_banner_goes_on_top_and_comes_off_leaving_the_owners_text_byte_for_byte() {
        for owner in [
            "",
            "# app\r\n\r\nUse it.\n",
            "no newline at all",
            "  leading spaces\n\n\n",
        ] {
            let with = with_banner(owner, "> rolled back", "> short").expect("fits");
            assert!(with.starts_with(BANNER_START));
            assert!(with.ends_with(owner));
            assert_eq!(without_banner(&with), owner);
            // Replacing keeps one banner.
            let replaced = with_banner(&with, "> rolled back again", "> s").expect("fits");
            assert_eq!(replaced.matches(BANNER_START).count(), 1);
            assert!(replaced.contains("again"));
            assert_eq!(without_banner(&replaced), owner);
        }
        // An owner's text without a banner is untouched by removal.
        assert_eq!(without_banner("text <!-- other -->"), "text <!-- other -->");
    }

    #[test]
    fn the_limit_shortens_the_banner_never_the_owners_text() {
        let long = format!("> {}", "l".repeat(500));
        let short = "> short";
        let overhead = BANNER_START.len() + BANNER_END.len() + 2 + SEPARATOR.len();
        // Exactly fits with the long banner.
        let owner = "o".repeat(MAX_DESCRIPTION_BYTES - overhead - long.len());
        let text = with_banner(&owner, &long, short).expect("fits");
        assert_eq!(text.len(), MAX_DESCRIPTION_BYTES);
        assert!(text.contains(&long));
        // One byte more: the short banner.
        let owner = "o".repeat(MAX_DESCRIPTION_BYTES - overhead - long.len() + 1);
        let text = with_banner(&owner, &long, short).expect("fits short");
        assert!(text.contains(short) && !text.contains(&long));
        assert!(text.ends_with(&owner));
        // No room even for the short one: refused, nothing cut.
        let owner = "o".repeat(MAX_DESCRIPTION_BYTES - overhead - short.len() + 1);
        let error = with_banner(&owner, &long, short).expect_err("no room");
        assert!(
            error.contains("without cutting the owner's text"),
            "{error}"
        );
    }
}
