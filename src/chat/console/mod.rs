//! The console: a built-in local chat (one channel, users from the config, no login) so the
//! whole flow runs without Slack or Discord. Its messages live in memory, the newest
//! `console.history` of them; the web page in `console.html` polls them, a page at a time. It
//! goes through the same engine and rendering as every platform.

pub mod config;

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use serde::Serialize;

use super::reply::{reply, Reply};
use super::{ChatError, ChatPort, Message};
use crate::domain::command;
use crate::domain::rollback::{Actor, ChannelRef, Platform};
use crate::engine::{Clock, EngineHandle, Inbound};

/// The page, served at `/console`.
pub const PAGE: &str = include_str!("console.html");

/// One message in the console channel.
#[derive(Debug, Clone, Serialize)]
pub struct ConsoleMessage {
    pub id: u64,
    /// Bumped on every edit.
    pub version: u64,
    /// A user's name, or "rollbot".
    pub author: String,
    /// The message this one replies to.
    pub thread: Option<u64>,
    /// Only this user sees it (an ephemeral reply).
    pub only_for: Option<String>,
    pub message: Message,
    pub at: i64,
}

#[derive(Debug, Default)]
struct ChannelState {
    /// Oldest first; at most `Console::history` long.
    messages: VecDeque<ConsoleMessage>,
    next_id: u64,
    version: u64,
}

/// The most messages one `view` returns.
pub const MAX_PAGE: usize = 200;

/// One answer to "what changed": a page of messages.
#[derive(Debug, Clone)]
pub struct View {
    /// The channel's version: pass it as `since` next time.
    pub version: u64,
    /// Changed messages `user` can see, oldest first; the newest `limit` when more changed.
    pub messages: Vec<ConsoleMessage>,
    /// Older changed messages were left out.
    pub truncated: bool,
}

/// The console's channel and users.
#[derive(Debug)]
pub struct Console {
    pub channel: String,
    pub users: Vec<Actor>,
    /// How many messages are kept (the oldest go first).
    history: usize,
    state: Mutex<ChannelState>,
    clock: Arc<dyn Clock>,
}

impl Console {
    pub fn new(channel: String, users: Vec<Actor>, history: u32, clock: Arc<dyn Clock>) -> Console {
        Console {
            channel,
            users,
            history: usize::try_from(history).unwrap_or(usize::MAX).max(1),
            state: Mutex::new(ChannelState::default()),
            clock,
        }
    }

    /// The engine's reference to the console's channel.
    pub fn channel_ref(&self) -> ChannelRef {
        ChannelRef::new(Platform::Console, self.channel.as_str())
    }

    pub fn user(&self, id: &str) -> Option<&Actor> {
        self.users.iter().find(|u| u.id == id)
    }

    fn push(
        &self,
        author: &str,
        thread: Option<u64>,
        only_for: Option<&str>,
        message: Message,
    ) -> u64 {
        let mut state = crate::lock(&self.state);
        state.next_id += 1;
        state.version += 1;
        let id = state.next_id;
        let version = state.version;
        while state.messages.len() >= self.history {
            state.messages.pop_front();
        }
        state.messages.push_back(ConsoleMessage {
            id,
            version,
            author: author.to_owned(),
            thread,
            only_for: only_for.map(str::to_owned),
            message,
            at: self.clock.now().0,
        });
        id
    }

    /// The messages `user` can see that changed after version `since` (0: all kept), at most
    /// `limit` of them (the newest; capped at [`MAX_PAGE`]), and the channel's version (it
    /// changes on every post or edit).
    pub fn view(&self, user: &str, since: u64, limit: usize) -> View {
        let limit = limit.clamp(1, MAX_PAGE);
        let state = crate::lock(&self.state);
        let mut newest_first: Vec<&ConsoleMessage> = state
            .messages
            .iter()
            .rev()
            .filter(|m| m.version > since)
            .filter(|m| m.only_for.as_deref().is_none_or(|u| u == user))
            .take(limit + 1)
            .collect();
        let truncated = newest_first.len() > limit;
        newest_first.truncate(limit);
        View {
            version: state.version,
            messages: newest_first.into_iter().rev().cloned().collect(),
            truncated,
        }
    }

    /// Handles text typed by `user`: echoes it to the channel, runs it, and answers them
    /// privately.
    pub async fn say(&self, engine: &EngineHandle, user: &Actor, text: &str) -> Reply {
        let text: String = text.chars().take(2000).collect();
        self.push(&user.name, None, None, Message::text(text.as_str()));
        let answer = match command::parse(&text) {
            Ok(command) => {
                engine
                    .submit(Inbound {
                        actor: user.clone(),
                        channel: self.channel_ref(),
                        command,
                        idempotency_key: None,
                    })
                    .await
            }
            Err(error) => {
                engine
                    .malformed(user.clone(), self.channel_ref(), &text, error.to_string())
                    .await
            }
        };
        let reply = reply(&answer);
        self.push(
            "rollbot",
            None,
            Some(&user.id),
            Message::text(reply.text.as_str()),
        );
        reply
    }

    /// Handles a button click by `user`.
    pub async fn click(&self, engine: &EngineHandle, user: &Actor, action: &str) -> Reply {
        let reply = match super::parse_action(action) {
            Some((decision, id)) => reply(
                &engine
                    .submit(Inbound {
                        actor: user.clone(),
                        channel: self.channel_ref(),
                        command: command::Command::vote(decision, id),
                        idempotency_key: None,
                    })
                    .await,
            ),
            None => Reply::refused(format!("unknown action '{action}'")),
        };
        self.push(
            "rollbot",
            None,
            Some(&user.id),
            Message::text(reply.text.as_str()),
        );
        reply
    }
}

impl ChatPort for Console {
    fn platform(&self) -> Platform {
        Platform::Console
    }

    async fn post_status(&self, _channel: &str, message: &Message) -> Result<String, ChatError> {
        Ok(self
            .push("rollbot", None, None, message.clone())
            .to_string())
    }

    async fn update_status(
        &self,
        _channel: &str,
        status_ref: &str,
        message: &Message,
    ) -> Result<(), ChatError> {
        let id: u64 = status_ref
            .parse()
            .map_err(|_| ChatError(format!("no console message {status_ref}")))?;
        let mut state = crate::lock(&self.state);
        state.version += 1;
        let version = state.version;
        match state.messages.iter_mut().find(|m| m.id == id) {
            Some(existing) => {
                existing.message = message.clone();
                existing.version = version;
                Ok(())
            }
            None => Err(ChatError(format!("no console message {status_ref}"))),
        }
    }

    async fn reply(
        &self,
        _channel: &str,
        status_ref: Option<&str>,
        message: &Message,
    ) -> Result<(), ChatError> {
        let thread = status_ref.and_then(|r| r.parse().ok());
        self.push("rollbot", thread, None, message.clone());
        Ok(())
    }
}
