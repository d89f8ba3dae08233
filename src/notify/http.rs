//! What the GitHub and Docker Hub clients share over HTTP: how a client is built, reading a
//! number from a header, the wait until a Unix time a rate limit names, and the service's own
//! words from an error answer.

use std::time::Duration;

use serde_json::Value;

use crate::error_chain;

/// An HTTP client for a notification service could not be built (a TLS backend that will not
/// start): the daemon cannot start as configured.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot build the {service} client: {reason}")]
pub struct ClientError {
    service: &'static str,
    reason: String,
}

/// A client builder with rollbot's user agent and a 15 s timeout per request.
pub(super) fn builder() -> reqwest::ClientBuilder {
    reqwest::Client::builder()
        .user_agent(concat!("rollbot/", env!("CARGO_PKG_VERSION")))
        .timeout(Duration::from_secs(15))
}

/// Builds the client for `service` ("GitHub", "Docker Hub"), which the error names.
///
/// # Errors
/// reqwest cannot build it.
pub(super) fn build(
    service: &'static str,
    builder: reqwest::ClientBuilder,
) -> Result<reqwest::Client, ClientError> {
    builder.build().map_err(|error| ClientError {
        service,
        reason: error_chain(&error),
    })
}

/// A header's value as text.
pub(super) fn header<'a>(headers: &'a reqwest::header::HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|value| value.to_str().ok())
}

/// A header's value as a whole number (seconds, or a Unix time).
pub(super) fn header_number(headers: &reqwest::header::HeaderMap, name: &str) -> Option<u64> {
    header(headers, name).and_then(|value| value.trim().parse().ok())
}

/// Seconds from now until the Unix time `at`, at least 1 (a time already past means "now",
/// and retrying at once would only meet the same limit).
pub(super) fn seconds_until(at: u64) -> u64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| since.as_secs());
    at.saturating_sub(now).max(1)
}

/// The service's own words for what went wrong: the first of `pointers` (JSON pointers into
/// the answer) that holds text, else "no message".
pub(super) fn message_of(body: &Value, pointers: &[&str]) -> String {
    pointers
        .iter()
        .find_map(|pointer| body.pointer(pointer).and_then(Value::as_str))
        .unwrap_or("no message")
        .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_first_field_with_text_is_the_message() {
        let pointers = ["/message", "/errors/0/message"];
        let cases = [
            (json!({ "message": "Bad credentials" }), "Bad credentials"),
            (
                json!({ "errors": [{ "message": "first" }, { "message": "second" }] }),
                "first",
            ),
            (
                json!({ "message": "top", "errors": [{ "message": "nested" }] }),
                "top",
            ),
            (json!({ "message": 3, "errors": [] }), "no message"),
            (Value::Null, "no message"),
        ];
        for (body, expected) in cases {
            assert_eq!(message_of(&body, &pointers), expected, "{body}");
        }
    }

    #[test]
    fn a_unix_time_becomes_seconds_from_now_and_never_zero() {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("after 1970")
            .as_secs();
        let wait = seconds_until(now + 120);
        assert!((119..=120).contains(&wait), "{wait}");
        assert_eq!(seconds_until(now - 5), 1);
        assert_eq!(seconds_until(0), 1);
    }

    #[test]
    fn numeric_headers_are_read_trimmed_and_anything_else_is_none() {
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert("retry-after", " 42 ".parse().expect("value"));
        headers.insert("x-ratelimit-remaining", "0".parse().expect("value"));
        headers.insert(
            "x-other",
            "Wed, 21 Oct 2015 07:28:00 GMT".parse().expect("value"),
        );
        assert_eq!(header_number(&headers, "retry-after"), Some(42));
        assert_eq!(header(&headers, "x-ratelimit-remaining"), Some("0"));
        assert_eq!(header_number(&headers, "x-other"), None);
        assert_eq!(header_number(&headers, "x-missing"), None);
    }
}
