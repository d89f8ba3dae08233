//! Discord payloads as Discord sends them (API and Gateway v10; discord-api-docs, and the fields
//! serenity 0.12.5 insists on): users, members, roles, guilds, channels, threads, messages, the
//! `/rollback` command, autocomplete and button interactions, `MESSAGE_REACTION_ADD`, and the
//! Gateway frames (HELLO, READY, GUILD_CREATE, dispatches). Snowflakes are strings, as on the
//! wire; permissions are decimal strings.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};

/// The bot token the fake accepts (REST `Authorization: Bot <TOKEN>`, Gateway IDENTIFY).
pub const TOKEN: &str = "MTEwMDAwMDAwMDAwMDAwMDAwMQ.GfAkE1.rollbot-loopback-test-token";
/// The bot user; for applications created since 2016 the application id is the bot's user id.
pub const BOT_ID: u64 = 1_100_000_000_000_000_001;
pub const APP_ID: u64 = BOT_ID;
pub const GUILD: u64 = 1_100_000_000_000_000_100;
/// `#releases`, a text channel of [`GUILD`].
pub const CHANNEL: u64 = 1_100_000_000_000_000_200;
/// The guild's owner (a human with every permission).
pub const OWNER: u64 = 1_100_000_000_000_000_300;
/// A member with the [`APPROVERS`] role.
pub const ALICE: u64 = 1_100_000_000_000_000_301;
/// A member without roles.
pub const BOB: u64 = 1_100_000_000_000_000_302;
/// `release-approvers`, a role without permissions of its own.
pub const APPROVERS: u64 = 1_100_000_000_000_000_400;
/// The bot's managed role (created when the bot joined, with the permissions it asked for).
pub const BOT_ROLE: u64 = 1_100_000_000_000_000_401;
/// The id the builders give the `/rollback` command until the bot registered it (the fake then
/// uses the id it answered the registration with).
pub const ROLLBACK_COMMAND: u64 = 1_100_000_000_000_000_500;
/// Discord's epoch (2015-01-01T00:00:00Z) in Unix milliseconds.
const DISCORD_EPOCH_MS: u64 = 1_420_070_400_000;

/// A fresh snowflake: now (ms since Discord's epoch) << 22, strictly increasing per process.
pub fn snowflake() -> u64 {
    static LAST: AtomicU64 = AtomicU64::new(0);
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or_default();
    let candidate = now.saturating_sub(DISCORD_EPOCH_MS) << 22;
    let previous = LAST
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |last| {
            Some(candidate.max(last + 1))
        })
        .unwrap_or_default();
    candidate.max(previous + 1)
}

/// An ISO 8601 timestamp as Discord writes them (`2024-05-01T12:00:00.000000+00:00`).
pub fn timestamp() -> String {
    let text = humantime::format_rfc3339_micros(SystemTime::now()).to_string();
    format!("{}+00:00", text.trim_end_matches('Z'))
}

/// Who clicks, types or reacts: a guild member.
#[derive(Debug, Clone)]
pub struct Invoker {
    pub id: u64,
    pub username: String,
    pub roles: Vec<u64>,
    /// The member's permissions in the channel (interactions carry them).
    pub permissions: u64,
}

impl Invoker {
    pub fn new(id: u64, username: &str, roles: &[u64]) -> Invoker {
        Invoker {
            id,
            username: username.to_owned(),
            roles: roles.to_vec(),
            permissions: DEFAULT_EVERYONE,
        }
    }
}

/// Where an interaction or reaction happens.
#[derive(Debug, Clone, Copy)]
pub struct Place {
    pub guild_id: u64,
    pub channel_id: u64,
    /// The bot's permissions in the channel (interactions carry them as `app_permissions`).
    pub app_permissions: u64,
}

impl Place {
    pub fn new(guild_id: u64, channel_id: u64) -> Place {
        Place {
            guild_id,
            channel_id,
            app_permissions: DEFAULT_BOT,
        }
    }
}

/// What Discord gives `@everyone` in a new server (view, send, react, history, threads, embeds,
/// files, application commands, …).
pub const DEFAULT_EVERYONE: u64 = (1 << 0) // CREATE_INSTANT_INVITE
    | (1 << 6) // ADD_REACTIONS
    | (1 << 9) // STREAM
    | (1 << 10) // VIEW_CHANNEL
    | (1 << 11) // SEND_MESSAGES
    | (1 << 14) // EMBED_LINKS
    | (1 << 15) // ATTACH_FILES
    | (1 << 16) // READ_MESSAGE_HISTORY
    | (1 << 17) // MENTION_EVERYONE
    | (1 << 18) // USE_EXTERNAL_EMOJIS
    | (1 << 20) // CONNECT
    | (1 << 21) // SPEAK
    | (1 << 25) // USE_VAD
    | (1 << 26) // CHANGE_NICKNAME
    | (1 << 31) // USE_APPLICATION_COMMANDS
    | (1 << 35) // CREATE_PUBLIC_THREADS
    | (1 << 36) // CREATE_PRIVATE_THREADS
    | (1 << 38); // SEND_MESSAGES_IN_THREADS

/// What rollbot's invite link asks for: view, send, embed, react, history, threads.
pub const DEFAULT_BOT: u64 = (1 << 6) // ADD_REACTIONS
    | (1 << 10) // VIEW_CHANNEL
    | (1 << 11) // SEND_MESSAGES
    | (1 << 14) // EMBED_LINKS
    | (1 << 16) // READ_MESSAGE_HISTORY
    | (1 << 35) // CREATE_PUBLIC_THREADS
    | (1 << 38); // SEND_MESSAGES_IN_THREADS

pub fn user(id: u64, username: &str, bot: bool) -> Value {
    let mut user = json!({
        "id": id.to_string(), "username": username, "discriminator": "0", "global_name": null,
        "avatar": null, "avatar_decoration_data": null, "banner": null, "accent_color": null,
        "banner_color": null, "clan": null, "primary_guild": null, "collectibles": null,
        "public_flags": 0, "flags": 0
    });
    if bot {
        user["bot"] = json!(true);
    }
    user
}

/// The bot's own user, as `GET /users/@me` and READY give it.
pub fn bot_user() -> Value {
    let mut me = user(BOT_ID, "rollbot", true);
    for (key, value) in [
        ("verified", json!(true)),
        ("mfa_enabled", json!(false)),
        ("email", Value::Null),
        ("locale", json!("en-US")),
        ("premium_type", json!(0)),
        ("bio", json!("")),
    ] {
        me[key] = value;
    }
    me
}

/// A guild member (as in `GET /guilds/{g}/members/{u}`; interactions add `permissions`).
pub fn member(id: u64, username: &str, bot: bool, roles: &[u64], joined_at: &str) -> Value {
    json!({
        "user": user(id, username, bot), "nick": null, "avatar": null, "banner": null,
        "roles": roles.iter().map(u64::to_string).collect::<Vec<_>>(),
        "joined_at": joined_at, "premium_since": null, "deaf": false, "mute": false, "flags": 0,
        "pending": false, "communication_disabled_until": null,
        "unusual_dm_activity_until": null
    })
}

pub fn role(guild_id: u64, id: u64, name: &str, permissions: u64, position: u64) -> Value {
    let mut role = json!({
        "id": id.to_string(), "name": name, "description": null, "permissions": permissions.to_string(),
        "position": position, "color": 0,
        "colors": { "primary_color": 0, "secondary_color": null, "tertiary_color": null },
        "hoist": false, "managed": false, "mentionable": false, "icon": null,
        "unicode_emoji": null, "flags": 0
    });
    if id == guild_id {
        role["name"] = json!("@everyone");
    }
    role
}

/// The bot's managed role: Discord tags it with the bot's id.
pub fn bot_role(id: u64, permissions: u64, position: u64) -> Value {
    let mut role = role(0, id, "rollbot", permissions, position);
    role["managed"] = json!(true);
    role["tags"] = json!({ "bot_id": BOT_ID.to_string() });
    role
}

/// A guild as `GET /guilds/{g}` answers it (serenity: `PartialGuild`).
pub fn guild(id: u64, name: &str, owner_id: u64, roles: Vec<Value>) -> Value {
    let mut guild = json!({
        "id": id.to_string(), "name": name, "icon": null, "icon_hash": null, "splash": null,
        "discovery_splash": null, "owner_id": owner_id.to_string(), "afk_channel_id": null,
        "afk_timeout": 300, "widget_enabled": false, "widget_channel_id": null,
        "verification_level": 1, "default_message_notifications": 1,
        "explicit_content_filter": 2, "roles": roles, "emojis": [], "features": [],
        "mfa_level": 0, "application_id": null, "system_channel_id": null,
        "system_channel_flags": 0, "rules_channel_id": null
    });
    let more = json!({
        "max_presences": null, "max_members": 25_000_000, "vanity_url_code": null,
        "description": null, "banner": null, "premium_tier": 0,
        "premium_subscription_count": 0, "preferred_locale": "en-US",
        "public_updates_channel_id": null, "max_video_channel_users": 25,
        "max_stage_video_channel_users": 50, "nsfw_level": 0, "nsfw": false, "stickers": [],
        "premium_progress_bar_enabled": false, "safety_alerts_channel_id": null,
        "incidents_data": null, "region": "deprecated", "home_header": null, "hub_type": null,
        "latest_onboarding_question_id": null
    });
    if let (Some(guild), Value::Object(more)) = (guild.as_object_mut(), more) {
        guild.extend(more);
    }
    guild
}

/// A permission overwrite on a channel: `kind` 0 = role, 1 = member.
pub fn overwrite(id: u64, kind: u8, allow: u64, deny: u64) -> Value {
    json!({ "id": id.to_string(), "type": kind, "allow": allow.to_string(), "deny": deny.to_string() })
}

/// A guild text channel as `GET /channels/{c}` answers it.
pub fn text_channel(id: u64, guild_id: u64, name: &str, overwrites: Vec<Value>) -> Value {
    json!({
        "id": id.to_string(), "type": 0, "guild_id": guild_id.to_string(), "name": name,
        "position": 0, "permission_overwrites": overwrites, "topic": null, "nsfw": false,
        "last_message_id": null, "rate_limit_per_user": 0, "parent_id": null, "flags": 0,
        "icon_emoji": null, "theme_color": null
    })
}

/// A public thread (type 11) started from message `id` of `parent_id`: its id is the
/// message's id.
pub fn thread_channel(
    id: u64,
    guild_id: u64,
    parent_id: u64,
    name: &str,
    auto_archive_duration: u64,
    created: &str,
) -> Value {
    json!({
        "id": id.to_string(), "type": 11, "guild_id": guild_id.to_string(),
        "parent_id": parent_id.to_string(), "owner_id": BOT_ID.to_string(), "name": name,
        "last_message_id": null, "rate_limit_per_user": 0, "flags": 0, "message_count": 0,
        "member_count": 1, "total_message_sent": 0,
        "thread_metadata": {
            "archived": false, "archive_timestamp": created,
            "auto_archive_duration": auto_archive_duration, "locked": false,
            "create_timestamp": created
        },
        "member": {
            "id": id.to_string(), "user_id": BOT_ID.to_string(), "join_timestamp": created,
            "flags": 1
        }
    })
}

/// The channel as interactions carry it (partial, with the invoker's `permissions`).
pub fn partial_channel(id: u64, guild_id: u64, name: &str, kind: u8, permissions: u64) -> Value {
    json!({
        "id": id.to_string(), "type": kind, "guild_id": guild_id.to_string(), "name": name,
        "permissions": permissions.to_string(), "last_message_id": null, "nsfw": false,
        "parent_id": null, "flags": 0, "rate_limit_per_user": 0, "topic": null, "position": 0
    })
}

/// A message by the bot as the REST API answers it. `posted` is the request body (content,
/// embeds, components, flags); Discord gives every component a numeric `id`.
pub fn message(id: u64, channel_id: u64, posted: &Value, created: &str) -> Value {
    let mut components = posted["components"].clone();
    if !components.is_array() {
        components = json!([]);
    }
    number_components(&mut components, &mut 0);
    let mut embeds = posted["embeds"].clone();
    if let Some(list) = embeds.as_array_mut() {
        for embed in list.iter_mut() {
            embed
                .as_object_mut()
                .map(|e| e.entry("type").or_insert(json!("rich")));
        }
    } else {
        embeds = json!([]);
    }
    json!({
        "type": 0, "id": id.to_string(), "channel_id": channel_id.to_string(),
        "author": user(BOT_ID, "rollbot", true),
        "content": posted["content"].as_str().unwrap_or_default(),
        "timestamp": created, "edited_timestamp": null, "tts": posted["tts"].as_bool().unwrap_or(false),
        "mention_everyone": false, "mentions": [], "mention_roles": [], "attachments": [],
        "embeds": embeds, "pinned": false, "flags": posted["flags"].as_u64().unwrap_or(0),
        "components": components
    })
}

/// Discord numbers components depth-first from 1.
pub fn number_components(value: &mut Value, next: &mut u64) {
    if let Some(list) = value.as_array_mut() {
        for component in list.iter_mut() {
            *next += 1;
            if component.get("id").is_none_or(Value::is_null) {
                component["id"] = json!(*next);
            }
            if let Some(children) = component.get_mut("components") {
                number_components(children, next);
            }
        }
    }
}

/// A command option of type STRING (3), `focused` for the one being typed (autocomplete).
fn string_options(options: &[(&str, &str)], focused: Option<&str>) -> Vec<Value> {
    options
        .iter()
        .map(|(name, value)| {
            let mut option = json!({ "name": name, "type": 3, "value": value });
            if focused == Some(*name) {
                option["focused"] = json!(true);
            }
            option
        })
        .collect()
}

/// The fields every interaction in a guild carries.
fn interaction(kind: u8, place: &Place, invoker: &Invoker, data: Value) -> Value {
    let id = snowflake();
    let mut member = member(
        invoker.id,
        &invoker.username,
        false,
        &invoker.roles,
        "2024-01-15T09:30:00.000000+00:00",
    );
    member["permissions"] = json!(invoker.permissions.to_string());
    json!({
        "id": id.to_string(), "application_id": APP_ID.to_string(), "type": kind, "data": data,
        "guild_id": place.guild_id.to_string(),
        "guild": { "id": place.guild_id.to_string(), "locale": "en-US", "features": [] },
        "channel_id": place.channel_id.to_string(),
        "channel": partial_channel(place.channel_id, place.guild_id, "releases", 0, invoker.permissions),
        "member": member,
        "token": format!("aW50ZXJhY3Rpb246{id}OnJvbGxib3Q6{:x}", id.wrapping_mul(0x9e37_79b9_7f4a_7c15)),
        "version": 1, "app_permissions": place.app_permissions.to_string(), "locale": "en-US",
        "guild_locale": "en-US", "entitlements": [],
        "authorizing_integration_owners": { "0": place.guild_id.to_string() },
        "context": 0, "attachment_size_limit": 10_485_760
    })
}

/// `/rollback <subcommand> [options]` (type 2, APPLICATION_COMMAND): the subcommand is an
/// option of type 1 holding the string options (type 3).
pub fn command_interaction(
    place: &Place,
    invoker: &Invoker,
    subcommand: &str,
    options: &[(&str, &str)],
) -> Value {
    let data = json!({
        "id": ROLLBACK_COMMAND.to_string(), "name": "rollback", "type": 1,
        "guild_id": place.guild_id.to_string(),
        "options": [{ "name": subcommand, "type": 1, "options": string_options(options, None) }]
    });
    interaction(2, place, invoker, data)
}

/// The same command while the user types option `focused` (type 4,
/// APPLICATION_COMMAND_AUTOCOMPLETE): that option carries `"focused": true` and the partial text.
pub fn autocomplete_interaction(
    place: &Place,
    invoker: &Invoker,
    subcommand: &str,
    options: &[(&str, &str)],
    focused: &str,
) -> Value {
    let data = json!({
        "id": ROLLBACK_COMMAND.to_string(), "name": "rollback", "type": 1,
        "guild_id": place.guild_id.to_string(),
        "options": [{ "name": subcommand, "type": 1, "options": string_options(options, Some(focused)) }]
    });
    interaction(4, place, invoker, data)
}

/// A click on button `custom_id` (type 3, MESSAGE_COMPONENT) of `message` (the message object
/// as Discord has it, which the interaction carries whole).
pub fn button_interaction(
    place: &Place,
    invoker: &Invoker,
    message: &Value,
    custom_id: &str,
) -> Value {
    let data = json!({ "custom_id": custom_id, "component_type": 2 });
    let mut click = interaction(3, place, invoker, data);
    click["message"] = message.clone();
    click
}

/// `MESSAGE_REACTION_ADD` in a guild: Discord includes the reacting `member` (with roles).
pub fn reaction_add(
    place: &Place,
    invoker: &Invoker,
    message_id: u64,
    message_author_id: u64,
    emoji: &str,
) -> Value {
    json!({
        "user_id": invoker.id.to_string(), "channel_id": place.channel_id.to_string(),
        "message_id": message_id.to_string(), "guild_id": place.guild_id.to_string(),
        "member": member(invoker.id, &invoker.username, false, &invoker.roles, "2024-01-15T09:30:00.000000+00:00"),
        "emoji": { "id": null, "name": emoji }, "message_author_id": message_author_id.to_string(),
        "burst": false, "burst_colors": [], "type": 0
    })
}

/// An error body as Discord sends it.
pub fn error(code: u64, message: &str) -> Value {
    json!({ "code": code, "message": message })
}

/// A 50035 "Invalid Form Body" with one error at `path` (dotted, e.g.
/// `components.0.components.1.custom_id`), nested as Discord nests them.
pub fn form_error(path: &str, code: &str, message: &str) -> Value {
    let mut errors = json!({ "_errors": [{ "code": code, "message": message }] });
    for key in path.rsplit('.') {
        errors = json!({ key: errors });
    }
    json!({ "code": 50035, "message": "Invalid Form Body", "errors": errors })
}

/// Gateway op 10.
pub fn hello(heartbeat_interval_ms: u64) -> Value {
    json!({ "op": 10, "s": null, "t": null, "d": {
        "heartbeat_interval": heartbeat_interval_ms,
        "_trace": ["[\"gateway-prd-fake-1\",{\"micros\":0.0}]"]
    }})
}

/// The READY payload (serenity's `Ready`: `v`, `user`, `guilds`, `session_id`,
/// `resume_gateway_url`, `shard`, `application`).
pub fn ready(
    session_id: &str,
    resume_gateway_url: &str,
    shard: Option<&Value>,
    guild_ids: &[u64],
) -> Value {
    let mut ready = json!({
        "v": 10, "user": bot_user(), "user_settings": {}, "relationships": [],
        "private_channels": [], "presences": [], "guild_join_requests": [],
        "guilds": guild_ids.iter().map(|id| json!({ "id": id.to_string(), "unavailable": true })).collect::<Vec<_>>(),
        "session_id": session_id, "session_type": "normal",
        "resume_gateway_url": resume_gateway_url,
        "application": { "id": APP_ID.to_string(), "flags": 8_953_856 },
        "geo_ordered_rtc_regions": ["fake"], "auth_session_id_hash": "ZmFrZQ==",
        "_trace": ["[\"gateway-prd-fake-1\",{\"micros\":1000}]"]
    });
    if let Some(shard) = shard {
        ready["shard"] = shard.clone();
    }
    ready
}

/// GUILD_CREATE after READY (intent GUILDS): the guild plus what only the Gateway sends.
pub fn guild_create(
    guild: Value,
    joined_at: &str,
    members: Vec<Value>,
    channels: Vec<Value>,
    threads: Vec<Value>,
) -> Value {
    let mut create = guild;
    let count = members.len();
    for (key, value) in [
        ("joined_at", json!(joined_at)),
        ("large", json!(false)),
        ("unavailable", json!(false)),
        ("lazy", json!(true)),
        ("member_count", json!(count)),
        ("members", json!(members)),
        ("channels", json!(channels)),
        ("threads", json!(threads)),
        ("presences", json!([])),
        ("voice_states", json!([])),
        ("stage_instances", json!([])),
        ("guild_scheduled_events", json!([])),
        ("soundboard_sounds", json!([])),
        ("embedded_activities", json!([])),
        ("activity_instances", json!([])),
    ] {
        create[key] = value;
    }
    create
}

/// An op 0 dispatch.
pub fn dispatch(event: &str, seq: u64, data: Value) -> Value {
    json!({ "op": 0, "t": event, "s": seq, "d": data })
}
