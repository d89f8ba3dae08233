//! A loopback fake Slack. The Web API methods rollbot calls (`POST /api/<method>`, `{"ok": …}`
//! answers, 429 with `Retry-After`), and Socket Mode as Slack documents it:
//! `apps.connections.open` (app-level token only) answers a `ws://127.0.0.1…/link/?ticket=…`
//! URL whose ticket works for one handshake; each connection gets `hello`
//! (`num_connections`, `debug_info`) and server pings; envelopes not acknowledged within 3 s
//! are redelivered (same `envelope_id`, `retry_attempt` counting up, `retry_reason: "timeout"`,
//! as Slack does for `events_api`); and a connection can end the ways Slack ends one: a
//! `disconnect` frame (`refresh_requested`, `warning`, `link_disabled`), a close frame, or a
//! dropped TCP connection. It records every call, ack and connection so tests can assert what
//! rollbot did; failures can be injected per method.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, Query, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use axum::{Json, Router};
use serde_json::{json, Value};
use tokio::sync::mpsc;

pub use super::slack_payloads::*;
use super::HttpServer;

/// The app-level token the fake accepts (any other `xapp-` token is `invalid_auth`).
pub const APP_TOKEN: &str = "xapp-test-app-token";
/// Slack's acknowledgement deadline.
const ACK_DEADLINE: Duration = Duration::from_secs(3);
/// Slack retries an unacknowledged `events_api` envelope up to three times.
const MAX_RETRIES: u64 = 3;
const PING_EVERY: Duration = Duration::from_millis(250);
/// How long a connection stays open after `refresh_requested` or `warning`.
const REFRESH_GRACE: Duration = Duration::from_secs(10);

/// One Web API call as received.
#[derive(Debug, Clone)]
pub struct Call {
    pub method: String,
    pub authorization: String,
    pub body: Value,
}

/// An injected answer for a call of a method.
#[derive(Debug, Clone)]
pub enum Failure {
    /// HTTP 429 with `Retry-After: <seconds>`.
    RateLimited(u64),
    /// HTTP 200 `{"ok": false, "error": <code>}`.
    Api(&'static str),
}

/// What the fake does to a connection.
enum Control {
    Frame(Value),
    Hello,
    /// Send a `disconnect` frame, close the connection `after` that.
    Disconnect(&'static str, Duration),
    /// A close frame, then hang up.
    Close,
    /// Hang up without a close frame (a dropped connection).
    Drop,
}

struct Connection {
    id: u64,
    control: mpsc::UnboundedSender<Control>,
    said_hello: bool,
}

struct Pending {
    envelope: Value,
    sent: Instant,
    retries: u64,
}

#[derive(Default)]
struct FakeState {
    calls: Vec<Call>,
    next_ts: u64,
    acks: Vec<Value>,
    connections: Vec<Connection>,
    failures: HashMap<String, VecDeque<Failure>>,
    sticky_failures: HashMap<String, Failure>,
    not_member: HashSet<String>,
    groups: HashMap<String, Vec<String>>,
    base: String,
    /// Posted messages by ts, as Slack would hand them back.
    messages: HashMap<String, Value>,
    /// Ticket → used.
    tickets: HashMap<String, bool>,
    refused_handshakes: u64,
    opened: u64,
    /// Connections rollbot closed or hung up on (not the fake).
    closed_by_rollbot: Vec<u64>,
    hold_hello: bool,
    pongs: u64,
    pending: HashMap<String, Pending>,
    lose_acks: u32,
    /// Every envelope frame sent, redeliveries included.
    deliveries: Vec<Value>,
}

impl FakeState {
    /// The newest connection that said hello.
    fn ready_connection(&self) -> Option<&Connection> {
        self.connections.iter().rev().find(|c| c.said_hello)
    }

    fn deliver(&mut self, envelope: Value) -> bool {
        let Some(connection) = self.ready_connection() else {
            return false;
        };
        if connection
            .control
            .send(Control::Frame(envelope.clone()))
            .is_err()
        {
            return false;
        }
        self.deliveries.push(envelope);
        true
    }
}

pub struct FakeSlack {
    pub base: String,
    state: Arc<Mutex<FakeState>>,
    stop: Arc<AtomicBool>,
    redelivery: Option<std::thread::JoinHandle<()>>,
    /// Stopped after `drop` closed the Socket Mode connections (fields drop last).
    _server: HttpServer,
}

type Shared = Arc<Mutex<FakeState>>;

impl FakeSlack {
    pub fn start() -> FakeSlack {
        let state = Arc::new(Mutex::new(FakeState {
            next_ts: 1_700_000_000_000_100,
            ..FakeState::default()
        }));
        let app = Router::new()
            .route("/api/{method}", any(api))
            .route("/link/", get(link))
            .with_state(Arc::clone(&state));
        let server = HttpServer::start(app);
        // Before any request: apps.connections.open answers with a URL on this server.
        state.lock().expect("fake state").base = server.base.clone();
        let stop = Arc::new(AtomicBool::new(false));
        let redelivery = {
            let state = Arc::clone(&state);
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || redeliver(&state, &stop))
        };
        FakeSlack {
            base: server.base.clone(),
            state,
            stop,
            redelivery: Some(redelivery),
            _server: server,
        }
    }

    pub fn api_url(&self) -> String {
        format!("{}/api", self.base)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, FakeState> {
        self.state.lock().expect("fake state")
    }

    /// The next call of `method` fails this way (queued, one per call).
    pub fn fail_next(&self, method: &str, failure: Failure) {
        self.lock()
            .failures
            .entry(method.to_owned())
            .or_default()
            .push_back(failure);
    }

    /// Every call of `method` fails this way until [`FakeSlack::clear_failures`].
    pub fn fail_always(&self, method: &str, failure: Failure) {
        self.lock()
            .sticky_failures
            .insert(method.to_owned(), failure);
    }

    pub fn clear_failures(&self, method: &str) {
        let mut state = self.lock();
        state.sticky_failures.remove(method);
        state.failures.remove(method);
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

    /// A posted message (by its ts) as Slack hands it back in a `block_actions` payload.
    pub fn message(&self, ts: &str) -> Value {
        self.lock()
            .messages
            .get(ts)
            .cloned()
            .unwrap_or_else(|| panic!("no message was posted with ts {ts}"))
    }

    /// A click on `action` of the message `ts`, as an `interactive` envelope.
    pub fn click(
        &self,
        envelope: &str,
        channel: &str,
        user: &str,
        ts: &str,
        action: &str,
    ) -> Value {
        let payload = block_actions_payload(
            &format!("trigger-{envelope}"),
            channel,
            user,
            &self.message(ts),
            action,
        );
        interactive(envelope, payload)
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

    /// Waits (20 s) until `condition` holds.
    pub fn wait_until(&self, what: &str, condition: impl Fn(&FakeSlack) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while !condition(self) {
            assert!(Instant::now() < deadline, "timed out waiting until {what}");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Waits for a connection that said hello, sends `envelope` on it and waits for its ack
    /// (redeliveries included).
    pub fn send(&self, envelope: Value) -> Value {
        let id = envelope["envelope_id"]
            .as_str()
            .expect("envelope id")
            .to_owned();
        self.wait_until("a Socket Mode connection said hello", |slack| {
            let mut state = slack.lock();
            if !state.deliver(envelope.clone()) {
                return false;
            }
            state.pending.insert(
                id.clone(),
                Pending {
                    envelope: envelope.clone(),
                    sent: Instant::now(),
                    retries: 0,
                },
            );
            true
        });
        let deadline = Instant::now() + ACK_DEADLINE * (MAX_RETRIES as u32 + 2);
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

    /// The envelope frames sent with this id, redeliveries included.
    pub fn deliveries(&self, envelope_id: &str) -> Vec<Value> {
        self.lock()
            .deliveries
            .iter()
            .filter(|d| d["envelope_id"] == envelope_id)
            .cloned()
            .collect()
    }

    /// The next acknowledgement from rollbot is lost on the way (Slack redelivers).
    pub fn lose_next_ack(&self) {
        self.lock().lose_acks += 1;
    }

    /// New connections get no `hello` until [`FakeSlack::release_hello`].
    pub fn hold_hello(&self) {
        self.lock().hold_hello = true;
    }

    /// Sends `hello` on the connections waiting for it, and on new ones again.
    pub fn release_hello(&self) {
        let mut state = self.lock();
        state.hold_hello = false;
        for connection in state.connections.iter().filter(|c| !c.said_hello) {
            let _ = connection.control.send(Control::Hello);
        }
    }

    fn to_all(&self, control: impl Fn() -> Control) {
        for connection in &self.lock().connections {
            let _ = connection.control.send(control());
        }
    }

    /// `disconnect` with `refresh_requested`; Slack closes the connection 10 s later.
    pub fn refresh(&self) {
        self.to_all(|| Control::Disconnect("refresh_requested", REFRESH_GRACE));
    }

    /// `disconnect` with `warning`: Slack closes the connection 10 s later.
    pub fn warn_of_close(&self) {
        self.to_all(|| Control::Disconnect("warning", REFRESH_GRACE));
    }

    /// `disconnect` with `link_disabled` (Socket Mode turned off), then the close.
    pub fn link_disabled(&self) {
        self.to_all(|| Control::Disconnect("link_disabled", Duration::ZERO));
    }

    /// A close frame on every connection.
    pub fn close_connections(&self) {
        self.to_all(|| Control::Close);
    }

    /// Every connection dropped without a close frame.
    pub fn drop_connections(&self) {
        self.to_all(|| Control::Drop);
    }

    /// Connections opened so far (handshakes with a valid ticket).
    pub fn connections_opened(&self) -> u64 {
        self.lock().opened
    }

    /// Ids of the open connections that said hello.
    pub fn live_connections(&self) -> Vec<u64> {
        self.lock()
            .connections
            .iter()
            .filter(|c| c.said_hello)
            .map(|c| c.id)
            .collect()
    }

    pub fn closed_by_rollbot(&self) -> Vec<u64> {
        self.lock().closed_by_rollbot.clone()
    }

    /// URLs (tickets) `apps.connections.open` handed out.
    pub fn tickets_issued(&self) -> u64 {
        self.lock().tickets.len() as u64
    }

    /// Handshakes refused for a missing, unknown or used ticket.
    pub fn refused_handshakes(&self) -> u64 {
        self.lock().refused_handshakes
    }

    /// Pongs rollbot sent back to the fake's pings.
    pub fn pongs(&self) -> u64 {
        self.lock().pongs
    }
}

impl Drop for FakeSlack {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.redelivery.take() {
            let _ = thread.join();
        }
        // Closing the Socket Mode connections ends their WebSockets, so the server can stop.
        self.lock().connections.clear();
    }
}

/// Redelivers `events_api` envelopes not acknowledged within the deadline.
fn redeliver(state: &Shared, stop: &AtomicBool) {
    while !stop.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(50));
        let mut state = state.lock().expect("state");
        let due: Vec<String> = state
            .pending
            .iter()
            .filter(|(_, p)| {
                p.envelope["type"] == "events_api"
                    && p.retries < MAX_RETRIES
                    && p.sent.elapsed() >= ACK_DEADLINE
            })
            .map(|(id, _)| id.clone())
            .collect();
        for id in due {
            let Some(pending) = state.pending.get(&id) else {
                continue;
            };
            let mut again = pending.envelope.clone();
            let retries = pending.retries + 1;
            again["retry_attempt"] = json!(retries);
            again["retry_reason"] = json!("timeout");
            if state.deliver(again) {
                if let Some(pending) = state.pending.get_mut(&id) {
                    pending.retries = retries;
                    pending.sent = Instant::now();
                }
            }
        }
    }
}

fn failure_response(failure: Failure) -> Response {
    match failure {
        Failure::RateLimited(seconds) => (
            StatusCode::TOO_MANY_REQUESTS,
            [("retry-after", seconds.to_string())],
            Json(json!({ "ok": false, "error": "ratelimited" })),
        )
            .into_response(),
        Failure::Api(code) => Json(json!({ "ok": false, "error": code })).into_response(),
    }
}

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
    let failure = state
        .failures
        .get_mut(&method)
        .and_then(VecDeque::pop_front)
        .or_else(|| state.sticky_failures.get(&method).cloned());
    if let Some(failure) = failure {
        return failure_response(failure);
    }
    if method == "apps.connections.open" {
        let answer = match authorization.strip_prefix("Bearer ") {
            Some(APP_TOKEN) => {
                let ticket = format!("tk{:04}", state.tickets.len() + 1);
                state.tickets.insert(ticket.clone(), false);
                let url = format!(
                    "{}/link/?ticket={ticket}&app_id={APP_ID}",
                    state.base.replace("http://", "ws://")
                );
                json!({ "ok": true, "url": url })
            }
            Some(token) if token.starts_with("xapp-") => {
                json!({ "ok": false, "error": "invalid_auth" })
            }
            Some(_) => json!({ "ok": false, "error": "not_allowed_token_type" }),
            None => json!({ "ok": false, "error": "not_authed" }),
        };
        return Json(answer).into_response();
    }
    if !authorization.starts_with("Bearer xoxb-") {
        return Json(json!({ "ok": false, "error": "invalid_auth" })).into_response();
    }
    let channel = body["channel"].as_str().unwrap_or_default().to_owned();
    let answer = match method.as_str() {
        "auth.test" => {
            json!({ "ok": true, "url": "https://acme.slack.com/", "team": "Acme", "user": "rollbot", "team_id": TEAM, "user_id": BOT_USER, "bot_id": BOT_ID })
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
            let message = message_as_slack_returns(&ts, &body);
            state.messages.insert(ts.clone(), message.clone());
            json!({ "ok": true, "channel": channel, "ts": ts, "message": message })
        }
        "chat.update" => {
            let ts = body["ts"].as_str().unwrap_or_default().to_owned();
            let message = message_as_slack_returns(&ts, &body);
            state.messages.insert(ts.clone(), message.clone());
            json!({ "ok": true, "channel": channel, "ts": ts, "text": body["text"], "message": message })
        }
        "chat.postEphemeral" => json!({ "ok": true, "message_ts": "1700000000.000001" }),
        "reactions.add" => json!({ "ok": true }),
        _ => json!({ "ok": false, "error": "unknown_method" }),
    };
    Json(answer).into_response()
}

/// The Socket Mode handshake: only with a ticket `apps.connections.open` issued, once.
async fn link(
    State(state): State<Shared>,
    Query(query): Query<HashMap<String, String>>,
    upgrade: WebSocketUpgrade,
) -> Response {
    {
        let mut state = state.lock().expect("state");
        let ticket = query.get("ticket").cloned().unwrap_or_default();
        match state.tickets.get_mut(&ticket) {
            Some(used) if !*used => *used = true,
            _ => {
                state.refused_handshakes += 1;
                return (StatusCode::UNAUTHORIZED, "invalid_ticket\n").into_response();
            }
        }
    }
    upgrade.on_upgrade(move |socket| connection(state, socket))
}

async fn send(socket: &mut WebSocket, frame: &Value) -> bool {
    socket
        .send(Message::Text(frame.to_string().into()))
        .await
        .is_ok()
}

async fn connection(state: Shared, mut socket: WebSocket) {
    let (control, mut controls) = mpsc::unbounded_channel::<Control>();
    let (id, hold) = {
        let mut state = state.lock().expect("state");
        state.opened += 1;
        let id = state.opened;
        state.connections.push(Connection {
            id,
            control,
            said_hello: false,
        });
        (id, state.hold_hello)
    };
    let said_hello = |state: &Shared| {
        let mut state = state.lock().expect("state");
        let count = state.connections.len();
        if let Some(c) = state.connections.iter_mut().find(|c| c.id == id) {
            c.said_hello = true;
        }
        count
    };
    if !hold {
        let count = said_hello(&state);
        if !send(&mut socket, &hello(count)).await {
            return;
        }
    }
    let mut pings = tokio::time::interval(PING_EVERY);
    let mut close_at: Option<Instant> = None;
    loop {
        tokio::select! {
            control = controls.recv() => match control {
                Some(Control::Frame(frame)) => if !send(&mut socket, &frame).await { break },
                Some(Control::Hello) => {
                    let count = said_hello(&state);
                    if !send(&mut socket, &hello(count)).await { break }
                }
                Some(Control::Disconnect(reason, after)) => {
                    let count = state.lock().expect("state").connections.len();
                    if !send(&mut socket, &disconnect(reason, count)).await { break }
                    close_at = Some(Instant::now() + after);
                }
                Some(Control::Close) => {
                    let _ = socket.send(Message::Close(Some(axum::extract::ws::CloseFrame {
                        code: 1001,
                        reason: "going away".into(),
                    }))).await;
                    break;
                }
                Some(Control::Drop) | None => break,
            },
            _ = pings.tick() => {
                if close_at.is_some_and(|at| Instant::now() >= at) {
                    let _ = socket.send(Message::Close(None)).await;
                    break;
                }
                if socket.send(Message::Ping(b"fake-ping".to_vec().into())).await.is_err() { break }
            }
            incoming = socket.recv() => match incoming {
                Some(Ok(Message::Text(text))) => {
                    let Ok(value) = serde_json::from_str::<Value>(&text) else { continue };
                    let Some(envelope) = value["envelope_id"].as_str().map(str::to_owned) else { continue };
                    let mut state = state.lock().expect("state");
                    if state.lose_acks > 0 {
                        state.lose_acks -= 1;
                        continue;
                    }
                    state.pending.remove(&envelope);
                    state.acks.push(value);
                }
                Some(Ok(Message::Pong(_))) => state.lock().expect("state").pongs += 1,
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => {
                    state.lock().expect("state").closed_by_rollbot.push(id);
                    break;
                }
                Some(Ok(_)) => {}
            },
        }
    }
    state
        .lock()
        .expect("state")
        .connections
        .retain(|c| c.id != id);
}
