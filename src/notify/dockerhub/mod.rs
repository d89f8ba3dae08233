//! The Docker Hub description banner: log in (`POST /v2/auth/token`, the token cached until
//! shortly before its 10 minutes run out), read the description (`GET
//! /v2/namespaces/{ns}/repositories/{repo}`), and write it back with the banner inserted,
//! replaced or removed (`PATCH /v2/repositories/{ns}/{repo}`, the endpoint Docker's own tools
//! use; it is not in the published spec). The owner's text is kept byte for byte; Docker Hub's
//! 25,000-byte limit is met by shortening the banner, never the owner's text.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use sha2::{Digest as _, Sha256};

use super::failure::{ServiceError, StartupError};
use super::http::{self, ClientError};
use crate::error_chain;

pub mod config;

pub use self::config::DockerHubSettings;

/// Docker Hub's limit on `full_description`, in bytes.
pub const MAX_DESCRIPTION_BYTES: usize = 25_000;

// The banner block on top of the description:
//
//   <!-- rollbot:banner:start rb-17 0123456789abcdef -->
//   {banner}
//   <!-- rollbot:banner:end rb-17 0123456789abcdef -->
//
//   {the owner's text}
//
// The label names the rollback and the first 16 hex digits of the banner's SHA-256. Removal
// reads the label from the start marker and cuts up to the first end marker with the same
// label, so whatever the banner holds cannot end the block early: to contain its own end
// marker, a banner would have to contain (a prefix of) its own hash. The owner's text after the
// block is never searched for anything. The banner's untrusted parts are escaped anyway
// (`markup`): none can contain `<`, so none can spell a marker or an HTML comment.
const START: &str = "<!-- rollbot:banner:start";
const END: &str = "<!-- rollbot:banner:end";
const CLOSE: &str = " -->";
/// Banners written before markers carried a label.
const LEGACY_START: &str = "<!-- rollbot:banner:start -->";
const LEGACY_END: &str = "<!-- rollbot:banner:end -->";
/// What separates the banner block from the owner's text (and is removed with it).
const SEPARATOR: &str = "\n\n";
/// Hex digits of the banner's SHA-256 in the label.
const HASH_DIGITS: usize = 16;

/// rollbot's banner block on top of a description.
struct Block<'a> {
    /// The rollback it is about; `None` for a legacy banner.
    rollback: Option<&'a str>,
    /// Where the owner's text begins.
    owner_from: usize,
}

fn is_label_rollback(text: &str) -> bool {
    (1..=40).contains(&text.len())
        && text
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

fn is_label_hash(text: &str) -> bool {
    text.len() == HASH_DIGITS
        && text
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// The banner block at the very top of `description`, if there is one. Only the top counts:
/// rollbot always writes its banner there, and marker-like text further down is the owner's.
fn block(description: &str) -> Option<Block<'_>> {
    if description.starts_with(LEGACY_START) {
        return legacy_block(description);
    }
    let rest = description.strip_prefix(START)?.strip_prefix(' ')?;
    let label_end = rest.get(..64).unwrap_or(rest).find(CLOSE)?;
    let label = &rest[..label_end];
    let (rollback, hash) = label.split_once(' ')?;
    if !is_label_rollback(rollback) || !is_label_hash(hash) {
        return None;
    }
    let end_marker = format!("{END} {label}{CLOSE}");
    let body_from = START.len() + 1 + label_end + CLOSE.len();
    let end_at = body_from + description[body_from..].find(&end_marker)?;
    let mut owner_from = end_at + end_marker.len();
    if description[owner_from..].starts_with(SEPARATOR) {
        owner_from += SEPARATOR.len();
    }
    Some(Block {
        rollback: Some(rollback),
        owner_from,
    })
}

/// A banner from before labels: its end marker is the first one that starts a line and is
/// followed by the separator or the end of the text (one a reason smuggled in sat inside a
/// line). Without such an end marker nothing is taken for a banner, so nothing is removed.
fn legacy_block(description: &str) -> Option<Block<'_>> {
    let mut from = LEGACY_START.len();
    while let Some(offset) = description[from..].find(LEGACY_END) {
        let at = from + offset;
        let after = at + LEGACY_END.len();
        let starts_line = description[..at].ends_with('\n');
        let tail = &description[after..];
        if starts_line && (tail.is_empty() || tail.starts_with(SEPARATOR)) {
            return Some(Block {
                rollback: None,
                owner_from: (after + SEPARATOR.len()).min(description.len()),
            });
        }
        from = after;
    }
    None
}

/// The description without rollbot's banner block (if any): the owner's text, byte for byte.
pub fn without_banner(description: &str) -> String {
    match block(description) {
        Some(block) => description[block.owner_from..].to_owned(),
        None => description.to_owned(),
    }
}

/// The rollback whose banner is on top of `description` (`rb-17`), if there is a labelled one.
pub fn banner_rollback(description: &str) -> Option<String> {
    block(description).and_then(|block| block.rollback.map(str::to_owned))
}

/// The description with `banner` about `rollback` on top of the owner's text (replacing a
/// banner already there). The long banner is used when it fits Docker Hub's limit, else the
/// short one.
///
/// # Errors
/// Even the short banner does not fit; nothing should be written (the owner's text is never
/// cut).
pub fn with_banner(
    description: &str,
    rollback: impl std::fmt::Display,
    long: &str,
    short: &str,
) -> Result<String, String> {
    let owner = without_banner(description);
    for banner in [long, short] {
        let hash = hex::encode(Sha256::digest(banner.as_bytes()));
        let label = format!("{rollback} {}", &hash[..HASH_DIGITS]);
        let text =
            format!("{START} {label}{CLOSE}\n{banner}\n{END} {label}{CLOSE}{SEPARATOR}{owner}");
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

impl ServiceError for HubError {
    fn is_retryable(&self) -> bool {
        matches!(self, HubError::RateLimited(_) | HubError::Unavailable(_))
    }

    fn retry_after(&self) -> Option<Duration> {
        match self {
            HubError::RateLimited(seconds) => Some(Duration::from_secs(*seconds)),
            _ => None,
        }
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
    pub fn new(settings: DockerHubSettings) -> Result<DockerHub, ClientError> {
        let http = http::build(
            "Docker Hub",
            // A redirected PATCH must not silently become a GET that changes nothing.
            http::builder().redirect(reqwest::redirect::Policy::none()),
        )?;
        Ok(DockerHub {
            settings,
            http,
            token: Mutex::new(None),
        })
    }

    pub fn settings(&self) -> &DockerHubSettings {
        &self.settings
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

    /// Startup: the credentials work (a login).
    ///
    /// # Errors
    /// Fatal when Docker Hub rejects the credentials (naming the settings to check); transient
    /// when it is unreachable, in trouble or rate limiting.
    pub async fn check(&self) -> Result<(), StartupError> {
        self.login().await.map_err(|error| error.at_startup())?;
        tracing::info!(user = %self.settings.username, "Docker Hub credentials work.");
        Ok(())
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
            match self.answer(response, repository).await {
                Err(HubError::Unauthorized(_)) if attempt == 0 => self.forget_token(),
                answer => return answer,
            }
        }
        Err(HubError::Unauthorized(self.settings.username.clone()))
    }

    /// Docker Hub's answer: its JSON body, or the error its status means.
    async fn answer(
        &self,
        response: reqwest::Response,
        repository: &str,
    ) -> Result<Value, HubError> {
        let status = response.status().as_u16();
        let retry = retry_after(response.headers());
        let body: Value = response.json().await.unwrap_or(Value::Null);
        let message = http::message_of(&body, &["/message", "/detail", "/error"]);
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
    if let Some(at) = http::header_number(headers, "x-retry-after") {
        // A small number is seconds, not a timestamp.
        return Some(if at > 1_000_000_000 {
            http::seconds_until(at)
        } else {
            at
        });
    }
    http::header_number(headers, "retry-after")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::rollback::RollbackId;
    use crate::notify::markup::tests::untrusted;
    use crate::notify::templates::{Context, TemplateName, Templates};
    use proptest::prelude::*;

    const RB: RollbackId = RollbackId(17);

    #[test]
    fn the_banner_goes_on_top_and_comes_off_leaving_the_owners_text_byte_for_byte() {
        for owner in [
            "",
            "# app\r\n\r\nUse it.\n",
            "no newline at all",
            "  leading spaces\n\n\n",
            "text <!-- other -->",
            "mentions <!-- rollbot:banner:start --> and <!-- rollbot:banner:end --> further down\n",
        ] {
            let with = with_banner(owner, RB, "> rolled back", "> short").expect("fits");
            let hash = &hex::encode(Sha256::digest(b"> rolled back"))[..HASH_DIGITS];
            assert_eq!(
                with,
                format!("<!-- rollbot:banner:start rb-17 {hash} -->\n> rolled back\n<!-- rollbot:banner:end rb-17 {hash} -->\n\n{owner}")
            );
            assert_eq!(without_banner(&with), owner);
            assert_eq!(banner_rollback(&with).as_deref(), Some("rb-17"));
            // Replacing keeps one banner.
            let replaced =
                with_banner(&with, RollbackId(18), "> rolled back again", "> s").expect("fits");
            assert_eq!(
                replaced.matches("rollbot:banner:start").count(),
                1 + owner.matches("rollbot:banner:start").count()
            );
            assert!(replaced.contains("again"));
            assert_eq!(banner_rollback(&replaced).as_deref(), Some("rb-18"));
            assert_eq!(without_banner(&replaced), owner);
            // An owner's text without a banner is untouched by removal.
            assert_eq!(without_banner(owner), owner);
            assert_eq!(banner_rollback(owner), None);
        }
    }

    #[test]
    fn a_banner_holding_its_markers_or_comment_syntax_still_comes_off_exactly() {
        let owner = "# acme/app\n\nThe app.\n";
        for banner in [
            "> x <!-- rollbot:banner:end --> y.",
            "> x\n<!-- rollbot:banner:end -->\n\ny",
            "> <!-- rollbot:banner:end rb-17 0123456789abcdef -->\n\n",
            "> --> --!> <!-- <!-- rollbot:banner:start rb-17 0123456789abcdef -->",
        ] {
            let with = with_banner(owner, RB, banner, banner).expect("fits");
            assert_eq!(without_banner(&with), owner, "{banner:?}");
        }
    }

    #[test]
    fn banners_from_before_labels_still_come_off_even_with_a_smuggled_end_marker() {
        let owner = "# acme/app\n\nThe app.\n";
        let cases = [
            // As the old version wrote it.
            format!("{LEGACY_START}\n> rolled back\n{LEGACY_END}\n\n{owner}"),
            // Issue 9, defect 3: a reason carried the end marker into the banner.
            format!("{LEGACY_START}\n> x {LEGACY_END} y.\n> more\n{LEGACY_END}\n\n{owner}"),
        ];
        for description in &cases {
            assert_eq!(without_banner(description), owner, "{description:?}");
            assert_eq!(banner_rollback(description), None);
            let replaced = with_banner(description, RB, "> new", "> n").expect("fits");
            assert_eq!(without_banner(&replaced), owner);
        }
        // The empty owner text: the block ends the description.
        assert_eq!(
            without_banner(&format!("{LEGACY_START}\n> b\n{LEGACY_END}")),
            ""
        );
        // No end marker where rollbot would have put it: not taken for a banner.
        let unclosed = format!("{LEGACY_START}\n> x {LEGACY_END} y");
        assert_eq!(without_banner(&unclosed), unclosed);
    }

    #[test]
    fn the_limit_shortens_the_banner_never_the_owners_text() {
        let long = format!("> {}", "l".repeat(500));
        let short = "> short";
        let overhead = with_banner("", RB, "", "").expect("fits").len();
        // Exactly fits with the long banner.
        let owner = "o".repeat(MAX_DESCRIPTION_BYTES - overhead - long.len());
        let text = with_banner(&owner, RB, &long, short).expect("fits");
        assert_eq!(text.len(), MAX_DESCRIPTION_BYTES);
        assert!(text.contains(&long));
        // One byte more: the short banner.
        let owner = "o".repeat(MAX_DESCRIPTION_BYTES - overhead - long.len() + 1);
        let text = with_banner(&owner, RB, &long, short).expect("fits short");
        assert!(text.contains(short) && !text.contains(&long));
        assert!(text.ends_with(&owner));
        // No room even for the short one: refused, nothing cut.
        let owner = "o".repeat(MAX_DESCRIPTION_BYTES - overhead - short.len() + 1);
        let error = with_banner(&owner, RB, &long, short).expect_err("no room");
        assert!(
            error.contains("without cutting the owner's text"),
            "{error}"
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// Insert then remove is the identity on the owner's text, whatever the banners hold
        /// (raw, unescaped text with markers and comment syntax in it).
        #[test]
        fn insert_then_remove_is_the_identity_whatever_the_banner_holds(
            owner in untrusted(),
            first in untrusted(),
            second in untrusted(),
        ) {
            // Text that already starts with a banner block is not the owner's text alone.
            prop_assume!(without_banner(&owner) == owner);
            let with = with_banner(&owner, RB, &first, &second).expect("fits");
            prop_assert_eq!(without_banner(&with), owner.clone());
            let replaced = with_banner(&with, RollbackId(18), &second, &first).expect("fits");
            prop_assert_eq!(banner_rollback(&replaced), Some("rb-18".to_owned()));
            prop_assert_eq!(without_banner(&replaced), owner);
        }

        /// The real banner template, long and short, with arbitrary reasons, names and errors:
        /// no comment syntax or marker gets into the banner, and removal is exact.
        #[test]
        fn untrusted_values_cannot_disturb_the_rendered_banner(
            owner in untrusted(),
            reason in untrusted(),
            name in untrusted(),
            error in untrusted(),
        ) {
            prop_assume!(without_banner(&owner) == owner);
            let templates = Templates::builtin();
            let mut context = Context::sample();
            context.reason = Some(reason);
            context.requester.name = name.clone();
            context.approvers = vec![name];
            context.error = Some(error);
            context.links.discussion = None;
            let mut banners = Vec::new();
            for short in [false, true] {
                context.short = short;
                let banner = templates.render(TemplateName::DockerHubBanner, &context).expect("renders");
                for comment in ["<!--", "-->", "--!>"] {
                    prop_assert!(!banner.contains(comment), "{} in {:?}", comment, banner);
                }
                banners.push(banner);
            }
            for (long, short) in [(&banners[0], &banners[1]), (&banners[1], &banners[1])] {
                let with = with_banner(&owner, RB, long, short).expect("fits");
                prop_assert_eq!(without_banner(&with), owner.clone());
            }
        }
    }
}
