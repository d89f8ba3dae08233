//! HTTP mode: `POST /discord/interactions` on the daemon's server. Every request's
//! `X-Signature-Ed25519` over `X-Signature-Timestamp` + raw body is verified with the
//! application's public key, and the timestamp must be within 5 minutes; anything missing,
//! stale or wrong gets 401 and nothing else happens (Discord sends invalid signatures on
//! purpose and removes endpoints that accept them). PING answers PONG; every other
//! interaction gets the same answer as over the Gateway, as the response, and its work runs
//! after it.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serenity::all::Interaction;

use super::{signing, Discord};

/// The route, with the adapter as its state.
pub fn routes(discord: Arc<Discord>) -> Router {
    Router::new()
        .route("/discord/interactions", post(interactions))
        .with_state(discord)
}

fn header<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

async fn interactions(
    State(discord): State<Arc<Discord>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some(key) = discord.public_key.as_ref() else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let now = discord.clock.now().0 / 1000;
    if let Err(error) = signing::verify(
        key,
        header(&headers, "x-signature-ed25519"),
        header(&headers, "x-signature-timestamp"),
        &body,
        now,
    ) {
        tracing::warn!(%error, "Refused a request that is not verifiably from Discord.");
        return (StatusCode::UNAUTHORIZED, "invalid request signature\n").into_response();
    }
    let interaction: Interaction = match serde_json::from_slice(&body) {
        Ok(interaction) => interaction,
        Err(error) => {
            // A PING is answered even when serenity cannot read the rest of it.
            if serde_json::from_slice::<serde_json::Value>(&body)
                .is_ok_and(|v| v.get("type").and_then(serde_json::Value::as_u64) == Some(1))
            {
                return Json(serde_json::json!({ "type": 1 })).into_response();
            }
            tracing::warn!(%error, "Refused an unreadable Discord interaction.");
            return (StatusCode::BAD_REQUEST, "unreadable interaction\n").into_response();
        }
    };
    match discord.answer(interaction).await {
        Some((response, work)) => {
            if let Some(work) = work {
                discord.spawn(work);
            }
            Json(response).into_response()
        }
        None => (StatusCode::BAD_REQUEST, "interaction type not handled\n").into_response(),
    }
}
