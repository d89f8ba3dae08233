//! Announcing without the daemon: `rollbot rollback` from the command line (the break-glass
//! path) tells people the way the daemon does — a GitHub Discussion and the Docker Hub banner,
//! rendered from the same templates — at once, with a few quick retries and no outbox (there
//! is no daemon to deliver later). What fails is returned as a warning for the caller to print;
//! it never changes what happened in the registry.

use std::future::Future;
use std::time::Duration;

use super::config::NotifySettings;
use super::dockerhub::{with_banner, DockerHub, HubError};
use super::failure::ServiceError;
use super::github::GitHub;
use super::templates::{Context, TemplateName, Templates};

/// Attempts per call (the first and two retries).
const ATTEMPTS: u32 = 3;
/// The longest wait between attempts, whatever a service asks for: a person is waiting.
const LONGEST_WAIT: Duration = Duration::from_secs(10);

/// What an announcement did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Announced {
    /// The Discussion's URL, when one was created.
    pub discussion: Option<String>,
    /// The Docker Hub repository whose banner was set.
    pub banner: Option<String>,
    /// What could not be done, one line each.
    pub warnings: Vec<String>,
}

/// Announces `context` (a finished rollback, `context.event` `succeeded` or `failed`): a
/// Discussion when `[github]` is enabled, and for a success the banner of
/// `dockerhub_repository` when `[dockerhub]` is enabled. `label` marks the banner as this
/// rollback's (lowercase letters, digits and `-`).
pub async fn announce_now(
    sinks: &NotifySettings,
    templates: &Templates,
    mut context: Context,
    label: &str,
    dockerhub_repository: Option<&str>,
) -> Announced {
    let mut announced = Announced::default();
    if let Some(settings) = &sinks.github {
        match discussion(GitHub::new(settings.clone()), templates, &context).await {
            Ok(url) => announced.discussion = Some(url),
            Err(error) => announced
                .warnings
                .push(format!("the GitHub Discussion was not created: {error}")),
        }
    }
    context.links.discussion = announced.discussion.clone();
    if let (Some(settings), Some(repository), "succeeded") = (
        &sinks.dockerhub,
        dockerhub_repository,
        context.event.as_str(),
    ) {
        match banner(
            DockerHub::new(settings.clone()),
            templates,
            &mut context,
            label,
            repository,
        )
        .await
        {
            Ok(()) => announced.banner = Some(repository.to_owned()),
            Err(error) => announced.warnings.push(format!(
                "the Docker Hub banner of {repository} was not set: {error}"
            )),
        }
    }
    announced
}

async fn discussion(
    github: Result<GitHub, super::ClientError>,
    templates: &Templates,
    context: &Context,
) -> Result<String, String> {
    let github = github.map_err(|e| e.to_string())?;
    let title = templates.render(TemplateName::DiscussionTitle, context)?;
    let body = templates.render(TemplateName::DiscussionAnnouncement, context)?;
    let mut tried = false;
    let created = with_retries(|| {
        let (github, title, body) = (&github, &title, &body);
        let again = std::mem::replace(&mut tried, true);
        async move {
            // A retry after an unclear failure may find the Discussion already created.
            if again {
                if let Ok(Some(found)) = github.find(title).await {
                    return Ok(found);
                }
            }
            github.create(title, body).await
        }
    })
    .await?;
    Ok(created.url)
}

async fn banner(
    hub: Result<DockerHub, super::ClientError>,
    templates: &Templates,
    context: &mut Context,
    label: &str,
    repository: &str,
) -> Result<(), String> {
    let hub = hub.map_err(|e| e.to_string())?;
    context.short = false;
    let long = templates.render(TemplateName::DockerHubBanner, context)?;
    context.short = true;
    let short = templates.render(TemplateName::DockerHubBanner, context)?;
    with_retries(|| {
        hub.edit_description(repository, |description| {
            with_banner(description, label, &long, &short).map_err(HubError::TooLong)
        })
    })
    .await
    .map(|_| ())
}

/// `call`, tried again (at most [`ATTEMPTS`] in all) while its error is one retrying can fix,
/// after the time the service named or 1 s, 2 s.
async fn with_retries<T, E, F, Fut>(mut call: F) -> Result<T, String>
where
    E: ServiceError,
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    let mut attempt = 1;
    loop {
        match call().await {
            Ok(value) => return Ok(value),
            Err(error) if error.is_retryable() && attempt < ATTEMPTS => {
                let wait = error
                    .retry_after()
                    .unwrap_or(Duration::from_secs(u64::from(attempt)))
                    .min(LONGEST_WAIT);
                tracing::debug!(%error, attempt, "Announcing failed; trying again.");
                tokio::time::sleep(wait).await;
                attempt += 1;
            }
            Err(error) => return Err(error.to_string()),
        }
    }
}
