//! The fake's Gateway (v10, JSON text frames): HELLO on connect; IDENTIFY checked (token 4004,
//! unknown intents 4013, privileged intents not switched on 4014, twice 4005) and answered with
//! READY then GUILD_CREATE per guild (intent GUILDS); heartbeats answered with op 11; RESUME
//! replays what the session missed and sends RESUMED, or op 9 for an unknown session; other
//! frames before IDENTIFY close with 4003, unknown opcodes with 4001, undecodable ones 4002.
//! Also FakeDiscord's Gateway controls: dispatching on the newest session, the heartbeat
//! interval, privileged intents, waiting for a live session, what was received and sent,
//! closing the connections and op 7 RECONNECT.

use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{RawQuery, State};
use axum::response::Response;
use serde_json::{json, Value};
use serenity::all::GatewayIntents;
use tokio::sync::mpsc;

use super::{
    dispatch, guild_create, hello, ready, snowflake, timestamp, Connection, Control, FakeDiscord,
    FakeState, Identify, Session, Shared, BOT_ID, TOKEN,
};

/// GUILD_MEMBERS, GUILD_PRESENCES, MESSAGE_CONTENT.
const PRIVILEGED: u64 = (1 << 1) | (1 << 8) | (1 << 15);
const GUILDS: u64 = 1;

pub(super) async fn upgrade(
    State(state): State<Shared>,
    RawQuery(query): RawQuery,
    upgrade: WebSocketUpgrade,
) -> Response {
    upgrade.on_upgrade(move |socket| connection(state, socket, query))
}

/// What a frame from the bot calls for.
enum Outcome {
    Send(Vec<Value>),
    Close(u16, &'static str),
}

async fn send(socket: &mut WebSocket, frame: &Value) -> bool {
    socket
        .send(Message::Text(frame.to_string().into()))
        .await
        .is_ok()
}

async fn close(socket: &mut WebSocket, code: u16, reason: &'static str) {
    let _ = socket
        .send(Message::Close(Some(CloseFrame {
            code,
            reason: reason.into(),
        })))
        .await;
}

async fn connection(state: Shared, mut socket: WebSocket, query: Option<String>) {
    let (control, mut controls) = mpsc::unbounded_channel::<Control>();
    let (id, interval) = {
        let mut state = state.lock().expect("fake state");
        state.connections_opened += 1;
        let id = state.connections_opened;
        state.connections.push(Connection {
            id,
            control,
            session: None,
        });
        (id, state.heartbeat_interval)
    };
    let version = query
        .as_deref()
        .unwrap_or_default()
        .split('&')
        .find_map(|pair| pair.strip_prefix("v="))
        .map(str::to_owned);
    if version.as_deref().is_some_and(|v| v != "10") {
        close(&mut socket, 4012, "Invalid API version").await;
    } else if send(&mut socket, &hello(interval.as_millis() as u64)).await {
        serve(&state, id, &mut socket, &mut controls).await;
    }
    state.lock().expect("fake state").disconnect(id);
}

async fn serve(
    state: &Shared,
    id: u64,
    socket: &mut WebSocket,
    controls: &mut mpsc::UnboundedReceiver<Control>,
) {
    loop {
        tokio::select! {
            control = controls.recv() => match control {
                Some(Control::Frame(frame)) => if !send(socket, &frame).await { return },
                Some(Control::Close(code, reason)) => return close(socket, code, reason).await,
                None => return,
            },
            incoming = socket.recv() => {
                let outcome = match incoming {
                    Some(Ok(Message::Text(text))) => state.lock().expect("fake state").on_frame(id, &text),
                    Some(Ok(Message::Binary(_))) => Outcome::Close(4002, "Error while decoding payload."),
                    Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return,
                    Some(Ok(_)) => Outcome::Send(Vec::new()),
                };
                match outcome {
                    Outcome::Send(frames) => for frame in frames {
                        if !send(socket, &frame).await { return }
                    },
                    Outcome::Close(code, reason) => return close(socket, code, reason).await,
                }
            }
        }
    }
}

fn token_ok(token: &str) -> bool {
    token == TOKEN || token.strip_prefix("Bot ") == Some(TOKEN)
}

impl FakeState {
    fn disconnect(&mut self, connection: u64) {
        self.connections.retain(|c| c.id != connection);
        for session in &mut self.sessions {
            if session.connection == Some(connection) {
                session.connection = None;
            }
        }
    }

    fn on_frame(&mut self, connection: u64, text: &str) -> Outcome {
        let Ok(frame) = serde_json::from_str::<Value>(text) else {
            return Outcome::Close(4002, "Error while decoding payload.");
        };
        let identified = self
            .connections
            .iter()
            .any(|c| c.id == connection && c.session.is_some());
        let d = &frame["d"];
        match frame["op"].as_u64() {
            Some(1) => {
                self.heartbeats += 1;
                Outcome::Send(vec![json!({ "op": 11, "d": null, "s": null, "t": null })])
            }
            Some(2) if identified => Outcome::Close(4005, "Already authenticated."),
            Some(2) => self.identify(connection, d),
            Some(6) => self.resume(connection, d),
            Some(3 | 4 | 8 | 31) if identified => Outcome::Send(Vec::new()),
            Some(3 | 4 | 8 | 31) => Outcome::Close(4003, "Not authenticated."),
            _ => Outcome::Close(4001, "Unknown opcode."),
        }
    }

    fn identify(&mut self, connection: u64, d: &Value) -> Outcome {
        let token = d["token"].as_str().unwrap_or_default();
        if !token_ok(token) {
            return Outcome::Close(4004, "Authentication failed.");
        }
        let Some(intents) = d["intents"].as_u64() else {
            return Outcome::Close(4002, "Error while decoding payload.");
        };
        if intents & !GatewayIntents::all().bits() != 0 {
            return Outcome::Close(4013, "Invalid intent(s).");
        }
        if intents & PRIVILEGED & !self.privileged_intents != 0 {
            return Outcome::Close(4014, "Disallowed intent(s).");
        }
        let session_id = format!("{:032x}", u128::from(snowflake()) * 0x9e37_79b9_7f4a_7c15);
        self.identifies.push(Identify {
            token: token.to_owned(),
            intents,
            shard: d.get("shard").cloned(),
            properties: d["properties"].clone(),
            compress: d["compress"].as_bool().unwrap_or(false),
            session_id: session_id.clone(),
        });
        if let Some(c) = self.connections.iter_mut().find(|c| c.id == connection) {
            c.session = Some(session_id.clone());
        }
        self.sessions.push(Session {
            id: session_id.clone(),
            connection: Some(connection),
            seq: 0,
            intents,
            backlog: Vec::new(),
        });
        let index = self.sessions.len() - 1;
        let guild_ids: Vec<u64> = self
            .guilds
            .iter()
            .filter(|(_, g)| g.members.contains_key(&BOT_ID))
            .map(|(id, _)| *id)
            .collect();
        let resume_url = format!("{}/gateway", self.base.replace("http://", "ws://"));
        let ready = ready(&session_id, &resume_url, d.get("shard"), &guild_ids);
        self.send_dispatch(index, "READY", ready);
        if intents & GUILDS != 0 {
            for guild in guild_ids {
                let create = self.guild_create(guild);
                self.send_dispatch(index, "GUILD_CREATE", create);
            }
        }
        Outcome::Send(Vec::new())
    }

    fn guild_create(&self, id: u64) -> Value {
        let guild = &self.guilds[&id];
        let joined_at = guild.members[&BOT_ID].joined_at.clone();
        // Without GUILD_MEMBERS Discord sends the bot's own member only.
        let members = guild.member_json(BOT_ID).into_iter().collect();
        let (mut channels, mut threads) = (Vec::new(), Vec::new());
        for (channel_id, channel) in self.channels.iter().filter(|(_, c)| c.guild_id == id) {
            if channel.thread.is_some() {
                threads.push(channel.json(*channel_id));
            } else {
                channels.push(channel.json(*channel_id));
            }
        }
        guild_create(guild.json(id), &joined_at, members, channels, threads)
    }

    fn resume(&mut self, connection: u64, d: &Value) -> Outcome {
        if !token_ok(d["token"].as_str().unwrap_or_default()) {
            return Outcome::Close(4004, "Authentication failed.");
        }
        let wanted = d["session_id"].as_str().unwrap_or_default();
        let Some(index) = self.sessions.iter().position(|s| s.id == wanted) else {
            return Outcome::Send(vec![json!({ "op": 9, "d": false, "s": null, "t": null })]);
        };
        let seen = d["seq"].as_u64().unwrap_or(0);
        if let Some(c) = self.connections.iter_mut().find(|c| c.id == connection) {
            c.session = Some(wanted.to_owned());
        }
        let session = &mut self.sessions[index];
        session.connection = Some(connection);
        let missed: Vec<Value> = session
            .backlog
            .iter()
            .filter(|f| f["s"].as_u64().is_some_and(|s| s > seen))
            .cloned()
            .collect();
        self.resumes += 1;
        self.dispatched.extend(missed.iter().cloned());
        let trace = format!(
            "[\"gateway-prd-fake-1\",{{\"resumed_at\":\"{}\"}}]",
            timestamp()
        );
        let mut frames = missed;
        // RESUMED comes after the replay (numbered next in the session).
        let session = &mut self.sessions[index];
        session.seq += 1;
        let resumed = super::dispatch("RESUMED", session.seq, json!({ "_trace": [trace] }));
        session.backlog.push(resumed.clone());
        self.dispatched.push(resumed.clone());
        frames.push(resumed);
        Outcome::Send(frames)
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

impl FakeDiscord {
    /// Sends a dispatch on the newest session (waiting for one) unless the session's intents
    /// lack `intent` (0: always sent); false when it was filtered out.
    pub(super) fn dispatch(&self, event: &str, data: Value, intent: u64) -> bool {
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
