//! Telling everyone: GitHub Discussions and the Docker Hub description, through an outbox.
//!
//! Two tasks. *Intake* (here) turns engine events into deliveries in the SQLite outbox (a
//! unique key per intended effect makes this idempotent: one Discussion per rollback, one
//! comment per event). *Delivery* ([`delivery`]) sends due deliveries in one lane per service,
//! so a slow GitHub never holds up the Docker Hub banner, retrying with exponential backoff and
//! jitter (rate limits: after the time the service names), keeps going across restarts (the
//! outbox is in the database), and gives up after `notify.max_attempts`, saying so in the chat
//! thread and on `/metrics`. Outbound calls are paced with governor (GitHub allows 80
//! content-creating requests a minute). Nothing here can change a rollback: the engine only
//! drops events in the intake queue and moves on. A drill's events are never queued: a
//! rehearsal is not news for an image's users.
//!
//! The startup checks of both services ([`Notifier::check_services`]) run in the background,
//! so the HTTP port opens at once; `/readyz` says what is still pending ([`Notifier::problems`])
//! and a fatal answer ends the daemon. Both services' errors are judged by one rule
//! ([`failure`]): what retrying can fix is retried in delivery and transient at startup, the
//! rest is given up in delivery and fatal at startup. What their HTTP clients share (building,
//! rate-limit headers, the service's own words from an error answer) is in `http.rs`.
//!
//! Untrusted text reaches the services only through the templates, which escape it for each
//! output ([`markup`]); failed health checks' output stays out of public places unless
//! `github.publish_check_output` says otherwise.

pub mod config;
mod delivery;
pub mod dockerhub;
pub mod failure;
pub mod github;
mod http;
pub mod markup;
pub mod now;
pub mod templates;

pub use self::http::ClientError;

use std::collections::BTreeMap;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use serde_json::json;
use tokio::sync::{mpsc, Notify};
use tracing::Instrument as _;

use self::config::{NotifySettings, RetrySettings};
use crate::config::Settings;
use crate::domain::record::RollbackRecord;
use crate::domain::rollback::{RollbackId, State};
use crate::engine::{Clock, EngineHandle, Event, EventKind};
use crate::metrics::Metrics;
use crate::store::Store;
use delivery::Lane;
use dockerhub::{without_banner, DockerHub, DockerHubSettings};
use failure::StartupError;
use github::{AnnounceOn, GitHub};
use templates::{Context, Links, Templates};

/// The notification sinks.
pub struct Notifier {
    settings: Arc<Settings>,
    store: Store,
    clock: Arc<dyn Clock>,
    templates: Arc<Templates>,
    github: Option<GitHub>,
    dockerhub: Option<DockerHub>,
    /// How deliveries retry (`[notify]`).
    retries: RetrySettings,
    engine: EngineHandle,
    metrics: Arc<Metrics>,
    github_pace: DefaultDirectRateLimiter,
    dockerhub_pace: DefaultDirectRateLimiter,
    /// Wakes the GitHub lane, and the Docker Hub lane, when something was queued.
    github_wake: Notify,
    dockerhub_wake: Notify,
    /// Per service, what `/readyz` reports until its startup check answered well.
    readiness: Mutex<BTreeMap<&'static str, String>>,
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
    /// Builds the sinks that are enabled. Nothing is asked of GitHub or Docker Hub yet: see
    /// [`Notifier::check_services`].
    ///
    /// # Errors
    /// An HTTP client cannot be built.
    pub fn new(
        settings: Arc<Settings>,
        sinks: &NotifySettings,
        store: Store,
        clock: Arc<dyn Clock>,
        templates: Arc<Templates>,
        engine: EngineHandle,
        metrics: Arc<Metrics>,
    ) -> Result<Option<Arc<Notifier>>, ClientError> {
        if sinks.github.is_none() && sinks.dockerhub.is_none() {
            return Ok(None);
        }
        let github = sinks.github.clone().map(GitHub::new).transpose()?;
        let dockerhub = sinks.dockerhub.clone().map(DockerHub::new).transpose()?;
        let mut readiness = BTreeMap::new();
        if github.is_some() {
            readiness.insert(
                Lane::GitHub.sink(),
                "github: resolving the repository and its Discussion category…".to_owned(),
            );
        }
        if dockerhub.is_some() {
            readiness.insert(
                Lane::DockerHub.sink(),
                "dockerhub: checking the credentials…".to_owned(),
            );
        }
        let per_minute = |n: u32| Quota::per_minute(NonZeroU32::new(n).unwrap_or(NonZeroU32::MIN));
        Ok(Some(Arc::new(Notifier {
            settings: Arc::clone(&settings),
            store,
            clock,
            templates,
            github,
            dockerhub,
            retries: sinks.retries.clone(),
            engine,
            metrics,
            github_pace: RateLimiter::direct(per_minute(80)),
            dockerhub_pace: RateLimiter::direct(per_minute(30)),
            github_wake: Notify::new(),
            dockerhub_wake: Notify::new(),
            readiness: Mutex::new(readiness),
        })))
    }

    /// The startup checks, both services at once: GitHub's repository, Discussions and
    /// category; Docker Hub's credentials. Meant to run in the background while the daemon
    /// already serves; [`Notifier::problems`] says what has not answered yet. A service that is
    /// down or rate limited is not fatal (deliveries retry; GitHub is resolved again before
    /// the first Discussion).
    ///
    /// # Errors
    /// The first fatal answer (wrong token or credentials, a missing repository or category,
    /// Discussions turned off), naming the fix: rollbot cannot do its job as configured.
    pub async fn check_services(self: Arc<Self>) -> Result<(), String> {
        let github = async {
            match &self.github {
                Some(github) => self.checked(Lane::GitHub, github.resolve().await),
                None => Ok(()),
            }
        };
        let dockerhub = async {
            match &self.dockerhub {
                Some(hub) => self.checked(Lane::DockerHub, hub.check().await),
                None => Ok(()),
            }
        };
        tokio::try_join!(github, dockerhub).map(|_| ())
    }

    /// Takes a service's startup answer: `/readyz` stops waiting for it, or names the fatal
    /// problem, which is returned. A transient one does not stop rollbot: deliveries retry
    /// (GitHub is resolved again before the first Discussion).
    fn checked(&self, lane: Lane, answer: Result<(), StartupError>) -> Result<(), String> {
        let service = lane.sink();
        match answer {
            Ok(()) => self.answered(service, None),
            Err(StartupError::Fatal(message)) => {
                self.answered(service, Some(format!("{service}: {message}")));
                return Err(message);
            }
            Err(StartupError::Transient(message)) => {
                self.answered(service, None);
                tracing::warn!(service, %message, "A notification service did not answer its startup check; its deliveries will retry.");
            }
        }
        Ok(())
    }

    fn answered(&self, service: &'static str, problem: Option<String>) {
        let mut readiness = crate::lock(&self.readiness);
        match problem {
            Some(problem) => readiness.insert(service, problem),
            None => readiness.remove(service),
        };
    }

    /// What keeps the notifications from being ready, for `/readyz`: a startup check still
    /// waiting for its answer, or a fatal answer.
    pub fn problems(&self) -> Vec<String> {
        crate::lock(&self.readiness).values().cloned().collect()
    }

    /// Intake: engine events → outbox. Ends when the engine (the sender) is gone.
    pub async fn run_intake(self: Arc<Self>, mut events: mpsc::Receiver<Event>) {
        while let Some(event) = events.recv().await {
            let span = event
                .rollback
                .as_ref()
                .map_or_else(tracing::Span::none, |r| {
                    crate::engine::rollback_span(Some(r.id), Some(&r.image))
                });
            if let Err(error) = self.enqueue(&event).instrument(span).await {
                tracing::error!(%error, "A notification could not be queued.");
                self.metrics.sink_failure("outbox");
            }
            self.wake(Lane::GitHub);
            self.wake(Lane::DockerHub);
        }
    }

    fn dockerhub_repository(&self, record: &RollbackRecord) -> Option<String> {
        self.settings
            .images
            .get(&record.alias)
            .and_then(|entry| entry.dockerhub.clone())
    }

    /// The deliveries an event calls for, into the outbox. A drill's events call for none:
    /// a rehearsal is never announced to an image's users.
    async fn enqueue(&self, event: &Event) -> Result<(), String> {
        if event.rollback.as_ref().is_some_and(|r| r.drill) {
            return Ok(());
        }
        let now = self.clock.now();
        let rto = self.settings.rollback.rto;
        let github = self.github.as_ref().map(GitHub::settings);
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
            // Finished in the state database by something else: the Discussion announced at
            // the approval would otherwise say "rolling back" for ever.
            (EventKind::FinishedElsewhere { .. }, Some(record))
                if announce_on == Some(AnnounceOn::Approved) =>
            {
                outgoing.push(Outgoing::comment(
                    record.id,
                    "finished_elsewhere",
                    &for_github(record, "finished_elsewhere"),
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

    /// Setting (`banner_set`), removing (`banner_remove`) or updating (`banner_refresh`, see
    /// `delivery`) the Docker Hub banner.
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

/// Removes the Docker Hub banner of `repository` now (for `rollbot hold release`, which runs
/// without the daemon).
///
/// # Errors
/// A message saying what failed.
pub async fn remove_banner_now(
    hub: Option<&DockerHubSettings>,
    repository: &str,
) -> Result<bool, String> {
    let Some(hub) = hub else {
        return Ok(false);
    };
    DockerHub::new(hub.clone())
        .map_err(|e| e.to_string())?
        .edit_description(repository, |description| Ok(without_banner(description)))
        .await
        .map_err(|e| e.to_string())
}
