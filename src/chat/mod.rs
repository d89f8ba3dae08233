//! Chat, platform-neutral: the message model every platform renders (blocks and buttons), the
//! rendering of a rollback's status message and thread replies, and the sink task that turns
//! engine events into posts and edits through a [`ChatPort`].
//!
//! Text in blocks is [`Text`]: typed spans (plain words, bold, code, mentions, channels), never
//! markup in a string. Whatever people typed is a plain span, which every platform shows as
//! written; only rollbot's code puts in mentions, so a reason saying `<@U123>` or `<!channel>`
//! notifies nobody.

pub mod console;
pub mod discord;
pub mod reply;
pub mod slack;
mod summary;
pub mod text;

use std::fmt::Write as _;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

pub use self::text::{Span, Text};

use crate::domain::model::TagNow;
use crate::domain::policy::Decision;
use crate::domain::record::RollbackRecord;
use crate::domain::rollback::{Platform, RollbackId, State, Timestamp};
use crate::engine::{Clock, EngineHandle, Event, EventKind};
use crate::metrics::Metrics;
use crate::notify::templates::Templates;
use crate::report::{duration_text, rto_share_text};
use tracing::Instrument as _;

/// A message as a list of blocks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    /// For notifications and platforms without blocks.
    pub fallback: Text,
    pub blocks: Vec<Block>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Block {
    /// A heading: rollbot's own words, no formatting.
    Header {
        text: String,
    },
    Text {
        text: Text,
    },
    /// Labels are rollbot's own words, no formatting.
    Fields {
        fields: Vec<(String, Text)>,
    },
    Context {
        text: Text,
    },
    Actions {
        buttons: Vec<Button>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Button {
    /// `approve:rb-17`, `reject:rb-17`: what a click means, parsed back by [`parse_action`].
    pub action: String,
    pub label: String,
    pub style: ButtonStyle,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
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
    pub fn text(text: impl Into<Text>) -> Message {
        let text = text.into();
        Message {
            fallback: text.clone(),
            blocks: vec![Block::Text { text }],
        }
    }

    /// A canonical form (see [`Text`]'s `Display`): what snapshot tests compare. No platform is
    /// sent this; each renders the blocks itself.
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

/// A drill's state, where it differs from a rollback's: it rehearses, it does not roll back.
fn drill_state_label(state: State) -> &'static str {
    match state {
        State::Retagging | State::Verifying => "rehearsing",
        State::Succeeded => "rehearsal succeeded",
        State::Failed => "rehearsal FAILED",
        other => state_label(other),
    }
}

/// What a drill's status message says about it, under the heading.
const DRILL_NOTE: &str = "rehearsed on the image's scratch repository: production is only read, and nothing goes to GitHub or Docker Hub";

/// The one status message of a rollback, edited in place as it progresses. A drill's says DRILL
/// in its heading and what a drill touches.
pub fn status_message(record: &RollbackRecord, now: Timestamp, rto: Duration) -> Message {
    let mut blocks = Vec::new();
    let label = if record.drill {
        drill_state_label(record.state)
    } else {
        state_label(record.state)
    };
    let heading = if record.drill {
        format!("DRILL {} of {}: {label}", record.id, record.alias)
    } else {
        format!("Rollback {} of {}: {label}", record.id, record.alias)
    };
    blocks.push(Block::Header {
        text: heading.clone(),
    });
    let verb = if record.drill {
        " asked to rehearse the rollback of "
    } else {
        " asked to roll back "
    };
    let mut request = Text::new()
        .mention(&record.requester.id)
        .plain(verb)
        .code(record.image.to_string())
        .plain(format!(" to {}.", record.requested_target));
    if let Some(reason) = &record.reason {
        request = request.plain(format!(" Reason: {reason}"));
    }
    blocks.push(Block::Text { text: request });
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
        (
            "Target".to_owned(),
            Text::new().code(record.target.digest.to_string()),
        ),
        ("Image".to_owned(), Text::from(platforms)),
    ];
    if record.drill {
        fields.insert(0, ("DRILL".to_owned(), Text::from(DRILL_NOTE)));
    }
    for planned in &record.tags {
        let now = record
            .tags_now
            .iter()
            .find(|(tag, _)| *tag == planned.tag)
            .map(|(_, now)| now);
        let from = Text::new().code(planned.from.short());
        let value = if planned.already_at_target {
            Text::from("already at target")
        } else {
            match (now, record.state) {
                (Some(now), _) if now.is(&record.target.digest) => from.plain(" → target (moved)"),
                (Some(TagNow::Unknown { .. }), _) => from
                    .plain(" → target (unknown: the registry could not be read back; run ")
                    .code("rollbot verify")
                    .plain(")"),
                (Some(now), State::Failed | State::Interrupted) if now.is(&planned.from) => {
                    from.plain(" (not moved)")
                }
                (Some(now), State::Failed | State::Interrupted) => from
                    .plain(" → target (not moved; now ")
                    .code(now.short())
                    .plain(")"),
                _ => from.plain(" → target"),
            }
        };
        fields.push((format!("Tag {}", planned.tag), value));
    }
    if let Some(source) = &record.target_source {
        fields.push(("Chosen".to_owned(), Text::from(source)));
    }
    let approvals = record.votes.iter().map(|v| {
        let verb = match v.decision {
            Decision::Approve => "approved by ",
            Decision::Reject => "rejected by ",
        };
        Text::new().plain(verb).mention(&v.actor.id)
    });
    let approvals = Text::join(approvals, ", ");
    fields.push((
        "Approvals".to_owned(),
        if approvals.is_empty() {
            Text::from("none yet")
        } else {
            approvals
        },
    ));
    if record.state == State::Requested {
        fields.push((
            "Expires".to_owned(),
            Text::from(record.expires_at.rfc3339()),
        ));
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
            text: Text::from(steps.join("\n")),
        });
    }
    if let Some(error) = &record.error {
        blocks.push(Block::Text {
            text: Text::new().bold(label).plain(format!(": {error}")),
        });
    }
    if record.state.is_terminal() {
        let end = record.finished_at.unwrap_or(now);
        let total = end.since(record.created_at);
        blocks.push(Block::Text {
            text: Text::from(format!(
                "Total {} from request to {}: {} of the {} RTO budget.",
                duration_text(total),
                label,
                rto_share_text(total, rto),
                humantime::format_duration(rto)
            )),
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
            text: Text::new()
                .plain("A second person approves with the button or ")
                .code(format!("/rollback approve {}", record.id))
                .plain("."),
        });
    }
    Message {
        fallback: Text::from(heading),
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
    if let Some(record) = event.rollback.as_ref().filter(|r| r.drill) {
        return drill_reply(event, record, rto).map(Message::text);
    }
    if let (EventKind::Succeeded | EventKind::Failed, Some(record)) = (&event.kind, &event.rollback)
    {
        let name = if event.kind == EventKind::Succeeded {
            "succeeded"
        } else {
            "failed"
        };
        let text = match summary::render(templates, record, name, rto, now) {
            Ok(text) => text,
            Err(error) => {
                tracing::error!(%error, "The chat_summary template failed; using a plain summary.");
                Text::from(format!("{}: {}", record.id, record.state))
            }
        };
        return Some(Message::text(text));
    }
    // "<@requester>: " first, so the requester is notified.
    let to = |record: &RollbackRecord| Text::new().mention(&record.requester.id).plain(": ");
    let text = match (&event.kind, &event.rollback) {
        (EventKind::Approved { by }, Some(r)) => to(r)
            .mention(&by.id)
            .plain(format!(" approved {}; rolling back now.", r.id)),
        (EventKind::ApprovalRecorded { by }, Some(r)) => to(r)
            .mention(&by.id)
            .plain(format!(" approved {}; more approvals needed.", r.id)),
        (EventKind::Rejected { by }, Some(r)) => to(r)
            .mention(&by.id)
            .plain(format!(" rejected {}; nothing changed.", r.id)),
        (EventKind::Cancelled { .. }, Some(r)) => {
            Text::from(format!("{} cancelled; nothing changed.", r.id))
        }
        (EventKind::Expired, Some(r)) => to(r).plain(format!(
            "{} expired without approval; nothing changed.",
            r.id
        )),
        (EventKind::Notice { text, link }, _) => match link {
            Some(url) => Text::from(text.as_str()).link(url),
            None => Text::from(text.as_str()),
        },
        (EventKind::FinishedElsewhere { text }, _) => Text::from(text.as_str()),
        (EventKind::Interrupted, Some(r)) => to(r).plain(format!(
            "{} was INTERRUPTED by a restart: {}",
            r.id,
            r.error.as_deref().unwrap_or("check the tags")
        )),
        (EventKind::Resumed { detail }, Some(r)) => Text::from(format!("{}: {detail}.", r.id)),
        (EventKind::HoldReleased { image, by, reason }, _) => Text::new()
            .mention(&by.id)
            .plain(" released the hold on ")
            .code(image.to_string())
            .plain("; CI may move its tags again.")
            .plain(
                reason
                    .as_deref()
                    .map(|r| format!(" Reason: {r}"))
                    .unwrap_or_default(),
            ),
        _ => return None,
    };
    Some(Message::text(text))
}

/// The threaded reply to an event of a drill: every one says DRILL, and its end says how long
/// the rehearsal took against the RTO (the chat summary template is for rollbacks: it speaks of
/// the hold CI must respect).
fn drill_reply(event: &Event, record: &RollbackRecord, rto: Duration) -> Option<Text> {
    let id = record.id;
    let to = || {
        Text::new()
            .mention(&record.requester.id)
            .plain(format!(": DRILL {id} "))
    };
    let text = match &event.kind {
        EventKind::Succeeded => {
            let took = record
                .finished_at
                .zip(record.approved_at)
                .map_or(0, |(end, start)| end.since(start));
            to().plain(format!("done: rolling {} back to ", record.alias))
                .code(record.target.digest.short())
                .plain(format!(
                    " works; rehearsed in {} ({} of the {} RTO budget). Production unchanged.",
                    duration_text(took),
                    rto_share_text(took, rto),
                    humantime::format_duration(rto)
                ))
        }
        EventKind::Failed => to().plain(format!(
            "FAILED: {}. Production unchanged.",
            record.error.as_deref().unwrap_or("see the status message")
        )),
        EventKind::Approved { by } => to()
            .plain("approved by ")
            .mention(&by.id)
            .plain("; rehearsing on the scratch repository now."),
        EventKind::ApprovalRecorded { by } => to()
            .plain("approved by ")
            .mention(&by.id)
            .plain("; more approvals needed."),
        EventKind::Rejected { by } => to()
            .plain("rejected by ")
            .mention(&by.id)
            .plain("; nothing ran."),
        EventKind::Cancelled { .. } => Text::from(format!("DRILL {id} cancelled; nothing ran.")),
        EventKind::Expired => to().plain("expired without approval; nothing ran."),
        EventKind::Interrupted => to().plain(format!(
            "INTERRUPTED: {}",
            record
                .error
                .as_deref()
                .unwrap_or("rollbot stopped during it")
        )),
        EventKind::Resumed { detail } => Text::from(format!("DRILL {id}: {detail}.")),
        EventKind::Notice { text, link } => {
            let text = Text::from(format!("DRILL {id}: {text}"));
            match link {
                Some(url) => text.link(url),
                None => text,
            }
        }
        EventKind::FinishedElsewhere { text } => Text::from(format!("DRILL {id}: {text}")),
        _ => return None,
    };
    Some(text)
}

/// Why a chat call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ChatError(pub String);

/// What a chat platform does for the sink. `channel` is the platform's own channel id (the
/// [`ChannelRef`]'s `id`); `status_ref` is whatever `post_status` returned.
pub trait ChatPort: Send + Sync + 'static {
    /// The platform whose channels this port serves.
    fn platform(&self) -> Platform;
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
    /// The engine knows the status message `status_ref` now (votes on it are resolved): a
    /// platform may invite them (Discord adds its approve and reject reactions).
    fn status_known(
        &self,
        _channel: &str,
        _status_ref: &str,
        _message: &Message,
    ) -> impl Future<Output = ()> + Send {
        async {}
    }
}

/// The sink task for one chat platform: each event about this platform's channels becomes the
/// rollback's status message (posted once, then edited in place) and, for key moments, a
/// thread reply. A platform failing is counted and logged; it never reaches the engine.
pub async fn run_sink<P: ChatPort>(
    port: Arc<P>,
    engine: EngineHandle,
    mut events: mpsc::Receiver<Event>,
    clock: Arc<dyn Clock>,
    rto: Duration,
    metrics: Arc<Metrics>,
    templates: Arc<Templates>,
) {
    let mut sink = Sink {
        port,
        engine,
        clock,
        rto,
        metrics,
        templates,
        refs: std::collections::HashMap::new(),
    };
    while let Some(event) = events.recv().await {
        if event.channel.platform != sink.port.platform() {
            continue;
        }
        let span = event
            .rollback
            .as_ref()
            .map_or_else(tracing::Span::none, |r| {
                crate::engine::rollback_span(Some(r.id), Some(&r.image))
            });
        sink.deliver(&event).instrument(span).await;
    }
}

/// What [`run_sink`] keeps between events.
struct Sink<P> {
    port: Arc<P>,
    engine: EngineHandle,
    clock: Arc<dyn Clock>,
    rto: Duration,
    metrics: Arc<Metrics>,
    templates: Arc<Templates>,
    /// Status messages posted by this sink, by rollback.
    refs: std::collections::HashMap<RollbackId, String>,
}

impl<P: ChatPort> Sink<P> {
    async fn deliver(&mut self, event: &Event) {
        let (port, metrics, clock, rto) = (&self.port, &self.metrics, &self.clock, self.rto);
        let channel = event.channel.id.as_str();
        let mut status_ref = None;
        let is_notice = matches!(
            event.kind,
            EventKind::Notice { .. } | EventKind::FinishedElsewhere { .. }
        );
        if let Some(record) = &event.rollback {
            let known = self
                .refs
                .get(&record.id)
                .cloned()
                .or_else(|| record.status_ref.clone());
            status_ref = known.clone();
            // Every event but a notice shows its record in the status message (posted the
            // first time). A notice only replies in the thread, unless it is about a finished
            // rollback whose status message exists: then that shows the record too (as
            // stored; no buttons left on a rollback that is over).
            let shown = !is_notice || (record.state.is_terminal() && known.is_some());
            if shown {
                let message = status_message(record, clock.now(), rto);
                let result = match &known {
                    Some(existing) => port
                        .update_status(channel, existing, &message)
                        .await
                        .map(|()| existing.clone()),
                    None => match port.post_status(channel, &message).await {
                        Ok(posted) => {
                            self.refs.insert(record.id, posted.clone());
                            self.engine.status_posted(record.id, posted.clone()).await;
                            port.status_known(channel, &posted, &message).await;
                            Ok(posted)
                        }
                        Err(error) => Err(error),
                    },
                };
                match result {
                    Ok(posted) => status_ref = Some(posted),
                    Err(error) => {
                        metrics.sink_failure(port.platform().as_str());
                        tracing::warn!(rollback_id = %record.id, channel, %error, "Status message not posted.");
                    }
                }
            }
        }
        if let Some(reply) = thread_reply(event, &self.templates, rto, clock.now()) {
            if let Err(error) = port.reply(channel, status_ref.as_deref(), &reply).await {
                metrics.sink_failure(port.platform().as_str());
                tracing::warn!(channel, %error, "Thread reply not posted.");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(1000))]

        /// A button's action (from any platform, so untrusted) is an approval or a rejection of
        /// a rollback, which reads back the same from the action rollbot writes, or nothing.
        #[test]
        fn any_action_is_a_vote_or_nothing(action in any::<String>()) {
            if let Some((decision, id)) = parse_action(&action) {
                let verb = match decision {
                    Decision::Approve => "approve",
                    Decision::Reject => "reject",
                };
                prop_assert_eq!(parse_action(&format!("{verb}:{id}")), Some((decision, id)));
            }
        }
    }

    #[test]
    fn actions_rollbot_writes_parse_and_others_do_not() {
        for (action, expected) in [
            ("approve:rb-17", Some((Decision::Approve, RollbackId(17)))),
            ("reject:rb-3", Some((Decision::Reject, RollbackId(3)))),
            ("approve:", None),
            ("release:rb-1", None),
            ("approve:rb-x", None),
            ("", None),
        ] {
            assert_eq!(parse_action(action), expected, "{action}");
        }
    }
}
