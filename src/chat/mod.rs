//! Chat, platform-neutral: the message model every platform renders (blocks and buttons), the
//! rendering of a rollback's status message and thread replies, and the sink task that turns
//! engine events into posts and edits through a [`ChatPort`].
//!
//! Text in blocks uses a small markup every platform can map: `*bold*`, `` `code` ``, and
//! `<@user-id>` for a mention.

pub mod console;
pub mod slack;

use std::fmt::Write as _;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use tokio::sync::mpsc;

use crate::domain::model::TagNow;
use crate::domain::policy::Decision;
use crate::domain::rollback::{RollbackId, State, Timestamp};
use crate::engine::{Clock, EngineHandle, Event, EventKind};
use crate::metrics::Metrics;
use crate::notify::templates::{Context, Links, TemplateName, Templates};
use crate::report::{duration_text, rto_share_text};
use crate::store::RollbackRecord;

/// A message as a list of blocks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Message {
    /// One line for notifications and platforms without blocks.
    pub fallback: String,
    pub blocks: Vec<Block>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Block {
    Header { text: String },
    Text { text: String },
    Fields { fields: Vec<(String, String)> },
    Context { text: String },
    Actions { buttons: Vec<Button> },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Button {
    /// `approve:rb-17`, `reject:rb-17`: what a click means, parsed back by [`parse_action`].
    pub action: String,
    pub label: String,
    pub style: ButtonStyle,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ButtonStyle {
    Primary,
    Danger,
}

/// A button's action back into an approval or rejection.
pub fn parse_action(action: &str) -> Option<(Decision, RollbackId)> {
    let (verb, id) = action.split_once(':')?;
    let id = id.parse::<RollbackId>().ok()?;
    match verb {
        "approve" => Some((Decision::Approve, id)),
        "reject" => Some((Decision::Reject, id)),
        _ => None,
    }
}

impl Message {
    /// A message of one text block (its fallback is the same text).
    pub fn text(text: impl Into<String>) -> Message {
        let text = text.into();
        Message {
            fallback: text.clone(),
            blocks: vec![Block::Text { text }],
        }
    }

    /// A canonical plain-text form: what snapshot tests compare, and what text-only clients show.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        for block in &self.blocks {
            match block {
                Block::Header { text } => {
                    let _ = writeln!(out, "# {text}");
                }
                Block::Text { text } => {
                    let _ = writeln!(out, "{text}");
                }
                Block::Fields { fields } => {
                    for (label, value) in fields {
                        let _ = writeln!(out, "{label}: {value}");
                    }
                }
                Block::Context { text } => {
                    let _ = writeln!(out, "({text})");
                }
                Block::Actions { buttons } => {
                    let labels: Vec<String> = buttons
                        .iter()
                        .map(|b| format!("[{}]({})", b.label, b.action))
                        .collect();
                    let _ = writeln!(out, "{}", labels.join(" "));
                }
            }
        }
        out
    }
}

fn state_label(state: State) -> &'static str {
    match state {
        State::Requested => "waiting for approval",
        State::Approved => "approved",
        State::Retagging => "moving tags",
        State::Verifying => "verifying",
        State::Succeeded => "rolled back",
        State::Failed => "FAILED",
        State::Rejected => "rejected",
        State::Expired => "expired",
        State::Cancelled => "cancelled",
        State::Interrupted => "INTERRUPTED",
    }
}

/// The one status message of a rollback, edited in place as it progresses.
pub fn status_message(record: &RollbackRecord, now: Timestamp, rto: Duration) -> Message {
    let mut blocks = Vec::new();
    blocks.push(Block::Header {
        text: format!(
            "Rollback {} of {}: {}",
            record.id,
            record.alias,
            state_label(record.state)
        ),
    });
    let reason = record
        .reason
        .as_deref()
        .map(|r| format!(" Reason: {r}"))
        .unwrap_or_default();
    blocks.push(Block::Text {
        text: format!(
            "<@{}> asked to roll back `{}` to {}.{reason}",
            record.requester.id, record.image, record.requested_target
        ),
    });
    let platforms = if record.target.platforms.is_empty() {
        format!(
            "{}, {} blobs present",
            record.target.kind, record.target.references_checked
        )
    } else {
        format!(
            "{}: {} (all present)",
            record.target.kind,
            record.target.platforms.join(", ")
        )
    };
    let mut fields = vec![
        ("Target".to_owned(), format!("`{}`", record.target.digest)),
        ("Image".to_owned(), platforms),
    ];
    for planned in &record.tags {
        let now = record
            .tags_now
            .iter()
            .find(|(tag, _)| *tag == planned.tag)
            .map(|(_, now)| now);
        let value = if planned.already_at_target {
            "already at target".to_owned()
        } else {
            match (now, record.state) {
                (Some(now), _) if now.is(&record.target.digest) => {
                    format!("`{}` → target (moved)", planned.from.short())
                }
                (Some(TagNow::Unknown { .. }), _) => format!(
                    "`{}` → target (unknown: the registry could not be read back; run `rollbot verify`)",
                    planned.from.short()
                ),
                (Some(now), State::Failed | State::Interrupted) if now.is(&planned.from) => {
                    format!("`{}` (not moved)", planned.from.short())
                }
                (Some(now), State::Failed | State::Interrupted) => {
                    format!(
                        "`{}` → target (not moved; now `{}`)",
                        planned.from.short(),
                        now.short()
                    )
                }
                _ => format!("`{}` → target", planned.from.short()),
            }
        };
        fields.push((format!("Tag {}", planned.tag), value));
    }
    if let Some(source) = &record.target_source {
        fields.push(("Chosen".to_owned(), source.clone()));
    }
    let approvals: Vec<String> = record
        .votes
        .iter()
        .map(|v| match v.decision {
            Decision::Approve => format!("approved by <@{}>", v.actor.id),
            Decision::Reject => format!("rejected by <@{}>", v.actor.id),
        })
        .collect();
    fields.push((
        "Approvals".to_owned(),
        if approvals.is_empty() {
            "none yet".to_owned()
        } else {
            approvals.join(", ")
        },
    ));
    if record.state == State::Requested {
        fields.push(("Expires".to_owned(), record.expires_at.rfc3339()));
    }
    blocks.push(Block::Fields { fields });

    let steps: Vec<String> = record
        .steps
        .iter()
        .map(|step| {
            format!(
                "{} {} ({}): {}",
                if step.ok { "✓" } else { "✗" },
                step.name,
                duration_text(step.duration_ms),
                step.detail
            )
        })
        .chain(record.checks.iter().map(|check| {
            format!(
                "  {} check {} ({}): {}",
                if check.passed { "✓" } else { "✗" },
                check.name,
                duration_text(check.duration_ms),
                check.detail
            )
        }))
        .collect();
    if !steps.is_empty() {
        blocks.push(Block::Text {
            text: steps.join("\n"),
        });
    }
    if let Some(error) = &record.error {
        blocks.push(Block::Text {
            text: format!("*{}*: {error}", state_label(record.state)),
        });
    }
    if record.state.is_terminal() {
        let end = record.finished_at.unwrap_or(now);
        let total = end.since(record.created_at);
        blocks.push(Block::Text {
            text: format!(
                "Total {} from request to {}: {} of the {} RTO budget.",
                duration_text(total),
                state_label(record.state),
                rto_share_text(total, rto),
                humantime::format_duration(rto)
            ),
        });
    }
    if record.state == State::Requested {
        blocks.push(Block::Actions {
            buttons: vec![
                Button {
                    action: format!("approve:{}", record.id),
                    label: "Approve".to_owned(),
                    style: ButtonStyle::Primary,
                },
                Button {
                    action: format!("reject:{}", record.id),
                    label: "Reject".to_owned(),
                    style: ButtonStyle::Danger,
                },
            ],
        });
        blocks.push(Block::Context {
            text: format!(
                "A second person approves with the button or `/rollback approve {}`.",
                record.id
            ),
        });
    }
    Message {
        fallback: format!(
            "Rollback {} of {}: {}",
            record.id,
            record.alias,
            state_label(record.state)
        ),
        blocks,
    }
}

/// The threaded reply an event deserves, if any (the requester is mentioned so they are
/// notified). The end of a rollback is told with the `chat_summary` template.
pub fn thread_reply(
    event: &Event,
    templates: &Templates,
    rto: Duration,
    now: Timestamp,
) -> Option<Message> {
    if let (EventKind::Succeeded | EventKind::Failed, Some(record)) = (&event.kind, &event.rollback)
    {
        let name = if event.kind == EventKind::Succeeded {
            "succeeded"
        } else {
            "failed"
        };
        let context = Context::of(record, name, rto, Links::default(), now);
        let text = match templates.render(TemplateName::ChatSummary, &context) {
            Ok(text) => text,
            Err(error) => {
                tracing::error!(%error, "The chat_summary template failed; using a plain summary.");
                format!("{}: {}", record.id, record.state)
            }
        };
        return Some(Message::text(text));
    }
    let text = match (&event.kind, &event.rollback) {
        (EventKind::Approved { by }, Some(r)) => format!(
            "<@{}>: <@{}> approved {}; rolling back now.",
            r.requester.id, by.id, r.id
        ),
        (EventKind::ApprovalRecorded { by }, Some(r)) => format!(
            "<@{}>: <@{}> approved {}; more approvals needed.",
            r.requester.id, by.id, r.id
        ),
        (EventKind::Rejected { by }, Some(r)) => format!(
            "<@{}>: <@{}> rejected {}; nothing changed.",
            r.requester.id, by.id, r.id
        ),
        (EventKind::Cancelled { .. }, Some(r)) => {
            format!("{} cancelled; nothing changed.", r.id)
        }
        (EventKind::Expired, Some(r)) => format!(
            "<@{}>: {} expired without approval; nothing changed.",
            r.requester.id, r.id
        ),
        (EventKind::Notice { text }, _) => text.clone(),
        (EventKind::Interrupted, Some(r)) => format!(
            "<@{}>: {} was INTERRUPTED by a restart: {}",
            r.requester.id,
            r.id,
            r.error.as_deref().unwrap_or("check the tags")
        ),
        (EventKind::Resumed { detail }, Some(r)) => format!("{}: {detail}.", r.id),
        (EventKind::HoldReleased { image, by, reason }, _) => format!(
            "<@{}> released the hold on `{image}`; CI may move its tags again.{}",
            by.id,
            reason
                .as_deref()
                .map(|r| format!(" Reason: {r}"))
                .unwrap_or_default()
        ),
        _ => return None,
    };
    Some(Message::text(text))
}

/// Why a chat call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ChatError(pub String);

/// What a chat platform does for the sink. `channel` is the engine's channel string with the
/// platform prefix removed; `status_ref` is whatever `post_status` returned.
pub trait ChatPort: Send + Sync + 'static {
    /// The prefix of channels this platform serves (`console:`).
    fn prefix(&self) -> &'static str;
    fn post_status(
        &self,
        channel: &str,
        message: &Message,
    ) -> impl Future<Output = Result<String, ChatError>> + Send;
    fn update_status(
        &self,
        channel: &str,
        status_ref: &str,
        message: &Message,
    ) -> impl Future<Output = Result<(), ChatError>> + Send;
    /// A reply under the status message (or in the channel when there is none).
    fn reply(
        &self,
        channel: &str,
        status_ref: Option<&str>,
        message: &Message,
    ) -> impl Future<Output = Result<(), ChatError>> + Send;
}

/// The chat sink task: keeps one status message per rollback up to date and posts thread
/// replies. A failure is logged and counted; it never touches the rollback.
pub async fn run_sink<P: ChatPort>(
    port: Arc<P>,
    engine: EngineHandle,
    mut events: mpsc::Receiver<Event>,
    clock: Arc<dyn Clock>,
    rto: Duration,
    metrics: Arc<Metrics>,
    templates: Arc<Templates>,
) {
    let mut refs: std::collections::HashMap<RollbackId, String> = std::collections::HashMap::new();
    while let Some(event) = events.recv().await {
        let Some(channel) = event.channel.strip_prefix(port.prefix()) else {
            continue;
        };
        let mut status_ref = None;
        let is_notice = matches!(event.kind, EventKind::Notice { .. });
        if let (true, Some(record)) = (is_notice, &event.rollback) {
            status_ref = refs
                .get(&record.id)
                .cloned()
                .or_else(|| record.status_ref.clone());
        }
        if let (false, Some(record)) = (is_notice, &event.rollback) {
            let message = status_message(record, clock.now(), rto);
            let known = refs
                .get(&record.id)
                .cloned()
                .or_else(|| record.status_ref.clone());
            let result = match &known {
                Some(existing) => port
                    .update_status(channel, existing, &message)
                    .await
                    .map(|()| existing.clone()),
                None => match port.post_status(channel, &message).await {
                    Ok(posted) => {
                        refs.insert(record.id, posted.clone());
                        engine.status_posted(record.id, posted.clone()).await;
                        Ok(posted)
                    }
                    Err(error) => Err(error),
                },
            };
            match result {
                Ok(posted) => status_ref = Some(posted),
                Err(error) => {
                    metrics.sink_failure(port.prefix().trim_end_matches(':'));
                    tracing::warn!(rollback_id = %record.id, channel, %error, "Status message not posted.");
                    status_ref = known;
                }
            }
        }
        if let Some(reply) = thread_reply(&event, &templates, rto, clock.now()) {
            if let Err(error) = port.reply(channel, status_ref.as_deref(), &reply).await {
                metrics.sink_failure(port.prefix().trim_end_matches(':'));
                tracing::warn!(channel, %error, "Thread reply not posted.");
            }
        }
    }
}
