//! Slack's HTTP mode: `/slack/commands`, `/slack/interactions`, `/slack/events` on the daemon's
//! server. Every request is verified first (signature over the raw body, timestamp within 5
//! minutes, constant-time compare); anything missing, stale or wrong gets 401 and nothing else
//! happens. Slack's `ssl_check=1` probes are answered without a signature, and trusted for
//! nothing.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use slack_morphism::prelude::*;

use super::signing;
use super::Slack;
use crate::engine::Clock as _;

/// The routes, with the adapter as their state.
pub fn routes(slack: Arc<Slack>) -> Router {
    Router::new()
        .route("/slack/commands", post(commands))
        .route("/slack/interactions", post(interactions))
        .route("/slack/events", post(events))
        .with_state(slack)
}

fn header<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// Verifies the request; `Err` is the 401 to send.
fn verified(slack: &Slack, headers: &HeaderMap, body: &[u8]) -> Result<(), Box<Response>> {
    let secret = slack
        .settings
        .signing_secret
        .as_ref()
        .map(|s| s.expose().to_owned())
        .unwrap_or_default();
    let now = crate::engine::SystemClock.now().0 / 1000;
    signing::verify(
        &secret,
        header(headers, "x-slack-signature"),
        header(headers, "x-slack-request-timestamp"),
        body,
        now,
    )
    .map_err(|error| {
        tracing::warn!(%error, "Refused a request that is not verifiably from Slack.");
        Box::new((StatusCode::UNAUTHORIZED, "request not verified\n").into_response())
    })
}

fn form(body: &[u8]) -> Vec<(String, String)> {
    form_urlencoded::parse(body).into_owned().collect()
}

fn field<'a>(fields: &'a [(String, String)], name: &str) -> Option<&'a str> {
    fields
        .iter()
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.as_str())
}

fn is_ssl_check(headers: &HeaderMap, body: &[u8]) -> bool {
    let form_type = header(headers, "content-type")
        .is_some_and(|t| t.starts_with("application/x-www-form-urlencoded"));
    form_type && field(&form(body), "ssl_check") == Some("1")
}

async fn commands(State(slack): State<Arc<Slack>>, headers: HeaderMap, body: Bytes) -> Response {
    if is_ssl_check(&headers, &body) {
        return StatusCode::OK.into_response();
    }
    if let Err(refused) = verified(&slack, &headers, &body) {
        return *refused;
    }
    let fields = form(&body);
    let (Some(channel), Some(user), Some(trigger)) = (
        field(&fields, "channel_id"),
        field(&fields, "user_id"),
        field(&fields, "trigger_id"),
    ) else {
        return (StatusCode::BAD_REQUEST, "not a slash command\n").into_response();
    };
    let text = slack.command(channel, user, field(&fields, "text").unwrap_or(""), trigger);
    Json(serde_json::json!({ "response_type": "ephemeral", "text": text })).into_response()
}

async fn interactions(
    State(slack): State<Arc<Slack>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Err(refused) = verified(&slack, &headers, &body) {
        return *refused;
    }
    let fields = form(&body);
    let Some(payload) = field(&fields, "payload") else {
        return (StatusCode::BAD_REQUEST, "no payload\n").into_response();
    };
    match serde_json::from_str::<SlackInteractionEvent>(payload) {
        Ok(event) => {
            for input in Slack::inputs_from_interaction(&event) {
                slack.enqueue(input);
            }
            StatusCode::OK.into_response()
        }
        Err(error) => {
            tracing::warn!(%error, "Unreadable Slack interaction payload.");
            (StatusCode::BAD_REQUEST, "unreadable payload\n").into_response()
        }
    }
}

async fn events(State(slack): State<Arc<Slack>>, headers: HeaderMap, body: Bytes) -> Response {
    if let Err(refused) = verified(&slack, &headers, &body) {
        return *refused;
    }
    if let Some(retry) = header(&headers, "x-slack-retry-num") {
        tracing::info!(
            retry,
            reason = header(&headers, "x-slack-retry-reason").unwrap_or(""),
            "Slack redelivered an event; its event id keeps it from running twice."
        );
    }
    match serde_json::from_slice::<SlackPushEvent>(&body) {
        Ok(SlackPushEvent::UrlVerification(verification)) => {
            Json(serde_json::json!({ "challenge": verification.challenge })).into_response()
        }
        Ok(SlackPushEvent::EventCallback(event)) => {
            if let Some(input) = Slack::input_from_push(&event) {
                slack.enqueue(input);
            }
            StatusCode::OK.into_response()
        }
        Ok(_) => StatusCode::OK.into_response(),
        Err(error) => {
            tracing::warn!(%error, "Unreadable Slack event.");
            (StatusCode::BAD_REQUEST, "unreadable event\n").into_response()
        }
    }
}
