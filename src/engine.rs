//! The engine: the single owner of rollback state. Commands in (from any chat adapter),
//! events out (to chat and notification sinks). One task; everything else sends it messages.
//!
//! Work that waits on the registry (planning, the pipeline, history, releasing a hold) runs in
//! tracked tasks that report back by message, so the engine never blocks and a command is
//! acknowledged as soon as it is decided. Every state change is persisted (with its audit
//! entry) before it is announced. On start, rollbacks the previous process left mid-pipeline
//! are reconciled from the registry: resumed, finished, or marked Interrupted, and announced.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::num::NonZeroU32;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::FutureExt;
use governor::clock::DefaultClock;
use governor::{DefaultDirectRateLimiter, DefaultKeyedRateLimiter, Quota, RateLimiter};
use serde_json::json;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinSet;

use crate::config::{ImageSettings, Settings};
pub use crate::domain::clock::{Clock, ManualClock, SystemClock};
use crate::domain::command::{Command, ImageName, USAGE};
use crate::domain::model::{ImageRef, Reference, Tag, TagNow};
use crate::domain::policy::{
    self, ApprovalRule, Approver, Decision, Pending, RecordedVote, Verdict,
};
use crate::domain::reconcile::{self, Interruption, Reconcile};
use crate::domain::record::{AuditEntry, RollbackRecord, StepReport};
use crate::domain::rollback::{Actor, RollbackId, State, Timestamp};
use crate::manifest;
use crate::metrics::Metrics;
use crate::pipeline::{
    self, HoldOptions, Outcome, Plan, Progress, Report, RollbackRequest, RunOptions, TagStatus,
};
use crate::registry::{Registries, RegistryClient};
use crate::store::{Store, StoreError};

// ---- the interface adapters see ----------------------------------------------------------

/// A command from a chat platform, already parsed and attributed.
#[derive(Debug, Clone)]
pub struct Inbound {
    pub actor: Actor,
    /// Where it came from and where answers go: `console:releases`, `slack:C0123`.
    pub channel: String,
    pub command: Command,
    /// The platform's delivery id (Slack event id, interaction id): a retry with the same key
    /// is ignored.
    pub idempotency_key: Option<String>,
}

/// The answer to the person who sent a command (shown only to them where the platform can).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub text: String,
    /// False when the command was refused or failed.
    pub ok: bool,
    /// A redelivery that was ignored: nothing to tell anyone.
    pub silent: bool,
}

impl Reply {
    pub fn ok(text: impl Into<String>) -> Reply {
        Reply {
            text: text.into(),
            ok: true,
            silent: false,
        }
    }

    pub fn refused(text: impl Into<String>) -> Reply {
        Reply {
            text: text.into(),
            ok: false,
            silent: false,
        }
    }
}

/// What happened, for chat and notification sinks.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub kind: EventKind,
    /// The rollback after the change (absent for image-level events like a hold release).
    pub rollback: Option<RollbackRecord>,
    /// Where to tell it.
    pub channel: String,
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
    /// Something for the rollback's thread from elsewhere (a Discussion's URL, a notification
    /// that could not be delivered). Not a state change.
    Notice {
        text: String,
        /// A URL rollbot made (a Discussion's), shown after the text as a link.
        link: Option<String>,
    },
}

/// A handle to the engine task; cheap to clone.
#[derive(Debug, Clone)]
pub struct EngineHandle {
    tx: mpsc::Sender<Msg>,
}

impl EngineHandle {
    /// Submits a command and waits for the decision (planning a request waits for the plan).
    pub async fn submit(&self, inbound: Inbound) -> Reply {
        let (reply, answer) = oneshot::channel();
        if self.tx.send(Msg::Inbound { inbound, reply }).await.is_err() {
            return Reply::refused("rollbot is shutting down; try again in a moment");
        }
        answer
            .await
            .unwrap_or_else(|_| Reply::refused("rollbot stopped before answering; try again"))
    }

    /// Text that did not parse as a command (`error` says why): counted against the sender's
    /// rate limit and audited like any command, answered with the usage.
    pub async fn malformed(
        &self,
        actor: Actor,
        channel: String,
        text: &str,
        error: String,
    ) -> Reply {
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
            return Reply::refused("rollbot is shutting down; try again in a moment");
        }
        answer
            .await
            .unwrap_or_else(|_| Reply::refused("rollbot stopped before answering; try again"))
    }

    /// The chat platform posted the status message of `id` as `status_ref`.
    pub async fn status_posted(&self, id: RollbackId, status_ref: String) {
        let _ = self.tx.send(Msg::StatusPosted { id, status_ref }).await;
    }

    /// Posts `text` in the thread of rollback `id` (or in `channel` when there is none).
    pub async fn notice(
        &self,
        id: Option<RollbackId>,
        channel: Option<String>,
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

    /// The active rollbacks right now.
    pub async fn active(&self) -> Vec<RollbackRecord> {
        let (reply, answer) = oneshot::channel();
        if self.tx.send(Msg::Active { reply }).await.is_err() {
            return Vec::new();
        }
        answer.await.unwrap_or_default()
    }

    /// Stops taking commands, lets running rollbacks finish within `grace`, and stops the
    /// engine. Returns true when nothing was left running.
    pub async fn shutdown(&self, grace: Duration) -> bool {
        let (done, finished) = oneshot::channel();
        if self.tx.send(Msg::Shutdown { grace, done }).await.is_err() {
            return true;
        }
        finished.await.unwrap_or(false)
    }
}

enum Msg {
    Inbound {
        inbound: Inbound,
        reply: oneshot::Sender<Reply>,
    },
    Malformed {
        actor: Actor,
        channel: String,
        /// The start of what was typed.
        text: String,
        error: String,
        reply: oneshot::Sender<Reply>,
    },
    StatusPosted {
        id: RollbackId,
        status_ref: String,
    },
    Active {
        reply: oneshot::Sender<Vec<RollbackRecord>>,
    },
    Notice {
        id: Option<RollbackId>,
        channel: Option<String>,
        text: String,
        link: Option<String>,
    },
    Shutdown {
        grace: Duration,
        done: oneshot::Sender<bool>,
    },
}

/// Messages from the engine's own tasks.
enum Internal {
    Planned {
        request: Box<PendingRequest>,
        result: Box<Result<Planned, String>>,
        reply: oneshot::Sender<Reply>,
    },
    Progress {
        id: RollbackId,
        step: StepReport,
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
    channel: String,
    image: ImageRef,
    alias: String,
    reason: Option<String>,
    requested_target: String,
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

/// Starts the engine task. Rollbacks left running by a previous process are reconciled first
/// thing. `sinks` receive every event (a full sink loses events rather than slow the engine).
///
/// # Errors
/// The store cannot be read.
pub async fn start(
    settings: Arc<Settings>,
    store: Store,
    registries: Arc<Registries>,
    clock: Arc<dyn Clock>,
    metrics: Arc<Metrics>,
    sinks: Vec<mpsc::Sender<Event>>,
    options: EngineOptions,
) -> Result<(EngineHandle, tokio::task::JoinHandle<()>), StoreError> {
    let active: HashMap<RollbackId, RollbackRecord> = store
        .active()
        .await?
        .into_iter()
        .map(|r| (r.id, r))
        .collect();
    // How far back a restart re-reads the tags of failed rollbacks.
    const REREAD_FAILED: Duration = Duration::from_secs(24 * 3600);
    let recently_failed = store
        .recently_failed(clock.now().minus(REREAD_FAILED))
        .await?;
    let (tx, inbox) = mpsc::channel(256);
    let (internal_tx, internal) = mpsc::unbounded_channel();
    let limits = &settings.daemon.limits;
    let per_minute = NonZeroU32::new(limits.commands_per_minute).unwrap_or(NonZeroU32::MIN);
    let per_hour = NonZeroU32::new(limits.rollbacks_per_hour).unwrap_or(NonZeroU32::MIN);
    let mut engine = Engine {
        per_user: RateLimiter::keyed(Quota::per_minute(per_minute)),
        rollbacks: RateLimiter::direct(Quota::per_hour(per_hour)),
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
    };
    engine.update_gauges();
    let task = tokio::spawn(async move {
        engine.reconcile_on_start();
        engine.reread_failed(recently_failed);
        engine.run(inbox, internal, options).await;
    });
    Ok((EngineHandle { tx }, task))
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
    /// Images with a request being planned.
    planning: HashSet<ImageRef>,
    /// Rollbacks whose pipeline task is running.
    running: HashSet<RollbackId>,
    tasks: JoinSet<()>,
    internal_tx: mpsc::UnboundedSender<Internal>,
    /// Idempotency keys seen recently, with when.
    seen_keys: HashMap<String, Timestamp>,
    per_user: DefaultKeyedRateLimiter<String>,
    rollbacks: DefaultDirectRateLimiter,
    /// Set once shutdown began: the deadline and who to tell.
    draining: Option<(Instant, oneshot::Sender<bool>)>,
}

impl Engine {
    async fn run(
        mut self,
        mut inbox: mpsc::Receiver<Msg>,
        mut internal: mpsc::UnboundedReceiver<Internal>,
        options: EngineOptions,
    ) {
        let mut ticker = tokio::time::interval(options.tick);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let deadline = self.draining.as_ref().map(|(deadline, _)| *deadline);
            // A finished task's report may still be queued: wait until it is processed too.
            if deadline.is_some() && self.tasks.is_empty() && self.running.is_empty() {
                break;
            }
            let sleep = tokio::time::sleep_until(deadline.map_or_else(
                || tokio::time::Instant::now() + Duration::from_secs(3600),
                tokio::time::Instant::from_std,
            ));
            tokio::select! {
                Some(message) = inbox.recv() => self.external(message).await,
                Some(message) = internal.recv() => self.internal(message).await,
                Some(_) = self.tasks.join_next(), if !self.tasks.is_empty() => {}
                _ = ticker.tick() => self.tick().await,
                () = sleep, if deadline.is_some() => break,
            }
        }
        let clean = self.running.is_empty();
        if clean {
            tracing::info!("Engine stopped cleanly.");
        } else {
            tracing::warn!(running = self.running.len(), "Engine stopped with rollbacks still running; they will be reconciled on the next start.");
        }
        self.tasks.abort_all();
        if let Some((_, done)) = self.draining.take() {
            let _ = done.send(clean);
        }
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

    async fn audit(&self, entry: AuditEntry) {
        if let Err(error) = self.store.audit(&entry).await {
            tracing::error!(%error, kind = %entry.kind, "Audit entry could not be written.");
        }
    }

    /// The per-user limit on commands: `Some(refusal)` (audited) when `actor` is over it.
    async fn rate_limited(&self, actor: &Actor, command_name: &str) -> Option<Reply> {
        let not_until = self.per_user.check_key(&actor.id).err()?;
        let wait = retry_in(&not_until);
        self.metrics.rate_limited();
        self.audit(AuditEntry::new(
            self.now(),
            None,
            Some(actor),
            "rate_limited",
            json!({ "command": command_name }),
        ))
        .await;
        Some(Reply::refused(format!(
            "You are sending commands too fast (limit {} per minute); try again in {} s.",
            self.settings.daemon.limits.commands_per_minute,
            wait.as_secs().max(1)
        )))
    }

    /// Refuses a command: the refusal and its reason go to the audit log, the text to the
    /// person.
    async fn refuse(
        &self,
        actor: &Actor,
        rollback: Option<RollbackId>,
        command: &'static str,
        why: String,
    ) -> Reply {
        audit_refusal(&self.store, self.now(), actor, rollback, command, &why).await;
        Reply::refused(why)
    }

    // ---- external messages ---------------------------------------------------------------

    async fn external(&mut self, message: Msg) {
        match message {
            Msg::Inbound { inbound, reply } => {
                let answer = self.inbound(inbound, reply).await;
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
                    None if self.draining.is_some() => {
                        Reply::refused("rollbot is shutting down; try again in a moment")
                    }
                    None => {
                        self.audit(AuditEntry::new(
                            self.now(),
                            None,
                            Some(&actor),
                            "refused",
                            json!({ "command": "malformed", "why": error, "text": text, "channel": channel }),
                        ))
                        .await;
                        Reply::refused(format!("{error}\n{USAGE}"))
                    }
                };
                let _ = reply.send(answer);
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
            Msg::Active { reply } => {
                let mut records: Vec<RollbackRecord> = self.active.values().cloned().collect();
                records.sort_by_key(|r| r.id);
                let _ = reply.send(records);
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
            Msg::Shutdown { grace, done } => {
                tracing::info!(
                    grace_ms = grace.as_millis() as u64,
                    running = self.running.len(),
                    "Shutting down: no new commands; waiting for running rollbacks."
                );
                self.draining = Some((Instant::now() + grace, done));
            }
        }
    }

    /// Decides a command. Returns the reply to send now, or `None` when a task answers later.
    async fn inbound(
        &mut self,
        inbound: Inbound,
        reply: oneshot::Sender<Reply>,
    ) -> Option<(oneshot::Sender<Reply>, Reply)> {
        let now = self.now();
        let command_name = command_name(&inbound.command);
        self.metrics.command(command_name);
        if self.draining.is_some() {
            let why = "rollbot is shutting down; try again in a moment".to_owned();
            let refused = self
                .refuse(
                    &inbound.actor,
                    command_id(&inbound.command),
                    command_name,
                    why,
                )
                .await;
            return Some((reply, refused));
        }
        if let Some(key) = &inbound.idempotency_key {
            self.seen_keys
                .retain(|_, at| now.since(*at) < 15 * 60 * 1000);
            if self.seen_keys.insert(key.clone(), now).is_some() {
                tracing::info!(key = %key, "Duplicate delivery ignored.");
                return Some((
                    reply,
                    Reply {
                        text: "(duplicate delivery ignored)".to_owned(),
                        ok: true,
                        silent: true,
                    },
                ));
            }
        }
        if let Some(refused) = self.rate_limited(&inbound.actor, command_name).await {
            return Some((reply, refused));
        }
        self.audit(AuditEntry::new(
            now,
            command_id(&inbound.command),
            Some(&inbound.actor),
            "command",
            json!({ "command": command_name, "channel": inbound.channel, "text": inbound.command.to_text() }),
        ))
        .await;
        let Inbound {
            actor,
            channel,
            command,
            ..
        } = inbound;
        match command {
            Command::Help => Some((reply, Reply::ok(USAGE))),
            Command::Request {
                image,
                target,
                reason,
            } => {
                self.request(actor, channel, image, target, reason, reply)
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
            Command::History { image } => self.history(&actor, image, reply).await,
            Command::Release { image, reason } => {
                self.release(actor, channel, image, reason, reply).await
            }
        }
    }

    /// The registry client of an allowlisted image, with the entry.
    fn with_registry(
        &self,
        entry: ImageSettings,
    ) -> Result<(ImageSettings, Arc<RegistryClient>), String> {
        self.registries
            .get(&entry.image.registry)
            .map(|registry| (entry, registry))
            .map_err(|error| error.to_string())
    }

    /// The allowlist entry for an image as typed.
    fn allowlisted(&self, name: &ImageName) -> Result<&ImageSettings, String> {
        let entry = match name {
            ImageName::Alias(alias) => self.settings.images.get(alias),
            ImageName::Full(image) => self.settings.image_entry(image),
        };
        entry.ok_or_else(|| {
            let known: Vec<&str> = self.settings.images.keys().map(String::as_str).collect();
            format!(
                "{name} is not on rollbot's allowlist of images{}",
                if known.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", known.join(", "))
                }
            )
        })
    }

    async fn request(
        &mut self,
        actor: Actor,
        channel: String,
        name: ImageName,
        target: Option<Reference>,
        reason: Option<String>,
        reply: oneshot::Sender<Reply>,
    ) -> Option<(oneshot::Sender<Reply>, Reply)> {
        let refusal = match self.allowlisted(&name) {
            Err(message) => Err(message),
            Ok(entry) => {
                let rule = self.settings.approval_rule(entry);
                match (
                    self.active.values().find(|r| r.image == entry.image),
                    rule.unapprovable(Some(&actor)),
                ) {
                    (Some(active), _) => Err(format!(
                        "{} already has a rollback in progress: {} ({}, requested by {}); one at a time",
                        entry.alias, active.id, active.state, active.requester.name
                    )),
                    _ if self.planning.contains(&entry.image) => Err(format!(
                        "{} already has a rollback request being planned; one at a time",
                        entry.alias
                    )),
                    (None, Some(why)) => Err(format!(
                        "a rollback of {} requested by you could never be approved: {why}; ask whoever runs rollbot to fix the approvers in its config",
                        entry.alias
                    )),
                    (None, None) => self.with_registry(entry.clone()),
                }
            }
        };
        let (entry, registry) = match refusal {
            Ok(found) => found,
            Err(why) => return Some((reply, self.refuse(&actor, None, "request", why).await)),
        };
        self.planning.insert(entry.image.clone());
        let tags = self.settings.floating_tags(Some(&entry), &[]);
        let request = PendingRequest {
            actor,
            channel,
            image: entry.image.clone(),
            alias: entry.alias.clone(),
            reason,
            requested_target: target.as_ref().map_or_else(
                || "the previous good build".to_owned(),
                Reference::to_string,
            ),
        };
        let internal = self.internal_tx.clone();
        self.tasks.spawn(async move {
            let result = catch_panic(plan_request(&registry, &request.image, tags, target))
                .await
                .unwrap_or_else(|panic| Err(format!("internal error while planning: {panic}")));
            let _ = internal.send(Internal::Planned {
                request: Box::new(request),
                result: Box::new(result),
                reply,
            });
        });
        None
    }

    async fn vote(
        &mut self,
        actor: &Actor,
        id: RollbackId,
        decision: Decision,
        reason: Option<String>,
    ) -> Reply {
        let now = self.now();
        let verb = match decision {
            Decision::Approve => "approve",
            Decision::Reject => "reject",
        };
        let Some(record) = self.active.get(&id).cloned() else {
            let why = match self.store.get(id).await {
                Ok(Some(record)) => format!(
                    "{id} is no longer waiting for approval (it is {})",
                    record.state
                ),
                Ok(None) => format!("there is no rollback {id}"),
                Err(error) => format!("cannot read {id}: {error}"),
            };
            return self.refuse(actor, Some(id), verb, why).await;
        };
        let Some(entry) = self.settings.images.get(&record.alias).cloned() else {
            let why = format!(
                "{} is no longer on the allowlist; {id} cannot be approved",
                record.alias
            );
            return self.refuse(actor, Some(id), verb, why).await;
        };
        let rule = self.settings.approval_rule(&entry);
        let verdict = policy::decide(
            &rule,
            Pending {
                state: record.state,
                requester: &record.requester,
                expires_at: record.expires_at,
                votes: &record.votes,
            },
            actor,
            decision,
            now,
        );
        let recorded = RecordedVote {
            actor: actor.clone(),
            decision,
            at: now,
            reason: reason.clone(),
        };
        match verdict {
            Verdict::Refused(refusal) => {
                self.audit(AuditEntry::new(
                    now,
                    Some(id),
                    Some(actor),
                    "vote_refused",
                    json!({ "decision": verb, "why": refusal.explain() }),
                ))
                .await;
                if refusal == policy::Refusal::Expired {
                    self.expire(id).await;
                }
                Reply::refused(format!("You cannot {verb} {id}: {}.", refusal.explain()))
            }
            Verdict::Counted {
                approvals,
                required,
            } => {
                let mut record = record;
                record.votes.push(recorded);
                record.updated_at = now;
                let audit = AuditEntry::new(
                    now,
                    Some(id),
                    Some(actor),
                    "vote",
                    json!({ "decision": verb, "approvals": approvals, "required": required }),
                );
                if let Err(error) = self.persist(&record, &[audit]).await {
                    return Reply::refused(format!("your approval could not be saved: {error}"));
                }
                self.emit(Event {
                    kind: EventKind::ApprovalRecorded { by: actor.clone() },
                    channel: record.channel.clone(),
                    rollback: Some(record),
                });
                Reply::ok(format!(
                    "Approval recorded for {id} ({approvals} of {required})."
                ))
            }
            Verdict::Rejected => {
                let mut record = record;
                record.votes.push(recorded);
                record.error = Some(format!(
                    "rejected by {}{}",
                    actor.name,
                    reason
                        .as_deref()
                        .map(|r| format!(": {r}"))
                        .unwrap_or_default()
                ));
                let audit = AuditEntry::new(
                    now,
                    Some(id),
                    Some(actor),
                    "vote",
                    json!({ "decision": "reject", "reason": reason }),
                );
                if let Err(error) = self
                    .transition(
                        &mut record,
                        State::Rejected,
                        vec![audit],
                        EventKind::Rejected { by: actor.clone() },
                    )
                    .await
                {
                    return Reply::refused(format!("your rejection could not be saved: {error}"));
                }
                Reply::ok(format!("{id} rejected; nothing will change."))
            }
            Verdict::Approved => {
                if let Err(not_until) = self.rollbacks.check() {
                    let wait = retry_in(&not_until);
                    self.metrics.rate_limited();
                    self.audit(AuditEntry::new(
                        now,
                        Some(id),
                        Some(actor),
                        "rate_limited",
                        json!({ "limit": "rollbacks_per_hour" }),
                    ))
                    .await;
                    return Reply::refused(format!(
                        "The limit of {} rollbacks per hour is reached; your approval was not recorded. Try again in {} min.",
                        self.settings.daemon.limits.rollbacks_per_hour,
                        wait.as_secs().div_ceil(60).max(1)
                    ));
                }
                let mut record = record;
                record.votes.push(recorded);
                record.approved_at = Some(now);
                let audit = AuditEntry::new(
                    now,
                    Some(id),
                    Some(actor),
                    "vote",
                    json!({ "decision": "approve", "approved": true }),
                );
                if let Err(error) = self
                    .transition(
                        &mut record,
                        State::Approved,
                        vec![audit],
                        EventKind::Approved { by: actor.clone() },
                    )
                    .await
                {
                    return Reply::refused(format!("your approval could not be saved: {error}"));
                }
                self.start_pipeline(record, false).await;
                Reply::ok(format!("{id} approved; rolling back now."))
            }
        }
    }

    async fn cancel(&mut self, actor: &Actor, id: RollbackId) -> Reply {
        let refusal = match self.active.get(&id) {
            None => Some(format!("{id} is not active")),
            Some(record) if record.requester.id != actor.id => Some(format!(
                "only {} (who requested {id}) can cancel it; approvers can reject it",
                record.requester.name
            )),
            Some(record) if record.state != State::Requested => Some(format!(
                "{id} is already {}; it cannot be cancelled",
                record.state
            )),
            Some(_) => None,
        };
        if let Some(why) = refusal {
            return self.refuse(actor, Some(id), "cancel", why).await;
        }
        let Some(record) = self.active.get(&id).cloned() else {
            return Reply::refused(format!("{id} is not active"));
        };
        let now = self.now();
        let mut record = record;
        record.error = Some(format!("cancelled by {}", actor.name));
        let audit = AuditEntry::new(now, Some(id), Some(actor), "cancel", json!({}));
        match self
            .transition(
                &mut record,
                State::Cancelled,
                vec![audit],
                EventKind::Cancelled { by: actor.clone() },
            )
            .await
        {
            Ok(()) => Reply::ok(format!("{id} cancelled.")),
            Err(error) => Reply::refused(format!("cancel could not be saved: {error}")),
        }
    }

    async fn status(&self, actor: &Actor, id: Option<RollbackId>) -> Reply {
        let now = self.now();
        match id {
            Some(id) => match self.active.get(&id).cloned() {
                Some(record) => Reply::ok(describe(&record, now)),
                None => match self.store.get(id).await {
                    Ok(Some(record)) => Reply::ok(describe(&record, now)),
                    Ok(None) => {
                        let why = format!("there is no rollback {id}");
                        self.refuse(actor, Some(id), "status", why).await
                    }
                    Err(error) => Reply::refused(format!("cannot read {id}: {error}")),
                },
            },
            None => {
                if self.active.is_empty() {
                    return Reply::ok("No rollback is in progress.");
                }
                let mut records: Vec<&RollbackRecord> = self.active.values().collect();
                records.sort_by_key(|r| r.id);
                Reply::ok(
                    records
                        .into_iter()
                        .map(|r| describe(r, now))
                        .collect::<Vec<_>>()
                        .join("\n"),
                )
            }
        }
    }

    async fn history(
        &mut self,
        actor: &Actor,
        name: ImageName,
        reply: oneshot::Sender<Reply>,
    ) -> Option<(oneshot::Sender<Reply>, Reply)> {
        let found = self
            .allowlisted(&name)
            .cloned()
            .and_then(|entry| self.with_registry(entry));
        let (entry, registry) = match found {
            Ok(found) => found,
            Err(why) => return Some((reply, self.refuse(actor, None, "history", why).await)),
        };
        let tag = self.settings.floating_tags(Some(&entry), &[]).remove(0);
        self.tasks.spawn(async move {
            let answer = match registry
                .head_manifest(&entry.image.repository, &Reference::Tag(tag.clone()))
                .await
            {
                Ok(Some(head)) => {
                    let history =
                        manifest::walk(&registry, &entry.image, &head.digest, 10, true, |_| false)
                            .await;
                    Reply::ok(format!(
                        "History of {} from {tag}:\n{}",
                        entry.alias,
                        crate::report::history(&history)
                    ))
                }
                Ok(None) => Reply::refused(format!("{} has no tag {tag}", entry.image)),
                Err(error) => Reply::refused(error.to_string()),
            };
            let _ = reply.send(answer);
        });
        None
    }

    async fn release(
        &mut self,
        actor: Actor,
        channel: String,
        name: ImageName,
        reason: Option<String>,
        reply: oneshot::Sender<Reply>,
    ) -> Option<(oneshot::Sender<Reply>, Reply)> {
        let found = self.allowlisted(&name).cloned().and_then(|entry| {
            if !self.settings.approval_rule(&entry).may_approve(&actor) {
                return Err(format!(
                    "only approvers of {} can release its hold (it lets CI move the tags again)",
                    entry.alias
                ));
            }
            self.with_registry(entry)
        });
        let (entry, registry) = match found {
            Ok(found) => found,
            Err(why) => return Some((reply, self.refuse(&actor, None, "release", why).await)),
        };
        let internal = self.internal_tx.clone();
        let store = self.store.clone();
        let now = self.now();
        self.tasks.spawn(async move {
            let answer = match manifest::read_hold(&registry, &entry.image).await {
                Ok(Some(hold)) if hold.is_active() => {
                    let warning = hold.release_warning();
                    let released = hold.released(actor.name.clone(), now.rfc3339(), reason.clone());
                    match manifest::write_hold(&registry, &released).await {
                        Ok(()) => {
                            let _ = store
                                .audit(&AuditEntry::new(
                                    now,
                                    None,
                                    Some(&actor),
                                    "hold_released",
                                    json!({ "image": entry.image.to_string(), "reason": reason }),
                                ))
                                .await;
                            let _ = internal.send(Internal::Emit(Box::new(Event {
                                kind: EventKind::HoldReleased {
                                    image: entry.image.clone(),
                                    by: actor.clone(),
                                    reason,
                                },
                                rollback: None,
                                channel,
                            })));
                            Reply::ok(format!(
                                "Hold on {} released; CI may move its tags again.{}",
                                entry.alias,
                                warning.map(|w| format!(" Note: {w}.")).unwrap_or_default()
                            ))
                        }
                        Err(error) => {
                            Reply::refused(format!("the hold could not be released: {error}"))
                        }
                    }
                }
                Ok(_) => Reply::ok(format!(
                    "{} has no active hold; nothing to release.",
                    entry.alias
                )),
                Err(error) => {
                    Reply::refused(format!("cannot read the hold of {}: {error}", entry.alias))
                }
            };
            let _ = reply.send(answer);
        });
        None
    }

    // ---- internal messages ---------------------------------------------------------------

    async fn internal(&mut self, message: Internal) {
        match message {
            Internal::Planned {
                request,
                result,
                reply,
            } => {
                self.planning.remove(&request.image);
                let answer = self.planned(*request, *result).await;
                let _ = reply.send(answer);
            }
            Internal::Progress { id, step } => self.progress(id, step).await,
            Internal::Finished {
                id,
                report,
                tags_now,
            } => self.finished(id, *report, tags_now).await,
            Internal::Reconciled { id, outcome } => self.reconciled(id, outcome).await,
            Internal::Reread { record, tags_now } => self.reread(*record, tags_now).await,
            Internal::Emit(event) => self.emit(*event),
        }
    }

    async fn planned(&mut self, request: PendingRequest, result: Result<Planned, String>) -> Reply {
        let now = self.now();
        let planned = match result {
            Ok(planned) => planned,
            Err(error) => {
                self.audit(AuditEntry::new(
                    now,
                    None,
                    Some(&request.actor),
                    "request_refused",
                    json!({ "image": request.image.to_string(), "why": error }),
                ))
                .await;
                return Reply::refused(format!("Cannot roll back {}: {error}", request.alias));
            }
        };
        let plan = planned.plan;
        if plan.is_noop() {
            return Reply::ok(format!(
                "{}: every tag already points at {}; nothing to do.",
                request.alias,
                plan.target.digest.short()
            ));
        }
        let Some(entry) = self.settings.images.get(&request.alias).cloned() else {
            let why = format!("{} left the allowlist", request.alias);
            return self.refuse(&request.actor, None, "request", why).await;
        };
        let rule = self.settings.approval_rule(&entry);
        let mut record = RollbackRecord {
            id: RollbackId(0),
            image: request.image.clone(),
            alias: request.alias.clone(),
            channel: request.channel.clone(),
            requester: request.actor.clone(),
            reason: request.reason.clone(),
            requested_target: request.requested_target.clone(),
            target_source: planned.target_source,
            target: plan.target_report(),
            tags: plan.tags.clone(),
            state: State::Requested,
            created_at: now,
            expires_at: now.plus(rule.expiry),
            updated_at: now,
            approved_at: None,
            finished_at: None,
            votes: Vec::new(),
            steps: Vec::new(),
            checks: Vec::new(),
            tags_now: Vec::new(),
            error: None,
            status_ref: None,
        };
        let audit = AuditEntry::new(
            now,
            None,
            Some(&request.actor),
            "requested",
            json!({
                "image": request.image.to_string(),
                "target": plan.target.digest.to_string(),
                "tags": plan.tags,
                "reason": request.reason,
            }),
        );
        match self.store.create(&mut record, audit).await {
            Ok(()) => {}
            Err(StoreError::ActiveExists { image }) => {
                let why = format!("{image} already has a rollback in progress");
                return self.refuse(&request.actor, None, "request", why).await;
            }
            Err(error) => {
                return Reply::refused(format!("the request could not be saved: {error}"))
            }
        }
        tracing::info!(rollback_id = %record.id, image = %record.image, target = %record.target.digest, requester = %record.requester.id, "Rollback requested.");
        self.active.insert(record.id, record.clone());
        self.update_gauges();
        let approvers = describe_approvers(&rule);
        let reply = Reply::ok(format!(
            "{} requested: roll back {} ({}) to {}. Waiting for {} approval{} from {approvers}; expires at {}.",
            record.id,
            record.alias,
            record.tags.iter().map(|t| t.tag.as_str()).collect::<Vec<_>>().join(", "),
            record.target.digest.short(),
            rule.required,
            if rule.required == 1 { "" } else { "s" },
            record.expires_at.rfc3339()
        ));
        self.emit(Event {
            kind: EventKind::Requested,
            channel: record.channel.clone(),
            rollback: Some(record),
        });
        reply
    }

    async fn progress(&mut self, id: RollbackId, step: StepReport) {
        let Some(mut record) = self.active.get(&id).cloned() else {
            return;
        };
        self.metrics
            .step(&step.name, step.duration_ms as f64 / 1000.0);
        record.steps.push(step.clone());
        let audit = AuditEntry::new(self.now(), Some(id), None, "step", json!(step));
        let result = if step.name == "retag" && step.ok && record.state == State::Retagging {
            self.transition(
                &mut record,
                State::Verifying,
                vec![audit],
                EventKind::Step { step },
            )
            .await
        } else {
            record.updated_at = self.now();
            match self.persist(&record, &[audit]).await {
                Ok(()) => {
                    self.emit(Event {
                        kind: EventKind::Step { step },
                        channel: record.channel.clone(),
                        rollback: Some(record),
                    });
                    Ok(())
                }
                Err(error) => Err(error),
            }
        };
        if let Err(error) = result {
            tracing::error!(rollback_id = %id, %error, "Step could not be persisted.");
        }
    }

    async fn finished(
        &mut self,
        id: RollbackId,
        report: Report,
        rechecked: Option<Vec<(Tag, TagNow)>>,
    ) {
        self.running.remove(&id);
        let Some(mut record) = self.active.get(&id).cloned() else {
            return;
        };
        record.checks = report.checks.clone();
        let reported: Vec<(Tag, TagNow)> = report
            .tags
            .iter()
            .map(|t| {
                let now = match (&t.now, t.status) {
                    (Some(seen), TagStatus::Unknown) => TagNow::Unknown {
                        unknown: format!(
                            "its write got no clear answer and may still land (it read back at {})",
                            seen.short()
                        ),
                    },
                    (None, TagStatus::Unknown) => TagNow::Unknown {
                        unknown: "could not be read back after the failed write".to_owned(),
                    },
                    (now, _) => TagNow::from(now.clone()),
                };
                (t.tag.clone(), now)
            })
            .collect();
        let succeeded = report.outcome == Outcome::Succeeded;
        if !succeeded {
            let mut error = report
                .error
                .clone()
                .unwrap_or_else(|| format!("{:?}", report.outcome));
            // A write reported as failed that landed after all: the registry is the truth.
            let landed: Vec<&str> = rechecked
                .iter()
                .flatten()
                .filter(|(tag, now)| {
                    now.is(&record.target.digest)
                        && reported
                            .iter()
                            .any(|(t, was)| t == tag && !was.is(&record.target.digest))
                })
                .map(|(tag, _)| tag.as_str())
                .collect();
            if !landed.is_empty() {
                tracing::warn!(rollback_id = %id, tags = ?landed, "A write reported as failed landed after all.");
                error.push_str(&format!(
                    "; re-checked before finishing: {} point{} at the target after all (a write without an answer landed)",
                    landed.join(", "),
                    if landed.len() == 1 { "s" } else { "" }
                ));
            }
            record.error = Some(error);
        }
        // The re-check is the registry's word, except that a write that may still land stays
        // unknown until a read shows it landed.
        record.tags_now = match rechecked {
            None => reported,
            Some(rechecked) => rechecked
                .into_iter()
                .zip(&reported)
                .map(|((tag, now), (_, was))| match (was, &now) {
                    (TagNow::Unknown { .. }, now) if !now.is(&record.target.digest) => {
                        (tag, was.clone())
                    }
                    _ => (tag, now),
                })
                .collect(),
        };
        let audit = AuditEntry::new(
            self.now(),
            Some(id),
            None,
            "finished",
            json!({ "outcome": report.outcome, "error": report.error, "total_ms": report.total_ms }),
        );
        let (state, kind) = if succeeded {
            (State::Succeeded, EventKind::Succeeded)
        } else {
            (State::Failed, EventKind::Failed)
        };
        tracing::info!(rollback_id = %id, outcome = ?report.outcome, total_ms = report.total_ms, "Rollback finished.");
        if let Err(error) = self.transition(&mut record, state, vec![audit], kind).await {
            tracing::error!(rollback_id = %id, %error, "Final state could not be persisted.");
        }
        self.update_gauges();
    }

    // ---- state changes -------------------------------------------------------------------

    async fn persist(
        &mut self,
        record: &RollbackRecord,
        audit: &[AuditEntry],
    ) -> Result<(), StoreError> {
        self.store.save(record, audit).await?;
        self.active.insert(record.id, record.clone());
        Ok(())
    }

    /// Moves `record` to `next` (persisting, then announcing). Refuses transitions the state
    /// machine does not allow.
    async fn transition(
        &mut self,
        record: &mut RollbackRecord,
        next: State,
        mut audit: Vec<AuditEntry>,
        kind: EventKind,
    ) -> Result<(), StoreError> {
        if !record.state.can_become(next) {
            tracing::error!(rollback_id = %record.id, from = %record.state, to = %next, "Refused an invalid state transition.");
            return Err(StoreError::Database(format!(
                "{} cannot go from {} to {next}",
                record.id, record.state
            )));
        }
        let now = self.now();
        audit.push(AuditEntry::new(
            now,
            Some(record.id),
            None,
            "state",
            json!({ "from": record.state, "to": next }),
        ));
        record.state = next;
        record.updated_at = now;
        if next.is_terminal() {
            record.finished_at = Some(now);
        }
        self.store.save(record, &audit).await?;
        if next.is_terminal() {
            self.active.remove(&record.id);
            self.metrics.rollback_finished(next.as_str());
        } else {
            self.active.insert(record.id, record.clone());
        }
        self.update_gauges();
        self.emit(Event {
            kind,
            channel: record.channel.clone(),
            rollback: Some(record.clone()),
        });
        Ok(())
    }

    async fn expire(&mut self, id: RollbackId) {
        let Some(record) = self.active.get(&id).cloned() else {
            return;
        };
        if record.state != State::Requested {
            return;
        }
        let mut record = record;
        record.error = Some("not approved in time".to_owned());
        let audit = AuditEntry::new(
            self.now(),
            Some(id),
            None,
            "expired",
            json!({ "expires_at": record.expires_at }),
        );
        tracing::info!(rollback_id = %id, "Rollback request expired.");
        if let Err(error) = self
            .transition(&mut record, State::Expired, vec![audit], EventKind::Expired)
            .await
        {
            tracing::error!(rollback_id = %id, %error, "Expiry could not be persisted.");
        }
    }

    async fn tick(&mut self) {
        let now = self.now();
        let expired: Vec<RollbackId> = self
            .active
            .values()
            .filter(|r| r.state == State::Requested && now >= r.expires_at)
            .map(|r| r.id)
            .collect();
        for id in expired {
            self.expire(id).await;
        }
    }

    // ---- the pipeline --------------------------------------------------------------------

    /// Runs the approved rollback: Approved → Retagging, then the pipeline task (re-planned
    /// against the approved state, so a tag that moved since the request aborts it).
    async fn start_pipeline(&mut self, mut record: RollbackRecord, verify_only: bool) {
        let id = record.id;
        if record.state == State::Approved {
            let audit = AuditEntry::new(
                self.now(),
                Some(id),
                None,
                "pipeline",
                json!({ "started": true }),
            );
            let step = StepReport {
                name: "approve".to_owned(),
                ok: true,
                duration_ms: record
                    .approved_at
                    .map_or(0, |at| at.since(record.created_at)),
                detail: "approved".to_owned(),
            };
            if let Err(error) = self
                .transition(
                    &mut record,
                    State::Retagging,
                    vec![audit],
                    EventKind::Step { step },
                )
                .await
            {
                tracing::error!(rollback_id = %id, %error, "Could not start the pipeline.");
                return;
            }
        }
        let entry = self.settings.images.get(&record.alias).cloned();
        let registry = match self.registries.get(&record.image.registry) {
            Ok(registry) => registry,
            Err(error) => {
                let mut report = Report::new(
                    "rollback",
                    &record.image,
                    &Reference::Digest(record.target.digest.clone()),
                    &[],
                );
                report.outcome = Outcome::PrecheckFailed;
                report.error = Some(error.to_string());
                let _ = self.internal_tx.send(Internal::Finished {
                    id,
                    report: Box::new(report),
                    tags_now: None,
                });
                return;
            }
        };
        let approvers: Vec<String> = record
            .votes
            .iter()
            .filter(|v| v.decision == Decision::Approve)
            .map(|v| v.actor.name.clone())
            .collect();
        let options = RunOptions {
            dry_run: false,
            rto: self.settings.rollback.rto,
            checks: entry.map(|e| e.checks).unwrap_or_default(),
            hold: Some(HoldOptions {
                reason: record
                    .reason
                    .clone()
                    .unwrap_or_else(|| format!("rolled back by rollbot ({id})")),
                by: format!(
                    "{} (requested), {} (approved) via rollbot {id}",
                    record.requester.name,
                    approvers.join(", ")
                ),
            }),
        };
        self.running.insert(id);
        self.update_gauges();
        let internal = self.internal_tx.clone();
        let started = Instant::now();
        tracing::info!(rollback_id = %id, verify_only, "Pipeline started.");
        self.tasks.spawn(async move {
            let run = run_pipeline(
                &registry,
                &record,
                &options,
                verify_only,
                started,
                &internal,
            );
            match catch_panic(run).await {
                Ok(report) => {
                    let tags_now = if report.outcome == Outcome::Succeeded {
                        None
                    } else {
                        Some(read_tags_now(&registry, &record).await)
                    };
                    let _ = internal.send(Internal::Finished {
                        id,
                        report: Box::new(report),
                        tags_now,
                    });
                }
                // A bug must not leave the image locked until the next restart: read where
                // the tags are and end the rollback as interrupted, for a human to look at.
                Err(panic) => {
                    tracing::error!(rollback_id = %id, %panic, "The pipeline task panicked.");
                    let tags_now = read_tags_now(&registry, &record).await;
                    let _ = internal.send(Internal::Reconciled {
                        id,
                        outcome: Reconciliation::Interrupted {
                            detail: format!(
                                "internal error: the rollback stopped unexpectedly ({panic}); tags now: {}; finish it with: {}",
                                describe_tags(&tags_now),
                                finish_command(&registry, &record)
                            ),
                            tags_now,
                        },
                    });
                }
            }
        });
    }

    // ---- restart -------------------------------------------------------------------------

    fn reconcile_on_start(&mut self) {
        let interrupted: Vec<RollbackRecord> = self
            .active
            .values()
            .filter(|r| r.state.is_running())
            .cloned()
            .collect();
        for record in interrupted {
            tracing::warn!(rollback_id = %record.id, state = %record.state, "Rollback was running when rollbot stopped; reconciling from the registry.");
            let registry = self.registries.get(&record.image.registry);
            let internal = self.internal_tx.clone();
            let now = self.now();
            let expiry = self.settings.daemon.approvals.expiry;
            self.running.insert(record.id);
            self.tasks.spawn(async move {
                let outcome = match registry {
                    Ok(registry) => catch_panic(reconcile(&registry, &record, now, expiry))
                        .await
                        .unwrap_or_else(|panic| Reconciliation::Interrupted {
                            tags_now: Vec::new(),
                            detail: format!("internal error while reconciling on restart ({panic}); check the tags by hand"),
                        }),
                    Err(error) => Reconciliation::Interrupted {
                        tags_now: Vec::new(),
                        detail: format!("registry unusable on restart: {error}"),
                    },
                };
                let _ = internal.send(Internal::Reconciled {
                    id: record.id,
                    outcome,
                });
            });
        }
    }

    /// Reads again, in the background, the tags of rollbacks that failed recently: the record
    /// must end up saying what the registry says, even when a write landed after it was written.
    fn reread_failed(&mut self, records: Vec<RollbackRecord>) {
        for record in records {
            let Ok(registry) = self.registries.get(&record.image.registry) else {
                continue;
            };
            let internal = self.internal_tx.clone();
            self.tasks.spawn(async move {
                let tags_now = read_tags_now(&registry, &record).await;
                if tags_now != record.tags_now && !tags_now.iter().any(|(_, now)| now.is_unknown())
                {
                    let _ = internal.send(Internal::Reread {
                        record: Box::new(record),
                        tags_now,
                    });
                }
            });
        }
    }

    /// Records what a re-read found (only called when it differs from the record) and says so
    /// in the rollback's thread.
    async fn reread(&mut self, mut record: RollbackRecord, tags_now: Vec<(Tag, TagNow)>) {
        let id = record.id;
        let detail = format!(
            "after a restart, rollbot read the tags of {id} again: {} (the record said {})",
            describe_tags(&tags_now),
            describe_tags(&record.tags_now)
        );
        tracing::warn!(rollback_id = %id, %detail, "Tags of a failed rollback changed since it was recorded.");
        record.tags_now = tags_now;
        record.updated_at = self.now();
        let audit = AuditEntry::new(
            self.now(),
            Some(id),
            None,
            "reconcile",
            json!({ "decision": "tags_reread", "detail": detail }),
        );
        if let Err(error) = self.store.save(&record, &[audit]).await {
            tracing::error!(rollback_id = %id, %error, "Re-read tags could not be saved.");
            return;
        }
        self.emit(Event {
            kind: EventKind::Notice {
                text: detail,
                link: None,
            },
            channel: record.channel.clone(),
            rollback: Some(record),
        });
    }

    async fn reconciled(&mut self, id: RollbackId, outcome: Reconciliation) {
        self.running.remove(&id);
        let Some(mut record) = self.active.get(&id).cloned() else {
            return;
        };
        let now = self.now();
        match outcome {
            Reconciliation::Resume => {
                let detail =
                    "rollbot restarted before any tag moved; resuming the approved rollback"
                        .to_owned();
                self.audit(AuditEntry::new(
                    now,
                    Some(id),
                    None,
                    "reconcile",
                    json!({ "decision": "resume" }),
                ))
                .await;
                self.emit(Event {
                    kind: EventKind::Resumed { detail },
                    channel: record.channel.clone(),
                    rollback: Some(record.clone()),
                });
                self.start_pipeline(record, false).await;
            }
            Reconciliation::Verify => {
                let detail = "rollbot restarted after every tag moved; verifying now".to_owned();
                self.audit(AuditEntry::new(
                    now,
                    Some(id),
                    None,
                    "reconcile",
                    json!({ "decision": "verify" }),
                ))
                .await;
                if record.state != State::Verifying {
                    if record.state == State::Approved {
                        // Approved → Retagging → Verifying: the retag happened.
                        let _ = self
                            .transition(
                                &mut record,
                                State::Retagging,
                                Vec::new(),
                                EventKind::Resumed {
                                    detail: detail.clone(),
                                },
                            )
                            .await;
                    }
                    let _ = self
                        .transition(
                            &mut record,
                            State::Verifying,
                            Vec::new(),
                            EventKind::Resumed { detail },
                        )
                        .await;
                } else {
                    self.emit(Event {
                        kind: EventKind::Resumed { detail },
                        channel: record.channel.clone(),
                        rollback: Some(record.clone()),
                    });
                }
                self.start_pipeline(record, true).await;
            }
            Reconciliation::Interrupted { tags_now, detail } => {
                record.tags_now = tags_now;
                record.error = Some(detail.clone());
                let audit = AuditEntry::new(
                    now,
                    Some(id),
                    None,
                    "reconcile",
                    json!({ "decision": "interrupted", "detail": detail }),
                );
                if let Err(error) = self
                    .transition(
                        &mut record,
                        State::Interrupted,
                        vec![audit],
                        EventKind::Interrupted,
                    )
                    .await
                {
                    tracing::error!(rollback_id = %id, %error, "Interrupted state could not be persisted.");
                }
            }
        }
    }
}

/// Plans a request: chooses the target from the rollback manifests when none was named.
async fn plan_request(
    registry: &RegistryClient,
    image: &ImageRef,
    tags: Vec<Tag>,
    target: Option<Reference>,
) -> Result<Planned, String> {
    let (target, expect_from, target_source, prefetched) = match target {
        Some(target) => (target, Vec::new(), None, None),
        None => match pipeline::default_target(registry, image, &tags).await {
            Ok(chosen) => (
                Reference::Digest(chosen.digest),
                chosen.expect_from,
                Some(chosen.source),
                chosen.prefetched,
            ),
            Err(refusal) => {
                return Err(match refusal.suggestion {
                    Some(suggestion) => format!(
                        "{}; the newest complete build before it is {suggestion} (name it: /rollback {image}@{suggestion})",
                        refusal.reason
                    ),
                    None => refusal.reason,
                })
            }
        },
    };
    let request = RollbackRequest {
        image: image.clone(),
        target,
        tags,
        expect_from,
        target_source: target_source.clone(),
        prefetched,
    };
    let plan = pipeline::plan(registry, &request)
        .await
        .map_err(|e| e.to_string())?;
    Ok(Planned {
        plan,
        target_source,
    })
}

/// The pipeline for an approved record: re-plan against the approved state, then retag,
/// verify, check, hold. With `verify_only` (after a restart found every tag moved): verify,
/// check, hold.
async fn run_pipeline(
    registry: &RegistryClient,
    record: &RollbackRecord,
    options: &RunOptions,
    verify_only: bool,
    started: Instant,
    internal: &mpsc::UnboundedSender<Internal>,
) -> Report {
    let tags: Vec<Tag> = record.tags.iter().map(|t| t.tag.clone()).collect();
    let target = Reference::Digest(record.target.digest.clone());
    let mut report = Report::new("rollback", &record.image, &target, &tags);
    let id = record.id;
    let mut progress = |event: Progress<'_>| {
        if let Progress::Step(step) | Progress::Planned(_, step) = event {
            let _ = internal.send(Internal::Progress {
                id,
                step: step.clone(),
            });
        }
    };
    if verify_only {
        let references = match registry
            .get_manifest(&record.image.repository, &target)
            .await
            .map_err(|e| e.to_string())
            .and_then(|m| m.references().map_err(|e| e.to_string()))
        {
            Ok(references) => references,
            Err(error) => {
                let error = format!("cannot read the target to verify it: {error}");
                return report.finish(
                    Outcome::VerifyFailed,
                    Some(error),
                    started,
                    options.rto,
                    Some(registry),
                );
            }
        };
        pipeline::verify_and_check(
            registry,
            &record.image,
            &tags,
            &record.target.digest,
            &references,
            &options.checks,
            &mut report,
            &mut progress,
        )
        .await;
        for tag in &mut report.tags {
            tag.status = pipeline::TagStatus::Moved;
        }
        if report.outcome == Outcome::Verified {
            report.outcome = Outcome::Succeeded;
        }
    } else {
        let request = RollbackRequest {
            image: record.image.clone(),
            target,
            tags: tags.clone(),
            expect_from: record
                .tags
                .iter()
                .map(|t| (t.tag.clone(), t.from.clone()))
                .collect(),
            target_source: record.target_source.clone(),
            prefetched: None,
        };
        let plan = match pipeline::plan(registry, &request).await {
            Ok(plan) => plan,
            Err(error) => {
                report.record_step("plan", false, started, error.to_string(), &mut progress);
                return report.finish(
                    Outcome::PrecheckFailed,
                    Some(format!("aborted before any change: {error}")),
                    started,
                    options.rto,
                    Some(registry),
                );
            }
        };
        report.record_plan(&plan);
        pipeline::execute(registry, &plan, options, &mut report, &mut progress).await;
    }
    pipeline::hold_moved_tags(
        registry,
        &record.image,
        &record.target.digest,
        &record.tags,
        options.hold.as_ref(),
        &mut report,
        &mut progress,
    )
    .await;
    let outcome = report.outcome;
    let error = report.error.take();
    report.finish(outcome, error, started, options.rto, Some(registry))
}

/// How long until a rate limiter that said no allows again.
fn retry_in(
    not_until: &governor::NotUntil<<DefaultClock as governor::clock::Clock>::Instant>,
) -> Duration {
    not_until.wait_time_from(governor::clock::Clock::now(&DefaultClock::default()))
}

/// "latest at sha256:abcd…, stable at (missing)".
fn describe_tags(tags_now: &[(Tag, TagNow)]) -> String {
    if tags_now.is_empty() {
        return "unknown".to_owned();
    }
    tags_now
        .iter()
        .map(|(tag, now)| format!("{tag} at {}", now.short()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Where each of the rollback's tags points now ([`pipeline::read_tags`]).
async fn read_tags_now(registry: &RegistryClient, record: &RollbackRecord) -> Vec<(Tag, TagNow)> {
    let tags: Vec<Tag> = record.tags.iter().map(|t| t.tag.clone()).collect();
    let now = pipeline::read_tags(registry, &record.image, &tags).await;
    tags.into_iter().zip(now).collect()
}

/// `rollbot rollback IMAGE --to DIGEST --tag …`: what finishes the rollback `record` names.
fn finish_command(registry: &RegistryClient, record: &RollbackRecord) -> String {
    let tags: Vec<&Tag> = record.tags.iter().map(|t| &t.tag).collect();
    manifest::rollback_command(
        &record.image,
        &record.target.digest,
        &tags,
        registry.is_insecure(),
    )
}

/// Runs a task's body and turns a panic into `Err(message)`, so the engine can release what
/// the task held (a reserved image, a running rollback) instead of waiting for a restart.
async fn catch_panic<T>(body: impl Future<Output = T>) -> Result<T, String> {
    AssertUnwindSafe(body)
        .catch_unwind()
        .await
        .map_err(|payload| {
            payload
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "panic".to_owned())
        })
}

/// Decides what to do with a rollback the previous process left running
/// ([`domain::reconcile`](crate::domain::reconcile)), from its tags read after a write that
/// may have been in flight had time to land.
async fn reconcile(
    registry: &RegistryClient,
    record: &RollbackRecord,
    now: Timestamp,
    expiry: Duration,
) -> Reconciliation {
    if record.state == State::Retagging {
        tokio::time::sleep(pipeline::SETTLE).await;
    }
    let tags_now = read_tags_now(registry, record).await;
    let detail = match reconcile::reconcile(record, &tags_now, now, expiry) {
        Reconcile::Verify => return Reconciliation::Verify,
        Reconcile::Resume => return Reconciliation::Resume,
        Reconcile::Interrupted(why) => interruption_text(&why, registry, record, &tags_now),
    };
    Reconciliation::Interrupted { tags_now, detail }
}

/// What a person is told (and the record keeps) about a rollback interrupted by a restart.
fn interruption_text(
    why: &Interruption,
    registry: &RegistryClient,
    record: &RollbackRecord,
    tags_now: &[(Tag, TagNow)],
) -> String {
    let finish = finish_command(registry, record);
    let (image, target) = (&record.image, &record.target.digest);
    match why {
        Interruption::Unreadable { tag, why } => format!(
            "rollbot restarted mid-rollback and could not read tag {tag} ({why}); check the tags with `rollbot verify {image} --expect {target}`, and finish with: {finish}"
        ),
        Interruption::StaleBeforeRetag => format!(
            "rollbot restarted before any tag moved, but the approval is too old to act on; nothing changed ({}); request it again",
            describe_tags(tags_now)
        ),
        Interruption::StaleDuringRetag => format!(
            "rollbot restarted during the retag, before any tag was seen to move, and the approval is too old to act on ({}); a write in flight when it stopped may still land, and the hold records the rollback as in progress (CI's gate stays closed): check with `rollbot verify {image} --expect {target}`, then finish with: {finish} (or release the hold with `rollbot hold release {image}` if the rollback is no longer wanted)",
            describe_tags(tags_now)
        ),
        Interruption::Mixed => format!(
            "rollbot restarted mid-rollback and the tags are neither all moved nor untouched: {}; finish it with: {finish}",
            describe_tags(tags_now)
        ),
    }
}

/// Writes a `refused` audit entry: who was refused what, and why.
async fn audit_refusal(
    store: &Store,
    at: Timestamp,
    actor: &Actor,
    rollback: Option<RollbackId>,
    command: &str,
    why: &str,
) {
    let entry = AuditEntry::new(
        at,
        rollback,
        Some(actor),
        "refused",
        json!({ "command": command, "why": why }),
    );
    if let Err(error) = store.audit(&entry).await {
        tracing::error!(%error, "Audit entry could not be written.");
    }
}

fn command_name(command: &Command) -> &'static str {
    match command {
        Command::Request { .. } => "request",
        Command::Approve { .. } => "approve",
        Command::Reject { .. } => "reject",
        Command::Cancel { .. } => "cancel",
        Command::Status { .. } => "status",
        Command::History { .. } => "history",
        Command::Release { .. } => "release",
        Command::Help => "help",
    }
}

fn command_id(command: &Command) -> Option<RollbackId> {
    match command {
        Command::Approve { id } | Command::Reject { id, .. } | Command::Cancel { id } => Some(*id),
        Command::Status { id } => *id,
        _ => None,
    }
}

/// `alice, group:sre`
pub fn describe_approvers(rule: &ApprovalRule) -> String {
    if rule.approvers.is_empty() {
        return "nobody (no approvers are configured)".to_owned();
    }
    rule.approvers
        .iter()
        .map(|a| match a {
            Approver::User(id) => id.clone(),
            Approver::Group(group) => format!("group:{group}"),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// One line about a rollback for `/rollback status`.
pub fn describe(record: &RollbackRecord, now: Timestamp) -> String {
    let tags = record
        .tags
        .iter()
        .map(|t| t.tag.as_str())
        .collect::<Vec<_>>()
        .join(", ");
    let mut line = format!(
        "{} {} ({tags}) → {}: {}, requested by {}",
        record.id,
        record.alias,
        record.target.digest.short(),
        record.state,
        record.requester.name
    );
    match record.state {
        State::Requested => {
            let approvals = record
                .votes
                .iter()
                .filter(|v| v.decision == Decision::Approve)
                .count();
            let left = record.expires_at.0.saturating_sub(now.0).max(0) / 1000;
            line.push_str(&format!(
                ", {approvals} approval(s), expires in {} min {} s",
                left / 60,
                left % 60
            ));
        }
        _ => {
            if let Some(error) = &record.error {
                line.push_str(&format!(": {error}"));
            }
        }
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panicking_task_body_becomes_an_error_with_its_message() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        let ok = runtime.block_on(catch_panic(async { 7 }));
        assert_eq!(ok, Ok(7));
        let formatted = runtime.block_on(catch_panic(async {
            let index = 3;
            if index > 2 {
                panic!("index {index} out of range");
            }
        }));
        assert_eq!(formatted, Err("index 3 out of range".to_owned()));
        let literal = runtime.block_on(catch_panic(async {
            if true {
                panic!("plain");
            }
        }));
        assert_eq!(literal, Err("plain".to_owned()));
        assert_eq!(describe_tags(&[]), "unknown");
    }
}
