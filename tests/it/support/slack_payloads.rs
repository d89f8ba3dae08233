//! Slack payloads as Slack sends them (reference/slack-api-excerpt.md, api-facts.md): slash
//! command, `block_actions` (with the clicked `message` and its `state`), `reaction_added`,
//! and the Socket Mode envelopes and control frames around them.

use serde_json::{json, Value};

pub const TEAM: &str = "T0ACME0001";
pub const APP_ID: &str = "A0APP00001";
pub const BOT_USER: &str = "UBOT000001";
pub const BOT_ID: &str = "B0BOT00001";

pub fn slash_command(envelope: &str, channel: &str, user: &str, text: &str) -> Value {
    json!({
        "envelope_id": envelope,
        "type": "slash_commands",
        "accepts_response_payload": true,
        "payload": {
            "token": "verification-token", "team_id": TEAM, "team_domain": "acme",
            "channel_id": channel, "channel_name": "releases", "user_id": user, "user_name": user.to_lowercase(),
            "command": "/rollback", "text": text, "api_app_id": APP_ID,
            "response_url": "https://hooks.slack.com/commands/T0ACME0001/1/x",
            "trigger_id": format!("trigger-{envelope}")
        }
    })
}

/// A message as Slack hands it back (in `block_actions`, `conversations.history`): the blocks
/// as posted, with the `block_id`s, `emoji` and `verbatim` flags Slack fills in.
pub fn message_as_slack_returns(ts: &str, posted: &Value) -> Value {
    let mut blocks = posted["blocks"].clone();
    if let Some(list) = blocks.as_array_mut() {
        for (index, block) in list.iter_mut().enumerate() {
            if block.get("block_id").is_none() {
                block["block_id"] = json!(format!("Qx{index}a"));
            }
            fill_text_flags(block);
        }
    }
    json!({
        "type": "message", "user": BOT_USER, "bot_id": BOT_ID, "app_id": APP_ID, "team": TEAM,
        "ts": ts, "text": posted["text"], "blocks": blocks
    })
}

fn fill_text_flags(value: &mut Value) {
    match value {
        Value::Object(object) => {
            match object.get("type").and_then(Value::as_str) {
                Some("plain_text") => {
                    object.entry("emoji").or_insert(json!(true));
                }
                Some("mrkdwn") => {
                    object.entry("verbatim").or_insert(json!(false));
                }
                _ => {}
            }
            object.values_mut().for_each(fill_text_flags);
        }
        Value::Array(items) => items.iter_mut().for_each(fill_text_flags),
        _ => {}
    }
}

/// A click on `action` in `message` (as [`message_as_slack_returns`] gives it).
pub fn block_actions_payload(
    trigger: &str,
    channel: &str,
    user: &str,
    message: &Value,
    action: &str,
) -> Value {
    let clicked = message["blocks"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|block| block["elements"].as_array().into_iter().flatten())
        .find(|element| element["action_id"] == action)
        .cloned()
        .unwrap_or_else(|| json!({ "type": "button", "text": { "type": "plain_text", "text": action, "emoji": true } }));
    let block_id = message["blocks"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|block| {
            block["elements"]
                .as_array()
                .is_some_and(|e| e.iter().any(|e| e["action_id"] == action))
        })
        .map(|block| block["block_id"].clone())
        .unwrap_or(json!("b1"));
    json!({
        "type": "block_actions",
        "team": { "id": TEAM, "domain": "acme" },
        "user": { "id": user, "username": user.to_lowercase(), "name": user.to_lowercase(), "team_id": TEAM },
        "api_app_id": APP_ID,
        "token": "verification-token",
        "container": { "type": "message", "message_ts": message["ts"], "channel_id": channel, "is_ephemeral": false },
        "trigger_id": trigger,
        "enterprise": null,
        "is_enterprise_install": false,
        "channel": { "id": channel, "name": "releases" },
        "message": message,
        "state": { "values": {} },
        "response_url": "https://hooks.slack.com/actions/T0ACME0001/1/x",
        "actions": [without_nulls(json!({
            "action_id": action, "block_id": block_id, "type": "button", "value": clicked["value"],
            "style": clicked["style"], "text": clicked["text"], "action_ts": "1700000001.000100"
        }))]
    })
}

fn without_nulls(mut value: Value) -> Value {
    if let Some(object) = value.as_object_mut() {
        object.retain(|_, v| !v.is_null());
    }
    value
}

pub fn interactive(envelope: &str, payload: Value) -> Value {
    json!({
        "envelope_id": envelope,
        "type": "interactive",
        "accepts_response_payload": false,
        "payload": payload
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
        "team_id": TEAM,
        "api_app_id": APP_ID,
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

/// The control frames (slack-signing-vectors.json → socket_mode.control_messages).
pub fn hello(num_connections: usize) -> Value {
    json!({
        "type": "hello",
        "num_connections": num_connections,
        "debug_info": { "host": "applink-fake-1", "build_number": 10, "approximate_connection_time": 18060 },
        "connection_info": { "app_id": APP_ID }
    })
}

pub fn disconnect(reason: &str, num_connections: usize) -> Value {
    json!({
        "type": "disconnect",
        "reason": reason,
        "num_connections": num_connections,
        "debug_info": { "host": "applink-fake-1" },
        "connection_info": { "app_id": APP_ID }
    })
}
