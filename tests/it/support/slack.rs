//! A loopback fake Slack: the documented Web API methods rollbot calls (`POST /api/<method>`,
//! `{"ok": …}` answers, 429 with `Retry-After`) and Socket Mode (`apps.connections.open` → a
//! WebSocket that sends `hello` and envelopes and records acks). It records every call so tests
//! can assert what rollbot sent; failures can be injected per method.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use axum::{Json, Router};
use serde_json::{json, Value};
use tokio::sync::mpsc;

use super::HttpServer;

/// One Web API call as received.
#[derive(Debug, Clone)]
pub struct Call {
    pub method: String,
    pub authorization: String,
    pub body: Value,
}

/// An injected answer for the next call of a method.
#[derive(Debug, Clone)]
pub enum Failure {
    /// HTTP 429 with `Retry-After: <seconds>`.
    RateLimited(u64),
    /// HTTP 200 `{"ok": false, "error": <code>}`.
    Api(&'static str),
}

#[derive(Default)]
struct FakeState {
    calls: Vec<Call>,
    next_ts: u64,
    acks: Vec<Value>,
    connections: Vec<mpsc::UnboundedSender<String>>,
    failures: HashMap<String, VecDeque<Failure>>,
    not_member: HashSet<String>,
    groups: HashMap<String, Vec<String>>,
    base: String,
}

pub struct FakeSlack {
    pub base: String,
    state: Arc<Mutex<FakeState>>,
    /// Stopped after `drop` closed the Socket Mode connections (fields drop last).
    _server: HttpServer,
}

pub const BOT_USER: &str = "UBOT000001";

impl FakeSlack {
    pub fn start() -> FakeSlack {
        let state = Arc::new(Mutex::new(FakeState {
            next_ts: 1_700_000_000_000_100,
            ..FakeState::default()
        }));
        let app = Router::new()
            .route("/api/{method}", any(api))
            .route("/link", get(link))
            .with_state(Arc::clone(&state));
        let server = HttpServer::start(app);
        // Before any request: apps.connections.open answers with a URL on this server.
        state.lock().expect("fake state").base = server.base.clone();
        FakeSlack {
            base: server.base.clone(),
            state,
            _server: server,
        }
    }

    pub fn api_url(&self) -> String {
        format!("{}/api", self.base)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, FakeState> {
        self.state.lock().expect("fake state")
    }

    pub fn fail_next(&self, method: &str, failure: Failure) {
        self.lock()
            .failures
            .entry(method.to_owned())
            .or_default()
            .push_back(failure);
    }

    pub fn set_not_member(&self, channel: &str) {
        self.lock().not_member.insert(channel.to_owned());
    }

    pub fn set_group(&self, group: &str, users: &[&str]) {
        self.lock().groups.insert(
            group.to_owned(),
            users.iter().map(|u| (*u).to_owned()).collect(),
        );
    }

    pub fn calls(&self, method: &str) -> Vec<Call> {
        self.lock()
            .calls
            .iter()
            .filter(|c| c.method == method)
            .cloned()
            .collect()
    }

    pub fn acks(&self) -> Vec<Value> {
        self.lock().acks.clone()
    }

    /// Waits (10 s) for a call of `method` whose body satisfies `matches`.
    pub fn wait_for(&self, method: &str, what: &str, matches: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(call) = self.calls(method).into_iter().find(|c| matches(&c.body)) {
                return call.body;
            }
            if Instant::now() > deadline {
                let seen: Vec<String> = self
                    .lock()
                    .calls
                    .iter()
                    .map(|c| format!("{} {}", c.method, c.body))
                    .collect();
                panic!(
                    "timed out waiting for {method} ({what}); calls:\n{}",
                    seen.join("\n")
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Waits for a Socket Mode connection, then sends `envelope` on it and waits for its ack.
    pub fn send(&self, envelope: Value) -> Value {
        let id = envelope["envelope_id"]
            .as_str()
            .expect("envelope id")
            .to_owned();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let sent = {
                let state = self.lock();
                state
                    .connections
                    .iter()
                    .any(|c| c.send(envelope.to_string()).is_ok())
            };
            if sent {
                break;
            }
            assert!(Instant::now() < deadline, "no Socket Mode connection");
            std::thread::sleep(Duration::from_millis(10));
        }
        loop {
            if let Some(ack) = self
                .acks()
                .into_iter()
                .find(|a| a["envelope_id"] == id.as_str())
            {
                return ack;
            }
            assert!(
                Instant::now() < deadline,
                "envelope {id} was never acknowledged"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

impl Drop for FakeSlack {
    fn drop(&mut self) {
        // Closing the Socket Mode connections ends their WebSockets, so the server can stop.
        self.lock().connections.clear();
    }
}

type Shared = Arc<Mutex<FakeState>>;

async fn api(
    State(state): State<Shared>,
    Path(method): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let authorization = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let is_json = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| t.starts_with("application/json"));
    let body: Value = if is_json {
        serde_json::from_slice(&body).unwrap_or(Value::Null)
    } else {
        let raw = if body.is_empty() {
            query.unwrap_or_default().into_bytes()
        } else {
            body.to_vec()
        };
        Value::Object(
            form_urlencoded::parse(&raw)
                .into_owned()
                .map(|(k, v)| (k, Value::String(v)))
                .collect(),
        )
    };
    let mut state = state.lock().expect("state");
    state.calls.push(Call {
        method: method.clone(),
        authorization: authorization.clone(),
        body: body.clone(),
    });
    if let Some(failure) = state
        .failures
        .get_mut(&method)
        .and_then(VecDeque::pop_front)
    {
        return match failure {
            Failure::RateLimited(seconds) => (
                StatusCode::TOO_MANY_REQUESTS,
                [("retry-after", seconds.to_string())],
                Json(json!({ "ok": false, "error": "ratelimited" })),
            )
                .into_response(),
            Failure::Api(code) => Json(json!({ "ok": false, "error": code })).into_response(),
        };
    }
    if method == "apps.connections.open" {
        if !authorization.starts_with("Bearer xapp-") {
            return Json(json!({ "ok": false, "error": "not_allowed_token_type" })).into_response();
        }
        let url = format!("{}/link", state.base.replace("http://", "ws://"));
        return Json(json!({ "ok": true, "url": url })).into_response();
    }
    if !authorization.starts_with("Bearer xoxb-") {
        return Json(json!({ "ok": false, "error": "invalid_auth" })).into_response();
    }
    let channel = body["channel"].as_str().unwrap_or_default().to_owned();
    let answer = match method.as_str() {
        "auth.test" => {
            json!({ "ok": true, "url": "https://acme.slack.com/", "team": "Acme", "user": "rollbot", "team_id": "T0ACME0001", "user_id": BOT_USER, "bot_id": "B0BOT00001" })
        }
        "conversations.info" => json!({ "ok": true, "channel": {
            "id": channel, "name": "releases", "created": 1_700_000_000, "is_channel": true,
            "is_member": !state.not_member.contains(&channel)
        }}),
        "usergroups.users.list" => {
            let group = body["usergroup"].as_str().unwrap_or_default();
            match state.groups.get(group) {
                Some(users) => json!({ "ok": true, "users": users }),
                None => json!({ "ok": false, "error": "no_such_subteam" }),
            }
        }
        "chat.postMessage" => {
            state.next_ts += 1;
            let ts = format!(
                "{}.{:06}",
                state.next_ts / 1_000_000,
                state.next_ts % 1_000_000
            );
            json!({ "ok": true, "channel": channel, "ts": ts, "message": { "type": "message", "ts": ts, "text": body["text"], "user": BOT_USER } })
        }
        "chat.update" => {
            json!({ "ok": true, "channel": channel, "ts": body["ts"], "text": body["text"], "message": { "text": body["text"], "user": BOT_USER } })
        }
        "chat.postEphemeral" => json!({ "ok": true, "message_ts": "1700000000.000001" }),
        "reactions.add" => json!({ "ok": true }),
        _ => json!({ "ok": false, "error": "unknown_method" }),
    };
    Json(answer).into_response()
}

async fn link(State(state): State<Shared>, upgrade: WebSocketUpgrade) -> Response {
    upgrade.on_upgrade(move |socket| connection(state, socket))
}

async fn connection(state: Shared, mut socket: WebSocket) {
    let hello = json!({ "type": "hello", "num_connections": 1, "debug_info": { "host": "fake" }, "connection_info": { "app_id": "A0APP00001" } });
    if socket
        .send(Message::Text(hello.to_string().into()))
        .await
        .is_err()
    {
        return;
    }
    let (tx, mut rx) = mpsc::unbounded_channel::<String>();
    state.lock().expect("state").connections.push(tx);
    loop {
        tokio::select! {
            outgoing = rx.recv() => match outgoing {
                Some(text) => if socket.send(Message::Text(text.into())).await.is_err() { break },
                None => break,
            },
            incoming = socket.recv() => match incoming {
                Some(Ok(Message::Text(text))) => {
                    if let Ok(value) = serde_json::from_str::<Value>(&text) {
                        if value.get("envelope_id").is_some() {
                            state.lock().expect("state").acks.push(value);
                        }
                    }
                }
                Some(Ok(Message::Ping(payload))) => { let _ = socket.send(Message::Pong(payload)).await; }
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
                Some(Ok(_)) => {}
            },
        }
    }
}

// ---- payloads as Slack sends them ---------------------------------------------------------

pub fn slash_command(envelope: &str, channel: &str, user: &str, text: &str) -> Value {
    json!({
        "envelope_id": envelope,
        "type": "slash_commands",
        "accepts_response_payload": true,
        "payload": {
            "token": "verification-token", "team_id": "T0ACME0001", "team_domain": "acme",
            "channel_id": channel, "channel_name": "releases", "user_id": user, "user_name": user.to_lowercase(),
            "command": "/rollback", "text": text, "api_app_id": "A0APP00001",
            "response_url": "https://hooks.slack.com/commands/T0ACME0001/1/x",
            "trigger_id": format!("trigger-{envelope}")
        }
    })
}

pub fn block_actions_payload(
    trigger: &str,
    channel: &str,
    user: &str,
    message_ts: &str,
    action: &str,
) -> Value {
    json!({
        "type": "block_actions",
        "team": { "id": "T0ACME0001", "domain": "acme" },
        "user": { "id": user, "username": user.to_lowercase(), "name": user.to_lowercase(), "team_id": "T0ACME0001" },
        "api_app_id": "A0APP00001",
        "token": "verification-token",
        "container": { "type": "message", "message_ts": message_ts, "channel_id": channel, "is_ephemeral": false },
        "trigger_id": trigger,
        "channel": { "id": channel, "name": "releases" },
        "response_url": "https://hooks.slack.com/actions/T0ACME0001/1/x",
        "actions": [{
            "action_id": action, "block_id": "b1", "type": "button", "value": action,
            "text": { "type": "plain_text", "text": "Approve" }, "action_ts": "1700000001.000100"
        }]
    })
}

pub fn button_click(
    envelope: &str,
    channel: &str,
    user: &str,
    message_ts: &str,
    action: &str,
) -> Value {
    json!({
        "envelope_id": envelope,
        "type": "interactive",
        "accepts_response_payload": false,
        "payload": block_actions_payload(&format!("trigger-{envelope}"), channel, user, message_ts, action)
    })
}

pub fn reaction_event(
    event_id: &str,
    channel: &str,
    user: &str,
    reaction: &str,
    message_ts: &str,
) -> Value {
    json!({
        "token": "verification-token",
        "team_id": "T0ACME0001",
        "api_app_id": "A0APP00001",
        "event": {
            "type": "reaction_added", "user": user, "reaction": reaction, "item_user": BOT_USER,
            "item": { "type": "message", "channel": channel, "ts": message_ts },
            "event_ts": "1700000002.000100"
        },
        "type": "event_callback",
        "event_id": event_id,
        "event_time": 1_700_000_002
    })
}

pub fn reaction(
    envelope: &str,
    channel: &str,
    user: &str,
    reaction: &str,
    message_ts: &str,
) -> Value {
    json!({
        "envelope_id": envelope,
        "type": "events_api",
        "accepts_response_payload": false,
        "retry_attempt": 0,
        "retry_reason": "",
        "payload": reaction_event(&format!("Ev{envelope}"), channel, user, reaction, message_ts)
    })
}
