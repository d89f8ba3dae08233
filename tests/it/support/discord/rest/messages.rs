//! The fake's message routes: creating (in channels and threads), reading, editing and
//! deleting messages with Discord's validation (content, embeds, components), the bot's own
//! reactions, and threads started from a message.

use serde_json::{json, Value};
use serenity::all::Permissions;

use super::{
    empty_message, unknown_message, Reply, Result, EPHEMERAL, HAS_THREAD, LOADING, SUPPRESS_EMBEDS,
    SUPPRESS_NOTIFICATIONS,
};
use crate::support::discord::{
    message, number_components, snowflake, thread_channel, timestamp, Channel, FakeState, Stored,
};

/// Content ≤ 2000 characters, ≤ 10 embeds (title ≤ 256, description ≤ 4096), ≤ 5 action
/// rows of ≤ 5 buttons, custom ids 1–100 characters and unique, labels ≤ 80; a new message
/// must have something in it.
pub(super) fn validate_message(body: &Value, creating: bool) -> Result<()> {
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

impl FakeState {
    /// A visible message of the channel (not ephemeral, not deleted).
    fn channel_message_json(&self, channel: u64, message: u64) -> Result<Value> {
        self.messages
            .get(&message)
            .filter(|m| m.channel_id == channel && !m.ephemeral && !m.deleted)
            .map(|m| m.json.clone())
            .ok_or_else(unknown_message)
    }

    pub(super) fn store(&mut self, id: u64, channel_id: u64, json: Value) {
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

    pub(super) fn create_message(&mut self, channel: u64, body: &Value) -> Result<Reply> {
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
    pub(super) fn edit_message(&mut self, id: u64, body: &Value) -> Result<Value> {
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

    pub(super) fn channel_message(
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

    pub(super) fn own_reaction(
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

    pub(super) fn start_thread(
        &mut self,
        channel: u64,
        message: u64,
        body: &Value,
    ) -> Result<Reply> {
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
}
