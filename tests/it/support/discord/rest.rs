//! The fake's REST API v10: routing, the bot token check, injected failures, Discord's error
//! replies, and the guild, member and channel reads with their access checks. The route
//! families are in `rest/`: messages, reactions and threads (`messages.rs`), commands
//! (`commands.rs`), the interaction callback and webhook (`interactions.rs`).

mod commands;
mod interactions;
mod messages;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};
use serenity::all::Permissions;

use super::{bot_user, form_error, route_matches, Call, Failure, FakeState, Shared, BOT_ID, TOKEN};

/// Message flags.
const SUPPRESS_EMBEDS: u64 = 1 << 2;
const HAS_THREAD: u64 = 1 << 5;
const EPHEMERAL: u64 = 1 << 6;
const LOADING: u64 = 1 << 7;
const SUPPRESS_NOTIFICATIONS: u64 = 1 << 12;

/// An answer, kept as data so the call can be recorded with its status.
#[derive(Debug, Clone)]
pub(super) struct Reply {
    status: u16,
    body: Option<Value>,
    headers: Vec<(&'static str, String)>,
}

impl Reply {
    fn json(status: u16, body: Value) -> Reply {
        Reply {
            status,
            body: Some(body),
            headers: Vec::new(),
        }
    }

    fn ok(body: Value) -> Reply {
        Reply::json(200, body)
    }

    fn empty() -> Reply {
        Reply {
            status: 204,
            body: None,
            headers: Vec::new(),
        }
    }

    fn error(status: u16, code: u64, message: &str) -> Reply {
        Reply::json(status, super::error(code, message))
    }

    fn form(path: &str, code: &str, message: &str) -> Reply {
        Reply::json(400, form_error(path, code, message))
    }

    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut response = match self.body {
            Some(body) => (status, Json(body)).into_response(),
            None => status.into_response(),
        };
        for (name, value) in self.headers {
            if let Ok(value) = HeaderValue::from_str(&value) {
                response
                    .headers_mut()
                    .insert(HeaderName::from_static(name), value);
            }
        }
        response
    }
}

type Result<T> = std::result::Result<T, Reply>;

fn unknown_message() -> Reply {
    Reply::error(404, 10008, "Unknown Message")
}

fn unknown_interaction() -> Reply {
    Reply::error(404, 10062, "Unknown interaction")
}

fn invalid_webhook_token() -> Reply {
    Reply::error(401, 50027, "Invalid Webhook Token")
}

fn empty_message() -> Reply {
    Reply::error(400, 50006, "Cannot send an empty message")
}

/// A snowflake path segment; Discord's form error otherwise.
fn snowflake_of(segment: &str, field: &str) -> Result<u64> {
    segment.parse().map_err(|_| {
        Reply::form(
            field,
            "NUMBER_TYPE_COERCE",
            &format!("Value \"{segment}\" is not snowflake."),
        )
    })
}

fn percent_decode(segment: &str) -> String {
    let hex = |b: u8| (b as char).to_digit(16);
    let bytes = segment.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let (Some(high), Some(low)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                out.push((high * 16 + low) as u8);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn failure_reply(failure: &Failure) -> Reply {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or_default();
    match failure {
        Failure::RateLimited { retry_after_ms } => {
            let seconds = *retry_after_ms as f64 / 1000.0;
            let mut reply = Reply::json(
                429,
                json!({ "message": "You are being rate limited.", "retry_after": seconds, "global": false }),
            );
            reply.headers = vec![
                ("retry-after", (seconds.ceil() as u64).to_string()),
                ("x-ratelimit-limit", "5".to_owned()),
                ("x-ratelimit-remaining", "0".to_owned()),
                ("x-ratelimit-reset", format!("{:.3}", now + seconds)),
                ("x-ratelimit-reset-after", format!("{seconds:.3}")),
                (
                    "x-ratelimit-bucket",
                    "0a1b2c3d4e5f60718293a4b5c6d7e8f9".to_owned(),
                ),
                ("x-ratelimit-scope", "user".to_owned()),
            ];
            reply
        }
        Failure::GlobalRateLimited { retry_after_ms } => {
            let seconds = *retry_after_ms as f64 / 1000.0;
            let mut reply = Reply::json(
                429,
                json!({ "message": "You are being rate limited.", "retry_after": seconds, "global": true }),
            );
            reply.headers = vec![
                ("retry-after", (seconds.ceil() as u64).to_string()),
                ("x-ratelimit-global", "true".to_owned()),
                ("x-ratelimit-scope", "global".to_owned()),
            ];
            reply
        }
        Failure::Api {
            status,
            code,
            message,
        } => Reply::error(*status, *code, message),
    }
}

pub(super) async fn handle(
    State(state): State<Shared>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let raw = uri.path().strip_prefix("/api/v10").unwrap_or(uri.path());
    let segments: Vec<String> = raw
        .trim_start_matches('/')
        .split('/')
        .map(percent_decode)
        .collect();
    let path = format!("/{}", segments.join("/"));
    let authorization = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let multipart = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| t.starts_with("multipart/"));
    let parsed: Result<Value> = if body.is_empty() {
        Ok(Value::Null)
    } else if multipart {
        Err(Reply::error(
            400,
            0,
            "fake Discord: multipart bodies (file uploads) are not supported",
        ))
    } else {
        serde_json::from_slice(&body)
            .map_err(|_| Reply::error(400, 50109, "The request body contains invalid JSON."))
    };
    let segments: Vec<&str> = segments.iter().map(String::as_str).collect();
    let mut state = state.lock().expect("fake state");
    let reply = match state.take_failure(method.as_str(), &path) {
        Some(failure) => failure_reply(&failure),
        None => match &parsed {
            Err(refused) => refused.clone(),
            Ok(body) => state
                .route(method.as_str(), &segments, body, authorization.as_deref())
                .unwrap_or_else(|refused| refused),
        },
    };
    state.calls.push(Call {
        method: method.to_string(),
        path,
        body: parsed.unwrap_or(Value::Null),
        authorization,
        status: reply.status,
    });
    reply.into_response()
}

impl FakeState {
    fn take_failure(&mut self, method: &str, path: &str) -> Option<Failure> {
        let index = self
            .failures
            .iter()
            .position(|(pattern, _, left)| *left > 0 && route_matches(pattern, method, path))?;
        let entry = &mut self.failures[index];
        entry.2 -= 1;
        let failure = entry.1.clone();
        if entry.2 == 0 {
            self.failures.remove(index);
        }
        Some(failure)
    }

    fn route(
        &mut self,
        method: &str,
        segments: &[&str],
        body: &Value,
        authorization: Option<&str>,
    ) -> Result<Reply> {
        let public = matches!(
            segments,
            ["gateway"] | ["interactions", ..] | ["webhooks", ..]
        );
        if !public && authorization != Some(format!("Bot {TOKEN}").as_str()) {
            return Err(Reply::error(401, 0, "401: Unauthorized"));
        }
        let gateway = format!("{}/gateway", self.base.replace("http://", "ws://"));
        match (method, segments) {
            ("GET", ["gateway"]) => Ok(Reply::ok(json!({ "url": gateway }))),
            ("GET", ["gateway", "bot"]) => Ok(Reply::ok(json!({
                "url": gateway, "shards": 1,
                "session_start_limit": { "total": 1000, "remaining": 999, "reset_after": 14_400_000, "max_concurrency": 1 }
            }))),
            ("GET", ["users", "@me"]) => Ok(Reply::ok(bot_user())),
            ("GET", ["guilds", guild]) => {
                let guild = snowflake_of(guild, "guild_id")?;
                Ok(Reply::ok(self.visible_guild(guild)?.json(guild)))
            }
            ("GET", ["guilds", guild, "members", user]) => {
                let guild = snowflake_of(guild, "guild_id")?;
                let user = snowflake_of(user, "user_id")?;
                self.visible_guild(guild)?
                    .member_json(user)
                    .map(Reply::ok)
                    .ok_or_else(|| Reply::error(404, 10007, "Unknown Member"))
            }
            ("GET", ["guilds", guild, "roles"]) => {
                let guild = snowflake_of(guild, "guild_id")?;
                Ok(Reply::ok(
                    self.visible_guild(guild)?.json(guild)["roles"].clone(),
                ))
            }
            ("GET", ["guilds", guild, "channels"]) => {
                let guild = snowflake_of(guild, "guild_id")?;
                self.visible_guild(guild)?;
                let channels: Vec<Value> = self
                    .channels
                    .iter()
                    .filter(|(_, c)| c.guild_id == guild && c.thread.is_none())
                    .map(|(id, c)| c.json(*id))
                    .collect();
                Ok(Reply::ok(json!(channels)))
            }
            ("GET", ["channels", channel]) => {
                let channel = snowflake_of(channel, "channel_id")?;
                self.require(channel, Permissions::empty())?;
                Ok(Reply::ok(self.channels[&channel].json(channel)))
            }
            (_, ["applications", app, "guilds", guild, "commands"]) => {
                let guild = snowflake_of(guild, "guild_id")?;
                self.commands_route(method, app, Some(guild), body)
            }
            (_, ["applications", app, "commands"]) => self.commands_route(method, app, None, body),
            ("POST", ["channels", channel, "messages"]) => {
                let channel = snowflake_of(channel, "channel_id")?;
                self.create_message(channel, body)
            }
            (_, ["channels", channel, "messages", message]) => {
                let channel = snowflake_of(channel, "channel_id")?;
                let message = snowflake_of(message, "message_id")?;
                self.channel_message(method, channel, message, body)
            }
            (
                "PUT" | "DELETE",
                ["channels", channel, "messages", message, "reactions", emoji, "@me"],
            ) => {
                let channel = snowflake_of(channel, "channel_id")?;
                let message = snowflake_of(message, "message_id")?;
                self.own_reaction(method, channel, message, emoji)
            }
            ("POST", ["channels", channel, "messages", message, "threads"]) => {
                let channel = snowflake_of(channel, "channel_id")?;
                let message = snowflake_of(message, "message_id")?;
                self.start_thread(channel, message, body)
            }
            ("POST", ["interactions", id, token, "callback"]) => self.callback(id, token, body),
            (_, ["webhooks", app, token, rest @ ..]) => {
                self.webhook(method, app, token, rest, body)
            }
            _ => Err(Reply::error(404, 0, "404: Not Found")),
        }
    }

    /// A guild the bot is in; Discord answers 10004 for the others (since 2023 also when the
    /// guild exists, discord-api-docs#5840).
    fn visible_guild(&self, guild: u64) -> Result<&super::Guild> {
        self.guilds
            .get(&guild)
            .filter(|g| g.members.contains_key(&BOT_ID))
            .ok_or_else(|| Reply::error(404, 10004, "Unknown Guild"))
    }

    /// The channel exists (10003), the bot sees it (403 50001) and has `needed` (403 50013).
    fn require(&self, channel: u64, needed: Permissions) -> Result<()> {
        if !self.channels.contains_key(&channel) {
            return Err(Reply::error(404, 10003, "Unknown Channel"));
        }
        let permissions = self.permissions_in(channel, BOT_ID);
        if permissions & Permissions::VIEW_CHANNEL.bits() == 0 {
            return Err(Reply::error(403, 50001, "Missing Access"));
        }
        if permissions & needed.bits() != needed.bits() {
            return Err(Reply::error(403, 50013, "Missing Permissions"));
        }
        Ok(())
    }
}
