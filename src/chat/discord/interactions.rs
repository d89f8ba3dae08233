//! Interactions and reactions into engine commands. An interaction is answered within
//! Discord's 3 seconds, the same way in both modes ([`Discord::answer`]: the answer, and the
//! work to do after it): a command is deferred ephemerally (type 5, flag 64) and its answer
//! edits that deferred response; a button is acknowledged without a loading state (type 6) and
//! its answer is an ephemeral follow-up; usage, help and refusals found here are an immediate
//! ephemeral message (type 4); autocomplete is answered at once (type 8). The Gateway sends the
//! answer to the callback route, HTTP mode returns it as the response.
//!
//! Who acts is Discord's user id; the groups they are in are the role ids Discord sends with
//! every guild interaction and reaction (`member.roles`), so `group:<role id>` approvers need
//! no lookup. Without a member (a DM) nothing is taken.

use serde_json::{json, Value};
use serenity::all::{
    CommandInteraction, ComponentInteraction, Interaction, Member, Reaction, ReactionType, User,
};

use super::commands::{self, Complete};
use super::{allowed_mentions, markdown, Discord};
use crate::chat::reply::{reply, Reply};
use crate::chat::{parse_action, Text};
use crate::domain::command::Command;
use crate::domain::policy::Decision;
use crate::domain::rollback::{Actor, ChannelRef, Platform};
use crate::engine::{Answer, Inbound};

/// Interaction response flag: only the person who acted sees the message.
const EPHEMERAL: u64 = 64;

/// What to do once the interaction has been answered.
#[derive(Debug)]
pub enum Work {
    /// A command, deferred: its answer edits the deferred (ephemeral) response.
    Command { inbound: Inbound, token: String },
    /// A button click, acknowledged: its answer is an ephemeral follow-up.
    Button { inbound: Inbound, token: String },
    /// A usage error, answered already: counted against the sender's limit and audited.
    Malformed {
        actor: Actor,
        channel: ChannelRef,
        text: String,
        error: String,
    },
}

/// `{"type": 4}`: an ephemeral message, pinging nobody.
fn ephemeral(text: &Text) -> Value {
    json!({
        "type": 4,
        "data": {
            "content": markdown::render_fitted(text),
            "flags": EPHEMERAL,
            "allowed_mentions": allowed_mentions(Vec::new()),
        }
    })
}

/// The person acting: their user id, a display name (never used for decisions), and their
/// role ids as groups.
fn actor(member: Option<&Member>, user: &User) -> Actor {
    let name = member
        .and_then(|m| m.nick.clone())
        .or_else(|| user.global_name.clone())
        .unwrap_or_else(|| user.name.clone());
    Actor {
        id: user.id.get().to_string(),
        name,
        groups: member
            .map(|m| m.roles.iter().map(|r| r.get().to_string()).collect())
            .unwrap_or_default(),
    }
}

impl Discord {
    /// The answer to `interaction` (the JSON of an interaction response) and the work to do
    /// once Discord has it. `None` for an interaction rollbot does not take (then nothing is
    /// sent, and Discord tells the person the interaction failed).
    pub async fn answer(&self, interaction: Interaction) -> Option<(Value, Option<Work>)> {
        match interaction {
            Interaction::Ping(_) => Some((json!({ "type": 1 }), None)),
            Interaction::Command(command) => Some(self.command(command)),
            Interaction::Autocomplete(command) => Some((self.autocomplete(&command).await, None)),
            Interaction::Component(click) => Some(self.button(click)),
            _ => None,
        }
    }

    /// Refuses a command from a guild or channel rollbot does not work in.
    fn refuse_channel(&self, guild: Option<u64>, channel: u64) -> Option<Value> {
        if self.channel_allowed(guild, channel) {
            return None;
        }
        let text = if self.settings.channels.is_empty() {
            Text::from("rollbot does not take commands here (only in its configured guilds)")
        } else {
            let channels = self
                .settings
                .channels
                .iter()
                .map(|c| Text::new().channel(c.to_string()));
            Text::from("rollbot does not take commands in this channel; use ")
                .append(Text::join(channels, ", "))
        };
        Some(ephemeral(&text))
    }

    fn command(&self, command: CommandInteraction) -> (Value, Option<Work>) {
        let guild = command.guild_id.map(|g| g.get());
        let channel_id = command.channel_id.get();
        if let Some(refusal) = self.refuse_channel(guild, channel_id) {
            return (refusal, None);
        }
        let actor = actor(command.member.as_deref(), &command.user);
        let channel = ChannelRef::new(Platform::Discord, channel_id.to_string());
        if command.data.name != commands::NAME {
            return (ephemeral(&Text::from("rollbot only knows /rollback")), None);
        }
        match commands::interpret(&command.data) {
            Ok(parsed) => {
                let inbound = Inbound {
                    actor,
                    channel,
                    command: parsed,
                    idempotency_key: Some(format!("discord-interaction:{}", command.id.get())),
                };
                let defer = json!({ "type": 5, "data": { "flags": EPHEMERAL } });
                let work = Work::Command {
                    inbound,
                    token: command.token,
                };
                (defer, Some(work))
            }
            Err((usage, malformed)) => {
                // The usage quotes what was typed: plain text.
                let work = malformed.map(|error| Work::Malformed {
                    actor,
                    channel,
                    text: commands::text_of(&command.data).unwrap_or_default(),
                    error,
                });
                (ephemeral(&Text::from(usage)), work)
            }
        }
    }

    fn button(&self, click: ComponentInteraction) -> (Value, Option<Work>) {
        let guild = click.guild_id.map(|g| g.get());
        let channel_id = click.channel_id.get();
        if let Some(refusal) = self.refuse_channel(guild, channel_id) {
            return (refusal, None);
        }
        let Some((decision, id)) = parse_action(&click.data.custom_id) else {
            return (
                ephemeral(&Text::from("That button is not rollbot's.")),
                None,
            );
        };
        let inbound = Inbound {
            actor: actor(click.member.as_ref(), &click.user),
            channel: ChannelRef::new(Platform::Discord, channel_id.to_string()),
            command: Command::vote(decision, id),
            idempotency_key: Some(format!("discord-interaction:{}", click.id.get())),
        };
        let work = Work::Button {
            inbound,
            token: click.token,
        };
        (json!({ "type": 6 }), Some(work))
    }

    async fn autocomplete(&self, command: &CommandInteraction) -> Value {
        let allowed =
            self.channel_allowed(command.guild_id.map(|g| g.get()), command.channel_id.get());
        let choices = match commands::focused(&command.data) {
            Some(_) if !allowed => Vec::new(),
            Some((Complete::Images, typed)) => {
                commands::choices(&typed, self.aliases.iter().map(String::as_str))
            }
            Some((Complete::Rollbacks, typed)) => {
                let ids = self
                    .engine
                    .active()
                    .await
                    .into_iter()
                    .map(|r| r.id)
                    .collect();
                commands::rollback_choices(&typed, ids)
            }
            None => Vec::new(),
        };
        let choices: Vec<Value> = choices
            .into_iter()
            .map(|c| json!({ "name": c, "value": c }))
            .collect();
        json!({ "type": 8, "data": { "choices": choices } })
    }

    /// Does `work` now that Discord has the interaction's answer.
    pub async fn run(&self, work: Work) {
        match work {
            Work::Command { inbound, token } => {
                let answer = self.engine.submit(inbound).await;
                self.tell(&token, &answer, true).await;
            }
            Work::Button { inbound, token } => {
                let answer = self.engine.submit(inbound).await;
                self.tell(&token, &answer, false).await;
            }
            Work::Malformed {
                actor,
                channel,
                text,
                error,
            } => {
                let answer = self.engine.malformed(actor, channel, &text, error).await;
                tracing::debug!(answer = ?answer, "Malformed Discord command counted.");
            }
        }
    }

    /// Tells the person who acted the engine's answer: by editing the deferred response, or as
    /// an ephemeral follow-up to a button.
    async fn tell(&self, token: &str, answer: &Answer, deferred: bool) {
        let Reply { text, silent, .. } = reply(answer);
        let app = self.settings.application_id;
        let content = markdown::render_fitted(&Text::from(text.as_str()));
        let result = if deferred {
            // A duplicate's deferred response still says "thinking…": end it.
            let content = if silent {
                "(already handled)".to_owned()
            } else {
                content
            };
            let body =
                json!({ "content": content, "allowed_mentions": allowed_mentions(Vec::new()) });
            let path = format!("/webhooks/{app}/{token}/messages/@original");
            self.with_token_retry(|| {
                self.rest.patch(
                    "PATCH /webhooks/{app}/{token}/messages/@original",
                    &path,
                    &body,
                )
            })
            .await
        } else if silent {
            return;
        } else {
            let body = json!({
                "content": content,
                "flags": EPHEMERAL,
                "allowed_mentions": allowed_mentions(Vec::new()),
            });
            let path = format!("/webhooks/{app}/{token}");
            self.with_token_retry(|| self.rest.post("POST /webhooks/{app}/{token}", &path, &body))
                .await
        };
        if let Err(error) = result {
            self.metrics.sink_failure("discord");
            tracing::warn!(code = error.code, %error, "The answer to a Discord interaction was not delivered.");
        }
    }

    /// A call on an interaction's token, made once more after a moment when Discord does not
    /// know the token yet (10015 Unknown Webhook: in HTTP mode the work can start before
    /// Discord has read the response that acknowledged the interaction).
    async fn with_token_retry<F, Fut>(&self, call: F) -> Result<Value, super::rest::DiscordError>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = Result<Value, super::rest::DiscordError>>,
    {
        match call().await {
            Err(error) if error.is(10_015) => {
                tokio::time::sleep(std::time::Duration::from_millis(500)).await;
                call().await
            }
            other => other,
        }
    }

    /// A reaction on a message (Gateway mode): the approve or reject emoji by someone other
    /// than the bot is a vote on the rollback whose plan that message is, resolved by the
    /// engine; on any other message it is nothing. A refused vote is told in the plan's thread
    /// (a reaction has no private answer), pinging only the person who reacted.
    pub async fn reaction(&self, reaction: Reaction) {
        let Some(user) = reaction.user_id else {
            return;
        };
        // Fail closed: without the bot's own id, its seeded reactions could not be told from
        // votes (READY sets it before any reaction arrives).
        if self.bot_user.get().is_none_or(|bot| *bot == user.get()) {
            return;
        }
        let guild = reaction.guild_id.map(|g| g.get());
        if !self.channel_allowed(guild, reaction.channel_id.get()) {
            return;
        }
        let ReactionType::Unicode(emoji) = &reaction.emoji else {
            return;
        };
        let decision = if *emoji == self.settings.approve_reaction {
            Decision::Approve
        } else if *emoji == self.settings.reject_reaction {
            Decision::Reject
        } else {
            return;
        };
        let Some(member) = reaction.member.as_ref() else {
            // Discord sends the member with every guild reaction; without it the roles are
            // unknown, and a vote would be judged on less than the truth.
            tracing::warn!("A reaction came without its member; ignored.");
            return;
        };
        // The roles judged must be the reacting user's, and a bot is never a person's vote.
        if member.user.id != user || member.user.bot {
            tracing::warn!(
                user = user.get(),
                member = member.user.id.get(),
                bot = member.user.bot,
                "A reaction by a bot, or with another user's member, ignored."
            );
            return;
        }
        let actor = actor(Some(member), &member.user);
        let channel = reaction.channel_id.get().to_string();
        let message = reaction.message_id.get().to_string();
        let inbound = Inbound {
            actor,
            channel: ChannelRef::new(Platform::Discord, channel.as_str()),
            command: Command::VoteOnMessage {
                decision,
                message: message.clone(),
            },
            idempotency_key: Some(format!("discord-reaction:{message}:{}:{emoji}", user.get())),
        };
        let answer = self.engine.submit(inbound).await;
        let Reply { text, ok, silent } = reply(&answer);
        if ok || silent {
            return;
        }
        let text = Text::new()
            .mention(user.get().to_string())
            .plain(format!(": {text}"));
        let message_body = crate::chat::Message::text(text);
        if let Err(error) =
            crate::chat::ChatPort::reply(self, &channel, Some(&message), &message_body).await
        {
            tracing::warn!(%error, "The refusal of a reaction vote was not posted.");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_text_is_cut_within_the_limit_without_a_dangling_escape() {
        // Rendered, the `*` is `\\*`: the cut must not leave the backslash escaping the `…`.
        let text = format!("{}*x", "a".repeat(1998));
        let cut = markdown::render_fitted(&Text::from(text.as_str()));
        assert!(cut.chars().count() <= markdown::MAX_CONTENT_CHARS);
        assert!(cut.ends_with("a…"), "{}", &cut[cut.len() - 10..]);
        assert_eq!(markdown::render_fitted(&Text::from("short")), "short");
    }
}
