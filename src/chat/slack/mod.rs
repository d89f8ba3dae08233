//! Slack: translates Slack payloads (slash command, button clicks, reactions) into the engine's
//! commands and renders its events as Block Kit messages. It decides no policy.
//!
//! Both connection modes feed the same [`SlackInput`] queue: Socket Mode (`socket.rs`, rollbot's
//! own client of Slack's documented protocol, whose link state `/readyz` reports) and HTTP mode
//! (`http.rs`, signed requests on the daemon's server). Every payload is parsed at the edge by
//! `inbound.rs` into a [`SlackInput`] or a clear error. Web API calls go through
//! slack-morphism's client pointed at `slack.api_url`, with 429 `Retry-After` honoured and API
//! errors reported with the channel and the fix.

pub mod blocks;
pub mod config;
pub mod http;
pub mod inbound;
pub mod mrkdwn;
pub mod signing;
pub mod socket;

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::{Arc, Mutex, OnceLock};

use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

use slack_morphism::errors::SlackClientError;
use slack_morphism::prelude::*;
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use self::config::{SlackMode, SlackSettings};
use crate::chat::{ChatError, ChatPort, Message, Text};
use crate::config::Settings;
use crate::domain::command::{self, Command};
use crate::domain::policy::{Approver, Decision};
use crate::domain::rollback::{Actor, ChannelRef, Platform};
use crate::engine::{EngineHandle, Inbound};
use crate::metrics::Metrics;

/// Something a person did in Slack, as the adapter needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SlackInput {
    Command {
        channel: String,
        user: String,
        command: Command,
        /// Slack's trigger id: a redelivered command has the same one.
        key: String,
    },
    Action {
        channel: String,
        user: String,
        user_name: String,
        action: String,
        key: String,
    },
    /// Text that is not a command: answered with the usage at once, and counted against the
    /// sender's rate limit (and audited) like any command.
    Malformed {
        channel: String,
        user: String,
        text: String,
        error: String,
    },
    Reaction {
        channel: String,
        user: String,
        reaction: String,
        /// The reacted-to message.
        ts: String,
        /// Slack's event id: an Events API retry has the same one.
        key: String,
    },
}

/// The Slack adapter.
pub struct Slack {
    pub settings: SlackSettings,
    client: Arc<SlackHyperClient>,
    token: SlackApiToken,
    engine: EngineHandle,
    bot_user: OnceLock<String>,
    /// User-group ids named in approvers (`group:S0123…`).
    approver_groups: Vec<String>,
    groups: tokio::sync::Mutex<HashMap<String, (Instant, HashSet<String>)>>,
    /// What the startup self-check found wrong, for `/readyz` and the log.
    problems: Mutex<Vec<String>>,
    /// Socket Mode only: why there is no working connection (`None` once Slack said `hello`).
    socket_down: Mutex<Option<String>>,
    inputs: mpsc::Sender<SlackInput>,
    /// Tells the input worker to stop taking inputs and drain.
    metrics: Arc<Metrics>,
}

impl std::fmt::Debug for Slack {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Slack")
            .field("mode", &self.settings.mode)
            .field("api_url", &self.settings.api_url)
            .finish_non_exhaustive()
    }
}

/// What a slash command's text asks for, or the reply when it asks for nothing rollbot can
/// do (help, or a usage error with the usage text): unparseable text never becomes a command.
///
/// # Errors
/// The reply to send instead.
pub fn interpret(text: &str) -> Result<Command, String> {
    match command::parse(text) {
        Ok(Command::Help) => Err(command::USAGE.to_owned()),
        Ok(command) => Ok(command),
        Err(error) => Err(format!("{error}\n{}", command::USAGE)),
    }
}

/// The HTTP client slack-morphism uses, accepting plain http only for the loopback URLs the
/// config allows (tests).
///
/// # Errors
/// The system's root certificates cannot be loaded.
pub fn client(api_url: &str) -> Result<Arc<SlackHyperClient>, String> {
    let https_or_http = hyper_rustls::HttpsConnectorBuilder::new()
        .with_native_roots()
        .map_err(|e| format!("cannot load root certificates: {e}"))?
        .https_or_http()
        .enable_http1()
        .build();
    let connector =
        SlackClientHyperConnector::with_connector(https_or_http).with_slack_api_url(api_url);
    Ok(Arc::new(SlackClient::new(connector)))
}

impl Slack {
    /// Builds the adapter and the queue its worker drains (see [`Slack::run_inputs`]).
    ///
    /// # Errors
    /// The HTTP client cannot be built.
    pub fn new(
        settings: &Settings,
        slack: SlackSettings,
        engine: EngineHandle,
        metrics: Arc<Metrics>,
    ) -> Result<(Arc<Slack>, mpsc::Receiver<SlackInput>), String> {
        let client = client(&slack.api_url)?;
        let socket_mode = slack.mode == SlackMode::Socket;
        let token = SlackApiToken::new(slack.bot_token.expose().to_owned().into());
        let mut approver_groups: Vec<String> = settings
            .daemon
            .approvals
            .approvers
            .iter()
            .chain(
                settings
                    .images
                    .values()
                    .flat_map(|e| e.approvers.iter().flatten()),
            )
            .filter_map(|a| match a {
                // All digits: a Discord role id (Slack's user group ids start with `S`).
                Approver::Group(group) if group.bytes().all(|b| b.is_ascii_digit()) => None,
                Approver::Group(group) => Some(group.clone()),
                Approver::User(_) => None,
            })
            .collect();
        approver_groups.sort();
        approver_groups.dedup();
        let (inputs, queue) = mpsc::channel(256);
        Ok((
            Arc::new(Slack {
                settings: slack,
                client,
                token,
                engine,
                bot_user: OnceLock::new(),
                approver_groups,
                groups: tokio::sync::Mutex::new(HashMap::new()),
                problems: Mutex::new(Vec::new()),
                socket_down: Mutex::new(socket_mode.then(|| "not started yet".to_owned())),
                inputs,
                metrics,
            }),
            queue,
        ))
    }

    /// Problems found by the self-check, and in Socket Mode a connection that has not said
    /// `hello` (with the reason); empty when Slack is usable.
    pub fn problems(&self) -> Vec<String> {
        let mut problems = crate::lock(&self.problems).clone();
        if let Some(why) = crate::lock(&self.socket_down).as_ref() {
            problems.push(format!("slack socket mode: not connected ({why})"));
        }
        problems
    }

    /// Socket Mode: Slack said `hello` on the connection rollbot relies on.
    fn socket_connected(&self) {
        *crate::lock(&self.socket_down) = None;
    }

    /// Socket Mode: no working connection, because of `why` (until the next `hello`).
    fn socket_not_connected(&self, why: String) {
        *crate::lock(&self.socket_down) = Some(why);
    }

    fn channel_allowed(&self, channel: &str) -> bool {
        self.settings.channels.is_empty() || self.settings.channels.iter().any(|c| c == channel)
    }

    /// Handles a slash command; returns the immediate (ephemeral) acknowledgement (see
    /// [`ack`]). The work is queued, and its answer posted as an ephemeral message.
    pub fn command(&self, channel: &str, user: &str, text: &str, key: &str) -> Text {
        if !self.channel_allowed(channel) {
            let channels = self
                .settings
                .channels
                .iter()
                .map(|c| Text::new().channel(c));
            return Text::from("rollbot does not take commands in this channel; use ")
                .append(Text::join(channels, ", "));
        }
        let command = match interpret(text) {
            Ok(command) => command,
            Err(reply) => {
                if let Err(error) = command::parse(text) {
                    self.enqueue(SlackInput::Malformed {
                        channel: channel.to_owned(),
                        user: user.to_owned(),
                        text: text.to_owned(),
                        error: error.to_string(),
                    });
                }
                // The usage error quotes what was typed: plain text.
                return Text::from(reply);
            }
        };
        let input = SlackInput::Command {
            channel: channel.to_owned(),
            user: user.to_owned(),
            command,
            key: key.to_owned(),
        };
        match self.inputs.try_send(input) {
            Ok(()) => Text::from("Working on it…"),
            Err(_) => Text::from("rollbot is busy or shutting down; try again in a moment"),
        }
    }

    /// Queues a button click or a reaction.
    pub fn enqueue(&self, input: SlackInput) {
        if self.inputs.try_send(input).is_err() {
            tracing::warn!("Slack input dropped: rollbot is busy or shutting down.");
        }
    }

    /// The worker: runs each queued input as a tracked task; once `shutdown` is cancelled,
    /// takes no more and waits for the tasks in flight.
    pub async fn run_inputs(
        self: Arc<Self>,
        mut queue: mpsc::Receiver<SlackInput>,
        shutdown: CancellationToken,
    ) {
        let mut tasks = JoinSet::new();
        loop {
            tokio::select! {
                input = queue.recv() => match input {
                    Some(input) => {
                        let slack = Arc::clone(&self);
                        tasks.spawn(async move { slack.handle(input).await });
                    }
                    None => break,
                },
                Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
                () = shutdown.cancelled() => break,
            }
        }
        queue.close();
        while tasks.join_next().await.is_some() {}
    }

    async fn handle(&self, input: SlackInput) {
        let engine = &self.engine;
        match input {
            SlackInput::Command {
                channel,
                user,
                command,
                key,
            } => {
                let actor = self.actor(&user, &user).await;
                self.submit(
                    engine,
                    &channel,
                    actor,
                    command,
                    format!("slack-command:{key}"),
                )
                .await;
            }
            SlackInput::Malformed {
                channel,
                user,
                text,
                error,
            } => {
                // The usage went out with the acknowledgement; this counts and audits it.
                let actor = self.actor(&user, &user).await;
                let answer = engine
                    .malformed(
                        actor,
                        ChannelRef::new(Platform::Slack, channel.as_str()),
                        &text,
                        error,
                    )
                    .await;
                tracing::debug!(user = %user, answer = ?answer, "Malformed Slack command counted.");
            }
            SlackInput::Action {
                channel,
                user,
                user_name,
                action,
                key,
            } => {
                let Some((decision, id)) = crate::chat::parse_action(&action) else {
                    return;
                };
                if !self.channel_allowed(&channel) {
                    return;
                }
                let actor = self.actor(&user, &user_name).await;
                self.submit(
                    engine,
                    &channel,
                    actor,
                    Command::vote(decision, id),
                    format!("slack-action:{key}"),
                )
                .await;
            }
            SlackInput::Reaction {
                channel,
                user,
                reaction,
                ts,
                key,
            } => {
                if self.bot_user.get().is_some_and(|bot| *bot == user) {
                    return;
                }
                let decision = if reaction == self.settings.approve_reaction {
                    Decision::Approve
                } else if reaction == self.settings.reject_reaction {
                    Decision::Reject
                } else {
                    return;
                };
                // The engine finds the rollback whose status message this is (if any).
                let actor = self.actor(&user, &user).await;
                let command = Command::VoteOnMessage {
                    decision,
                    message: ts,
                };
                self.submit(
                    engine,
                    &channel,
                    actor,
                    command,
                    format!("slack-event:{key}"),
                )
                .await;
            }
        }
    }

    /// Hands a command to the engine and tells the person the answer (privately).
    async fn submit(
        &self,
        engine: &EngineHandle,
        channel: &str,
        actor: Actor,
        command: Command,
        key: String,
    ) {
        let user = actor.id.clone();
        let reply = crate::chat::reply::reply(
            &engine
                .submit(Inbound {
                    actor,
                    channel: ChannelRef::new(Platform::Slack, channel),
                    command,
                    idempotency_key: Some(key),
                })
                .await,
        );
        if !reply.silent {
            // The engine's answers quote what people typed: plain text.
            self.ephemeral(channel, &user, &Text::from(&reply.text))
                .await;
        }
    }

    /// The acting user with the approver groups they are in (looked up, cached). A failed
    /// lookup counts as "in no group": it fails closed.
    async fn actor(&self, user: &str, name: &str) -> Actor {
        let mut groups = Vec::new();
        for group in &self.approver_groups {
            if self.members(group).await.contains(user) {
                groups.push(group.clone());
            }
        }
        Actor {
            id: user.to_owned(),
            name: name.to_owned(),
            groups,
        }
    }

    /// The members of `group`, cached for `slack.group_cache`.
    async fn members(&self, group: &str) -> HashSet<String> {
        let mut cache = self.groups.lock().await;
        if let Some((at, members)) = cache.get(group) {
            if at.elapsed() < self.settings.group_cache {
                return members.clone();
            }
        }
        match self.fetch_members(group).await {
            Ok(members) => {
                cache.insert(group.to_owned(), (Instant::now(), members.clone()));
                members
            }
            Err(error) => {
                tracing::warn!(group, %error, "Slack user group lookup failed; treating its members as not approvers.");
                HashSet::new()
            }
        }
    }

    /// `usergroups.users.list`, uncached.
    async fn fetch_members(&self, group: &str) -> Result<HashSet<String>, ChatError> {
        let request = SlackApiUserGroupsUsersListRequest::new(group.to_owned().into());
        let response = self
            .call("usergroups.users.list", group, || async {
                self.client
                    .open_session(&self.token)
                    .usergroups_users_list(&request)
                    .await
            })
            .await?;
        Ok(response.users.into_iter().map(|u| u.to_string()).collect())
    }

    async fn ephemeral(&self, channel: &str, user: &str, text: &Text) {
        let request = ephemeral_request(channel, user, text);
        let result = self
            .call("chat.postEphemeral", channel, || async {
                self.client
                    .open_session(&self.token)
                    .chat_post_ephemeral(&request)
                    .await
            })
            .await;
        if let Err(error) = result {
            self.metrics.sink_failure("slack");
            tracing::warn!(channel, user, %error, "Ephemeral reply not delivered.");
        }
    }

    /// One Web API call with Slack's rate limiting honoured (429 + `Retry-After`, up to three
    /// retries) and errors turned into a message naming the channel and the likely fix.
    async fn call<T, F, Fut>(&self, method: &str, channel: &str, call: F) -> Result<T, ChatError>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = ClientResult<T>>,
    {
        let mut attempt = 0;
        loop {
            attempt += 1;
            match call().await {
                Ok(value) => return Ok(value),
                Err(SlackClientError::RateLimitError(limit)) if attempt <= 3 => {
                    let wait = limit
                        .retry_after
                        .unwrap_or(Duration::from_secs(1))
                        .min(Duration::from_secs(30));
                    tracing::warn!(
                        method,
                        channel,
                        wait_ms = wait.as_millis() as u64,
                        "Slack rate limited the call; retrying after Retry-After."
                    );
                    tokio::time::sleep(wait).await;
                }
                Err(SlackClientError::ApiError(error)) => {
                    let hint = match error.code.as_str() {
                        "not_in_channel" => "; invite the bot to the channel (/invite @rollbot)",
                        "channel_not_found" => "; check slack.channels (ids, not names) and that the bot can see the channel",
                        "invalid_auth" | "not_authed" | "token_revoked" | "account_inactive" => {
                            "; check the bot token (slack.bot_token_env)"
                        }
                        "missing_scope" => "; add the scope to the Slack app (deploy/slack-app-manifest.yaml) and reinstall it",
                        _ => "",
                    };
                    return Err(ChatError(format!(
                        "Slack {method} in {channel} failed: {}{hint}",
                        error.code
                    )));
                }
                Err(other) => {
                    return Err(ChatError(format!(
                        "Slack {method} in {channel} failed: {other}"
                    )))
                }
            }
        }
    }

    /// Startup self-check: the token works (`auth.test`), the bot is a member of every
    /// configured channel, and user groups named in approvers can be read. Problems are logged
    /// and reported on `/readyz`.
    pub async fn self_check(&self) {
        let mut problems = Vec::new();
        let auth = self
            .call("auth.test", "-", || async {
                self.client.open_session(&self.token).auth_test().await
            })
            .await;
        match auth {
            Ok(auth) => {
                let _ = self.bot_user.set(auth.user_id.to_string());
                tracing::info!(bot_user = %auth.user_id, team = %auth.team, "Slack bot token works.");
            }
            Err(error) => problems.push(error.to_string()),
        }
        for channel in &self.settings.channels {
            let request = SlackApiConversationsInfoRequest::new(channel.clone().into());
            let info = self
                .call("conversations.info", channel, || async {
                    self.client
                        .open_session(&self.token)
                        .conversations_info(&request)
                        .await
                })
                .await;
            match info {
                Ok(info) if info.channel.flags.is_member == Some(false) => problems.push(format!(
                    "the bot is not a member of Slack channel {channel}{}: approvals there would be ignored; invite it with /invite @rollbot",
                    info.channel.name.map(|n| format!(" (#{n})")).unwrap_or_default()
                )),
                Ok(_) => {}
                Err(error) => problems.push(error.to_string()),
            }
        }
        // What the check reads also fills the membership cache for the first approvals.
        for group in &self.approver_groups {
            match self.fetch_members(group).await {
                Ok(members) => {
                    self.groups
                        .lock()
                        .await
                        .insert(group.clone(), (Instant::now(), members));
                }
                Err(error) => problems.push(error.to_string()),
            }
        }
        for problem in &problems {
            tracing::error!(problem = %problem, "Slack self-check failed.");
        }
        *crate::lock(&self.problems) = problems;
    }

    /// `chat.postMessage`, in the thread of `thread_ts` when given; returns the message's ts.
    async fn post(
        &self,
        channel: &str,
        thread_ts: Option<&str>,
        message: &Message,
    ) -> Result<String, ChatError> {
        let request = post_request(channel, thread_ts, message);
        let posted = self
            .call("chat.postMessage", channel, || async {
                self.client
                    .open_session(&self.token)
                    .chat_post_message(&request)
                    .await
            })
            .await?;
        Ok(posted.ts.to_string())
    }
}

/// How Slack is asked to read what rollbot sends: `parse=none` and no `link_names`, so Slack does
/// not go looking for names and `@channel` in the words (`parse=full` and `link_names` would, and
/// `chat.update` defaults to `parse=client`). Mentions and links are only what
/// [`mrkdwn::render`] wrote.
const PARSE: &str = "none";

/// The `text` and `blocks` of a message, both rendered from the message model.
pub fn message_content(message: &Message) -> SlackMessageContent {
    let blocks = blocks::blocks(message);
    let content = SlackMessageContent::new().with_text(mrkdwn::render(&message.fallback));
    match serde_json::from_value::<Vec<SlackBlock>>(serde_json::Value::Array(blocks)) {
        Ok(blocks) => content.with_blocks(blocks),
        Err(error) => {
            tracing::warn!(%error, "Block Kit rendering not accepted by the Slack model; sending text only.");
            content
        }
    }
}

/// `chat.postMessage` of `message`, in the thread of `thread_ts` when given.
pub fn post_request(
    channel: &str,
    thread_ts: Option<&str>,
    message: &Message,
) -> SlackApiChatPostMessageRequest {
    let request =
        SlackApiChatPostMessageRequest::new(channel.to_owned().into(), message_content(message))
            .with_parse(PARSE.to_owned())
            .with_link_names(false);
    match thread_ts {
        Some(ts) => request.with_thread_ts(ts.to_owned().into()),
        None => request,
    }
}

/// `chat.update` of the message `ts` to `message`.
pub fn update_request(channel: &str, ts: &str, message: &Message) -> SlackApiChatUpdateRequest {
    SlackApiChatUpdateRequest::new(
        channel.to_owned().into(),
        message_content(message),
        ts.to_owned().into(),
    )
    .with_parse(PARSE.to_owned())
    .with_link_names(false)
}

/// `chat.postEphemeral` of `text` to `user`.
pub fn ephemeral_request(
    channel: &str,
    user: &str,
    text: &Text,
) -> SlackApiChatPostEphemeralRequest {
    SlackApiChatPostEphemeralRequest::new(
        channel.to_owned().into(),
        user.to_owned().into(),
        SlackMessageContent::new().with_text(mrkdwn::render(text)),
    )
    .with_parse(PARSE.to_owned())
    .with_link_names(false)
}

/// The payload acknowledging a slash command (the HTTP response body, or the `payload` of the
/// Socket Mode ack): `text` for the person who typed it.
pub fn ack(text: &Text) -> serde_json::Value {
    serde_json::json!({ "response_type": "ephemeral", "text": mrkdwn::render(text) })
}

impl ChatPort for Slack {
    fn platform(&self) -> Platform {
        Platform::Slack
    }

    async fn post_status(&self, channel: &str, message: &Message) -> Result<String, ChatError> {
        self.post(channel, None, message).await
    }

    async fn update_status(
        &self,
        channel: &str,
        status_ref: &str,
        message: &Message,
    ) -> Result<(), ChatError> {
        let request = update_request(channel, status_ref, message);
        self.call("chat.update", channel, || async {
            self.client
                .open_session(&self.token)
                .chat_update(&request)
                .await
        })
        .await?;
        Ok(())
    }

    async fn reply(
        &self,
        channel: &str,
        status_ref: Option<&str>,
        message: &Message,
    ) -> Result<(), ChatError> {
        self.post(channel, status_ref, message).await.map(drop)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn help_and_malformed_commands_get_the_usage_not_a_command() {
        for text in [
            "",
            "help",
            "/rollback help",
            "approve",
            "reject",
            "history",
            "status rb-x",
        ] {
            let reply = interpret(text).expect_err(text);
            assert!(reply.contains("Usage:\n/rollback IMAGE"), "{text}: {reply}");
        }
        assert!(matches!(
            interpret("approve rb-1"),
            Ok(Command::Approve { .. })
        ));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn any_text_is_a_command_or_a_reply_with_the_usage(text in any::<String>()) {
            if let Err(reply) = interpret(&text) {
                prop_assert!(reply.contains(command::USAGE), "{}", reply);
            }
        }
    }
}
