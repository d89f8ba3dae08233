//! A loopback fake Discord for running the production Discord adapter (serenity 0.12.5) against:
//! the REST API v10 under `/api/v10` (answers shaped as Discord documents them, errors with
//! Discord's codes, permission checks computed from roles and channel overwrites, a 429 as
//! Discord sends it) and the Gateway at `/gateway` (HELLO, IDENTIFY → READY and GUILD_CREATE,
//! heartbeats, RESUME with replay, close codes 4004/4013/4014). Interactions the fake built or
//! dispatched are known: one callback each, within the 3 s deadline, then follow-ups with the
//! token. Every REST call is recorded; failures can be injected per route pattern.

mod gateway;
mod rest;
mod tests;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::routing::{any, get};
use axum::Router;
use serde_json::{json, Value};
use serenity::all::Permissions;
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

    // ---- the world ----------------------------------------------------------------------

    /// Another guild the bot is in: `@everyone` with Discord's defaults, the bot as a member
    /// without roles, [`OWNER`] as owner.
    pub fn add_guild(&self, id: u64, name: &str) {
        let joined = timestamp();
        self.lock().guilds.insert(
            id,
            Guild {
                name: name.to_owned(),
                owner_id: OWNER,
                roles: vec![Role {
                    id,
                    name: "@everyone".to_owned(),
                    permissions: DEFAULT_EVERYONE,
                    position: 0,
                    managed: false,
                }],
                members: BTreeMap::from([(
                    BOT_ID,
                    Member {
                        username: "rollbot".to_owned(),
                        bot: true,
                        roles: Vec::new(),
                        joined_at: joined,
                    },
                )]),
            },
        );
    }

    pub fn add_role(&self, guild: u64, id: u64, name: &str, permissions: Permissions) {
        let mut state = self.lock();
        let guild = state.guilds.get_mut(&guild).expect("a configured guild");
        let position = guild.roles.len() as u64;
        guild.roles.push(Role {
            id,
            name: name.to_owned(),
            permissions: permissions.bits(),
            position,
            managed: false,
        });
    }

    /// Changes a role's permissions (`@everyone` is the role whose id is the guild's).
    pub fn set_role_permissions(&self, guild: u64, role: u64, permissions: Permissions) {
        let mut state = self.lock();
        let guild = state.guilds.get_mut(&guild).expect("a configured guild");
        let role = guild
            .roles
            .iter_mut()
            .find(|r| r.id == role)
            .expect("a configured role");
        role.permissions = permissions.bits();
    }

    pub fn add_member(&self, guild: u64, id: u64, username: &str, roles: &[u64]) {
        let joined = timestamp();
        let mut state = self.lock();
        let guild = state.guilds.get_mut(&guild).expect("a configured guild");
        guild.members.insert(
            id,
            Member {
                username: username.to_owned(),
                bot: false,
                roles: roles.to_vec(),
                joined_at: joined,
            },
        );
    }

    /// A member's roles ([`BOT_ID`] for the bot's own).
    pub fn set_member_roles(&self, guild: u64, user: u64, roles: &[u64]) {
        let mut state = self.lock();
        let guild = state.guilds.get_mut(&guild).expect("a configured guild");
        guild.members.get_mut(&user).expect("a member").roles = roles.to_vec();
    }

    /// The user leaves the guild; with [`BOT_ID`] the bot is no longer in it (its REST routes
    /// answer as for a guild the bot cannot see).
    pub fn remove_member(&self, guild: u64, user: u64) {
        let mut state = self.lock();
        let guild = state.guilds.get_mut(&guild).expect("a configured guild");
        guild.members.remove(&user);
    }

    pub fn add_channel(&self, guild: u64, id: u64, name: &str) {
        self.lock().channels.insert(
            id,
            Channel {
                guild_id: guild,
                name: name.to_owned(),
                kind: 0,
                parent_id: None,
                overwrites: Vec::new(),
                thread: None,
            },
        );
    }

    /// Sets (replaces) the channel's overwrite for a role or member.
    pub fn set_overwrite(
        &self,
        channel: u64,
        target: Target,
        allow: Permissions,
        deny: Permissions,
    ) {
        let (id, kind) = match target {
            Target::Role(id) => (id, 0),
            Target::Member(id) => (id, 1),
        };
        let mut state = self.lock();
        let channel = state
            .channels
            .get_mut(&channel)
            .expect("a configured channel");
        channel.overwrites.retain(|o| o.0 != id);
        channel
            .overwrites
            .push((id, kind, allow.bits(), deny.bits()));
    }

    /// Takes `permissions` away from the bot in one channel (a member overwrite).
    pub fn deny_bot(&self, channel: u64, permissions: Permissions) {
        self.set_overwrite(
            channel,
            Target::Member(BOT_ID),
            Permissions::empty(),
            permissions,
        );
    }

    /// A user's permissions in a channel as Discord computes them.
    pub fn permissions(&self, channel: u64, user: u64) -> Permissions {
        Permissions::from_bits_truncate(self.lock().permissions_in(channel, user))
    }

    // ---- failures and records -----------------------------------------------------------

    /// The next `times` calls matching `pattern` (`"PATCH /channels/*/messages/*"`: a method,
    /// or `*`, and a path whose `*` stands for one segment) get `failure` and do nothing.
    pub fn fail(&self, pattern: &str, failure: Failure, times: u32) {
        self.lock()
            .failures
            .push((pattern.to_owned(), failure, times));
    }

    pub fn clear_failures(&self) {
        self.lock().failures.clear();
    }

    pub fn calls(&self) -> Vec<Call> {
        self.lock().calls.clone()
    }

    /// The calls matching a route pattern (as for [`FakeDiscord::fail`]).
    pub fn calls_to(&self, pattern: &str) -> Vec<Call> {
        self.lock()
            .calls
            .iter()
            .filter(|c| route_matches(pattern, &c.method, &c.path))
            .cloned()
            .collect()
    }

    /// Waits (10 s) for a call matching `pattern` that satisfies `matches`.
    pub fn wait_for(&self, pattern: &str, what: &str, matches: impl Fn(&Call) -> bool) -> Call {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(call) = self.calls_to(pattern).into_iter().find(|c| matches(c)) {
                return call;
            }
            if Instant::now() > deadline {
                let seen: Vec<String> = self
                    .calls()
                    .iter()
                    .map(|c| format!("{} -> {} {}", c.route(), c.status, c.body))
                    .collect();
                panic!(
                    "timed out waiting for {pattern} ({what}); calls:\n{}",
                    seen.join("\n")
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Waits (20 s) until `condition` holds.
    pub fn wait_until(&self, what: &str, condition: impl Fn(&FakeDiscord) -> bool) {
        let deadline = Instant::now() + WAIT;
        while !condition(self) {
            assert!(Instant::now() < deadline, "timed out waiting until {what}");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// The visible messages of a channel or thread (not ephemeral, not deleted), oldest first,
    /// as they are now.
    pub fn messages(&self, channel: u64) -> Vec<Value> {
        self.lock()
            .messages
            .values()
            .filter(|m| m.channel_id == channel && !m.ephemeral && !m.deleted)
            .map(|m| m.json.clone())
            .collect()
    }

    /// A message as it is now (ephemeral ones included).
    pub fn message(&self, id: u64) -> Value {
        self.lock()
            .messages
            .get(&id)
            .map(|m| m.json.clone())
            .unwrap_or_else(|| panic!("no message {id}"))
    }

    /// The latest content of a message.
    pub fn content(&self, id: u64) -> String {
        self.message(id)["content"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    /// The thread started from a message, if any.
    pub fn thread(&self, message: u64) -> Option<Value> {
        self.lock()
            .channels
            .get(&message)
            .and_then(|c| c.thread.clone())
    }

    /// The commands registered for a guild (bulk overwrite or single creates).
    pub fn commands(&self, guild: u64) -> Vec<Value> {
        self.lock()
            .commands
            .get(&Some(guild))
            .cloned()
            .unwrap_or_default()
    }

    /// Every callback call for an interaction, refused ones included (see `status`).
    pub fn callbacks(&self, interaction: u64) -> Vec<Call> {
        self.calls_to(&format!("POST /interactions/{interaction}/*/callback"))
    }

    /// The accepted initial response (`{"type", "data"}`).
    pub fn response(&self, interaction: u64) -> Option<Value> {
        self.lock()
            .interactions
            .get(&interaction)
            .and_then(|k| k.response.clone())
    }

    /// The original response message (type 4/5), or the component's message (type 6/7).
    pub fn original(&self, interaction: u64) -> Option<Value> {
        let state = self.lock();
        let id = state.interactions.get(&interaction)?.original?;
        state.messages.get(&id).map(|m| m.json.clone())
    }

    /// Follow-up messages of an interaction as they are now (`flags` 64 = ephemeral).
    pub fn followups(&self, interaction: u64) -> Vec<Value> {
        let state = self.lock();
        let Some(known) = state.interactions.get(&interaction) else {
            return Vec::new();
        };
        known
            .followups
            .iter()
            .filter_map(|id| state.messages.get(id))
            .map(|m| m.json.clone())
            .collect()
    }

    /// How long after delivery an interaction may get its initial response (Discord: 3 s).
    pub fn set_ack_deadline(&self, deadline: Duration) {
        self.lock().ack_deadline = deadline;
    }

    /// The interaction token's 15 minutes are over: webhook calls get 401 50027.
    pub fn expire_token(&self, interaction: u64) {
        if let Some(known) = self.lock().interactions.get_mut(&interaction) {
            known.expired = true;
        }
    }

    // ---- interactions and reactions ------------------------------------------------------

    fn place_and_invoker(&self, channel: u64, user: u64) -> (Place, Invoker) {
        let state = self.lock();
        let guild_id = state
            .channels
            .get(&channel)
            .map(|c| c.guild_id)
            .unwrap_or_else(|| panic!("no channel {channel}"));
        let member = state
            .guilds
            .get(&guild_id)
            .and_then(|g| g.members.get(&user))
            .unwrap_or_else(|| panic!("{user} is not a member of guild {guild_id}"));
        let invoker = Invoker {
            id: user,
            username: member.username.clone(),
            roles: member.roles.clone(),
            permissions: state.permissions_in(channel, user),
        };
        let place = Place {
            guild_id,
            channel_id: channel,
            app_permissions: state.permissions_in(channel, BOT_ID),
        };
        (place, invoker)
    }

    /// Puts the channel as this world has it, and the registered command's id, into a
    /// built interaction; the fake then knows it.
    fn finish(&self, mut interaction: Value) -> Value {
        let channel = id_of(&interaction["channel_id"]);
        {
            let state = self.lock();
            if let Some(c) = state.channels.get(&channel) {
                interaction["channel"]["name"] = json!(c.name);
                interaction["channel"]["type"] = json!(c.kind);
                if let Some(parent) = c.parent_id {
                    interaction["channel"]["parent_id"] = json!(parent.to_string());
                }
            }
            let guild = interaction["guild_id"]
                .as_str()
                .and_then(|g| g.parse().ok());
            let name = interaction["data"]["name"].as_str().unwrap_or_default();
            let registered = state
                .commands
                .get(&guild)
                .into_iter()
                .chain(state.commands.get(&None))
                .flatten()
                .find(|c| c["name"] == name)
                .map(|c| c["id"].clone());
            if let Some(id) = registered {
                interaction["data"]["id"] = id;
            }
        }
        self.register_interaction(&interaction);
        interaction
    }

    /// `/rollback <subcommand> [options]` typed by `user` in `channel`.
    pub fn command(
        &self,
        user: u64,
        channel: u64,
        subcommand: &str,
        options: &[(&str, &str)],
    ) -> Value {
        let (place, invoker) = self.place_and_invoker(channel, user);
        self.finish(command_interaction(&place, &invoker, subcommand, options))
    }

    /// Autocomplete while `user` types option `focused`.
    pub fn autocomplete(
        &self,
        user: u64,
        channel: u64,
        subcommand: &str,
        options: &[(&str, &str)],
        focused: &str,
    ) -> Value {
        let (place, invoker) = self.place_and_invoker(channel, user);
        self.finish(autocomplete_interaction(
            &place, &invoker, subcommand, options, focused,
        ))
    }

    /// `user` clicks button `custom_id` on a message the bot posted (the interaction carries
    /// the message as it is now).
    pub fn click(&self, user: u64, message: u64, custom_id: &str) -> Value {
        let message = self.message(message);
        let channel = id_of(&message["channel_id"]);
        let (place, invoker) = self.place_and_invoker(channel, user);
        self.finish(button_interaction(&place, &invoker, &message, custom_id))
    }

    /// `user` reacts with `emoji` to a message the bot posted (MESSAGE_REACTION_ADD payload).
    pub fn reaction(&self, user: u64, message: u64, emoji: &str) -> Value {
        let message = self.message(message);
        let channel = id_of(&message["channel_id"]);
        let (place, invoker) = self.place_and_invoker(channel, user);
        reaction_add(
            &place,
            &invoker,
            id_of(&message["id"]),
            id_of(&message["author"]["id"]),
            emoji,
        )
    }

    /// The fake knows an interaction (its id and token) from now on, e.g. one a test POSTs to
    /// an interactions endpoint itself. Knowing it again changes nothing.
    pub fn register_interaction(&self, interaction: &Value) {
        let id = id_of(&interaction["id"]);
        let known = Known {
            token: interaction["token"]
                .as_str()
                .expect("an interaction token")
                .to_owned(),
            kind: interaction["type"].as_u64().expect("an interaction type"),
            channel_id: id_of(&interaction["channel_id"]),
            guild_id: interaction["guild_id"]
                .as_str()
                .and_then(|g| g.parse().ok()),
            message_id: interaction["message"]["id"]
                .as_str()
                .and_then(|m| m.parse().ok()),
            name: interaction["data"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
            user: interaction["member"]["user"].clone(),
            registered: Instant::now(),
            delivered: false,
            response: None,
            original: None,
            loading: false,
            followups: Vec::new(),
            expired: false,
        };
        self.lock().interactions.entry(id).or_insert(known);
    }

    /// Sends `INTERACTION_CREATE` on the newest session (waiting for one); sending the same
    /// interaction again is a duplicate delivery.
    pub fn dispatch_interaction(&self, interaction: &Value) {
        self.register_interaction(interaction);
        self.dispatch("INTERACTION_CREATE", interaction.clone(), 0);
        let id = id_of(&interaction["id"]);
        if let Some(known) = self.lock().interactions.get_mut(&id) {
            if !known.delivered {
                known.delivered = true;
                known.registered = Instant::now();
            }
        }
    }

    /// Sends `MESSAGE_REACTION_ADD` on the newest session (waiting for one), if the session's
    /// intents include GUILD_MESSAGE_REACTIONS (DIRECT_MESSAGE_REACTIONS outside guilds), as
    /// Discord does; false when it was filtered out.
    pub fn dispatch_reaction(&self, reaction: &Value) -> bool {
        let intent = if reaction["guild_id"].is_string() {
            1 << 10
        } else {
            1 << 13
        };
        self.dispatch("MESSAGE_REACTION_ADD", reaction.clone(), intent)
    }

    fn dispatch(&self, event: &str, data: Value, intent: u64) -> bool {
        self.wait_until("the bot identified on the Gateway", |fake| {
            !fake.lock().sessions.is_empty()
        });
        let mut state = self.lock();
        let index = state.sessions.len() - 1;
        if intent != 0 && state.sessions[index].intents & intent == 0 {
            return false;
        }
        state.send_dispatch(index, event, data);
        true
    }

    // ---- the Gateway ---------------------------------------------------------------------

    /// HELLO's `heartbeat_interval` for new connections.
    pub fn set_heartbeat_interval(&self, interval: Duration) {
        self.lock().heartbeat_interval = interval;
    }

    /// Privileged intents (GUILD_MEMBERS, GUILD_PRESENCES, MESSAGE_CONTENT) switched on in the
    /// developer portal; others in IDENTIFY close the connection with 4014.
    pub fn allow_privileged_intents(&self, intents: u64) {
        self.lock().privileged_intents = intents;
    }

    /// Waits (20 s) until a session is live (READY sent on an open connection); its IDENTIFY.
    pub fn wait_connected(&self) -> Identify {
        self.wait_until("the bot is connected to the Gateway", |fake| {
            fake.lock().live_session().is_some()
        });
        let state = self.lock();
        let session = state.live_session().expect("a live session");
        state
            .identifies
            .iter()
            .find(|i| i.session_id == session)
            .cloned()
            .expect("the session's IDENTIFY")
    }

    pub fn identifies(&self) -> Vec<Identify> {
        self.lock().identifies.clone()
    }

    /// Sessions resumed (RESUME accepted).
    pub fn resumes(&self) -> u64 {
        self.lock().resumes
    }

    /// Heartbeats received (each answered with op 11).
    pub fn heartbeats(&self) -> u64 {
        self.lock().heartbeats
    }

    pub fn connections_opened(&self) -> u64 {
        self.lock().connections_opened
    }

    /// Every dispatch frame sent (`{"op":0,"t","s","d"}`), replays included.
    pub fn dispatched(&self) -> Vec<Value> {
        self.lock().dispatched.clone()
    }

    /// Closes every Gateway connection with `code` (e.g. 4000: the bot should resume).
    pub fn close_gateway(&self, code: u16) {
        for connection in &self.lock().connections {
            let _ = connection
                .control
                .send(Control::Close(code, "closed by the fake"));
        }
    }

    /// Sends op 7 RECONNECT on every connection.
    pub fn request_reconnect(&self) {
        for connection in &self.lock().connections {
            let _ = connection.control.send(Control::Frame(
                json!({ "op": 7, "d": null, "s": null, "t": null }),
            ));
        }
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

impl FakeState {
    /// Discord's permission computation: `@everyone` and role permissions, ADMINISTRATOR and
    /// the owner get everything; then the channel's (a thread's parent's) overwrites:
    /// `@everyone`, the member's roles together, the member; no VIEW_CHANNEL, nothing.
    fn permissions_in(&self, channel: u64, user: u64) -> u64 {
        let all = Permissions::all().bits();
        let Some(mut channel) = self.channels.get(&channel) else {
            return 0;
        };
        if let Some(parent) = channel.parent_id.and_then(|p| self.channels.get(&p)) {
            channel = parent;
        }
        let guild_id = channel.guild_id;
        let Some(guild) = self.guilds.get(&guild_id) else {
            return 0;
        };
        if guild.owner_id == user {
            return all;
        }
        let Some(member) = guild.members.get(&user) else {
            return 0;
        };
        let role = |id: u64| guild.roles.iter().find(|r| r.id == id);
        let mut permissions = role(guild_id).map_or(0, |r| r.permissions);
        for id in &member.roles {
            permissions |= role(*id).map_or(0, |r| r.permissions);
        }
        if permissions & Permissions::ADMINISTRATOR.bits() != 0 {
            return all;
        }
        let overwrite = |id: u64| channel.overwrites.iter().find(|o| o.0 == id);
        if let Some((_, _, allow, deny)) = overwrite(guild_id) {
            permissions = (permissions & !deny) | allow;
        }
        let (mut allow, mut deny) = (0, 0);
        for id in &member.roles {
            if let Some((_, 0, a, d)) = overwrite(*id) {
                allow |= a;
                deny |= d;
            }
        }
        permissions = (permissions & !deny) | allow;
        if let Some((_, 1, allow, deny)) = overwrite(user) {
            permissions = (permissions & !deny) | allow;
        }
        if permissions & Permissions::VIEW_CHANNEL.bits() == 0 {
            return 0;
        }
        permissions
    }

    /// The newest session with an open connection.
    fn live_session(&self) -> Option<String> {
        self.sessions
            .iter()
            .rev()
            .find(|s| s.connection.is_some())
            .map(|s| s.id.clone())
    }

    /// Numbers and records a dispatch on a session; sends it if the session has a connection.
    fn send_dispatch(&mut self, session: usize, event: &str, data: Value) {
        let session = &mut self.sessions[session];
        session.seq += 1;
        let frame = dispatch(event, session.seq, data);
        session.backlog.push(frame.clone());
        if let Some(connection) = session.connection {
            if let Some(c) = self.connections.iter().find(|c| c.id == connection) {
                let _ = c.control.send(Control::Frame(frame.clone()));
            }
        }
        self.dispatched.push(frame);
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
