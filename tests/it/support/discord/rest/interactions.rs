//! The fake's interaction routes: the callback (one per interaction, within the deadline, of
//! a type the interaction allows) and the webhook with the interaction token (follow-ups, and
//! reading, editing and deleting the original and follow-up messages).

use serde_json::{json, Value};

use super::messages::validate_message;
use super::{
    invalid_webhook_token, unknown_interaction, unknown_message, Reply, Result, EPHEMERAL, LOADING,
    SUPPRESS_EMBEDS, SUPPRESS_NOTIFICATIONS,
};
use crate::support::discord::{message, snowflake, timestamp, FakeState, APP_ID};

impl FakeState {
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

    pub(in crate::support::discord) fn callback(
        &mut self,
        id: &str,
        token: &str,
        body: &Value,
    ) -> Result<Reply> {
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

    pub(super) fn webhook(
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
