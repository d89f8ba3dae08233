//! A loopback fake Discord for running the production Discord adapter (serenity 0.12.5) against:
//! the REST API v10 under `/api/v10` (answers shaped as Discord documents them, errors with
//! Discord's codes, permission checks computed from roles and channel overwrites, a 429 as
//! Discord sends it) and the Gateway at `/gateway` (HELLO, IDENTIFY → READY and GUILD_CREATE,
//! heartbeats, RESUME with replay, close codes 4004/4013/4014). Interactions the fake built or
//! dispatched are known: one callback each, within the 3 s deadline, then follow-ups with the
//! token. Every REST call is recorded; failures can be injected per route pattern.
//!
//! This file holds the fake's state and starts it; `world.rs` sets up guilds, roles, members,
//! channels and computes permissions; `records.rs` injects failures and reads back what was
//! recorded; `interactions.rs` builds and dispatches interactions and reactions; `rest.rs`
//! and `gateway.rs` serve the REST API and the Gateway (with the Gateway's controls).

mod gateway;
mod interactions;
mod records;
mod rest;
mod tests;
mod world;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::routing::{any, get};
use axum::Router;
use serde_json::{json, Value};
use tokio::sync::mpsc;

pub use super::discord_payloads::*;
use super::HttpServer;

/// Discord's default `heartbeat_interval` (HELLO); tests may shorten it.
const HEARTBEAT_INTERVAL: Duration = Duration::from_millis(41_250);
/// The initial response to an interaction must come within 3 s.
const ACK_DEADLINE: Duration = Duration::from_secs(3);
const WAIT: Duration = Duration::from_secs(20);

/// One REST call as received (the path relative to `/api/v10`, percent-decoded).
#[derive(Debug, Clone)]
pub struct Call {
    pub method: String,
    pub path: String,
    /// The JSON body (`null` when there was none).
    pub body: Value,
    pub authorization: Option<String>,
    /// The status the fake answered with.
    pub status: u16,
}

impl Call {
    /// `"PATCH /channels/1/messages/2"`.
    pub fn route(&self) -> String {
        format!("{} {}", self.method, self.path)
    }
}

/// An injected answer for calls matching a route pattern.
#[derive(Debug, Clone)]
pub enum Failure {
    /// A per-route 429: body `{"message", "retry_after", "global": false}`, headers
    /// `Retry-After`, `X-RateLimit-Scope: user`, `X-RateLimit-Reset-After`, …
    RateLimited { retry_after_ms: u64 },
    /// The global limit: `"global": true`, `X-RateLimit-Global: true`, scope `global`.
    GlobalRateLimited { retry_after_ms: u64 },
    /// Any Discord error: `status` with `{"code": code, "message": message}`.
    Api {
        status: u16,
        code: u64,
        message: &'static str,
    },
}

/// The bot's IDENTIFY as received.
#[derive(Debug, Clone)]
pub struct Identify {
    pub token: String,
    pub intents: u64,
    pub shard: Option<Value>,
    pub properties: Value,
    pub compress: bool,
    pub session_id: String,
}

/// Whom a channel permission overwrite is for.
#[derive(Debug, Clone, Copy)]
pub enum Target {
    Role(u64),
    Member(u64),
}

struct Role {
    id: u64,
    name: String,
    permissions: u64,
    position: u64,
    managed: bool,
}

struct Member {
    username: String,
    bot: bool,
    roles: Vec<u64>,
    joined_at: String,
}

struct Guild {
    name: String,
    owner_id: u64,
    roles: Vec<Role>,
    members: BTreeMap<u64, Member>,
}

impl Guild {
    fn json(&self, id: u64) -> Value {
        let roles = self
            .roles
            .iter()
            .map(|r| {
                let mut role = if r.managed {
                    bot_role(r.id, r.permissions, r.position)
                } else {
                    role(id, r.id, &r.name, r.permissions, r.position)
                };
                if r.id != id {
                    role["name"] = json!(r.name);
                }
                role
            })
            .collect();
        guild(id, &self.name, self.owner_id, roles)
    }

    fn member_json(&self, id: u64) -> Option<Value> {
        self.members
            .get(&id)
            .map(|m| member(id, &m.username, m.bot, &m.roles, &m.joined_at))
    }
}

struct Channel {
    guild_id: u64,
    name: String,
    /// 0 = text, 11 = public thread.
    kind: u8,
    parent_id: Option<u64>,
    /// (id, type 0 role / 1 member, allow, deny)
    overwrites: Vec<(u64, u8, u64, u64)>,
    /// A thread's channel object (created by the REST call).
    thread: Option<Value>,
}

impl Channel {
    fn json(&self, id: u64) -> Value {
        if let Some(thread) = &self.thread {
            return thread.clone();
        }
        let overwrites = self
            .overwrites
            .iter()
            .map(|(id, kind, allow, deny)| overwrite(*id, *kind, *allow, *deny))
            .collect();
        text_channel(id, self.guild_id, &self.name, overwrites)
    }
}

struct Stored {
    json: Value,
    channel_id: u64,
    ephemeral: bool,
    deleted: bool,
}

/// An interaction the fake built or dispatched.
struct Known {
    token: String,
    /// Interaction type: 2 command, 3 component, 4 autocomplete, 5 modal.
    kind: u64,
    channel_id: u64,
    guild_id: Option<u64>,
    /// The message a component was on.
    message_id: Option<u64>,
    name: String,
    user: Value,
    /// Since when the 3 s run: the first delivery (or when the fake learnt of it).
    registered: Instant,
    delivered: bool,
    /// The accepted callback (`{type, data}`).
    response: Option<Value>,
    original: Option<u64>,
    /// A type-5 defer not edited yet (the first follow-up edits it).
    loading: bool,
    followups: Vec<u64>,
    expired: bool,
}

enum Control {
    Frame(Value),
    Close(u16, &'static str),
}

struct Connection {
    id: u64,
    control: mpsc::UnboundedSender<Control>,
    session: Option<String>,
}

struct Session {
    id: String,
    connection: Option<u64>,
    seq: u64,
    intents: u64,
    /// Every dispatch of the session, for RESUME.
    backlog: Vec<Value>,
}

struct FakeState {
    base: String,
    calls: Vec<Call>,
    failures: Vec<(String, Failure, u32)>,
    guilds: BTreeMap<u64, Guild>,
    channels: BTreeMap<u64, Channel>,
    messages: BTreeMap<u64, Stored>,
    /// Registered commands by guild (`None`: global).
    commands: HashMap<Option<u64>, Vec<Value>>,
    interactions: HashMap<u64, Known>,
    ack_deadline: Duration,
    heartbeat_interval: Duration,
    privileged_intents: u64,
    connections: Vec<Connection>,
    connections_opened: u64,
    sessions: Vec<Session>,
    identifies: Vec<Identify>,
    resumes: u64,
    heartbeats: u64,
    dispatched: Vec<Value>,
}

type Shared = Arc<Mutex<FakeState>>;

pub struct FakeDiscord {
    /// `http://127.0.0.1:<port>`: what `HttpBuilder::proxy` takes.
    pub base: String,
    state: Shared,
    /// Stopped after `drop` closed the Gateway connections (fields drop last).
    _server: HttpServer,
}

impl std::fmt::Debug for FakeDiscord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeDiscord")
            .field("base", &self.base)
            .finish()
    }
}

impl FakeDiscord {
    /// A fake with one guild ([`GUILD`], owner [`OWNER`]): roles `@everyone` (Discord's
    /// defaults), [`APPROVERS`] (no permissions) and the bot's managed [`BOT_ROLE`]
    /// ([`DEFAULT_BOT`]); members the bot, [`ALICE`] (approver) and [`BOB`]; channel
    /// [`CHANNEL`] (`#releases`, no overwrites).
    pub fn start() -> FakeDiscord {
        let joined = timestamp();
        let guild = Guild {
            name: "Acme".to_owned(),
            owner_id: OWNER,
            roles: vec![
                Role {
                    id: GUILD,
                    name: "@everyone".to_owned(),
                    permissions: DEFAULT_EVERYONE,
                    position: 0,
                    managed: false,
                },
                Role {
                    id: APPROVERS,
                    name: "release-approvers".to_owned(),
                    permissions: 0,
                    position: 1,
                    managed: false,
                },
                Role {
                    id: BOT_ROLE,
                    name: "rollbot".to_owned(),
                    permissions: DEFAULT_BOT,
                    position: 2,
                    managed: true,
                },
            ],
            members: [
                (BOT_ID, "rollbot", true, vec![BOT_ROLE]),
                (OWNER, "owner", false, vec![]),
                (ALICE, "alice", false, vec![APPROVERS]),
                (BOB, "bob", false, vec![]),
            ]
            .into_iter()
            .map(|(id, name, bot, roles)| {
                (
                    id,
                    Member {
                        username: name.to_owned(),
                        bot,
                        roles,
                        joined_at: joined.clone(),
                    },
                )
            })
            .collect(),
        };
        let channel = Channel {
            guild_id: GUILD,
            name: "releases".to_owned(),
            kind: 0,
            parent_id: None,
            overwrites: Vec::new(),
            thread: None,
        };
        let state = Arc::new(Mutex::new(FakeState {
            base: String::new(),
            calls: Vec::new(),
            failures: Vec::new(),
            guilds: BTreeMap::from([(GUILD, guild)]),
            channels: BTreeMap::from([(CHANNEL, channel)]),
            messages: BTreeMap::new(),
            commands: HashMap::new(),
            interactions: HashMap::new(),
            ack_deadline: ACK_DEADLINE,
            heartbeat_interval: HEARTBEAT_INTERVAL,
            privileged_intents: 0,
            connections: Vec::new(),
            connections_opened: 0,
            sessions: Vec::new(),
            identifies: Vec::new(),
            resumes: 0,
            heartbeats: 0,
            dispatched: Vec::new(),
        }));
        let app = Router::new()
            .route("/api/v10/{*rest}", any(rest::handle))
            .route("/gateway", get(gateway::upgrade))
            .with_state(Arc::clone(&state));
        let server = HttpServer::start(app);
        state.lock().expect("fake state").base = server.base.clone();
        FakeDiscord {
            base: server.base.clone(),
            state,
            _server: server,
        }
    }

    /// `ws://127.0.0.1:<port>/gateway`, what `GET /gateway` answers.
    pub fn gateway_url(&self) -> String {
        format!("{}/gateway", self.base.replace("http://", "ws://"))
    }

    fn lock(&self) -> MutexGuard<'_, FakeState> {
        self.state.lock().expect("fake state")
    }
}

impl Drop for FakeDiscord {
    fn drop(&mut self) {
        // Ending the Gateway connections lets the server stop.
        if let Ok(mut state) = self.state.lock() {
            state.connections.clear();
        }
    }
}

/// A snowflake as Discord writes it (a string).
fn id_of(value: &Value) -> u64 {
    value
        .as_str()
        .and_then(|s| s.parse().ok())
        .or_else(|| value.as_u64())
        .unwrap_or_else(|| panic!("not a snowflake: {value}"))
}

/// `"PATCH /channels/*/messages/*"` against a method and a path.
fn route_matches(pattern: &str, method: &str, path: &str) -> bool {
    let (want_method, want_path) = pattern.split_once(' ').unwrap_or(("*", pattern));
    if want_method != "*" && !want_method.eq_ignore_ascii_case(method) {
        return false;
    }
    let want: Vec<&str> = want_path.trim_matches('/').split('/').collect();
    let got: Vec<&str> = path.trim_matches('/').split('/').collect();
    want.len() == got.len() && want.iter().zip(&got).all(|(w, g)| *w == "*" || w == g)
}
