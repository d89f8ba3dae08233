//! Discord request signing for the Interactions Endpoint URL: `X-Signature-Ed25519` is the hex
//! of an Ed25519 signature, by the application's public key, over `X-Signature-Timestamp`
//! (verbatim) immediately followed by the raw request body. `now` is a parameter so the real
//! signed PING in the test vectors (from 2022) can be checked at its own signing time.
//!
//! Every [`SignatureError`] is answered with 401 and nothing else: Discord requires that, and
//! sends deliberately bad signatures to see that the endpoint does. Discord defines no
//! freshness window: the 5 minutes either way ([`MAX_AGE_SECONDS`]) are rollbot's own
//! replay guard, the same as Slack's.
//!
//! The signature is checked before the timestamp is judged: both must pass, and in this order
//! a [`SignatureError::Stale`] in the log is a request Discord really signed (a replay, or a
//! clock that is off), while anything forged is a [`SignatureError::Mismatch`].
//!
//! Verification is `ed25519_dalek`'s strict one (`verify_strict`), and a small-order ("weak")
//! public key is refused when the key is parsed. serenity's `interactions_endpoint::Verifier`
//! wraps the same crate but checks non-strictly and only says pass or fail. For the honest
//! signer Discord is, strict and non-strict accept the same signatures (the tests check that on
//! every vector); strict additionally refuses the small-order points that make signatures
//! malleable, so nothing is lost by being strict.

use std::fmt;
use std::str::FromStr;

use ed25519_dalek::{Signature, VerifyingKey};

/// The replay window, in seconds: exactly 300 s either way is still valid.
pub const MAX_AGE_SECONDS: i64 = 300;

/// An application's Ed25519 public key (the Developer Portal's "Public Key"), parsed once from
/// its 64 hex characters.
#[derive(Clone, PartialEq, Eq)]
pub struct PublicKey(VerifyingKey);

/// Why a configured public key cannot be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PublicKeyError {
    #[error("the public key must be 64 hex characters (32 bytes), not {0} characters")]
    WrongLength(usize),
    #[error("the public key is not hex")]
    NotHex,
    #[error("the public key is not a point on Ed25519's curve")]
    NotACurvePoint,
    #[error("the public key is a weak (small-order) Ed25519 key")]
    Weak,
}

impl PublicKey {
    /// The key as 64 lowercase hex characters.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0.as_bytes())
    }
}

impl FromStr for PublicKey {
    type Err = PublicKeyError;

    /// Parses 64 hex characters, either case, surrounding whitespace ignored (a key pasted
    /// into a file or an environment variable often ends with a newline).
    ///
    /// # Errors
    /// See [`PublicKeyError`].
    fn from_str(hex_key: &str) -> Result<PublicKey, PublicKeyError> {
        let hex_key = hex_key.trim();
        let length = hex_key.chars().count();
        if length != 64 {
            return Err(PublicKeyError::WrongLength(length));
        }
        let mut bytes = [0u8; 32];
        hex::decode_to_slice(hex_key, &mut bytes).map_err(|_| PublicKeyError::NotHex)?;
        let key = VerifyingKey::from_bytes(&bytes).map_err(|_| PublicKeyError::NotACurvePoint)?;
        if key.is_weak() {
            return Err(PublicKeyError::Weak);
        }
        Ok(PublicKey(key))
    }
}

impl TryFrom<&str> for PublicKey {
    type Error = PublicKeyError;

    fn try_from(hex_key: &str) -> Result<PublicKey, PublicKeyError> {
        hex_key.parse()
    }
}

impl TryFrom<String> for PublicKey {
    type Error = PublicKeyError;

    fn try_from(hex_key: String) -> Result<PublicKey, PublicKeyError> {
        hex_key.parse()
    }
}

/// The hex, not the curve point's internals. A public key is no secret.
impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({})", self.to_hex())
    }
}

impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

/// Why a request is not from Discord. Every case is answered with 401 and nothing else
/// happens. The messages name headers and reasons only, never the body or the key, so they are
/// safe to log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("the X-Signature-Ed25519 header is missing or empty")]
    MissingSignature,
    #[error("the X-Signature-Timestamp header is missing or empty")]
    MissingTimestamp,
    #[error("X-Signature-Ed25519 is not 128 hex characters")]
    MalformedSignature,
    #[error("the signature does not match")]
    Mismatch,
    #[error("X-Signature-Timestamp is not a whole number of seconds")]
    BadTimestamp,
    #[error("the request is more than 5 minutes from now (a replay?)")]
    Stale,
}

/// Verifies a request's signature headers against its raw body at time `now_unix_secs`.
///
/// An empty header counts as missing. The signature's hex may be in either case (hex is case
/// insensitive; the bytes are what is signed). The timestamp is signed as it was sent, so it is
/// used verbatim: digits only, no sign, no whitespace.
///
/// # Errors
/// In the order checked: [`SignatureError::MissingSignature`],
/// [`SignatureError::MissingTimestamp`], [`SignatureError::MalformedSignature`],
/// [`SignatureError::Mismatch`], [`SignatureError::BadTimestamp`], [`SignatureError::Stale`].
pub fn verify(
    key: &PublicKey,
    signature_hex: Option<&str>,
    timestamp: Option<&str>,
    body: &[u8],
    now_unix_secs: i64,
) -> Result<(), SignatureError> {
    let signature_hex = signature_hex
        .filter(|s| !s.is_empty())
        .ok_or(SignatureError::MissingSignature)?;
    let timestamp = timestamp
        .filter(|t| !t.is_empty())
        .ok_or(SignatureError::MissingTimestamp)?;
    let mut signature = [0u8; 64];
    hex::decode_to_slice(signature_hex, &mut signature)
        .map_err(|_| SignatureError::MalformedSignature)?;
    let message = [timestamp.as_bytes(), body].concat();
    verify_message(key, &signature, &message)?;
    let sent: i64 = if timestamp.bytes().all(|b| b.is_ascii_digit()) {
        timestamp
            .parse()
            .map_err(|_| SignatureError::BadTimestamp)?
    } else {
        return Err(SignatureError::BadTimestamp);
    };
    if now_unix_secs.abs_diff(sent) > MAX_AGE_SECONDS.unsigned_abs() {
        return Err(SignatureError::Stale);
    }
    Ok(())
}

/// The Ed25519 primitive: `signature` over `message` by `key`, strictly.
fn verify_message(
    key: &PublicKey,
    signature: &[u8; 64],
    message: &[u8],
) -> Result<(), SignatureError> {
    key.0
        .verify_strict(message, &Signature::from_bytes(signature))
        .map_err(|_| SignatureError::Mismatch)
}

#[cfg(test)]
mod tests {
    use ed25519_dalek::{Signer as _, SigningKey};
    use serde::Deserialize;

    use super::*;

    const VECTORS: &str = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/it/fixtures/discord-ed25519-vectors.json"
    );

    #[derive(Debug, Deserialize)]
    struct Vectors {
        vectors: Vec<RequestVector>,
        derived_discord_format_vectors: Vec<RequestVector>,
        rfc8032_ed25519_vectors: Vec<RfcVector>,
    }

    /// A request as Discord would send it: the two headers, the body, and whether it is genuine.
    #[derive(Debug, Deserialize)]
    struct RequestVector {
        id: String,
        public_key: String,
        timestamp: String,
        body: String,
        signature: String,
        expected_valid: bool,
    }

    /// RFC 8032 §7.1: the raw primitive.
    #[derive(Debug, Deserialize)]
    struct RfcVector {
        name: String,
        secret_key: String,
        public_key: String,
        message_hex: String,
        signature: String,
    }

    fn vectors() -> Vectors {
        let json = std::fs::read_to_string(VECTORS).expect("the vectors fixture");
        serde_json::from_str(&json).expect("the vectors parse")
    }

    fn key(hex_key: &str) -> PublicKey {
        hex_key.parse().expect("a valid public key")
    }

    /// The real PING Discord signed on 2022-07-08.
    fn real_ping() -> RequestVector {
        vectors()
            .vectors
            .into_iter()
            .find(|v| v.id == "ssmmiles-real-ping-valid")
            .expect("the real PING")
    }

    /// RFC 8032 §7.1 TEST 1's key, which the derived vectors use: for requests the vectors do
    /// not have (a non-numeric timestamp Discord would never sign).
    fn test_signer() -> SigningKey {
        let mut seed = [0u8; 32];
        hex::decode_to_slice(
            "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60",
            &mut seed,
        )
        .expect("seed");
        SigningKey::from_bytes(&seed)
    }

    fn sign(signer: &SigningKey, timestamp: &str, body: &[u8]) -> String {
        hex::encode(
            signer
                .sign(&[timestamp.as_bytes(), body].concat())
                .to_bytes(),
        )
    }

    #[test]
    fn every_request_vector_verifies_or_fails_as_expected_at_its_own_time() {
        let all = vectors();
        let requests: Vec<RequestVector> = all
            .vectors
            .into_iter()
            .chain(all.derived_discord_format_vectors)
            .collect();
        assert_eq!(requests.len(), 12, "the fixture changed");
        for vector in &requests {
            let now = vector.timestamp.parse().unwrap_or(1_657_322_078);
            let result = verify(
                &key(&vector.public_key),
                Some(&vector.signature),
                Some(&vector.timestamp),
                vector.body.as_bytes(),
                now,
            );
            assert_eq!(
                result.is_ok(),
                vector.expected_valid,
                "{}: {result:?}",
                vector.id
            );
        }
    }

    /// serenity's `Verifier` (non-strict) agrees with the strict check on every vector, so
    /// being strict refuses nothing Discord signs.
    #[test]
    fn serenitys_non_strict_verifier_agrees_on_every_vector() {
        use serenity::interactions_endpoint::Verifier;

        let all = vectors();
        for vector in all
            .vectors
            .iter()
            .chain(&all.derived_discord_format_vectors)
        {
            let mut key_bytes = [0u8; 32];
            hex::decode_to_slice(&vector.public_key, &mut key_bytes).expect("key hex");
            let verifier = Verifier::try_new(key_bytes).expect("serenity accepts the key");
            let theirs = verifier
                .verify(&vector.signature, &vector.timestamp, vector.body.as_bytes())
                .is_ok();
            assert_eq!(theirs, vector.expected_valid, "{}", vector.id);
        }
    }

    #[test]
    fn rfc8032_vectors_verify_and_sign_alike() {
        let rfc = vectors().rfc8032_ed25519_vectors;
        assert_eq!(rfc.len(), 3, "the fixture changed");
        for vector in rfc {
            let message = hex::decode(&vector.message_hex).expect("message hex");
            let mut signature = [0u8; 64];
            hex::decode_to_slice(&vector.signature, &mut signature).expect("signature hex");
            let public = key(&vector.public_key);
            assert_eq!(
                verify_message(&public, &signature, &message),
                Ok(()),
                "{}",
                vector.name
            );
            // The test signer used below is the real primitive: same key, same signature.
            let mut seed = [0u8; 32];
            hex::decode_to_slice(&vector.secret_key, &mut seed).expect("seed hex");
            let signer = SigningKey::from_bytes(&seed);
            assert_eq!(
                hex::encode(signer.verifying_key().as_bytes()),
                vector.public_key
            );
            assert_eq!(
                hex::encode(signer.sign(&message).to_bytes()),
                vector.signature
            );
            let mut flipped = message.clone();
            flipped.push(0);
            assert_eq!(
                verify_message(&public, &signature, &flipped),
                Err(SignatureError::Mismatch),
                "{}",
                vector.name
            );
        }
    }

    #[test]
    fn the_window_is_five_minutes_either_way() {
        let ping = real_ping();
        let key = key(&ping.public_key);
        let at: i64 = ping.timestamp.parse().expect("timestamp");
        let check = |now: i64| {
            verify(
                &key,
                Some(&ping.signature),
                Some(&ping.timestamp),
                ping.body.as_bytes(),
                now,
            )
        };
        for (now, expected) in [
            (at, Ok(())),
            (at + 300, Ok(())),
            (at - 300, Ok(())),
            (at + 301, Err(SignatureError::Stale)),
            (at - 301, Err(SignatureError::Stale)),
            (1_795_000_000, Err(SignatureError::Stale)),
            (i64::MIN, Err(SignatureError::Stale)),
            (i64::MAX, Err(SignatureError::Stale)),
        ] {
            assert_eq!(check(now), expected, "now = {now}");
        }
    }

    #[test]
    fn every_other_request_is_refused_with_its_reason() {
        let ping = real_ping();
        let key = key(&ping.public_key);
        let at: i64 = ping.timestamp.parse().expect("timestamp");
        let body = ping.body.as_bytes();
        let signature = ping.signature.as_str();
        let timestamp = ping.timestamp.as_str();

        let mut changed_body = body.to_vec();
        changed_body[10] ^= 1;
        let later = (at + 1).to_string();
        let uppercase = signature.to_ascii_uppercase();
        let truncated = &signature[..126];
        let too_long = format!("{signature}00");
        let not_hex = format!("{}zz", &signature[..126]);

        let signer = test_signer();
        let signer_key = key_of(&signer);
        let word_timestamp = sign(&signer, "soon", body);
        let signed_plus = sign(&signer, "+1657322078", body);
        let signed_huge = sign(&signer, "99999999999999999999", body);

        type Case<'a> = (
            &'a str,
            &'a PublicKey,
            Option<&'a str>,
            Option<&'a str>,
            &'a [u8],
            Result<(), SignatureError>,
        );
        #[rustfmt::skip]
        let cases: Vec<Case<'_>> = vec![
            ("genuine", &key, Some(signature), Some(timestamp), body, Ok(())),
            ("uppercase hex is the same signature", &key, Some(&uppercase), Some(timestamp), body, Ok(())),
            ("a changed body byte", &key, Some(signature), Some(timestamp), &changed_body, Err(SignatureError::Mismatch)),
            ("an empty body", &key, Some(signature), Some(timestamp), b"", Err(SignatureError::Mismatch)),
            ("a changed timestamp", &key, Some(signature), Some(&later), body, Err(SignatureError::Mismatch)),
            ("another key", &signer_key, Some(signature), Some(timestamp), body, Err(SignatureError::Mismatch)),
            ("a truncated signature", &key, Some(truncated), Some(timestamp), body, Err(SignatureError::MalformedSignature)),
            ("a signature too long", &key, Some(&too_long), Some(timestamp), body, Err(SignatureError::MalformedSignature)),
            ("a signature not hex", &key, Some(&not_hex), Some(timestamp), body, Err(SignatureError::MalformedSignature)),
            ("words for a signature", &key, Some("example invalid signature"), Some(timestamp), body, Err(SignatureError::MalformedSignature)),
            ("no signature header", &key, None, Some(timestamp), body, Err(SignatureError::MissingSignature)),
            ("an empty signature header", &key, Some(""), Some(timestamp), body, Err(SignatureError::MissingSignature)),
            ("no timestamp header", &key, Some(signature), None, body, Err(SignatureError::MissingTimestamp)),
            ("an empty timestamp header", &key, Some(signature), Some(""), body, Err(SignatureError::MissingTimestamp)),
            ("no headers at all", &key, None, None, body, Err(SignatureError::MissingSignature)),
            ("a signed timestamp that is a word", &signer_key, Some(&word_timestamp), Some("soon"), body, Err(SignatureError::BadTimestamp)),
            ("a signed timestamp with a sign", &signer_key, Some(&signed_plus), Some("+1657322078"), body, Err(SignatureError::BadTimestamp)),
            ("a signed timestamp past i64", &signer_key, Some(&signed_huge), Some("99999999999999999999"), body, Err(SignatureError::BadTimestamp)),
            ("an unsigned word timestamp", &key, Some(signature), Some("soon"), body, Err(SignatureError::Mismatch)),
        ];
        for (name, key, signature, timestamp, body, expected) in cases {
            assert_eq!(
                verify(key, signature, timestamp, body, at),
                expected,
                "{name}"
            );
        }
    }

    fn key_of(signer: &SigningKey) -> PublicKey {
        PublicKey(signer.verifying_key())
    }

    #[test]
    fn public_keys_parse_once_or_say_what_is_wrong() {
        let good = "c5568d0facd66bddee281dcb9c8ac02e169c5c20741b215b2539a96bb183c5d6";
        let parsed: PublicKey = good.parse().expect("good key");
        assert_eq!(parsed.to_hex(), good);
        assert_eq!(format!("{parsed:?}"), format!("PublicKey({good})"));
        assert_eq!(parsed.to_string(), good);
        assert_eq!(
            PublicKey::try_from(format!(" {}\n", good.to_ascii_uppercase())),
            Ok(parsed.clone())
        );
        assert_eq!(PublicKey::try_from(good), Ok(parsed));

        // The identity point: on the curve, but of order 1.
        let weak = format!("01{}", "00".repeat(31));
        // y = 2 has no x on Ed25519's curve.
        let off_curve = format!("02{}", "00".repeat(31));
        for (input, expected) in [
            ("", PublicKeyError::WrongLength(0)),
            (&good[..62], PublicKeyError::WrongLength(62)),
            (&format!("{good}00"), PublicKeyError::WrongLength(66)),
            (&format!("{}zz", &good[..62]), PublicKeyError::NotHex),
            (&format!("{}é", &good[..63]), PublicKeyError::NotHex),
            (&off_curve, PublicKeyError::NotACurvePoint),
            (&weak, PublicKeyError::Weak),
        ] {
            assert_eq!(input.parse::<PublicKey>(), Err(expected), "{input:?}");
        }
    }
}
