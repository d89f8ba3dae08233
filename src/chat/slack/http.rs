//! Slack's HTTP mode: `/slack/commands`, `/slack/interactions`, `/slack/events` on the daemon's
//! server. Every request is verified first (signature over the raw body, timestamp within 5
//! minutes, constant-time compare); anything missing, stale or wrong gets 401 and nothing else
//! happens. Slack's `ssl_check=1` probes are answered without a signature, and trusted for
//! nothing.

use std::sync::Arc;

use super::inbound::{self, EventBody, PayloadError, SlashCommand};
use super::signing;
use super::Slack;
use crate::engine::Clock as _;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};

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

fn is_ssl_check(headers: &HeaderMap, body: &[u8]) -> bool {
    let form_type = header(headers, "content-type")
        .is_some_and(|t| t.starts_with("application/x-www-form-urlencoded"));
    form_type && inbound::form_field(&inbound::form(body), "ssl_check") == Some("1")
}

async fn commands(State(slack): State<Arc<Slack>>, headers: HeaderMap, body: Bytes) -> Response {
    if is_ssl_check(&headers, &body) {
        return StatusCode::OK.into_response();
    }
    if let Err(refused) = verified(&slack, &headers, &body) {
        return *refused;
    }
    match SlashCommand::from_form(&body) {
        Ok(command) => {
            let text = slack.command(
                &command.channel,
                &command.user,
                &command.text,
                &command.trigger,
            );
            Json(super::ack(&text)).into_response()
        }
        Err(error) => refuse(&error),
    }
}

/// A payload that is signed but not one rollbot can read: 400, logged, nothing else.
fn refuse(error: &PayloadError) -> Response {
    tracing::warn!(%error, "Refused an unreadable Slack payload.");
    (StatusCode::BAD_REQUEST, format!("{error}\n")).into_response()
}

async fn interactions(
    State(slack): State<Arc<Slack>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Err(refused) = verified(&slack, &headers, &body) {
        return *refused;
    }
    match inbound::interaction_form(&body) {
        Ok(inputs) => {
            for input in inputs {
                slack.enqueue(input);
            }
            StatusCode::OK.into_response()
        }
        Err(error) => refuse(&error),
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
    match inbound::event_body(&body) {
        Ok(EventBody::UrlVerification { challenge }) => {
            Json(serde_json::json!({ "challenge": challenge })).into_response()
        }
        Ok(EventBody::Input(input)) => {
            if let Some(input) = input {
                slack.enqueue(input);
            }
            StatusCode::OK.into_response()
        }
        Ok(EventBody::Other) => StatusCode::OK.into_response(),
        Err(error) => refuse(&error),
    }
}
