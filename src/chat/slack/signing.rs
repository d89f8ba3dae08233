//! Slack request signing (v0): `X-Slack-Signature = "v0=" + hex(HMAC-SHA256(secret,
//! "v0:" + timestamp + ":" + raw body))`, with `X-Slack-Request-Timestamp` within 5 minutes of
//! now in either direction. Compared in constant time. `now` is a parameter so Slack's
//! documented example (signed in 2018) can be checked at its own signing time.

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The replay window, in seconds: exactly 300 s either way is still valid.
pub const MAX_AGE_SECONDS: i64 = 300;

/// Why a request is not from Slack. Every case is answered with 401 and nothing else happens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("the X-Slack-Signature or X-Slack-Request-Timestamp header is missing")]
    Missing,
    #[error("X-Slack-Request-Timestamp is not a number")]
    BadTimestamp,
    #[error("the request is more than 5 minutes from now (a replay?)")]
    Stale,
    #[error("the signature is not a v0 signature")]
    UnknownVersion,
    #[error("the signature does not match")]
    Mismatch,
    #[error("no signing secret is configured")]
    NoSecret,
}

/// The `v0=…` signature of `body` at `timestamp`.
pub fn sign(secret: &str, timestamp: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC accepts keys of any length"));
    mac.update(b"v0:");
    mac.update(timestamp.as_bytes());
    mac.update(b":");
    mac.update(body);
    format!("v0={}", hex::encode(mac.finalize().into_bytes()))
}

/// Verifies a request's signature headers against its raw body at time `now` (Unix seconds).
///
/// # Errors
/// See [`SignatureError`].
pub fn verify(
    secret: &str,
    signature: Option<&str>,
    timestamp: Option<&str>,
    body: &[u8],
    now: i64,
) -> Result<(), SignatureError> {
    if secret.trim().is_empty() {
        return Err(SignatureError::NoSecret);
    }
    let (Some(signature), Some(timestamp)) = (signature, timestamp) else {
        return Err(SignatureError::Missing);
    };
    let sent: i64 = timestamp
        .trim()
        .parse()
        .map_err(|_| SignatureError::BadTimestamp)?;
    if (now - sent).abs() > MAX_AGE_SECONDS {
        return Err(SignatureError::Stale);
    }
    let Some(hex_mac) = signature.trim().strip_prefix("v0=") else {
        return Err(SignatureError::UnknownVersion);
    };
    let Ok(expected) = hex::decode(hex_mac) else {
        return Err(SignatureError::Mismatch);
    };
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC accepts keys of any length"));
    mac.update(b"v0:");
    mac.update(timestamp.trim().as_bytes());
    mac.update(b":");
    mac.update(body);
    // `verify_slice` compares in constant time.
    mac.verify_slice(&expected)
        .map_err(|_| SignatureError::Mismatch)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "8f742231b10e8888abcd99yyyzzz85a5";
    const TIMESTAMP: &str = "1531420618";
    const BODY: &str = "token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c";
    const SIGNATURE: &str = "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503";

    #[test]
    fn slacks_documented_example_verifies_at_its_signing_time() {
        assert_eq!(sign(SECRET, TIMESTAMP, BODY.as_bytes()), SIGNATURE);
        assert_eq!(
            verify(
                SECRET,
                Some(SIGNATURE),
                Some(TIMESTAMP),
                BODY.as_bytes(),
                1_531_420_618
            ),
            Ok(())
        );
    }

    #[test]
    fn everything_else_is_refused() {
        let at = 1_531_420_618;
        let tampered = format!("{BODY}------");
        #[rustfmt::skip]
type Case<'a> = (&'a str, &'a str, Option<&'a str>, Option<&'a str>, &'a [u8], i64, SignatureError);
        let cases: Vec<Case<'_>> = vec![
            (
                "altered body",
                SECRET,
                Some(SIGNATURE),
                Some(TIMESTAMP),
                tampered.as_bytes(),
                at,
                SignatureError::Mismatch,
            ),
            (
                "wrong secret",
                "other",
                Some(SIGNATURE),
                Some(TIMESTAMP),
                BODY.as_bytes(),
                at,
                SignatureError::Mismatch,
            ),
            (
                "stale (301 s)",
                SECRET,
                Some(SIGNATURE),
                Some(TIMESTAMP),
                BODY.as_bytes(),
                at + 301,
                SignatureError::Stale,
            ),
            (
                "future (301 s)",
                SECRET,
                Some(SIGNATURE),
                Some(TIMESTAMP),
                BODY.as_bytes(),
                at - 301,
                SignatureError::Stale,
            ),
            (
                "years later",
                SECRET,
                Some(SIGNATURE),
                Some(TIMESTAMP),
                BODY.as_bytes(),
                1_795_000_000,
                SignatureError::Stale,
            ),
            (
                "no signature",
                SECRET,
                None,
                Some(TIMESTAMP),
                BODY.as_bytes(),
                at,
                SignatureError::Missing,
            ),
            (
                "no timestamp",
                SECRET,
                Some(SIGNATURE),
                None,
                BODY.as_bytes(),
                at,
                SignatureError::Missing,
            ),
            (
                "timestamp not a number",
                SECRET,
                Some(SIGNATURE),
                Some("soon"),
                BODY.as_bytes(),
                at,
                SignatureError::BadTimestamp,
            ),
            (
                "v1 signature",
                SECRET,
                Some("v1=abc"),
                Some(TIMESTAMP),
                BODY.as_bytes(),
                at,
                SignatureError::UnknownVersion,
            ),
            (
                "not hex",
                SECRET,
                Some("v0=zz"),
                Some(TIMESTAMP),
                BODY.as_bytes(),
                at,
                SignatureError::Mismatch,
            ),
            (
                "empty secret",
                " ",
                Some(SIGNATURE),
                Some(TIMESTAMP),
                BODY.as_bytes(),
                at,
                SignatureError::NoSecret,
            ),
        ];
        for (name, secret, signature, timestamp, body, now, expected) in cases {
            assert_eq!(
                verify(secret, signature, timestamp, body, now),
                Err(expected),
                "{name}"
            );
        }
        // The window's edges: exactly 300 s either way is accepted.
        assert_eq!(
            verify(
                SECRET,
                Some(SIGNATURE),
                Some(TIMESTAMP),
                BODY.as_bytes(),
                at + 300
            ),
            Ok(())
        );
        assert_eq!(
            verify(
                SECRET,
                Some(SIGNATURE),
                Some(TIMESTAMP),
                BODY.as_bytes(),
                at - 300
            ),
            Ok(())
        );
    }

    #[test]
    fn derived_vectors_match() {
        assert_eq!(
            sign("secret", "1700000000", br#"{"foo":"bar"}"#),
            "v0=f2860e86f6b17d05bcfdb20ec88167a134d1c976d6e7b4cebf41266a4eb0909d"
        );
    }
}
