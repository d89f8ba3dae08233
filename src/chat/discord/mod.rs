//! Discord (serenity 0.12.5): the `/rollback` command with subcommands, buttons and reactions,
//! over the Gateway or as an HTTP interactions endpoint. It translates Discord payloads into
//! engine commands and engine events into Discord messages; it decides no policy.
//!
//! The plan is a normal channel message (interaction tokens expire after 15 minutes; a
//! rollback can outlive them) with Approve / Reject buttons, edited in place as the rollback
//! runs; approvals, success and failure are replies in a thread started on it. Answers to the
//! person who acted (refusals, usage) are ephemeral. Every text goes through
//! [`markdown`], and every message says which users it may ping (`allowed_mentions`): only the
//! people rollbot itself mentions.
//!
//! `commands` defines `/rollback` and reads invocations back into the one grammar;
//! `interactions` answers interactions within Discord's 3 seconds and does the work after;
//! `gateway` is the serenity client (interactions, reactions, link state on `/readyz`);
//! `http` the signed endpoint (`signing`); `selfcheck` registers the command and checks the
//! token, guilds and channel permissions; `rest` is the one request path to the API.

pub mod commands;
pub mod config;
pub mod gateway;
pub mod http;
pub mod interactions;
pub mod markdown;
pub mod rest;
pub mod selfcheck;
pub mod signing;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use self::config::{DiscordMode, DiscordSettings, Snowflake};
use self::rest::{DiscordError, Rest};
use crate::chat::{Block, ButtonStyle, ChatError, ChatPort, Message};
use crate::domain::rollback::Platform;
use crate::engine::{Clock, EngineHandle};
use crate::metrics::Metrics;

/// Discord's limit on a thread's name.
const THREAD_NAME_MAX: usize = 100;

/// The Discord adapter.
pub struct Discord {
    pub settings: DiscordSettings,
    rest: Rest,
    engine: EngineHandle,
    metrics: Arc<Metrics>,
    /// The daemon's clock: HTTP mode judges a request's timestamp by it.
    clock: Arc<dyn Clock>,
    /// The HTTP mode's verifier; `None` in Gateway mode.
    public_key: Option<signing::PublicKey>,
    /// The bot's own user id (from the self-check), so its own reactions are not votes.
    bot_user: OnceLock<u64>,
    /// Image aliases, for autocomplete.
    aliases: Vec<String>,
    /// What the startup self-check found wrong, for `/readyz` and the log.
    problems: Mutex<Vec<String>>,
    /// Gateway mode only: why there is no working connection (`None` once READY came).
    gateway_down: Mutex<Option<String>>,
    /// Thread names by plan message id (from the plan's heading), and whether the thread
    /// exists yet.
    threads: Mutex<HashMap<String, Thread>>,
    /// The work after an interaction's answer runs in tasks the daemon waits for at shutdown.
    tasks: TaskTracker,
    shutdown: CancellationToken,
}

#[derive(Debug, Clone)]
struct Thread {
    name: String,
    started: bool,
}

impl std::fmt::Debug for Discord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Discord")
            .field("mode", &self.settings.mode)
            .field("api_url", &self.settings.api_url)
            .finish_non_exhaustive()
    }
}

impl Discord {
    /// Builds the adapter. Work it starts is tracked by `tasks` and stops taking input when
    /// `shutdown` is cancelled.
    ///
    /// # Errors
    /// The HTTP client cannot be built, or the public key is not a valid Ed25519 key.
    pub fn new(
        settings: DiscordSettings,
        aliases: Vec<String>,
        engine: EngineHandle,
        metrics: Arc<Metrics>,
        clock: Arc<dyn Clock>,
        tasks: TaskTracker,
        shutdown: CancellationToken,
    ) -> Result<Arc<Discord>, String> {
        let rest = Rest::new(&settings.api_url, &settings.bot_token, Arc::clone(&metrics))?;
        let public_key = match (&settings.mode, &settings.public_key) {
            (DiscordMode::Http, Some(key)) => Some(
                key.parse::<signing::PublicKey>()
                    .map_err(|e| format!("discord.public_key: {e}"))?,
            ),
            (DiscordMode::Http, None) => {
                return Err(
                    "HTTP mode needs the application's public key (discord.public_key_env)"
                        .to_owned(),
                )
            }
            (DiscordMode::Gateway, _) => None,
        };
        let gateway = settings.mode == DiscordMode::Gateway;
        Ok(Arc::new(Discord {
            settings,
            rest,
            engine,
            metrics,
            clock,
            public_key,
            bot_user: OnceLock::new(),
            aliases,
            problems: Mutex::new(Vec::new()),
            gateway_down: Mutex::new(gateway.then(|| "not started yet".to_owned())),
            threads: Mutex::new(HashMap::new()),
            tasks,
            shutdown,
        }))
    }

    /// Problems found by the self-check, and in Gateway mode a link that has not said READY
    /// (with the reason); empty when Discord is usable.
    pub fn problems(&self) -> Vec<String> {
        let mut problems = crate::lock(&self.problems).clone();
        if let Some(why) = crate::lock(&self.gateway_down).as_ref() {
            problems.push(format!("discord gateway: not connected ({why})"));
        }
        problems
    }

    fn gateway_connected(&self) {
        *crate::lock(&self.gateway_down) = None;
    }

    fn gateway_not_connected(&self, why: String) {
        *crate::lock(&self.gateway_down) = Some(why);
    }

    /// Whether rollbot takes commands in `channel` of `guild`.
    fn channel_allowed(&self, guild: Option<u64>, channel: u64) -> bool {
        let in_guild = guild.is_some_and(|g| self.settings.guilds.contains(&Snowflake(g)));
        in_guild
            && (self.settings.channels.is_empty()
                || self.settings.channels.contains(&Snowflake(channel)))
    }

    /// Logs and counts a failed call about `channel`, and turns it into the sink's error.
    fn failed(&self, channel: &str, error: &DiscordError) -> ChatError {
        self.metrics.sink_failure("discord");
        tracing::warn!(channel, code = error.code, %error, "Discord call failed.");
        ChatError(error.to_string())
    }

    /// Adds the approve and reject reactions to a plan, so approving is one click (Gateway
    /// mode: reactions only arrive over the Gateway).
    async fn seed_reactions(&self, channel: &str, message: &str) {
        for emoji in [
            &self.settings.approve_reaction,
            &self.settings.reject_reaction,
        ] {
            let emoji = percent_encode(emoji);
            let path = format!("/channels/{channel}/messages/{message}/reactions/{emoji}/@me");
            let route = "PUT /channels/{c}/messages/{m}/reactions/{emoji}/@me";
            if let Err(error) = self.rest.put(route, &path, None::<&()>).await {
                tracing::warn!(channel, %error, "Could not add the approval reactions to the plan.");
            }
        }
    }

    /// Starts the thread on the plan message `message` (its id is the message's), unless it
    /// exists already.
    async fn ensure_thread(&self, channel: &str, message: &str) -> Result<(), DiscordError> {
        let name = {
            let threads = crate::lock(&self.threads);
            match threads.get(message) {
                Some(thread) if thread.started => return Ok(()),
                Some(thread) => thread.name.clone(),
                None => "rollback".to_owned(),
            }
        };
        let path = format!("/channels/{channel}/messages/{message}/threads");
        let body = json!({ "name": name, "auto_archive_duration": 1440 });
        match self
            .rest
            .post("POST /channels/{c}/messages/{m}/threads", &path, &body)
            .await
        {
            // 160004: a thread exists already (a restart, another replica's earlier reply).
            Ok(_) => {}
            Err(error) if error.is(160_004) => {}
            Err(error) => return Err(error),
        }
        crate::lock(&self.threads)
            .entry(message.to_owned())
            .and_modify(|t| t.started = true)
            .or_insert(Thread {
                name,
                started: true,
            });
        Ok(())
    }
}

/// `emoji` as a path segment.
fn percent_encode(emoji: &str) -> String {
    emoji
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// A message as Discord's JSON: content (rendered by [`markdown`]), buttons, and the only
/// users it may ping.
pub fn message_body(message: &Message) -> Value {
    let mut rows = Vec::new();
    for block in &message.blocks {
        if let Block::Actions { buttons } = block {
            let buttons: Vec<Value> = buttons
                .iter()
                .take(5)
                .map(|b| {
                    json!({
                        "type": 2,
                        "custom_id": b.action,
                        "label": b.label,
                        "style": match b.style { ButtonStyle::Primary => 3, ButtonStyle::Danger => 4 },
                    })
                })
                .collect();
            rows.push(json!({ "type": 1, "components": buttons }));
        }
    }
    rows.truncate(5);
    json!({
        "content": markdown::render_message(message),
        "components": rows,
        "allowed_mentions": allowed_mentions(markdown::mentioned_users(message)),
    })
}

/// `allowed_mentions` naming exactly `users`: no `@everyone`, `@here` or role ping, whatever
/// the text says.
pub fn allowed_mentions(users: Vec<u64>) -> Value {
    let users: Vec<String> = users.iter().map(ToString::to_string).collect();
    json!({ "parse": [], "users": users, "roles": [], "replied_user": false })
}

/// The thread name for a plan: its heading up to the state (`Rollback rb-17 of web`).
fn thread_name(message: &Message) -> String {
    let heading = message.blocks.iter().find_map(|b| match b {
        Block::Header { text } => Some(text.as_str()),
        _ => None,
    });
    let name = heading
        .and_then(|h| h.split(": ").next())
        .unwrap_or("rollback");
    name.chars().take(THREAD_NAME_MAX).collect()
}

impl ChatPort for Discord {
    fn platform(&self) -> Platform {
        Platform::Discord
    }

    async fn post_status(&self, channel: &str, message: &Message) -> Result<String, ChatError> {
        let path = format!("/channels/{channel}/messages");
        let posted = self
            .rest
            .post("POST /channels/{c}/messages", &path, &message_body(message))
            .await
            .map_err(|e| self.failed(channel, &e))?;
        let id = posted
            .get("id")
            .and_then(Value::as_str)
            .and_then(|id| Snowflake::parse(id).ok())
            .ok_or_else(|| ChatError("Discord answered a posted message without an id".to_owned()))?
            .to_string();
        crate::lock(&self.threads).insert(
            id.clone(),
            Thread {
                name: thread_name(message),
                started: false,
            },
        );
        Ok(id)
    }

    /// Once the engine resolves votes on the plan, its approve and reject reactions are added
    /// (before, a click on them could arrive for a message the engine does not know yet).
    async fn status_known(&self, channel: &str, status_ref: &str, message: &Message) {
        let has_buttons = message
            .blocks
            .iter()
            .any(|b| matches!(b, Block::Actions { .. }));
        if has_buttons && self.settings.mode == DiscordMode::Gateway {
            self.seed_reactions(channel, status_ref).await;
        }
    }

    async fn update_status(
        &self,
        channel: &str,
        status_ref: &str,
        message: &Message,
    ) -> Result<(), ChatError> {
        let path = format!("/channels/{channel}/messages/{status_ref}");
        match self
            .rest
            .patch(
                "PATCH /channels/{c}/messages/{m}",
                &path,
                &message_body(message),
            )
            .await
        {
            Ok(_) => Ok(()),
            // Discord limits edits of messages older than an hour: say it in the thread.
            Err(error) if error.is(30_046) => {
                tracing::warn!(channel, %error, "The plan can no longer be edited; posting the status in its thread.");
                self.reply(channel, Some(status_ref), message).await
            }
            Err(error) => Err(self.failed(channel, &error)),
        }
    }

    async fn reply(
        &self,
        channel: &str,
        status_ref: Option<&str>,
        message: &Message,
    ) -> Result<(), ChatError> {
        let target = match status_ref {
            Some(plan) => {
                self.ensure_thread(channel, plan)
                    .await
                    .map_err(|e| self.failed(channel, &e))?;
                // A thread started on a message has the message's id.
                plan
            }
            None => channel,
        };
        let mut body = message_body(message);
        body["components"] = json!([]);
        let path = format!("/channels/{target}/messages");
        self.rest
            .post("POST /channels/{c}/messages", &path, &body)
            .await
            .map_err(|e| self.failed(channel, &e))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chat::{Button, Text};

    #[test]
    fn a_plan_has_its_buttons_and_pings_only_the_people_rollbot_names() {
        let message = Message {
            fallback: Text::from("Rollback rb-17 of web: waiting for approval"),
            blocks: vec![
                Block::Header {
                    text: "Rollback rb-17 of web: waiting for approval".to_owned(),
                },
                Block::Text {
                    text: Text::new()
                        .mention("80351110224678912")
                        .plain(" asked: @everyone <@&1> <@123>"),
                },
                Block::Actions {
                    buttons: vec![
                        Button {
                            action: "approve:rb-17".to_owned(),
                            label: "Approve".to_owned(),
                            style: ButtonStyle::Primary,
                        },
                        Button {
                            action: "reject:rb-17".to_owned(),
                            label: "Reject".to_owned(),
                            style: ButtonStyle::Danger,
                        },
                    ],
                },
            ],
        };
        let body = message_body(&message);
        assert_eq!(
            body["allowed_mentions"],
            json!({ "parse": [], "users": ["80351110224678912"], "roles": [], "replied_user": false })
        );
        let buttons = &body["components"][0]["components"];
        assert_eq!(buttons[0]["custom_id"], "approve:rb-17");
        assert_eq!(buttons[0]["style"], 3);
        assert_eq!(buttons[1]["custom_id"], "reject:rb-17");
        assert_eq!(buttons[1]["style"], 4);
        let content = body["content"].as_str().expect("content");
        assert!(content.contains("<@80351110224678912>"), "{content}");
        assert!(!content.contains("<@123>"), "{content}");
        assert_eq!(thread_name(&message), "Rollback rb-17 of web");
    }

    #[test]
    fn emoji_are_percent_encoded_for_the_reaction_route() {
        assert_eq!(percent_encode("✅"), "%E2%9C%85");
        assert_eq!(percent_encode("❌"), "%E2%9D%8C");
    }
}
