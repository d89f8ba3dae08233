//! The fake's application command routes: bulk overwrite, create and list (global or per
//! guild), with Discord's validation of names, descriptions and options.

use serde_json::{json, Value};

use super::{Reply, Result};
use crate::support::discord::{snowflake, FakeState, APP_ID};

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
    pub(super) fn commands_route(
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
}
