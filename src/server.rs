//! The daemon's HTTP server (axum): `/healthz`, `/readyz` (only the leader is ready; a standby
//! answers 503 "standby"), `/readyz/replica` (a standby able to take over is ready too: for
//! rollouts and disruption budgets), `/metrics`, and the console's page and API. Chat
//! platforms' endpoints join here; commands reach only a leader that has started.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::{header, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;

use crate::chat::console::{Console, PAGE};
use crate::config::Settings;
use crate::engine::EngineHandle;
use crate::metrics::Metrics;
use crate::registry::Registries;
use crate::store::Store;

/// What the handlers share.
#[derive(Debug, Clone)]
pub struct AppState {
    pub settings: Arc<Settings>,
    pub engine: EngineHandle,
    pub store: Store,
    pub registries: Arc<Registries>,
    pub metrics: Arc<Metrics>,
    pub console: Option<Arc<Console>>,
    pub slack: Option<Arc<crate::chat::slack::Slack>>,
    pub discord: Option<Arc<crate::chat::discord::Discord>>,
    pub notifier: Option<Arc<crate::notify::Notifier>>,
    pub vitals: Arc<crate::vitals::Vitals>,
    /// Whether this process leads (always, with SQLite).
    pub leadership: Arc<crate::leadership::Leadership>,
    /// Set once what only the leader runs has started.
    pub serving: Arc<std::sync::atomic::AtomicBool>,
}

impl AppState {
    /// Why this process cannot take commands now: a standby, or a leader still starting.
    fn not_serving(&self) -> Option<String> {
        if !self.leadership.is_leader() {
            return Some(format!(
                "standby: another replica leads (this is {})",
                self.leadership.holder
            ));
        }
        if !self.serving.load(std::sync::atomic::Ordering::SeqCst) {
            return Some("starting: the engine and the chat connections are not up yet".to_owned());
        }
        None
    }
}

/// Commands reach only the leader once it serves; elsewhere 503 (a load balancer routes by
/// `/readyz`, so this is the safety net).
async fn only_when_serving(
    State(state): State<AppState>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    match state.not_serving() {
        None => next.run(request).await,
        Some(why) => (StatusCode::SERVICE_UNAVAILABLE, format!("{why}\n")).into_response(),
    }
}

pub fn router(state: AppState) -> Router {
    let slack_http = state
        .slack
        .as_ref()
        .filter(|slack| slack.settings.mode == crate::chat::slack::config::SlackMode::Http)
        .map(|slack| crate::chat::slack::http::routes(Arc::clone(slack)));
    let discord_http = state
        .discord
        .as_ref()
        .filter(|d| d.settings.mode == crate::chat::discord::config::DiscordMode::Http)
        .map(|discord| crate::chat::discord::http::routes(Arc::clone(discord)));
    let mut commands = Router::new();
    let has_commands = state.console.is_some() || slack_http.is_some() || discord_http.is_some();
    if state.console.is_some() {
        commands = commands
            .route(
                "/",
                get(|| async { axum::response::Redirect::to("/console") }),
            )
            .route("/console", get(console_page))
            .route("/console/api/state", get(console_state))
            .route("/console/api/command", post(console_command))
            .route("/console/api/action", post(console_action));
    }
    let mut commands = commands.with_state(state.clone());
    if let Some(slack) = slack_http {
        commands = commands.merge(slack);
    }
    if let Some(discord) = discord_http {
        commands = commands.merge(discord);
    }
    // (axum refuses a route layer on a router without routes.)
    if has_commands {
        commands = commands.route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            only_when_serving,
        ));
    }
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/readyz/replica", get(replica_ready))
        .route("/metrics", get(metrics))
        .with_state(state)
        .merge(commands)
}

/// Alive unless a task the daemon cannot run without has ended (the process is then exiting).
async fn healthz(State(state): State<AppState>) -> Response {
    match state.vitals.failure() {
        None => (StatusCode::OK, "ok\n").into_response(),
        Some(failure) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("unhealthy: {failure}\n"),
        )
            .into_response(),
    }
}

/// A standby (or a leader still starting) is not ready: traffic goes to the leader. The leader
/// is ready when the store answers, every allowlisted image's registry answers `/v2/`, and
/// GitHub's and Docker Hub's startup checks have answered.
async fn readyz(State(state): State<AppState>) -> Response {
    if let Some(why) = state.not_serving() {
        return (StatusCode::SERVICE_UNAVAILABLE, format!("{why}\n")).into_response();
    }
    let mut problems = Vec::new();
    if let Some(failure) = state.vitals.failure() {
        problems.push(failure);
    }
    if let Err(error) = state.store.ping().await {
        problems.push(format!("store: {error}"));
    }
    if let Some(slack) = &state.slack {
        problems.extend(slack.problems());
    }
    if let Some(discord) = &state.discord {
        problems.extend(discord.problems());
    }
    if let Some(notifier) = &state.notifier {
        problems.extend(notifier.problems());
    }
    let mut hosts: Vec<_> = state
        .settings
        .images
        .values()
        .map(|entry| entry.image.registry.clone())
        .collect();
    hosts.sort();
    hosts.dedup();
    for host in hosts {
        let reachable = match state.registries.get(&host) {
            Ok(client) => match tokio::time::timeout(Duration::from_secs(5), client.ping()).await {
                Ok(result) => result,
                Err(_) => Err(format!("registry {host} did not answer within 5 s")),
            },
            Err(error) => Err(error.to_string()),
        };
        if let Err(error) = reachable {
            problems.push(error);
        }
    }
    if problems.is_empty() {
        (StatusCode::OK, "ready\n").into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready:\n{}\n", problems.join("\n")),
        )
            .into_response()
    }
}

/// For an orchestrator's own bookkeeping with replicas (rollouts, disruption budgets): a
/// standby that could take over is ready here (alive, the store answers, its last attempt at
/// the lease was answered within one TTL); the leader is ready as `/readyz` says. Route traffic by `/readyz`, which only the leader passes.
async fn replica_ready(State(state): State<AppState>) -> Response {
    if state.leadership.is_leader() {
        return readyz(State(state)).await;
    }
    let mut problems = Vec::new();
    if let Some(failure) = state.vitals.failure() {
        problems.push(failure);
    }
    if let Err(error) = state.store.ping().await {
        problems.push(format!("store: {error}"));
    }
    let ttl = state.settings.daemon.store.lease_ttl;
    if !state.leadership.in_touch(ttl) {
        problems.push(format!(
            "the leader lease has not answered this replica for {} (or not yet)",
            humantime::format_duration(ttl)
        ));
    }
    if problems.is_empty() {
        (StatusCode::OK, "standby: ready to take over\n").into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready:\n{}\n", problems.join("\n")),
        )
            .into_response()
    }
}

async fn metrics(State(state): State<AppState>) -> Response {
    let text = state.metrics.render(&state.registries.statuses());
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
        .into_response()
}

async fn console_page() -> Html<&'static str> {
    Html(PAGE)
}

#[derive(Deserialize)]
struct StateQuery {
    user: Option<String>,
    /// Only messages posted or edited after this channel version.
    since: Option<u64>,
    /// At most this many (the newest), capped at `console::MAX_PAGE`.
    limit: Option<usize>,
}

async fn console_state(State(state): State<AppState>, Query(query): Query<StateQuery>) -> Response {
    let Some(console) = &state.console else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let user = query.user.unwrap_or_default();
    let view = console.view(
        &user,
        query.since.unwrap_or(0),
        query.limit.unwrap_or(crate::chat::console::MAX_PAGE),
    );
    let users: Vec<serde_json::Value> = console
        .users
        .iter()
        .map(|u| serde_json::json!({ "id": u.id, "name": u.name }))
        .collect();
    Json(serde_json::json!({
        "channel": console.channel,
        "users": users,
        "version": view.version,
        "messages": view.messages,
        "truncated": view.truncated,
    }))
    .into_response()
}

#[derive(Deserialize)]
struct CommandBody {
    user: String,
    text: String,
}

#[derive(Deserialize)]
struct ActionBody {
    user: String,
    action: String,
}

fn unknown_user(user: &str) -> Response {
    (
        StatusCode::BAD_REQUEST,
        Json(
            serde_json::json!({ "ok": false, "reply": format!("'{user}' is not a console user") }),
        ),
    )
        .into_response()
}

async fn console_command(State(state): State<AppState>, Json(body): Json<CommandBody>) -> Response {
    let Some(console) = &state.console else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let Some(user) = console.user(&body.user).cloned() else {
        return unknown_user(&body.user);
    };
    let reply = console.say(&state.engine, &user, &body.text).await;
    Json(serde_json::json!({ "ok": reply.ok, "reply": reply.text })).into_response()
}

async fn console_action(State(state): State<AppState>, Json(body): Json<ActionBody>) -> Response {
    let Some(console) = &state.console else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let Some(user) = console.user(&body.user).cloned() else {
        return unknown_user(&body.user);
    };
    let reply = console.click(&state.engine, &user, &body.action).await;
    Json(serde_json::json!({ "ok": reply.ok, "reply": reply.text })).into_response()
}
