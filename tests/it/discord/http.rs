//! Discord's HTTP interactions endpoint: every request's Ed25519 signature is verified (missing,
//! wrong, stale → 401 and nothing happens), PING answers PONG, and a rollback runs end to end
//! with the answers as HTTP responses.

use ed25519_dalek::{Signer, SigningKey};
use serde_json::{json, Value};

use super::{id_of, world, World, CAROL};
use crate::slack::{now, post};
use crate::support::discord::{ALICE, APP_ID, CHANNEL};

/// The test application's key pair (fixed bytes: a test key, never a real one).
fn key() -> SigningKey {
    SigningKey::from_bytes(&[7; 32])
}

/// The public key as the Developer Portal shows it (64 hex characters).
pub(crate) fn public_key_hex() -> String {
    hex::encode(key().verifying_key().to_bytes())
}

/// `X-Signature-Ed25519` for `timestamp` ++ `body`.
fn sign(timestamp: &str, body: &str) -> String {
    let mut message = timestamp.as_bytes().to_vec();
    message.extend_from_slice(body.as_bytes());
    hex::encode(key().sign(&message).to_bytes())
}

/// POSTs `body` to the endpoint with exactly `headers`.
fn send(w: &World, headers: &[(&str, &str)], body: &str) -> (u16, String) {
    let mut all = vec![("content-type", "application/json")];
    all.extend_from_slice(headers);
    post(&w.daemon.base, "/discord/interactions", &all, body)
}

/// POSTs `interaction` signed now, as Discord does; the status and the parsed answer.
fn deliver(w: &World, interaction: &Value) -> (u16, Value) {
    let body = interaction.to_string();
    let timestamp = now().to_string();
    let signature = sign(&timestamp, &body);
    let (status, answer) = send(
        w,
        &[
            ("x-signature-ed25519", &signature),
            ("x-signature-timestamp", &timestamp),
        ],
        &body,
    );
    (status, serde_json::from_str(&answer).unwrap_or(Value::Null))
}

/// A PING as Discord sends it when the endpoint URL is saved (and at random afterwards).
fn ping() -> Value {
    json!({
        "id": "1100000000000000900",
        "application_id": APP_ID.to_string(),
        "type": 1,
        "token": "ping-token",
        "version": 1,
    })
}

#[test]
fn ping_is_answered_pong_and_every_unverifiable_request_gets_401_and_does_nothing() {
    // The daemon's clock stands still at `start`: timestamps are judged against it, so the
    // stale one is exactly 301 s old however long the test takes (with the wall clock it
    // became ≤ 300 s old, and valid, once a second had passed since the daemon started).
    let start = now();
    let w = super::world_keyed("http", "", &public_key_hex(), Some(start), |_| {});
    let (status, pong) = deliver(&w, &ping());
    assert_eq!((status, pong), (200, json!({ "type": 1 })));

    // A signed command, in every wrong variant: none of them may reach the engine.
    let command = w.discord.command(
        ALICE,
        CHANNEL,
        "request",
        &[("image", "app"), ("reason", "v3 is broken")],
    );
    let body = command.to_string();
    let ts = start.to_string();
    let good = sign(&ts, &body);
    let stale_ts = (start - 301).to_string();
    let stale = sign(&stale_ts, &body);
    let mut flipped = good.clone().into_bytes();
    flipped[0] = if flipped[0] == b'0' { b'1' } else { b'0' };
    let flipped = String::from_utf8(flipped).expect("hex");
    let other_body = sign(&ts, &ping().to_string());
    type Case<'a> = (&'a str, Vec<(&'a str, &'a str)>, String);
    let cases: Vec<Case> = vec![
        ("no headers", vec![], body.clone()),
        (
            "no signature",
            vec![("x-signature-timestamp", &ts)],
            body.clone(),
        ),
        (
            "no timestamp",
            vec![("x-signature-ed25519", &good)],
            body.clone(),
        ),
        (
            "a flipped signature",
            vec![
                ("x-signature-ed25519", &flipped),
                ("x-signature-timestamp", &ts),
            ],
            body.clone(),
        ),
        (
            "another body's signature",
            vec![
                ("x-signature-ed25519", &other_body),
                ("x-signature-timestamp", &ts),
            ],
            body.clone(),
        ),
        (
            "a changed body",
            vec![
                ("x-signature-ed25519", &good),
                ("x-signature-timestamp", &ts),
            ],
            body.replace("v3 is broken", "v3 is fine!!"),
        ),
        (
            "another timestamp",
            vec![
                ("x-signature-ed25519", &good),
                ("x-signature-timestamp", &stale_ts),
            ],
            body.clone(),
        ),
        (
            "a stale timestamp, correctly signed",
            vec![
                ("x-signature-ed25519", &stale),
                ("x-signature-timestamp", &stale_ts),
            ],
            body.clone(),
        ),
        (
            "not hex",
            vec![
                ("x-signature-ed25519", "zz"),
                ("x-signature-timestamp", &ts),
            ],
            body.clone(),
        ),
        (
            "a signature of the wrong length",
            vec![
                ("x-signature-ed25519", &good[..64]),
                ("x-signature-timestamp", &ts),
            ],
            body.clone(),
        ),
    ];
    for (what, headers, body) in cases {
        let (status, answer) = send(&w, &headers, &body);
        assert_eq!(status, 401, "{what}: {answer}");
    }
    // An unsigned PING is refused too (Discord checks exactly this).
    let (status, _) = send(&w, &[], &ping().to_string());
    assert_eq!(status, 401);
    std::thread::sleep(std::time::Duration::from_millis(300));
    let posted = w
        .discord
        .calls_to(&format!("POST /channels/{CHANNEL}/messages"));
    assert!(posted.is_empty(), "nothing was posted: {posted:?}");
    let (_, status) = w.daemon.get("/console/api/state");
    assert!(!status.contains("rb-1"), "nothing was requested");
    assert!(
        crate::daemon::audit_entries(&w.daemon.db)
            .iter()
            .all(|e| e["kind"] != "requested"),
        "nothing was requested"
    );
}

#[test]
fn a_rollback_runs_end_to_end_through_the_endpoint() {
    let w = world("http", "");
    let request = w.discord.command(
        ALICE,
        CHANNEL,
        "request",
        &[("image", "app"), ("reason", "v3 is broken")],
    );
    let (status, defer) = deliver(&w, &request);
    assert_eq!(status, 200, "{defer}");
    assert_eq!(defer, json!({ "type": 5, "data": { "flags": 64 } }));
    w.discord.responded(&request, &defer);
    w.answer(&request, "the request", "rb-1");
    let plan = w.plan();
    // HTTP mode gets no reactions: none are seeded.
    assert!(w
        .discord
        .calls_to(&format!(
            "PUT /channels/{CHANNEL}/messages/{plan}/reactions/*/@me"
        ))
        .is_empty());

    let click = w.discord.click(CAROL, plan, "approve:rb-1");
    let (status, ack) = deliver(&w, &click);
    assert_eq!((status, &ack), (200, &json!({ "type": 6 })));
    w.discord.responded(&click, &ack);
    w.followup(&click, "rb-1 approved; rolling back now.");
    w.wait_rolled_back(plan);
    assert_eq!(id_of(&click["channel_id"]), CHANNEL);
    // The endpoint never used the callback route: the answers were the responses.
    assert!(w
        .discord
        .calls_to("POST /interactions/*/*/callback")
        .is_empty());
}

/// The vectors fixture: real and derived signed requests, valid and not.
fn vectors() -> Vec<Value> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/it/fixtures/discord-ed25519-vectors.json"
    );
    let fixture: Value =
        serde_json::from_str(&std::fs::read_to_string(path).expect("fixture")).expect("json");
    let mut all = fixture["vectors"].as_array().cloned().unwrap_or_default();
    all.extend(
        fixture["derived_discord_format_vectors"]
            .as_array()
            .cloned()
            .unwrap_or_default(),
    );
    all
}

/// The real Discord-signed PING (2022) is answered PONG when the daemon's clock is at its
/// time; every invalid variant in the fixture gets 401, and so does the real PING once it is
/// more than 5 minutes old.
#[test]
fn the_real_signed_ping_verifies_and_every_invalid_vector_gets_401() {
    const REAL_KEY: &str = "c5568d0facd66bddee281dcb9c8ac02e169c5c20741b215b2539a96bb183c5d6";
    const SIGNED_AT: i64 = 1_657_322_078;
    let w = super::world_keyed("http", "", REAL_KEY, Some(SIGNED_AT + 10), |_| {});
    let send_vector = |v: &Value| {
        let mut headers = Vec::new();
        for (name, field) in [
            ("x-signature-ed25519", "signature"),
            ("x-signature-timestamp", "timestamp"),
        ] {
            let value = v[field].as_str().expect("a string");
            if !value.is_empty() {
                headers.push((name, value));
            }
        }
        send(&w, &headers, v["body"].as_str().expect("a body"))
    };
    let ours: Vec<Value> = vectors()
        .into_iter()
        .filter(|v| v["public_key"] == REAL_KEY)
        .collect();
    assert!(ours.len() >= 8, "the fixture's vectors for the real key");
    for vector in &ours {
        let (status, answer) = send_vector(vector);
        if vector["expected_valid"] == true {
            assert_eq!(status, 200, "{}: {answer}", vector["id"]);
            assert_eq!(
                serde_json::from_str::<Value>(&answer).expect("json"),
                json!({ "type": 1 })
            );
        } else {
            assert_eq!(status, 401, "{}: {answer}", vector["id"]);
        }
    }
    w.daemon
        .clock
        .advance(std::time::Duration::from_secs(5 * 60));
    let real = ours
        .iter()
        .find(|v| v["expected_valid"] == true)
        .expect("the real PING");
    let (status, _) = send_vector(real);
    assert_eq!(status, 401, "more than 5 minutes old");
    assert!(w.discord.calls_to("POST /channels/*/messages").is_empty());
}
