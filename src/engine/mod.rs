//! The engine: the single owner of rollback state. Commands in (from any chat adapter),
//! events out (to chat and notification sinks). One task; everything else sends it messages.
//!
//! Work that waits on the registry (planning, the pipeline, history, releasing a hold) runs in
//! tracked tasks that report back by message, so the engine never blocks and a command is
//! acknowledged as soon as it is decided. Every state change is persisted (with its audit
//! entry) before it is announced. On start, rollbacks the previous process left mid-pipeline
//! are reconciled from the registry: resumed, finished, or marked Interrupted, and announced.
//!
//! A drill (`/rollback drill IMAGE`) is a rollback record with `drill` set: requested, approved
//! and announced the same way, rehearsed on the image's scratch repository (`drill.rs`), never
//! blocking a real rollback of the image nor counted against `limits.rollbacks_per_hour`.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::num::NonZeroU32;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::FutureExt;
use governor::clock::DefaultClock;
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use serde_json::json;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;

use crate::config::{ImageSettings, Settings};
pub use crate::domain::clock::{Clock, ManualClock, SystemClock};
use crate::domain::command::{Command, ImageName};
use crate::domain::model::{ImageRef, Reference, Tag, TagNow};
use crate::domain::policy::{self, Decision, Pending, RecordedVote, Verdict};
use crate::domain::reconcile::{self, Interruption, Reconcile};
use crate::domain::record::{AuditEntry, RollbackRecord, StepName, StepReport};
use crate::domain::rollback::{Actor, ChannelRef, RollbackId, State, Timestamp};
use crate::manifest;
use crate::metrics::Metrics;
use crate::pipeline::{
    self, HoldOptions, Outcome, Plan, Progress, Report, RollbackRequest, RunOptions, TagStatus,
};
use crate::registry::{Registries, RegistryClient};
use crate::store::{Store, StoreError};

mod answer;
mod batch;
mod commands;
mod drill;
mod hourly;
mod refuse;
mod restart;
mod run;
#[cfg(test)]
mod testing;
mod transitions;

pub use transitions::TransitionError;

pub use answer::{Answer, Refusal};
use run::{catch_panic, describe_tags, finish_command, read_tags_now};

// ---- the interface adapters see ----------------------------------------------------------

/// A command from a chat platform, already parsed and attributed.
#[derive(Debug, Clone)]
pub struct Inbound {
    pub actor: Actor,
    /// Where it came from and where answers go.
    pub channel: ChannelRef,
    pub command: Command,
    /// The platform's delivery id (Slack event id, interaction id): a retry with the same key
    /// is ignored.
    pub idempotency_key: Option<String>,
}

/// What happened, for chat and notification sinks.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub kind: EventKind,
    /// The rollback after the change (absent for image-level events like a hold release).
    pub rollback: Option<RollbackRecord>,
    /// Where to tell it.
    pub channel: ChannelRef,
}

#[derive(Debug, Clone, PartialEq)]
pub enum EventKind {
    Requested,
    /// An approval counted, more needed.
    ApprovalRecorded {
        by: Actor,
    },
    Approved {
        by: Actor,
    },
    Rejected {
        by: Actor,
    },
    Cancelled {
        by: Actor,
    },
    Expired,
    /// A pipeline step finished.
    Step {
        step: StepReport,
    },
    Succeeded,
    Failed,
    Interrupted,
    /// The daemon restarted and picked the rollback up again.
    Resumed {
        detail: String,
    },
    HoldReleased {
        image: ImageRef,
        by: Actor,
        reason: Option<String>,
    },
    /// The state database has the rollback finished, by something other than this rollbot,
    /// which let it go (the event's record is the stored one). Said in its thread as a notice;
    /// its Discussion gets a closing comment.
    FinishedElsewhere {
        text: String,
    },
    /// Something for the rollback's thread from elsewhere (a Discussion's URL, a notification
    /// that could not be delivered). Not a state change.
    Notice {
        text: String,
        /// A URL rollbot made (a Discussion's), shown after the text as a link.
        link: Option<String>,
    },
}

/// A rollback not yet finished, as autocomplete offers it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActiveRollback {
    pub id: RollbackId,
    pub alias: String,
    pub state: State,
}

/// A handle to the engine task; cheap to clone.
#[derive(Debug, Clone)]
pub struct EngineHandle {
    tx: mpsc::Sender<Msg>,
}

impl EngineHandle {
    /// Submits a command and waits for the decision (planning a request waits for the plan).
    pub async fn submit(&self, inbound: Inbound) -> Answer {
        let (reply, answer) = oneshot::channel();
        if self.tx.send(Msg::Inbound { inbound, reply }).await.is_err() {
            return Refusal::ShuttingDown.into();
        }
        answer.await.unwrap_or(Answer::Refused(Refusal::NoAnswer))
    }

    /// Text that did not parse as a command (`error` says why): counted against the sender's
    /// rate limit and audited like any command, answered with the usage.
    pub async fn malformed(
        &self,
        actor: Actor,
        channel: ChannelRef,
        text: &str,
        error: String,
    ) -> Answer {
        let (reply, answer) = oneshot::channel();
        let text: String = text.chars().take(200).collect();
        let message = Msg::Malformed {
            actor,
            channel,
            text,
            error,
            reply,
        };
        if self.tx.send(message).await.is_err() {
            return Refusal::ShuttingDown.into();
        }
        answer.await.unwrap_or(Answer::Refused(Refusal::NoAnswer))
    }

    /// The rollbacks not yet finished, for a chat platform's autocomplete (a read: nothing is
    /// counted or audited). Empty when the engine is gone.
    pub async fn active(&self) -> Vec<ActiveRollback> {
        let (reply, answer) = oneshot::channel();
        if self.tx.send(Msg::Active { reply }).await.is_err() {
            return Vec::new();
        }
        answer.await.unwrap_or_default()
    }

    /// The chat platform posted the status message of `id` as `status_ref`.
    pub async fn status_posted(&self, id: RollbackId, status_ref: String) {
        let _ = self.tx.send(Msg::StatusPosted { id, status_ref }).await;
    }

    /// Posts `text` in the thread of rollback `id` (or in `channel` when there is none).
    pub async fn notice(
        &self,
        id: Option<RollbackId>,
        channel: Option<ChannelRef>,
        text: String,
        link: Option<String>,
    ) {
        let message = Msg::Notice {
            id,
            channel,
            text,
            link,
        };
        let _ = self.tx.send(message).await;
    }
}

/// The span every log line about one rollback is in, with its `rollback_id` and `image`, entered
/// by the engine, the pipeline it runs, the chat sinks and the notifier: JSON logs can be
/// filtered by rollback.
pub fn rollback_span(id: Option<RollbackId>, image: Option<&ImageRef>) -> tracing::Span {
    tracing::info_span!(
        "rollback",
        rollback_id = id.map(tracing::field::display),
        image = image.map(tracing::field::display)
    )
}

/// The engine's end of the handle's channel: what [`start`] runs on. Made before the engine
/// starts, so adapters get their handle when they are built and nothing they send is lost.
#[derive(Debug)]
pub struct Inbox(mpsc::Receiver<Msg>);

/// A handle and the inbox it sends to.
pub fn channel() -> (EngineHandle, Inbox) {
    let (tx, inbox) = mpsc::channel(256);
    (EngineHandle { tx }, Inbox(inbox))
}

enum Msg {
    Inbound {
        inbound: Inbound,
        reply: oneshot::Sender<Answer>,
    },
    Malformed {
        actor: Actor,
        channel: ChannelRef,
        /// The start of what was typed.
        text: String,
        error: String,
        reply: oneshot::Sender<Answer>,
    },
    StatusPosted {
        id: RollbackId,
        status_ref: String,
    },
    /// A read for autocomplete: the rollbacks not yet finished.
    Active {
        reply: oneshot::Sender<Vec<ActiveRollback>>,
    },
    Notice {
        id: Option<RollbackId>,
        channel: Option<ChannelRef>,
        text: String,
        link: Option<String>,
    },
}

/// Messages from the engine's own tasks.
enum Internal {
    Planned {
        request: Box<PendingRequest>,
        result: Box<Result<Planned, commands::PlanFailure>>,
        reply: oneshot::Sender<Answer>,
    },
    Progress {
        id: RollbackId,
        step: StepReport,
    },
    /// A drill's rehearsal ended (see `drill.rs`).
    DrillFinished {
        id: RollbackId,
        report: Box<pipeline::DrillReport>,
    },
    Finished {
        id: RollbackId,
        report: Box<Report>,
        /// For a run that did not succeed: every tag read again right before finishing, so the
        /// record says what the registry says (a write without an answer may land late).
        tags_now: Option<Vec<(Tag, TagNow)>>,
    },
    Reconciled {
        id: RollbackId,
        outcome: Reconciliation,
    },
    /// A finished (failed or interrupted) rollback's tags, read again after a restart.
    Reread {
        record: Box<RollbackRecord>,
        tags_now: Vec<(Tag, TagNow)>,
    },
    Emit(Box<Event>),
}

/// A request being planned (the image is reserved meanwhile).
struct PendingRequest {
    actor: Actor,
    channel: ChannelRef,
    image: ImageRef,
    alias: String,
    reason: Option<String>,
    requested_target: String,
    /// A drill (rehearsed on the scratch repository) rather than a rollback.
    drill: bool,
}

struct Planned {
    plan: Plan,
    target_source: Option<String>,
}

enum Reconciliation {
    /// Nothing was written and the approval is recent: run the pipeline again.
    Resume,
    /// Every tag is at the target: run verification and checks.
    Verify,
    Interrupted {
        tags_now: Vec<(Tag, TagNow)>,
        detail: String,
    },
}

/// Engine tuning that is not configuration.
#[derive(Debug, Clone)]
pub struct EngineOptions {
    /// How often expiry is checked.
    pub tick: Duration,
}

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions {
            tick: Duration::from_secs(1),
        }
    }
}

/// What the engine works with.
#[derive(Debug)]
pub struct Parts {
    pub settings: Arc<Settings>,
    pub store: Store,
    pub registries: Arc<Registries>,
    pub clock: Arc<dyn Clock>,
    pub metrics: Arc<Metrics>,
    /// Every event goes to each (a full sink loses events rather than slow the engine).
    pub sinks: Vec<mpsc::Sender<Event>>,
}

/// Starts the engine task on `inbox`. Rollbacks left running by a previous process are
/// reconciled first thing. When `shutdown` is cancelled the engine takes no more commands, lets
/// running rollbacks finish within `server.shutdown_grace`, and ends.
///
/// # Errors
/// The store cannot be read.
pub async fn start(
    parts: Parts,
    inbox: Inbox,
    options: EngineOptions,
    shutdown: CancellationToken,
) -> Result<tokio::task::JoinHandle<()>, StoreError> {
    let Parts {
        settings,
        store,
        registries,
        clock,
        metrics,
        sinks,
    } = parts;
    let active: HashMap<RollbackId, RollbackRecord> = store
        .active()
        .await?
        .into_iter()
        .map(|r| (r.id, r))
        .collect();
    // How far back a restart re-reads the tags of failed rollbacks, and how many at most (the
    // newest): a start stays quick after a bad day.
    const REREAD_FAILED: Duration = Duration::from_secs(24 * 3600);
    const REREAD_AT_MOST: u32 = 100;
    let recently_failed = store
        .recently_failed(clock.now().minus(REREAD_FAILED), REREAD_AT_MOST)
        .await?;
    let limits = &settings.daemon.limits;
    let rollbacks =
        hourly::HourlyStarts::load(&store, clock.now(), limits.rollbacks_per_hour).await?;
    let (internal_tx, internal) = mpsc::unbounded_channel();
    let per_minute = NonZeroU32::new(limits.commands_per_minute).unwrap_or(NonZeroU32::MIN);
    let mut engine = Engine {
        per_user: RateLimiter::keyed(Quota::per_minute(per_minute)),
        rollbacks,
        settings,
        store,
        registries,
        clock,
        metrics,
        sinks,
        active,
        planning: HashSet::new(),
        running: HashSet::new(),
        tasks: JoinSet::new(),
        internal_tx,
        seen_keys: HashMap::new(),
        draining: None,
        unsaved: std::sync::Mutex::new(Vec::new()),
        target_manifests: HashMap::new(),
        unpersisted: batch::Unpersisted::default(),
    };
    engine.update_gauges();
    let task = tokio::spawn(async move {
        engine.reconcile_on_start();
        engine.reread_failed(recently_failed);
        engine.run(inbox.0, internal, options, shutdown).await;
    });
    Ok(task)
}

struct Engine {
    settings: Arc<Settings>,
    store: Store,
    registries: Arc<Registries>,
    clock: Arc<dyn Clock>,
    metrics: Arc<Metrics>,
    sinks: Vec<mpsc::Sender<Event>>,
    /// Every non-terminal rollback; the engine's state.
    active: HashMap<RollbackId, RollbackRecord>,
    /// Images with a request being planned, and whether it is a drill's (a drill and a
    /// rollback of one image do not hold each other up).
    planning: HashSet<(ImageRef, bool)>,
    /// Rollbacks whose pipeline task is running.
    running: HashSet<RollbackId>,
    tasks: JoinSet<()>,
    internal_tx: mpsc::UnboundedSender<Internal>,
    /// Idempotency keys seen recently, with when.
    seen_keys: HashMap<String, Timestamp>,
    per_user: DefaultKeyedRateLimiter<String>,
    /// Rollbacks started in the last hour (`limits.rollbacks_per_hour`).
    rollbacks: hourly::HourlyStarts,
    /// Set once shutdown began: the deadline and who to tell.
    draining: Option<Instant>,
    /// Audit entries of the message being handled that go with its next write, in the same
    /// transaction (a vote's `command` entry with the vote); written on their own at the end of
    /// the message otherwise. A lock only so that `&self` methods can add to it.
    unsaved: std::sync::Mutex<Vec<AuditEntry>>,
    /// The target manifest each waiting request's plan read (exact bytes, checked against the
    /// digest), so the approval's re-plan does not GET it again: one manifest GET per rollback.
    /// Not kept across restarts (the re-plan reads it then).
    target_manifests: HashMap<RollbackId, crate::pipeline::Prefetched>,
    /// The last report of a running rollback that the database refused (record, audit entries,
    /// announcements): the next report is staged on it and takes it along, and ticks try it
    /// again (backing off), so a rollback whose final report failed to save does not stay
    /// active (its image locked) until a restart.
    unpersisted: batch::Unpersisted,
}

impl Engine {
    async fn run(
        mut self,
        mut inbox: mpsc::Receiver<Msg>,
        mut internal: mpsc::UnboundedReceiver<Internal>,
        options: EngineOptions,
        shutdown: CancellationToken,
    ) {
        let mut ticker = tokio::time::interval(options.tick);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let deadline = self.draining;
            // A finished task's report may still be queued: wait until it is processed too.
            if deadline.is_some() && self.tasks.is_empty() && self.running.is_empty() {
                // A report the database refused gets a last try.
                self.retry_unpersisted(true).await;
                break;
            }
            let sleep = tokio::time::sleep_until(deadline.map_or_else(
                || tokio::time::Instant::now() + Duration::from_secs(3600),
                tokio::time::Instant::from_std,
            ));
            tokio::select! {
                Some(message) = inbox.recv() => {
                    let busy = Instant::now();
                    self.external(message).await;
                    self.metrics.engine_busy(busy.elapsed());
                }
                Some(message) = internal.recv() => {
                    let busy = Instant::now();
                    // Whatever else the running rollbacks reported meanwhile is recorded with
                    // it, in one commit (batch.rs).
                    let mut messages = vec![message];
                    while messages.len() < batch::MOST {
                        match internal.try_recv() {
                            Ok(message) => messages.push(message),
                            Err(_) => break,
                        }
                    }
                    self.internals(messages).await;
                    self.metrics.engine_busy(busy.elapsed());
                }
                Some(_) = self.tasks.join_next(), if !self.tasks.is_empty() => {}
                _ = ticker.tick() => self.tick().await,
                () = shutdown.cancelled(), if deadline.is_none() => self.drain(),
                () = sleep, if deadline.is_some() => break,
            }
        }
        let clean = self.running.is_empty() && self.unpersisted.is_empty();
        if clean {
            tracing::info!("Engine stopped cleanly.");
        } else if self.running.is_empty() {
            tracing::warn!(unpersisted = self.unpersisted.len(), "Engine stopped with reports the database refused; their rollbacks will be reconciled on the next start.");
        } else {
            tracing::warn!(running = self.running.len(), "Engine stopped with rollbacks still running; they will be reconciled on the next start.");
        }
        self.tasks.abort_all();
    }

    /// Shutdown: no new commands; running rollbacks get `server.shutdown_grace` to finish.
    fn drain(&mut self) {
        let grace = self.settings.daemon.shutdown_grace;
        tracing::info!(
            grace_ms = grace.as_millis() as u64,
            running = self.running.len(),
            "Shutting down: no new commands; waiting for running rollbacks."
        );
        self.draining = Some(Instant::now() + grace);
    }

    fn now(&self) -> Timestamp {
        self.clock.now()
    }

    fn emit(&self, event: Event) {
        for sink in &self.sinks {
            if sink.try_send(event.clone()).is_err() {
                self.metrics.sink_failure("engine-queue");
                tracing::warn!(kind = ?event.kind, "A sink is not keeping up; event dropped for it.");
            }
        }
    }

    fn update_gauges(&self) {
        let pending = self
            .active
            .values()
            .filter(|r| r.state == State::Requested)
            .count();
        self.metrics
            .set_pending_approvals(u64::try_from(pending).unwrap_or(0));
        self.metrics
            .set_running(u64::try_from(self.running.len()).unwrap_or(0));
    }

    // ---- external messages ---------------------------------------------------------------

    async fn external(&mut self, message: Msg) {
        match message {
            Msg::Inbound { inbound, reply } => {
                let span = command_id(&inbound.command)
                    .map_or_else(tracing::Span::none, |id| self.span_of(id));
                let answer = self.inbound(inbound, reply).instrument(span).await;
                self.flush_unsaved().await;
                if let Some((reply, answer)) = answer {
                    let _ = reply.send(answer);
                }
            }
            Msg::Malformed {
                actor,
                channel,
                text,
                error,
                reply,
            } => {
                self.metrics.command("malformed");
                let answer = match self.rate_limited(&actor, "malformed").await {
                    Some(refused) => refused,
                    None if self.draining.is_some() => Refusal::ShuttingDown.into(),
                    None => {
                        self.audit(AuditEntry::new(
                            self.now(),
                            None,
                            Some(&actor),
                            "refused",
                            json!({ "command": "malformed", "why": &error, "text": text, "channel": channel }),
                        ))
                        .await;
                        Refusal::Malformed { error }.into()
                    }
                };
                let _ = reply.send(answer);
            }
            Msg::Active { reply } => {
                let active = self
                    .active
                    .values()
                    .map(|r| ActiveRollback {
                        id: r.id,
                        alias: r.alias.clone(),
                        state: r.state,
                    })
                    .collect();
                let _ = reply.send(active);
            }
            Msg::StatusPosted { id, status_ref } => {
                if let Some(record) = self.active.get_mut(&id) {
                    record.status_ref = Some(status_ref);
                    let record = record.clone();
                    if let Err(error) = self.store.save(&record, &[]).await {
                        tracing::warn!(rollback_id = %id, %error, "Status message reference not saved.");
                    }
                }
            }
            Msg::Notice {
                id,
                channel,
                text,
                link,
            } => {
                let record = match id {
                    Some(id) => match self.active.get(&id) {
                        Some(record) => Some(record.clone()),
                        None => self.store.get(id).await.ok().flatten(),
                    },
                    None => None,
                };
                let channel = record.as_ref().map(|r| r.channel.clone()).or(channel);
                if let Some(channel) = channel {
                    self.emit(Event {
                        kind: EventKind::Notice { text, link },
                        rollback: record,
                        channel,
                    });
                }
            }
        }
    }

    /// Decides a command. Returns the reply to send now, or `None` when a task answers later.
    async fn inbound(
        &mut self,
        inbound: Inbound,
        reply: oneshot::Sender<Answer>,
    ) -> Option<(oneshot::Sender<Answer>, Answer)> {
        // A reaction names a message: it is a vote on the rollback whose status message that is,
        // and nothing at all (not even a command to count or audit) on any other message.
        let mut inbound = inbound;
        if let Command::VoteOnMessage { decision, message } = &inbound.command {
            let id = self
                .active
                .values()
                .find(|r| r.channel == inbound.channel && r.status_ref.as_deref() == Some(message))
                .map(|r| r.id);
            match id {
                Some(id) => inbound.command = Command::vote(*decision, id),
                None => return Some((reply, Answer::Ignored)),
            }
        }
        let now = self.now();
        let command_name = inbound.command.name();
        self.metrics.command(command_name);
        if self.draining.is_some() {
            let id = command_id(&inbound.command);
            let refused = self
                .refuse(&inbound.actor, id, command_name, Refusal::ShuttingDown)
                .await;
            return Some((reply, refused));
        }
        if let Some(key) = &inbound.idempotency_key {
            self.seen_keys
                .retain(|_, at| now.since(*at) < 15 * 60 * 1000);
            if self.seen_keys.insert(key.clone(), now).is_some() {
                tracing::info!(key = %key, "Duplicate delivery ignored.");
                return Some((reply, Answer::Duplicate));
            }
        }
        if let Some(refused) = self.rate_limited(&inbound.actor, command_name).await {
            return Some((reply, refused));
        }
        let entry = AuditEntry::new(
            now,
            command_id(&inbound.command),
            Some(&inbound.actor),
            "command",
            json!({ "command": command_name, "channel": inbound.channel.to_string(), "text": inbound.command.to_text() }),
        );
        // A vote or a cancel always writes (the change, or the refusal): the command goes in
        // that transaction. Other commands may answer from a task, so it is written now.
        match inbound.command {
            Command::Approve { .. } | Command::Reject { .. } | Command::Cancel { .. } => {
                self.audit_with_next_write(entry);
            }
            _ => self.audit(entry).await,
        }
        let Inbound {
            actor,
            channel,
            command,
            ..
        } = inbound;
        match command {
            Command::Help => Some((reply, Answer::Usage)),
            Command::Request {
                image,
                target,
                reason,
            } => {
                let wanted = commands::Wanted::Rollback { target };
                self.request(actor, channel, image, wanted, reason, reply)
                    .await
            }
            Command::Drill { image, reason } => {
                let wanted = commands::Wanted::Drill;
                self.request(actor, channel, image, wanted, reason, reply)
                    .await
            }
            Command::Approve { id } => {
                Some((reply, self.vote(&actor, id, Decision::Approve, None).await))
            }
            Command::Reject { id, reason } => {
                Some((reply, self.vote(&actor, id, Decision::Reject, reason).await))
            }
            Command::Cancel { id } => Some((reply, self.cancel(&actor, id).await)),
            Command::Status { id } => Some((reply, self.status(&actor, id).await)),
            // Resolved into a vote above.
            Command::VoteOnMessage { .. } => Some((reply, Answer::Ignored)),
            Command::History { image } => self.history(&actor, image, reply).await,
            Command::Release { image, reason } => {
                self.release(actor, channel, image, reason, reply).await
            }
        }
    }

    // ---- internal messages ---------------------------------------------------------------

    async fn internal(&mut self, message: Internal) {
        let span = match &message {
            Internal::Progress { id, .. }
            | Internal::Finished { id, .. }
            | Internal::DrillFinished { id, .. }
            | Internal::Reconciled { id, .. } => self.span_of(*id),
            Internal::Reread { record, .. } => rollback_span(Some(record.id), Some(&record.image)),
            Internal::Planned { request, .. } => rollback_span(None, Some(&request.image)),
            Internal::Emit(_) => tracing::Span::none(),
        };
        self.handle_internal(message).instrument(span).await;
    }

    /// The span of rollback `id` (its image, when it is active).
    fn span_of(&self, id: RollbackId) -> tracing::Span {
        rollback_span(Some(id), self.active.get(&id).map(|r| &r.image))
    }

    async fn handle_internal(&mut self, message: Internal) {
        match message {
            Internal::Planned {
                request,
                result,
                reply,
            } => {
                self.planning
                    .remove(&(request.image.clone(), request.drill));
                let answer = self.planned(*request, *result).await;
                let _ = reply.send(answer);
            }
            Internal::Progress { id, step } => self.progress(id, step).await,
            Internal::Finished {
                id,
                report,
                tags_now,
            } => self.finished(id, *report, tags_now).await,
            Internal::DrillFinished { id, report } => self.drill_finished(id, *report).await,
            Internal::Reconciled { id, outcome } => self.reconciled(id, outcome).await,
            Internal::Reread { record, tags_now } => self.reread(*record, tags_now).await,
            Internal::Emit(event) => self.emit(*event),
        }
    }
}

fn command_id(command: &Command) -> Option<RollbackId> {
    match command {
        Command::Approve { id } | Command::Reject { id, .. } | Command::Cancel { id } => Some(*id),
        Command::Status { id } => *id,
        _ => None,
    }
}
