//! GitHub Discussions over the GraphQL API: resolve the repository and category once at
//! startup (with errors that name the fix), create one Discussion per rollback, comment on it.
//!
//! GraphQL answers HTTP 200 with an `errors` array when something is wrong; those are failures
//! here. Rate limits (primary: `x-ratelimit-remaining: 0`; secondary: 403/429 with
//! `retry-after`) come back as [`GitHubError::RateLimited`] with when to try again.

use std::time::Duration;

use serde_json::{json, Value};

use super::failure::{ServiceError, StartupError};
use super::http::{self, ClientError};
use crate::error_chain;

pub mod config;

pub use self::config::{AnnounceOn, GitHubSettings};

/// Every GraphQL document rollbot sends (tests validate each against GitHub's public schema).
pub const REPOSITORY_QUERY: &str = "query RollbotRepository($owner: String!, $name: String!) {
  repository(owner: $owner, name: $name) {
    id
    hasDiscussionsEnabled
    discussionCategories(first: 25) { nodes { id name slug } }
  }
}";

pub const CREATE_DISCUSSION: &str = "mutation RollbotAnnounce($repositoryId: ID!, $categoryId: ID!, $title: String!, $body: String!) {
  createDiscussion(input: {repositoryId: $repositoryId, categoryId: $categoryId, title: $title, body: $body}) {
    discussion { id number url }
  }
}";

pub const ADD_COMMENT: &str = "mutation RollbotComment($discussionId: ID!, $body: String!) {
  addDiscussionComment(input: {discussionId: $discussionId, body: $body}) {
    comment { id url }
  }
}";

/// Recent Discussions, to find one whose creation answer was lost before creating it twice.
pub const RECENT_DISCUSSIONS: &str =
    "query RollbotRecentDiscussions($owner: String!, $name: String!) {
  repository(owner: $owner, name: $name) {
    discussions(first: 20, orderBy: {field: CREATED_AT, direction: DESC}) {
      nodes { id number url title }
    }
  }
}";

pub const DOCUMENTS: [&str; 4] = [
    REPOSITORY_QUERY,
    CREATE_DISCUSSION,
    ADD_COMMENT,
    RECENT_DISCUSSIONS,
];

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GitHubError {
    /// Try again at/after this many seconds from now.
    #[error("GitHub rate limit reached; retrying in {0} s")]
    RateLimited(u64),
    #[error("GitHub rejected the token (401); check github.token_env / github.token_file")]
    Unauthorized,
    #[error("GitHub refused: {0}; the token needs Discussions: read and write (fine-grained or GitHub App) or repo / public_repo (classic)")]
    Forbidden(String),
    /// Worth retrying (network, 5xx, timeouts).
    #[error("GitHub is unavailable: {0}")]
    Unavailable(String),
    #[error("GitHub answered with errors: {0}")]
    Failed(String),
}

impl ServiceError for GitHubError {
    /// Everything but the token's own refusals: GraphQL errors too, which may be passing.
    fn is_retryable(&self) -> bool {
        matches!(
            self,
            GitHubError::RateLimited(_) | GitHubError::Unavailable(_) | GitHubError::Failed(_)
        )
    }

    fn retry_after(&self) -> Option<Duration> {
        match self {
            GitHubError::RateLimited(seconds) => Some(Duration::from_secs(*seconds)),
            _ => None,
        }
    }
}

/// Resolving failed when a Discussion was to be created: a fatal answer is a refusal, a
/// transient one an outage (the delivery is retried, and resolving with it).
impl From<StartupError> for GitHubError {
    fn from(error: StartupError) -> GitHubError {
        match error {
            StartupError::Fatal(message) => GitHubError::Forbidden(message),
            StartupError::Transient(message) => GitHubError::Unavailable(message),
        }
    }
}

/// A created Discussion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Discussion {
    pub id: String,
    pub number: i64,
    pub url: String,
}

#[derive(Debug)]
pub struct GitHub {
    settings: GitHubSettings,
    http: reqwest::Client,
    /// Repository and category node ids, resolved at startup.
    ids: std::sync::OnceLock<(String, String)>,
}

impl GitHub {
    /// # Errors
    /// The HTTP client cannot be built.
    pub fn new(settings: GitHubSettings) -> Result<GitHub, ClientError> {
        let http = http::build("GitHub", http::builder())?;
        Ok(GitHub {
            settings,
            http,
            ids: std::sync::OnceLock::new(),
        })
    }

    pub fn settings(&self) -> &GitHubSettings {
        &self.settings
    }

    pub fn repository(&self) -> String {
        format!("{}/{}", self.settings.owner, self.settings.name)
    }

    async fn graphql(&self, query: &str, variables: Value) -> Result<Value, GitHubError> {
        let response = self
            .http
            .post(&self.settings.api_url)
            .bearer_auth(self.settings.token.expose())
            .json(&json!({ "query": query, "variables": variables }))
            .send()
            .await
            .map_err(|e| GitHubError::Unavailable(error_chain(&e)))?;
        let status = response.status().as_u16();
        let headers = response.headers();
        let retry_after = http::header_number(headers, "retry-after");
        let exhausted = http::header(headers, "x-ratelimit-remaining") == Some("0");
        let reset = http::header_number(headers, "x-ratelimit-reset");
        let body: Value = response.json().await.unwrap_or(Value::Null);
        let until_reset = || reset.map(http::seconds_until);
        match status {
            200 => {}
            401 => return Err(GitHubError::Unauthorized),
            403 | 429 if retry_after.is_some() || exhausted => {
                return Err(GitHubError::RateLimited(
                    retry_after.or_else(until_reset).unwrap_or(60),
                ))
            }
            403 => return Err(GitHubError::Forbidden(message_of(&body))),
            _ if status >= 500 => return Err(GitHubError::Unavailable(format!("HTTP {status}"))),
            _ => {
                return Err(GitHubError::Failed(format!(
                    "HTTP {status}: {}",
                    message_of(&body)
                )))
            }
        }
        if let Some(errors) = body
            .get("errors")
            .and_then(Value::as_array)
            .filter(|e| !e.is_empty())
        {
            let text = errors
                .iter()
                .map(|e| e["message"].as_str().unwrap_or("unknown error").to_owned())
                .collect::<Vec<_>>()
                .join("; ");
            let kinds: Vec<&str> = errors.iter().filter_map(|e| e["type"].as_str()).collect();
            if kinds.contains(&"RATE_LIMITED") || exhausted {
                return Err(GitHubError::RateLimited(until_reset().unwrap_or(60)));
            }
            if kinds.contains(&"FORBIDDEN") || text.contains("Resource not accessible") {
                return Err(GitHubError::Forbidden(text));
            }
            return Err(GitHubError::Failed(text));
        }
        Ok(body["data"].clone())
    }

    /// Startup: the repository exists and the token sees it, Discussions are enabled, and the
    /// category exists. Resolving is tried again before the first Discussion is created when
    /// it has not succeeded yet.
    ///
    /// # Errors
    /// Fatal (the token is refused, the repository is not visible, Discussions are off, the
    /// category is missing) or transient (GitHub unreachable, in trouble or rate limiting),
    /// each naming the repository and, when fatal, the fix.
    pub async fn resolve(&self) -> Result<(), StartupError> {
        if self.ids.get().is_some() {
            return Ok(());
        }
        let repository = self.repository();
        let data = self
            .graphql(
                REPOSITORY_QUERY,
                json!({ "owner": self.settings.owner, "name": self.settings.name }),
            )
            .await
            .map_err(|error| startup_error(&repository, &error))?;
        let ids = resolved_ids(&repository, &self.settings.category, &data)?;
        let _ = self.ids.set(ids);
        tracing::info!(repository, category = %self.settings.category, "GitHub Discussions ready.");
        Ok(())
    }

    /// Creates a Discussion.
    ///
    /// # Errors
    /// See [`GitHubError`].
    pub async fn create(&self, title: &str, body: &str) -> Result<Discussion, GitHubError> {
        self.resolve().await?;
        let Some((repository_id, category_id)) = self.ids.get() else {
            return Err(GitHubError::Unavailable(
                "the repository is not resolved yet".to_owned(),
            ));
        };
        let data = self
            .graphql(
                CREATE_DISCUSSION,
                json!({ "repositoryId": repository_id, "categoryId": category_id, "title": title, "body": body }),
            )
            .await?;
        discussion(&data["createDiscussion"]["discussion"]).ok_or_else(|| {
            GitHubError::Failed("createDiscussion returned no discussion".to_owned())
        })
    }

    /// A recent Discussion with exactly this title (a creation whose answer was lost).
    ///
    /// # Errors
    /// See [`GitHubError`].
    pub async fn find(&self, title: &str) -> Result<Option<Discussion>, GitHubError> {
        let data = self
            .graphql(
                RECENT_DISCUSSIONS,
                json!({ "owner": self.settings.owner, "name": self.settings.name }),
            )
            .await?;
        Ok(data["repository"]["discussions"]["nodes"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|d| d["title"].as_str() == Some(title))
            .and_then(discussion))
    }

    /// Comments on a Discussion; returns the comment's URL.
    ///
    /// # Errors
    /// See [`GitHubError`].
    pub async fn comment(&self, discussion_id: &str, body: &str) -> Result<String, GitHubError> {
        let data = self
            .graphql(
                ADD_COMMENT,
                json!({ "discussionId": discussion_id, "body": body }),
            )
            .await?;
        Ok(data["addDiscussionComment"]["comment"]["url"]
            .as_str()
            .unwrap_or_default()
            .to_owned())
    }
}

/// A failed repository query at startup, saying which repository: fatal when the token is
/// refused, transient otherwise (see [`ServiceError::at_startup`]).
fn startup_error(repository: &str, error: &GitHubError) -> StartupError {
    error
        .at_startup()
        .map_message(|message| format!("GitHub repository {repository}: {message}"))
}

/// The repository's and the category's node ids from the answer to [`REPOSITORY_QUERY`]: the
/// category matched by name (any case) or slug.
///
/// # Errors
/// Fatal, naming the fix: the repository is not visible, Discussions are off, or there is no
/// such category (the error lists the ones there are).
fn resolved_ids(
    repository: &str,
    category: &str,
    data: &Value,
) -> Result<(String, String), StartupError> {
    let repo = &data["repository"];
    if repo.is_null() {
        return Err(StartupError::Fatal(format!(
            "GitHub repository {repository} was not found, or the token cannot see it (github.repository, github.token_env)"
        )));
    }
    if repo["hasDiscussionsEnabled"] != true {
        return Err(StartupError::Fatal(format!(
            "GitHub Discussions are not enabled on {repository}: Settings → General → Features → Discussions"
        )));
    }
    let categories = repo["discussionCategories"]["nodes"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let wanted = category.to_lowercase();
    let found = categories.iter().find(|c| {
        c["name"].as_str().map(str::to_lowercase).as_deref() == Some(wanted.as_str())
            || c["slug"].as_str() == Some(wanted.as_str())
    });
    let Some(found) = found else {
        let names: Vec<&str> = categories
            .iter()
            .filter_map(|c| c["name"].as_str())
            .collect();
        return Err(StartupError::Fatal(format!(
            "{repository} has no Discussion category named '{category}' (it has: {}); set github.category or create the category",
            names.join(", ")
        )));
    };
    Ok((
        repo["id"].as_str().unwrap_or_default().to_owned(),
        found["id"].as_str().unwrap_or_default().to_owned(),
    ))
}

fn discussion(value: &Value) -> Option<Discussion> {
    Some(Discussion {
        id: value["id"].as_str()?.to_owned(),
        number: value["number"].as_i64().unwrap_or(0),
        url: value["url"].as_str()?.to_owned(),
    })
}

/// GitHub's words in a failed answer: REST-style `message`, or the first GraphQL error's.
fn message_of(body: &Value) -> String {
    http::message_of(body, &["/message", "/errors/0/message"])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(repository: Value) -> Value {
        json!({ "repository": repository })
    }

    fn fatal(message: &str) -> Result<(String, String), StartupError> {
        Err(StartupError::Fatal(message.to_owned()))
    }

    /// What the repository query can answer, and what startup makes of it: a repository the
    /// token cannot see, Discussions turned off and a missing category are fatal and name the
    /// fix; a category is found by name in any case, or by slug.
    #[test]
    fn the_repository_answer_gives_the_ids_or_a_fatal_error_naming_the_fix() {
        let categories = json!({ "nodes": [
            { "id": "DIC_general", "name": "General", "slug": "general" },
            { "id": "DIC_news", "name": "Release News", "slug": "release-news" },
        ] });
        let enabled = answer(json!({
            "id": "R_app", "hasDiscussionsEnabled": true, "discussionCategories": categories,
        }));
        let ids = |category: &str| Ok(("R_app".to_owned(), category.to_owned()));
        let cases = [
            ("General", enabled.clone(), ids("DIC_general")),
            ("general", enabled.clone(), ids("DIC_general")),
            ("RELEASE NEWS", enabled.clone(), ids("DIC_news")),
            ("release-news", enabled.clone(), ids("DIC_news")),
            (
                "Incidents",
                enabled.clone(),
                fatal("acme/app has no Discussion category named 'Incidents' (it has: General, Release News); set github.category or create the category"),
            ),
            (
                "General",
                answer(Value::Null),
                fatal("GitHub repository acme/app was not found, or the token cannot see it (github.repository, github.token_env)"),
            ),
            (
                "General",
                Value::Null,
                fatal("GitHub repository acme/app was not found, or the token cannot see it (github.repository, github.token_env)"),
            ),
            (
                "General",
                answer(json!({
                    "id": "R_app", "hasDiscussionsEnabled": false, "discussionCategories": categories,
                })),
                fatal("GitHub Discussions are not enabled on acme/app: Settings → General → Features → Discussions"),
            ),
        ];
        for (category, data, expected) in cases {
            assert_eq!(
                resolved_ids("acme/app", category, &data),
                expected,
                "{category} in {data}"
            );
        }
    }

    /// The repository query failing at startup: the token's refusals are fatal, GitHub's
    /// trouble and rate limits transient; the text says which repository.
    #[test]
    fn a_refused_token_is_fatal_at_startup_and_an_outage_or_rate_limit_transient() {
        let token = "GitHub repository acme/app: GitHub rejected the token (401); check github.token_env / github.token_file";
        let scope = "GitHub repository acme/app: GitHub refused: Resource not accessible by integration; the token needs Discussions: read and write (fine-grained or GitHub App) or repo / public_repo (classic)";
        let cases = [
            (
                GitHubError::Unauthorized,
                StartupError::Fatal(token.to_owned()),
            ),
            (
                GitHubError::Forbidden("Resource not accessible by integration".to_owned()),
                StartupError::Fatal(scope.to_owned()),
            ),
            (
                GitHubError::RateLimited(60),
                StartupError::Transient(
                    "GitHub repository acme/app: GitHub rate limit reached; retrying in 60 s"
                        .to_owned(),
                ),
            ),
            (
                GitHubError::Unavailable("HTTP 502".to_owned()),
                StartupError::Transient(
                    "GitHub repository acme/app: GitHub is unavailable: HTTP 502".to_owned(),
                ),
            ),
            (
                GitHubError::Failed("Something went wrong".to_owned()),
                StartupError::Transient(
                    "GitHub repository acme/app: GitHub answered with errors: Something went wrong"
                        .to_owned(),
                ),
            ),
        ];
        for (error, expected) in cases {
            assert_eq!(startup_error("acme/app", &error), expected, "{error:?}");
        }
    }

    /// Resolving's failures become delivery errors when a Discussion is to be created: fatal
    /// ones are refusals (given up), transient ones outages (retried), the text kept.
    #[test]
    fn a_failed_resolve_is_a_refusal_when_fatal_and_an_outage_when_transient() {
        assert_eq!(
            GitHubError::from(StartupError::Fatal("no category".to_owned())),
            GitHubError::Forbidden("no category".to_owned())
        );
        assert_eq!(
            GitHubError::from(StartupError::Transient("down".to_owned())),
            GitHubError::Unavailable("down".to_owned())
        );
    }
}
