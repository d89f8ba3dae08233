//! Delivery: the outbox's due deliveries sent in one lane per service (GitHub, Docker Hub),
//! each with its own order, wake-up and pace, so a slow or failing service never holds up the
//! other. Retries back off exponentially with jitter, rate limits wait for the time the service
//! names, and a delivery is given up after `notify.max_attempts`, saying so in the chat thread.

use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;

use super::dockerhub::{banner_rollback, with_banner, without_banner, HubError};
use super::failure::ServiceError;
use super::templates::{Context, TemplateName};
use super::Notifier;
use crate::domain::rollback::RollbackId;
use crate::store::{Delivery, DiscussionRef};

/// What one attempt came to.
#[derive(Debug, Clone, PartialEq, Eq)]
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

impl Attempt {
    /// A service's error, the same way for every service: retried when retrying can fix it
    /// (after the time the service named, if it named one), else given up.
    fn failed(error: &impl ServiceError) -> Attempt {
        if error.is_retryable() {
            Attempt::Retry(error.to_string(), error.retry_after())
        } else {
            Attempt::GiveUp(error.to_string())
        }
    }
}

/// One service's queue of deliveries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Lane {
    GitHub,
    DockerHub,
}

impl Lane {
    /// The outbox's `sink` column, and the service's name on `/readyz`.
    pub(super) fn sink(self) -> &'static str {
        match self {
            Lane::GitHub => "github",
            Lane::DockerHub => "dockerhub",
        }
    }
}

/// What a Docker Hub delivery does to the banner.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BannerEdit {
    /// Put this rollback's banner on top (replacing any).
    Set,
    /// Render this rollback's banner again (now with the Discussion link), but only if its
    /// banner is still the one on top: a release or a newer rollback may have replaced it.
    Refresh,
    /// Take the banner off.
    Remove,
}

impl Notifier {
    /// Delivery: sends what is due, one lane per service, until `shutdown` is cancelled; then
    /// each lane stops after the delivery in flight, and what is pending stays in the outbox for
    /// the next start.
    pub async fn run_delivery(self: Arc<Self>, shutdown: CancellationToken) {
        tokio::join!(
            self.run_lane(Lane::GitHub, &shutdown),
            self.run_lane(Lane::DockerHub, &shutdown)
        );
    }

    /// Tells `lane` something was queued.
    pub(super) fn wake(&self, lane: Lane) {
        match lane {
            Lane::GitHub => self.github_wake.notify_one(),
            Lane::DockerHub => self.dockerhub_wake.notify_one(),
        }
    }

    async fn run_lane(&self, lane: Lane, shutdown: &CancellationToken) {
        let wake = match lane {
            Lane::GitHub => &self.github_wake,
            Lane::DockerHub => &self.dockerhub_wake,
        };
        loop {
            self.deliver_due(lane, shutdown).await;
            if let Ok((pending, _)) = self.store.pending(None).await {
                self.metrics.set_pending_notifications(pending);
            }
            let wait = match self.store.pending(Some(lane.sink())).await {
                Ok((_, next)) => next.map_or(Duration::from_secs(60), |next| {
                    Duration::from_millis(next.since(self.clock.now()).clamp(50, 60_000))
                }),
                Err(_) => Duration::from_secs(5),
            };
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                () = wake.notified() => {}
                () = shutdown.cancelled() => break,
            }
        }
    }

    async fn deliver_due(&self, lane: Lane, shutdown: &CancellationToken) {
        let now = self.clock.now();
        let due = match self.store.due(lane.sink(), now, 20).await {
            Ok(due) => due,
            Err(error) => {
                tracing::error!(%error, "The outbox cannot be read.");
                return;
            }
        };
        for delivery in due {
            if shutdown.is_cancelled() {
                return;
            }
            // A replica that lost the lease (a paused one waking up) delivers nothing: the new
            // leader delivers from the same outbox.
            if !self.store.leadership().is_leader() {
                tracing::warn!(key = %delivery.key, "Not the leader any more; leaving the delivery to the leader.");
                return;
            }
            let span = crate::engine::rollback_span(delivery.rollback, None);
            let outcome = self.attempt(&delivery).instrument(span).await;
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
                    if delivery.attempts + 1 < self.retries.max_attempts =>
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
        let notify = &self.retries;
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
            ("dockerhub", "banner_refresh") => "add the Discussion's link to the Docker Hub banner",
            _ => "remove the banner from the Docker Hub description",
        };
        self.engine
            .notice(
                delivery.rollback,
                None,
                format!("rollbot could not {what}: {error}. The rollback itself is unaffected."),
                None,
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
                let edit = match kind {
                    "banner_set" => BannerEdit::Set,
                    "banner_refresh" => BannerEdit::Refresh,
                    _ => BannerEdit::Remove,
                };
                let repository = delivery.payload["repository"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned();
                self.banner(edit, delivery.rollback, &repository, &mut context)
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
                Err(error) => return Attempt::failed(&error),
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
        self.link_banner(rollback).await;
        self.engine
            .notice(
                Some(rollback),
                None,
                "GitHub Discussion: ".to_owned(),
                Some(discussion.url.clone()),
            )
            .await;
        Attempt::Done
    }

    /// The Discussion now exists: a banner already written for `rollback` gets its link (one
    /// `banner_refresh` per rollback, through the outbox). A banner written from now on reads
    /// the link itself, so looking only after the Discussion was recorded leaves no gap.
    async fn link_banner(&self, rollback: RollbackId) {
        let key = format!("dockerhub:banner:{rollback}");
        let banner = match self.store.delivery(&key).await {
            Ok(Some((banner, status))) if status != "dead" => banner,
            Ok(_) => return,
            Err(error) => {
                tracing::error!(%error, "The outbox cannot be read.");
                return;
            }
        };
        let queued = self
            .store
            .enqueue(
                &format!("dockerhub:link:{rollback}"),
                Some(rollback),
                "dockerhub",
                "banner_refresh",
                &banner.payload,
                self.clock.now(),
            )
            .await;
        match queued {
            Ok(_) => self.wake(Lane::DockerHub),
            Err(error) => {
                tracing::error!(%error, "The banner's link update could not be queued.");
            }
        }
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
            Err(error) => Attempt::failed(&error),
        }
    }

    async fn banner(
        &self,
        edit: BannerEdit,
        rollback: Option<RollbackId>,
        repository: &str,
        context: &mut Context,
    ) -> Attempt {
        let Some(hub) = &self.dockerhub else {
            return Attempt::GiveUp("Docker Hub is not configured".to_owned());
        };
        let rollback = match (edit, rollback) {
            (BannerEdit::Remove, rollback) => rollback,
            (_, Some(rollback)) => Some(rollback),
            (_, None) => return Attempt::GiveUp("a banner needs its rollback".to_owned()),
        };
        // The long banner, and the short one for when the long one does not fit.
        let banners = if edit == BannerEdit::Remove {
            None
        } else {
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
        };
        self.dockerhub_pace.until_ready().await;
        let edited = hub
            .edit_description(repository, |description| match (&banners, rollback) {
                (Some(_), Some(rollback))
                    if edit == BannerEdit::Refresh
                        && banner_rollback(description) != Some(rollback.to_string()) =>
                {
                    Ok(description.to_owned())
                }
                (Some((long, short)), Some(rollback)) => {
                    with_banner(description, rollback, long, short).map_err(HubError::TooLong)
                }
                _ => Ok(without_banner(description)),
            })
            .await;
        match edited {
            Ok(_) => Attempt::Done,
            Err(error) => Attempt::failed(&error),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notify::github::GitHubError;

    /// What the one mapper should make of an error.
    #[derive(Debug, Clone, Copy)]
    enum Expect {
        /// With backoff.
        Retry,
        /// After the time the service named, in seconds.
        RetryAfter(u64),
        GiveUp,
    }

    fn assert_maps(error: &(impl ServiceError + std::fmt::Debug), expect: Expect) {
        let text = error.to_string();
        let expected = match expect {
            Expect::Retry => Attempt::Retry(text, None),
            Expect::RetryAfter(seconds) => Attempt::Retry(text, Some(Duration::from_secs(seconds))),
            Expect::GiveUp => Attempt::GiveUp(text),
        };
        assert_eq!(Attempt::failed(error), expected, "{error:?}");
    }

    fn text(s: &str) -> String {
        s.to_owned()
    }

    /// Every kind of error of both services through the one mapper: outages and GraphQL
    /// errors are retried with backoff, rate limits after the time the service named, and
    /// refusals retrying cannot fix are given up; the text is always the error's own.
    #[test]
    fn each_error_kind_is_retried_retried_after_its_time_or_given_up() {
        use Expect::{GiveUp, Retry, RetryAfter};
        let github = [
            (GitHubError::RateLimited(42), RetryAfter(42)),
            (GitHubError::Unavailable(text("connection refused")), Retry),
            (GitHubError::Unavailable(text("HTTP 502")), Retry),
            (GitHubError::Failed(text("HTTP 400: bad")), Retry),
            (GitHubError::Unauthorized, GiveUp),
            (
                GitHubError::Forbidden(text("Resource not accessible")),
                GiveUp,
            ),
        ];
        for (error, expect) in &github {
            assert_maps(error, *expect);
        }
        let hub = [
            (HubError::RateLimited(7), RetryAfter(7)),
            (HubError::Unavailable(text("HTTP 503")), Retry),
            (HubError::Unauthorized(text("acmebot")), GiveUp),
            (HubError::Forbidden(text("insufficient scope")), GiveUp),
            (HubError::NotFound(text("acme/app")), GiveUp),
            (HubError::Rejected(text("HTTP 400: bad")), GiveUp),
            (HubError::TooLong(text("no banner fits")), GiveUp),
        ];
        for (error, expect) in &hub {
            assert_maps(error, *expect);
        }
    }

    #[test]
    fn the_texts_are_the_services_own() {
        assert_eq!(
            Attempt::failed(&GitHubError::RateLimited(42)),
            Attempt::Retry(
                text("GitHub rate limit reached; retrying in 42 s"),
                Some(Duration::from_secs(42))
            )
        );
        assert_eq!(
            Attempt::failed(&HubError::Unauthorized(text("acmebot"))),
            Attempt::GiveUp(text(
                "Docker Hub rejected the credentials of acmebot (401); check dockerhub.username and dockerhub.token_env"
            ))
        );
    }
}
