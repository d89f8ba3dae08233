//! Telling everyone: GitHub Discussions and the Docker Hub description, through an outbox.
//!
//! Two tasks. *Intake* turns engine events into deliveries in the SQLite outbox (a unique key
//! per intended effect makes this idempotent: one Discussion per rollback, one comment per
//! event). *Delivery* sends due deliveries, retrying with exponential backoff and jitter
//! (rate limits: after the time the service names), keeps going across restarts (the outbox is
//! in the database), and gives up after `notify.max_attempts`, saying so in the chat thread and
//! on `/metrics`. Outbound calls are paced with governor (GitHub allows 80 content-creating
//! requests a minute). Nothing here can change a rollback: the engine only drops events in the
//! intake queue and moves on.

pub mod dockerhub;
pub mod github;
pub mod markup;
pub mod templates;

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use serde_json::json;
use tokio::sync::{mpsc, Notify};

use crate::config::{AnnounceOn, Settings};
use crate::domain::rollback::{RollbackId, State};
use crate::engine::{Clock, EngineHandle, Event, EventKind};
use crate::metrics::Metrics;
use crate::store::{Delivery, DiscussionRef, RollbackRecord, Store};
use dockerhub::{with_banner, without_banner, DockerHub, HubError};
use github::{GitHub, GitHubError};
use templates::{Context, Links, TemplateName, Templates};

/// What one attempt came to.
enum Attempt {
    Done,
    /// Not yet possible (the Discussion to comment on is still being created): look again
    /// later without counting an attempt.
    Wait(Duration),
    /// Failed; retry (after the given time, if the service named one).
    Retry(String, Option<Duration>),
    /// Failed in a way retrying cannot fix.
    GiveUp(String),
}

/// The notification sinks.
pub struct Notifier {
    settings: Arc<Settings>,
    store: Store,
    clock: Arc<dyn Clock>,
    templates: Arc<Templates>,
    github: Option<GitHub>,
    dockerhub: Option<DockerHub>,
    engine: EngineHandle,
    metrics: Arc<Metrics>,
    github_pace: DefaultDirectRateLimiter,
    dockerhub_pace: DefaultDirectRateLimiter,
    wake: Notify,
    stop: Notify,
}

impl std::fmt::Debug for Notifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Notifier")
            .field("github", &self.github.is_some())
            .field("dockerhub", &self.dockerhub.is_some())
            .finish_non_exhaustive()
    }
}

impl Notifier {
    /// Builds the sinks that are enabled and checks them: GitHub's repository, Discussions and
    /// category; Docker Hub's credentials.
    ///
    /// # Errors
    /// A message naming what is wrong and the fix.
    #[allow(clippy::too_many_arguments)]
    pub async fn start(
        settings: Arc<Settings>,
        store: Store,
        clock: Arc<dyn Clock>,
        templates: Arc<Templates>,
        engine: EngineHandle,
        metrics: Arc<Metrics>,
    ) -> Result<Option<Arc<Notifier>>, String> {
        let daemon = &settings.daemon;
        if daemon.github.is_none() && daemon.dockerhub.is_none() {
            return Ok(None);
        }
        let github = match &daemon.github {
            Some(github) => {
                let client = GitHub::new(github.clone())?;
                match client.resolve().await {
                    Ok(()) => {}
                    Err((true, message)) => return Err(message),
                    // GitHub being down must not stop rollbot; deliveries resolve it later.
                    Err((false, message)) => {
                        tracing::warn!(%message, "GitHub is not reachable at startup; Discussions will retry.")
                    }
                }
                Some(client)
            }
            None => None,
        };
        let dockerhub = match &daemon.dockerhub {
            Some(hub) => {
                let client = DockerHub::new(hub.clone())?;
                match client.login().await {
                    Ok(_) => tracing::info!(user = %hub.username, "Docker Hub credentials work."),
                    Err(error @ HubError::Unauthorized(_)) => return Err(error.to_string()),
                    // Docker Hub being briefly down must not stop rollbot; deliveries retry.
                    Err(error) => {
                        tracing::warn!(%error, "Docker Hub login failed at startup; banners will retry.")
                    }
                }
                Some(client)
            }
            None => None,
        };
        let per_minute = |n: u32| Quota::per_minute(NonZeroU32::new(n).unwrap_or(NonZeroU32::MIN));
        Ok(Some(Arc::new(Notifier {
            settings: Arc::clone(&settings),
            store,
            clock,
            templates,
            github,
            dockerhub,
            engine,
            metrics,
            github_pace: RateLimiter::direct(per_minute(80)),
            dockerhub_pace: RateLimiter::direct(per_minute(30)),
            wake: Notify::new(),
            stop: Notify::new(),
        })))
    }

    /// Intake: engine events → outbox. Ends when the engine (the sender) is gone.
    pub async fn run_intake(self: Arc<Self>, mut events: mpsc::Receiver<Event>) {
        while let Some(event) = events.recv().await {
            if let Err(error) = self.enqueue(&event).await {
                tracing::error!(%error, "A notification could not be queued.");
                self.metrics.sink_failure("outbox");
            }
            self.wake.notify_one();
        }
    }

    /// Delivery: sends what is due until [`Notifier::stop`].
    pub async fn run_delivery(self: Arc<Self>) {
        loop {
            self.deliver_due().await;
            let wait = match self.store.pending().await {
                Ok((pending, next)) => {
                    self.metrics.set_pending_notifications(pending);
                    next.map_or(Duration::from_secs(60), |next| {
                        Duration::from_millis(next.since(self.clock.now()).clamp(50, 60_000))
                    })
                }
                Err(_) => Duration::from_secs(5),
            };
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                () = self.wake.notified() => {}
                () = self.stop.notified() => break,
            }
        }
    }

    /// Stops the delivery task after its current delivery; what is pending stays in the outbox.
    pub fn stop(&self) {
        self.stop.notify_one();
    }

    fn dockerhub_repository(&self, record: &RollbackRecord) -> Option<String> {
        self.settings
            .images
            .get(&record.alias)
            .and_then(|entry| entry.dockerhub.clone())
    }

    /// The deliveries an event calls for, into the outbox.
    async fn enqueue(&self, event: &Event) -> Result<(), String> {
        let now = self.clock.now();
        let rto = self.settings.rollback.rto;
        let github = self.settings.daemon.github.as_ref();
        let announce_on = github.map(|g| g.announce_on);
        // What failed health checks printed stays out of public places: out of the Discussion
        // unless `github.publish_check_output`, always out of the Docker Hub banner.
        let publish_check_output = github.is_some_and(|g| g.publish_check_output);
        let context = |record: &RollbackRecord, name: &str, check_output: bool| {
            let mut context = Context::of(record, name, rto, Links::default(), now);
            if !check_output {
                context.withhold_check_output(&record.checks);
            }
            context
        };
        let for_github =
            |record: &RollbackRecord, name: &str| context(record, name, publish_check_output);
        let for_dockerhub = |record: &RollbackRecord, name: &str| context(record, name, false);
        let mut outgoing = Vec::new();
        match (&event.kind, &event.rollback) {
            (EventKind::Approved { .. }, Some(record))
                if announce_on == Some(AnnounceOn::Approved) =>
            {
                outgoing.push(Outgoing::announce(
                    record.id,
                    &for_github(record, "approved"),
                ));
            }
            (EventKind::Succeeded, Some(record)) => {
                let context = for_github(record, "succeeded");
                match announce_on {
                    Some(AnnounceOn::Succeeded) => {
                        outgoing.push(Outgoing::announce(record.id, &context));
                    }
                    Some(AnnounceOn::Approved) => {
                        outgoing.push(Outgoing::comment(record.id, "succeeded", &context));
                    }
                    None => {}
                }
                if let (Some(_), Some(repository)) =
                    (&self.dockerhub, self.dockerhub_repository(record))
                {
                    outgoing.push(Outgoing::banner(
                        format!("dockerhub:banner:{}", record.id),
                        record.id,
                        "banner_set",
                        &for_dockerhub(record, "succeeded"),
                        &repository,
                    ));
                }
            }
            (EventKind::Failed | EventKind::Interrupted, Some(record))
                if announce_on == Some(AnnounceOn::Approved) =>
            {
                let name = if event.kind == EventKind::Failed {
                    "failed"
                } else {
                    "interrupted"
                };
                outgoing.push(Outgoing::comment(
                    record.id,
                    name,
                    &for_github(record, name),
                ));
            }
            (EventKind::HoldReleased { image, by, reason }, _) => {
                let record = self
                    .store
                    .latest_for_image(image, State::Succeeded)
                    .await
                    .map_err(|e| e.to_string())?;
                if let Some(record) = record {
                    let released = |mut context: Context| {
                        context.released_by = Some(by.name.clone());
                        context.release_reason = reason.clone();
                        context
                    };
                    if github.is_some() {
                        let what = format!("released:{}", now.0);
                        let context = released(for_github(&record, "hold_released"));
                        outgoing.push(Outgoing::comment(record.id, &what, &context));
                    }
                    if let (Some(_), Some(repository)) =
                        (&self.dockerhub, self.dockerhub_repository(&record))
                    {
                        outgoing.push(Outgoing::banner(
                            format!("dockerhub:remove:{}:{}", record.id, now.0),
                            record.id,
                            "banner_remove",
                            &released(for_dockerhub(&record, "hold_released")),
                            &repository,
                        ));
                    }
                }
            }
            _ => {}
        }
        for delivery in outgoing {
            self.store
                .enqueue(
                    &delivery.key,
                    Some(delivery.rollback),
                    delivery.sink,
                    delivery.kind,
                    &delivery.payload,
                    now,
                )
                .await
                .map_err(|e| e.to_string())?;
        }
        Ok(())
    }

    async fn deliver_due(&self) {
        let now = self.clock.now();
        let due = match self.store.due(now, 20).await {
            Ok(due) => due,
            Err(error) => {
                tracing::error!(%error, "The outbox cannot be read.");
                return;
            }
        };
        for delivery in due {
            let outcome = self.attempt(&delivery).await;
            let now = self.clock.now();
            let result = match outcome {
                Attempt::Done => {
                    tracing::info!(key = %delivery.key, "Notification delivered.");
                    self.store.delivered(delivery.id, now).await
                }
                Attempt::Wait(wait) => {
                    self.store
                        .retry_later(delivery.id, now.plus(wait), false, None)
                        .await
                }
                Attempt::Retry(error, after)
                    if delivery.attempts + 1 < self.settings.daemon.notify.max_attempts =>
                {
                    let wait = after.unwrap_or_else(|| self.backoff(delivery.attempts));
                    tracing::warn!(key = %delivery.key, attempt = delivery.attempts + 1, wait_ms = wait.as_millis() as u64, %error, "Notification failed; retrying.");
                    self.store
                        .retry_later(delivery.id, now.plus(wait), true, Some(&error))
                        .await
                }
                Attempt::Retry(error, _) | Attempt::GiveUp(error) => {
                    self.give_up(&delivery, &error).await;
                    self.store.give_up(delivery.id, &error, now).await
                }
            };
            if let Err(error) = result {
                tracing::error!(%error, key = %delivery.key, "The outbox could not be updated.");
            }
        }
    }

    /// `retry_base` doubling per attempt, at most `retry_max`, ±20% jitter.
    fn backoff(&self, attempts: u32) -> Duration {
        let notify = &self.settings.daemon.notify;
        let doubled = notify
            .retry_base
            .saturating_mul(1u32.checked_shl(attempts.min(20)).unwrap_or(u32::MAX));
        let base = doubled.min(notify.retry_max);
        let entropy = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let factor = 0.8 + f64::from(entropy % 400) / 1000.0;
        base.mul_f64(factor)
    }

    async fn give_up(&self, delivery: &Delivery, error: &str) {
        self.metrics.sink_failure(&delivery.sink);
        tracing::error!(key = %delivery.key, %error, "Notification given up.");
        let what = match (delivery.sink.as_str(), delivery.kind.as_str()) {
            ("github", "announce") => "create the GitHub Discussion",
            ("github", _) => "comment on the GitHub Discussion",
            ("dockerhub", "banner_set") => "put the banner on the Docker Hub description",
            _ => "remove the banner from the Docker Hub description",
        };
        self.engine
            .notice(
                delivery.rollback,
                None,
                format!("rollbot could not {what}: {error}. The rollback itself is unaffected."),
            )
            .await;
    }

    fn context(delivery: &Delivery) -> Result<Context, String> {
        serde_json::from_value(delivery.payload["context"].clone())
            .map_err(|e| format!("unreadable delivery payload: {e}"))
    }

    async fn attempt(&self, delivery: &Delivery) -> Attempt {
        let mut context = match Notifier::context(delivery) {
            Ok(context) => context,
            Err(error) => return Attempt::GiveUp(error),
        };
        let discussion = match delivery.rollback {
            Some(id) => self.store.discussion(id).await.ok().flatten(),
            None => None,
        };
        context.links.discussion = discussion.as_ref().map(|d| d.url.clone());
        match (delivery.sink.as_str(), delivery.kind.as_str()) {
            ("github", "announce") => self.announce(delivery, &context).await,
            ("github", "comment") => self.comment(delivery, &context, discussion).await,
            ("dockerhub", kind) => {
                let repository = delivery.payload["repository"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned();
                self.banner(
                    kind == "banner_set",
                    delivery.rollback,
                    &repository,
                    &mut context,
                )
                .await
            }
            (sink, kind) => Attempt::GiveUp(format!("unknown delivery {sink}/{kind}")),
        }
    }

    async fn announce(&self, delivery: &Delivery, context: &Context) -> Attempt {
        let (Some(github), Some(rollback)) = (&self.github, delivery.rollback) else {
            return Attempt::GiveUp("GitHub is not configured".to_owned());
        };
        let (title, body) = match (
            self.templates
                .render(TemplateName::DiscussionTitle, context),
            self.templates
                .render(TemplateName::DiscussionAnnouncement, context),
        ) {
            (Ok(title), Ok(body)) => (title, body),
            (Err(error), _) | (_, Err(error)) => {
                return Attempt::GiveUp(format!("template: {error}"))
            }
        };
        self.github_pace.until_ready().await;
        // A retry after an unclear failure may find the Discussion already created.
        let found = if delivery.attempts > 0 {
            github.find(&title).await.ok().flatten()
        } else {
            None
        };
        let discussion = match found {
            Some(found) => found,
            None => match github.create(&title, &body).await {
                Ok(created) => created,
                Err(error) => return github_failure(error),
            },
        };
        let reference = DiscussionRef {
            node_id: discussion.id,
            number: discussion.number,
            url: discussion.url.clone(),
        };
        if let Err(error) = self.store.save_discussion(rollback, &reference).await {
            return Attempt::Retry(
                format!("the Discussion was created but not recorded: {error}"),
                None,
            );
        }
        self.engine
            .notice(
                Some(rollback),
                None,
                format!("GitHub Discussion: {}", discussion.url),
            )
            .await;
        Attempt::Done
    }

    async fn comment(
        &self,
        delivery: &Delivery,
        context: &Context,
        discussion: Option<DiscussionRef>,
    ) -> Attempt {
        let Some(github) = &self.github else {
            return Attempt::GiveUp("GitHub is not configured".to_owned());
        };
        let Some(discussion) = discussion else {
            let key = delivery.rollback.map(|id| format!("github:announce:{id}"));
            let announcement = match key {
                Some(key) => self.store.delivery_status(&key).await.ok().flatten(),
                None => None,
            };
            return match announcement.as_deref() {
                Some("pending") => Attempt::Wait(Duration::from_secs(1)),
                // No announcement (announce_on = succeeded and the rollback failed), or it was
                // given up: there is nothing to comment on.
                _ => Attempt::Done,
            };
        };
        let body = match self
            .templates
            .render(TemplateName::DiscussionComment, context)
        {
            Ok(body) => body,
            Err(error) => return Attempt::GiveUp(format!("template: {error}")),
        };
        self.github_pace.until_ready().await;
        match github.comment(&discussion.node_id, &body).await {
            Ok(_) => Attempt::Done,
            Err(error) => github_failure(error),
        }
    }

    async fn banner(
        &self,
        set: bool,
        rollback: Option<RollbackId>,
        repository: &str,
        context: &mut Context,
    ) -> Attempt {
        let Some(hub) = &self.dockerhub else {
            return Attempt::GiveUp("Docker Hub is not configured".to_owned());
        };
        let Some(rollback) = rollback else {
            return Attempt::GiveUp("a banner needs its rollback".to_owned());
        };
        // The long banner, and the short one for when the long one does not fit.
        let banners = if set {
            context.short = false;
            let long = self
                .templates
                .render(TemplateName::DockerHubBanner, context);
            context.short = true;
            let short = self
                .templates
                .render(TemplateName::DockerHubBanner, context);
            match (long, short) {
                (Ok(long), Ok(short)) => Some((long, short)),
                (Err(error), _) | (_, Err(error)) => {
                    return Attempt::GiveUp(format!("template: {error}"))
                }
            }
        } else {
            None
        };
        self.dockerhub_pace.until_ready().await;
        let edited = hub
            .edit_description(repository, |description| match &banners {
                Some((long, short)) => {
                    with_banner(description, rollback, long, short).map_err(HubError::TooLong)
                }
                None => Ok(without_banner(description)),
            })
            .await;
        match edited {
            Ok(_) => Attempt::Done,
            Err(error) => hub_failure(error),
        }
    }
}

/// A delivery to queue; its key is unique per intended effect.
struct Outgoing {
    key: String,
    rollback: RollbackId,
    sink: &'static str,
    kind: &'static str,
    payload: serde_json::Value,
}

impl Outgoing {
    /// The rollback's Discussion (created once).
    fn announce(rollback: RollbackId, context: &Context) -> Outgoing {
        Outgoing {
            key: format!("github:announce:{rollback}"),
            rollback,
            sink: "github",
            kind: "announce",
            payload: json!({ "context": context }),
        }
    }

    /// A comment on the rollback's Discussion; `what` makes the key unique.
    fn comment(rollback: RollbackId, what: &str, context: &Context) -> Outgoing {
        Outgoing {
            key: format!("github:comment:{rollback}:{what}"),
            rollback,
            sink: "github",
            kind: "comment",
            payload: json!({ "context": context }),
        }
    }

    /// Setting (`banner_set`) or removing (`banner_remove`) the Docker Hub banner.
    fn banner(
        key: String,
        rollback: RollbackId,
        kind: &'static str,
        context: &Context,
        repository: &str,
    ) -> Outgoing {
        Outgoing {
            key,
            rollback,
            sink: "dockerhub",
            kind,
            payload: json!({ "context": context, "repository": repository }),
        }
    }
}

fn github_failure(error: GitHubError) -> Attempt {
    match error {
        GitHubError::RateLimited(seconds) => {
            Attempt::Retry(error.to_string(), Some(Duration::from_secs(seconds)))
        }
        ref retryable if retryable.is_retryable() => Attempt::Retry(error.to_string(), None),
        other => Attempt::GiveUp(other.to_string()),
    }
}

fn hub_failure(error: HubError) -> Attempt {
    match error {
        HubError::RateLimited(seconds) => {
            Attempt::Retry(error.to_string(), Some(Duration::from_secs(seconds)))
        }
        ref retryable if retryable.is_retryable() => Attempt::Retry(error.to_string(), None),
        other => Attempt::GiveUp(other.to_string()),
    }
}

/// Removes the Docker Hub banner of `repository` now (for `rollbot hold release`, which runs
/// without the daemon).
///
/// # Errors
/// A message saying what failed.
pub async fn remove_banner_now(settings: &Settings, repository: &str) -> Result<bool, String> {
    let Some(hub) = &settings.daemon.dockerhub else {
        return Ok(false);
    };
    DockerHub::new(hub.clone())?
        .edit_description(repository, |description| Ok(without_banner(description)))
        .await
        .map_err(|e| e.to_string())
}
