//! The fake's REST API v10: routing, the bot token check, injected failures, Discord's error
//! codes and validation (form errors 50035), messages, reactions, threads, commands, the
//! interaction callback and the interaction webhook routes.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};
use serenity::all::Permissions;

use super::{
    bot_user, form_error, message, number_components, route_matches, snowflake, thread_channel,
    timestamp, Call, Channel, Failure, FakeState, Shared, Stored, APP_ID, BOT_ID, TOKEN,
};

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

/// Content ≤ 2000 characters, ≤ 10 embeds (title ≤ 256, description ≤ 4096), ≤ 5 action
/// rows of ≤ 5 buttons, custom ids 1–100 characters and unique, labels ≤ 80; a new message
/// must have something in it.
fn validate_message(body: &Value, creating: bool) -> Result<()> {
    if let Some(content) = body["content"].as_str() {
        if content.chars().count() > 2000 {
            return Err(Reply::form(
                "content",
                "BASE_TYPE_MAX_LENGTH",
                "Must be 2000 or fewer in length.",
            ));
        }
    }
    if let Some(embeds) = body["embeds"].as_array() {
        if embeds.len() > 10 {
            return Err(Reply::form(
                "embeds",
                "BASE_TYPE_MAX_LENGTH",
                "Must be 10 or fewer in length.",
            ));
        }
        for (i, embed) in embeds.iter().enumerate() {
            for (field, max) in [("title", 256), ("description", 4096)] {
                if embed[field]
                    .as_str()
                    .is_some_and(|t| t.chars().count() > max)
                {
                    return Err(Reply::form(
                        &format!("embeds.{i}.{field}"),
                        "BASE_TYPE_MAX_LENGTH",
                        &format!("Must be {max} or fewer in length."),
                    ));
                }
            }
        }
    }
    if let Some(rows) = body["components"].as_array() {
        validate_components(rows)?;
    }
    if creating && is_empty(body) {
        return Err(empty_message());
    }
    Ok(())
}

fn is_empty(message: &Value) -> bool {
    let blank = |key: &str| match &message[key] {
        Value::Null => true,
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        _ => false,
    };
    [
        "content",
        "embeds",
        "components",
        "sticker_ids",
        "attachments",
        "poll",
    ]
    .iter()
    .all(|key| blank(key))
}

fn validate_components(rows: &[Value]) -> Result<()> {
    if rows.len() > 5 {
        return Err(Reply::form(
            "components",
            "BASE_TYPE_MAX_LENGTH",
            "Must be 5 or fewer in length.",
        ));
    }
    let mut custom_ids = Vec::new();
    for (i, row) in rows.iter().enumerate() {
        if row["type"] != 1 {
            return Err(Reply::form(
                &format!("components.{i}.type"),
                "UNION_TYPE_CHOICES",
                "Value of field \"type\" must be one of (1,).",
            ));
        }
        let children: &[Value] = row["components"].as_array().map_or(&[], Vec::as_slice);
        if children.is_empty() || children.len() > 5 {
            return Err(Reply::form(
                &format!("components.{i}.components"),
                "BASE_TYPE_BAD_LENGTH",
                "Must be between 1 and 5 in length.",
            ));
        }
        for (j, component) in children.iter().enumerate() {
            let at = format!("components.{i}.components.{j}");
            if component["label"]
                .as_str()
                .is_some_and(|l| l.chars().count() > 80)
            {
                return Err(Reply::form(
                    &format!("{at}.label"),
                    "BASE_TYPE_MAX_LENGTH",
                    "Must be 80 or fewer in length.",
                ));
            }
            if component["type"] == 2 && component["style"] == 5 {
                if !component["url"].is_string() {
                    return Err(Reply::form(
                        &format!("{at}.url"),
                        "BASE_TYPE_REQUIRED",
                        "This field is required",
                    ));
                }
                continue;
            }
            let Some(custom_id) = component["custom_id"].as_str() else {
                return Err(Reply::form(
                    &format!("{at}.custom_id"),
                    "BASE_TYPE_REQUIRED",
                    "This field is required",
                ));
            };
            if custom_id.is_empty() || custom_id.chars().count() > 100 {
                return Err(Reply::form(
                    &format!("{at}.custom_id"),
                    "BASE_TYPE_BAD_LENGTH",
                    "Must be between 1 and 100 in length.",
                ));
            }
            if custom_ids.contains(&custom_id) {
                return Err(Reply::form(
                    &format!("{at}.custom_id"),
                    "COMPONENT_CUSTOM_ID_DUPLICATED",
                    "Component custom id cannot be duplicated",
                ));
            }
            custom_ids.push(custom_id);
        }
    }
    Ok(())
}

/// A command or option name: 1–32 lowercase letters, digits, `-` or `_`.
fn valid_name(name: &str) -> bool {
    (1..=32).contains(&name.chars().count())
        && name
            .chars()
            .all(|c| c == '-' || c == '_' || (c.is_alphanumeric() && !c.is_uppercase()))
}

fn validate_command(command: &Value, at: &str) -> Result<()> {
    let prefix = |field: &str| {
        if at.is_empty() {
            field.to_owned()
        } else {
            format!("{at}.{field}")
        }
    };
    if !command["name"].as_str().is_some_and(valid_name) {
        return Err(Reply::form(
            &prefix("name"),
            "APPLICATION_COMMAND_INVALID_NAME",
            "Command name is invalid",
        ));
    }
    let chat_input = command["type"].as_u64().unwrap_or(1) == 1;
    if chat_input
        && !command["description"]
            .as_str()
            .is_some_and(|d| (1..=100).contains(&d.chars().count()))
    {
        return Err(Reply::form(
            &prefix("description"),
            "BASE_TYPE_BAD_LENGTH",
            "Must be between 1 and 100 in length.",
        ));
    }
    let options = command["options"].as_array().cloned().unwrap_or_default();
    if options.len() > 25 {
        return Err(Reply::form(
            &prefix("options"),
            "BASE_TYPE_MAX_LENGTH",
            "Must be 25 or fewer in length.",
        ));
    }
    let mut optional_seen = false;
    for (i, option) in options.iter().enumerate() {
        let at = prefix(&format!("options.{i}"));
        validate_command(option, &at)?;
        let required = option["required"].as_bool().unwrap_or(false);
        if required && optional_seen {
            return Err(Reply::form(
                &format!("{at}.required"),
                "APPLICATION_COMMAND_OPTIONS_REQUIRED_INVALID",
                "Required options must be placed before non-required options",
            ));
        }
        optional_seen |= !required;
        let has_choices = option["choices"].as_array().is_some_and(|c| !c.is_empty());
        if has_choices && option["autocomplete"] == true {
            return Err(Reply::form(
                &format!("{at}.autocomplete"),
                "APPLICATION_COMMAND_OPTION_CHOICES_AND_AUTOCOMPLETE",
                "Autocomplete cannot be set with choices",
            ));
        }
    }
    Ok(())
}

/// A command as Discord answers its registration.
fn command_json(id: u64, guild: Option<u64>, command: &Value) -> Value {
    let mut answer = json!({
        "id": id.to_string(), "application_id": APP_ID.to_string(),
        "version": snowflake().to_string(), "type": command["type"].as_u64().unwrap_or(1),
        "name": command["name"], "name_localizations": null,
        "description": command["description"].as_str().unwrap_or_default(),
        "description_localizations": null,
        "default_member_permissions": command["default_member_permissions"],
        "nsfw": command["nsfw"].as_bool().unwrap_or(false), "integration_types": [0],
        "contexts": command["contexts"]
    });
    if let Some(options) = command["options"].as_array().filter(|o| !o.is_empty()) {
        answer["options"] = json!(options);
    }
    match guild {
        Some(guild) => answer["guild_id"] = json!(guild.to_string()),
        None => answer["dm_permission"] = json!(true),
    }
    answer
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

    /// A visible message of the channel (not ephemeral, not deleted).
    fn channel_message_json(&self, channel: u64, message: u64) -> Result<Value> {
        self.messages
            .get(&message)
            .filter(|m| m.channel_id == channel && !m.ephemeral && !m.deleted)
            .map(|m| m.json.clone())
            .ok_or_else(unknown_message)
    }

    fn store(&mut self, id: u64, channel_id: u64, json: Value) {
        let ephemeral = json["flags"].as_u64().unwrap_or(0) & EPHEMERAL != 0;
        if !ephemeral {
            if let Some(thread) = self
                .channels
                .get_mut(&channel_id)
                .and_then(|c| c.thread.as_mut())
            {
                for key in ["message_count", "total_message_sent"] {
                    thread[key] = json!(thread[key].as_u64().unwrap_or(0) + 1);
                }
                thread["last_message_id"] = json!(id.to_string());
            }
        }
        self.messages.insert(
            id,
            Stored {
                json,
                channel_id,
                ephemeral,
                deleted: false,
            },
        );
    }

    fn create_message(&mut self, channel: u64, body: &Value) -> Result<Reply> {
        let in_thread = self
            .channels
            .get(&channel)
            .is_some_and(|c| c.thread.is_some());
        let needed = if in_thread {
            Permissions::SEND_MESSAGES_IN_THREADS
        } else {
            Permissions::SEND_MESSAGES
        };
        self.require(channel, needed)?;
        validate_message(body, true)?;
        let id = snowflake();
        let mut json = message(id, channel, body, &timestamp());
        json["flags"] =
            json!(body["flags"].as_u64().unwrap_or(0) & (SUPPRESS_EMBEDS | SUPPRESS_NOTIFICATIONS));
        if let Some(reference) = body["message_reference"]["message_id"].as_str() {
            json["type"] = json!(19);
            json["message_reference"] = json!({
                "type": 0, "message_id": reference, "channel_id": channel.to_string(),
                "guild_id": self.channels[&channel].guild_id.to_string()
            });
        }
        self.store(id, channel, json.clone());
        Ok(Reply::ok(json))
    }

    /// Applies an edit (content, embeds, components, SUPPRESS_EMBEDS) to a stored message;
    /// an edit leaving it empty is refused.
    fn edit_message(&mut self, id: u64, body: &Value) -> Result<Value> {
        let stored = self.messages.get_mut(&id).ok_or_else(unknown_message)?;
        let mut json = stored.json.clone();
        for key in ["content", "embeds", "components"] {
            let Some(value) = body.get(key) else { continue };
            json[key] = match (key, value) {
                ("content", Value::Null) => json!(""),
                (_, Value::Null) => json!([]),
                _ => value.clone(),
            };
        }
        number_components(&mut json["components"], &mut 0);
        if let Some(embeds) = json["embeds"].as_array_mut() {
            for embed in embeds.iter_mut() {
                embed
                    .as_object_mut()
                    .map(|e| e.entry("type").or_insert(json!("rich")));
            }
        }
        let mut flags = json["flags"].as_u64().unwrap_or(0) & !LOADING;
        if let Some(asked) = body["flags"].as_u64() {
            flags = (flags & !SUPPRESS_EMBEDS) | (asked & SUPPRESS_EMBEDS);
        }
        json["flags"] = json!(flags);
        json["edited_timestamp"] = json!(timestamp());
        if is_empty(&json) {
            return Err(empty_message());
        }
        stored.json = json.clone();
        Ok(json)
    }

    fn channel_message(
        &mut self,
        method: &str,
        channel: u64,
        message: u64,
        body: &Value,
    ) -> Result<Reply> {
        match method {
            "GET" => {
                self.require(channel, Permissions::READ_MESSAGE_HISTORY)?;
                Ok(Reply::ok(self.channel_message_json(channel, message)?))
            }
            "PATCH" => {
                self.require(channel, Permissions::empty())?;
                self.channel_message_json(channel, message)?;
                validate_message(body, false)?;
                Ok(Reply::ok(self.edit_message(message, body)?))
            }
            "DELETE" => {
                self.require(channel, Permissions::empty())?;
                self.channel_message_json(channel, message)?;
                if let Some(stored) = self.messages.get_mut(&message) {
                    stored.deleted = true;
                }
                Ok(Reply::empty())
            }
            _ => Err(Reply::error(405, 0, "405: Method Not Allowed")),
        }
    }

    fn own_reaction(
        &mut self,
        method: &str,
        channel: u64,
        message: u64,
        emoji: &str,
    ) -> Result<Reply> {
        let needed = if method == "PUT" {
            Permissions::READ_MESSAGE_HISTORY | Permissions::ADD_REACTIONS
        } else {
            Permissions::empty()
        };
        self.require(channel, needed)?;
        self.channel_message_json(channel, message)?;
        // The fake knows no custom emojis (`name:id`); plain text is no emoji either.
        if emoji.contains(':') || emoji.is_ascii() {
            return Err(Reply::error(400, 10014, "Unknown Emoji"));
        }
        let stored = self
            .messages
            .get_mut(&message)
            .ok_or_else(unknown_message)?;
        let reactions = stored.json["reactions"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let mut others: Vec<Value> = reactions
            .into_iter()
            .filter(|r| r["emoji"]["name"] != emoji)
            .collect();
        if method == "PUT" {
            others.push(json!({
                "count": 1, "count_details": { "burst": 0, "normal": 1 }, "me": true,
                "me_burst": false, "emoji": { "id": null, "name": emoji }, "burst_colors": []
            }));
        }
        stored.json["reactions"] = json!(others);
        Ok(Reply::empty())
    }

    fn start_thread(&mut self, channel: u64, message: u64, body: &Value) -> Result<Reply> {
        self.require(channel, Permissions::CREATE_PUBLIC_THREADS)?;
        if self.channels[&channel].kind != 0 {
            return Err(Reply::error(
                400,
                50024,
                "Cannot execute action on this channel type",
            ));
        }
        self.channel_message_json(channel, message)?;
        if self.channels.contains_key(&message) {
            return Err(Reply::error(
                400,
                160_004,
                "A thread has already been created for this message",
            ));
        }
        let Some(name) = body["name"].as_str() else {
            return Err(Reply::form(
                "name",
                "BASE_TYPE_REQUIRED",
                "This field is required",
            ));
        };
        if !(1..=100).contains(&name.chars().count()) {
            return Err(Reply::form(
                "name",
                "BASE_TYPE_BAD_LENGTH",
                "Must be between 1 and 100 in length.",
            ));
        }
        let archive = body["auto_archive_duration"].as_u64().unwrap_or(4320);
        if ![60, 1440, 4320, 10080].contains(&archive) {
            return Err(Reply::form(
                "auto_archive_duration",
                "BASE_TYPE_CHOICES",
                "Value must be one of {60, 1440, 4320, 10080}.",
            ));
        }
        let guild_id = self.channels[&channel].guild_id;
        let thread = thread_channel(message, guild_id, channel, name, archive, &timestamp());
        self.channels.insert(
            message,
            Channel {
                guild_id,
                name: name.to_owned(),
                kind: 11,
                parent_id: Some(channel),
                overwrites: Vec::new(),
                thread: Some(thread.clone()),
            },
        );
        if let Some(starter) = self.messages.get_mut(&message) {
            let flags = starter.json["flags"].as_u64().unwrap_or(0) | HAS_THREAD;
            starter.json["flags"] = json!(flags);
            starter.json["thread"] = thread.clone();
        }
        Ok(Reply::json(201, thread))
    }

    fn commands_route(
        &mut self,
        method: &str,
        app: &str,
        guild: Option<u64>,
        body: &Value,
    ) -> Result<Reply> {
        let missing_access = || Reply::error(403, 50001, "Missing Access");
        if app.parse::<u64>().ok() != Some(APP_ID) {
            return Err(missing_access());
        }
        if let Some(guild) = guild {
            self.visible_guild(guild).map_err(|_| missing_access())?;
        }
        let existing = self.commands.get(&guild).cloned().unwrap_or_default();
        let id_for = |command: &Value| {
            existing
                .iter()
                .find(|c| {
                    c["name"] == command["name"]
                        && c["type"].as_u64() == Some(command["type"].as_u64().unwrap_or(1))
                })
                .and_then(|c| c["id"].as_str()?.parse().ok())
        };
        match method {
            "GET" => Ok(Reply::ok(json!(existing))),
            "PUT" => {
                let Some(list) = body.as_array() else {
                    return Err(Reply::json(
                        400,
                        json!({ "code": 50035, "message": "Invalid Form Body", "errors": {
                            "_errors": [{ "code": "BASE_TYPE_ARRAY", "message": "Must be an array." }]
                        }}),
                    ));
                };
                if list.len() > 100 {
                    return Err(Reply::error(
                        400,
                        30032,
                        "Maximum number of application commands reached (100)",
                    ));
                }
                for (i, command) in list.iter().enumerate() {
                    validate_command(command, &i.to_string())?;
                }
                let answer: Vec<Value> = list
                    .iter()
                    .map(|c| command_json(id_for(c).unwrap_or_else(snowflake), guild, c))
                    .collect();
                self.commands.insert(guild, answer.clone());
                Ok(Reply::ok(json!(answer)))
            }
            "POST" => {
                validate_command(body, "")?;
                let known = id_for(body);
                let command = command_json(known.unwrap_or_else(snowflake), guild, body);
                let mut list: Vec<Value> = existing
                    .into_iter()
                    .filter(|c| c["id"] != command["id"])
                    .collect();
                list.push(command.clone());
                self.commands.insert(guild, list);
                Ok(Reply::json(
                    if known.is_some() { 200 } else { 201 },
                    command,
                ))
            }
            _ => Err(Reply::error(405, 0, "405: Method Not Allowed")),
        }
    }

    /// A message made by an interaction response or follow-up (author the bot, `webhook_id`
    /// and `application_id` the app, `interaction_metadata`).
    fn interaction_message(&mut self, interaction: u64, data: &Value, flags: u64) -> u64 {
        let known = &self.interactions[&interaction];
        let (channel, kind, user) = (known.channel_id, known.kind, known.user.clone());
        let (name, component_message) = (known.name.clone(), known.message_id);
        let owners = json!({ "0": known.guild_id.unwrap_or(0).to_string() });
        let id = snowflake();
        let mut json = message(id, channel, data, &timestamp());
        json["flags"] = json!(flags);
        json["webhook_id"] = json!(APP_ID.to_string());
        json["application_id"] = json!(APP_ID.to_string());
        let mut metadata = json!({
            "id": interaction.to_string(), "type": kind, "user": user,
            "authorizing_integration_owners": owners
        });
        if kind == 2 {
            json["type"] = json!(20);
            metadata["name"] = json!(name);
            metadata["command_type"] = json!(1);
            json["interaction"] =
                json!({ "id": interaction.to_string(), "type": 2, "name": name, "user": user });
        }
        if let Some(clicked) = component_message.filter(|_| kind == 3) {
            metadata["interacted_message_id"] = json!(clicked.to_string());
            json["message_reference"] = json!({
                "type": 0, "message_id": clicked.to_string(), "channel_id": channel.to_string()
            });
        }
        json["interaction_metadata"] = metadata;
        self.store(id, channel, json);
        id
    }

    fn callback(&mut self, id: &str, token: &str, body: &Value) -> Result<Reply> {
        let id: u64 = id.parse().map_err(|_| unknown_interaction())?;
        let deadline = self.ack_deadline;
        let known = self
            .interactions
            .get_mut(&id)
            .ok_or_else(unknown_interaction)?;
        if known.token != token {
            return Err(invalid_webhook_token());
        }
        if known.response.is_some() {
            return Err(Reply::error(
                400,
                40060,
                "Interaction has already been acknowledged.",
            ));
        }
        if known.expired || known.registered.elapsed() > deadline {
            // Past the 3 s the token is invalidated.
            known.expired = true;
            return Err(unknown_interaction());
        }
        let kind = body["type"].as_u64().unwrap_or(0);
        let allowed: &[u64] = match known.kind {
            1 => &[1],
            2 => &[4, 5, 9],
            3 => &[4, 5, 6, 7, 9],
            4 => &[8],
            5 => &[4, 5, 6, 7],
            _ => &[],
        };
        if !allowed.contains(&kind) {
            let choices: Vec<String> = allowed.iter().map(u64::to_string).collect();
            return Err(Reply::form(
                "type",
                "BASE_TYPE_CHOICES",
                &format!("Value must be one of {{{}}}.", choices.join(", ")),
            ));
        }
        let component_message = known.message_id;
        let data = &body["data"];
        let asked = data["flags"].as_u64().unwrap_or(0);
        let (mut original, mut loading) = (None, false);
        match kind {
            4 => {
                validate_message(data, true)?;
                let flags = asked & (SUPPRESS_EMBEDS | EPHEMERAL | SUPPRESS_NOTIFICATIONS);
                original = Some(self.interaction_message(id, data, flags));
            }
            5 => {
                let flags = LOADING | (asked & EPHEMERAL);
                original = Some(self.interaction_message(id, &json!({}), flags));
                loading = true;
            }
            6 => original = component_message,
            7 => {
                validate_message(data, false)?;
                let message = component_message.ok_or_else(unknown_message)?;
                self.edit_message(message, data)?;
                original = Some(message);
            }
            8 => {
                let choices = data["choices"].as_array().cloned().unwrap_or_default();
                if choices.len() > 25 {
                    return Err(Reply::form(
                        "data.choices",
                        "BASE_TYPE_MAX_LENGTH",
                        "Must be 25 or fewer in length.",
                    ));
                }
                for (i, choice) in choices.iter().enumerate() {
                    for field in ["name", "value"] {
                        let ok = match &choice[field] {
                            Value::String(s) => (1..=100).contains(&s.chars().count()),
                            Value::Number(_) => field == "value",
                            _ => false,
                        };
                        if !ok {
                            return Err(Reply::form(
                                &format!("data.choices.{i}.{field}"),
                                "BASE_TYPE_BAD_LENGTH",
                                "Must be between 1 and 100 in length.",
                            ));
                        }
                    }
                }
            }
            9 => {
                let custom_id = data["custom_id"].as_str().unwrap_or_default();
                let title = data["title"].as_str().unwrap_or_default();
                let rows = data["components"].as_array().map_or(0, Vec::len);
                if custom_id.is_empty()
                    || title.is_empty()
                    || title.chars().count() > 45
                    || !(1..=5).contains(&rows)
                {
                    return Err(Reply::form("data", "MODAL_INVALID", "Invalid modal"));
                }
            }
            _ => {}
        }
        let known = self
            .interactions
            .get_mut(&id)
            .ok_or_else(unknown_interaction)?;
        known.response = Some(body.clone());
        known.original = original;
        known.loading = loading;
        Ok(Reply::empty())
    }

    fn webhook(
        &mut self,
        method: &str,
        app: &str,
        token: &str,
        rest: &[&str],
        body: &Value,
    ) -> Result<Reply> {
        if app.parse::<u64>().ok() != Some(APP_ID) {
            return Err(Reply::error(404, 10015, "Unknown Webhook"));
        }
        let (id, known) = self
            .interactions
            .iter()
            .find(|(_, k)| k.token == token)
            .ok_or_else(invalid_webhook_token)?;
        let id = *id;
        if known.expired {
            return Err(invalid_webhook_token());
        }
        if known.response.is_none() {
            return Err(Reply::error(404, 10015, "Unknown Webhook"));
        }
        let (original, loading) = (known.original, known.loading);
        let followups = known.followups.clone();
        match (method, rest) {
            ("POST", []) => {
                if let Some(original) = original.filter(|_| loading) {
                    // Right after a type-5 defer a follow-up edits the loading message; its
                    // ephemeral state stays what the defer said (receiving-and-responding).
                    validate_message(body, true)?;
                    let json = self.edit_message(original, body)?;
                    if let Some(known) = self.interactions.get_mut(&id) {
                        known.loading = false;
                    }
                    return Ok(Reply::ok(json));
                }
                validate_message(body, true)?;
                let asked = body["flags"].as_u64().unwrap_or(0);
                let flags = asked & (SUPPRESS_EMBEDS | EPHEMERAL | SUPPRESS_NOTIFICATIONS);
                let message = self.interaction_message(id, body, flags);
                if let Some(known) = self.interactions.get_mut(&id) {
                    known.followups.push(message);
                }
                Ok(Reply::ok(self.messages[&message].json.clone()))
            }
            (_, ["messages", which]) => {
                let target = if *which == "@original" {
                    original
                } else {
                    which
                        .parse()
                        .ok()
                        .filter(|m| followups.contains(m) || Some(*m) == original)
                };
                let target = target
                    .filter(|m| self.messages.get(m).is_some_and(|s| !s.deleted))
                    .ok_or_else(unknown_message)?;
                match method {
                    "GET" => Ok(Reply::ok(self.messages[&target].json.clone())),
                    "PATCH" => {
                        validate_message(body, false)?;
                        let json = self.edit_message(target, body)?;
                        if Some(target) == original {
                            if let Some(known) = self.interactions.get_mut(&id) {
                                known.loading = false;
                            }
                        }
                        Ok(Reply::ok(json))
                    }
                    "DELETE" => {
                        if let Some(stored) = self.messages.get_mut(&target) {
                            stored.deleted = true;
                        }
                        Ok(Reply::empty())
                    }
                    _ => Err(Reply::error(405, 0, "405: Method Not Allowed")),
                }
            }
            _ => Err(Reply::error(404, 0, "404: Not Found")),
        }
    }
}
