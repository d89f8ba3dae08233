//! GitHub Discussions over the GraphQL API: resolve the repository and category once at
//! startup (with errors that name the fix), create one Discussion per rollback, comment on it.
//!
//! GraphQL answers HTTP 200 with an `errors` array when something is wrong; those are failures
//! here. Rate limits (primary: `x-ratelimit-remaining: 0`; secondary: 403/429 with
//! `retry-after`) come back as [`GitHubError::RateLimited`] with when to try again.

use serde_json::{json, Value};

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

impl GitHubError {
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            GitHubError::RateLimited(_) | GitHubError::Unavailable(_) | GitHubError::Failed(_)
        )
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
    /// category exists. The errors name the fix. `Err((false, _))` is a passing problem
    /// (GitHub unavailable, rate limited): resolving is tried again before the first delivery.
    ///
    /// # Errors
    /// `(fatal, message for the operator)`.
    pub async fn resolve(&self) -> Result<(), (bool, String)> {
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
            .map_err(|e| {
                let fatal = matches!(e, GitHubError::Unauthorized | GitHubError::Forbidden(_));
                (fatal, format!("GitHub repository {repository}: {e}"))
            })?;
        let repo = &data["repository"];
        if repo.is_null() {
            return Err((true, format!(
                "GitHub repository {repository} was not found, or the token cannot see it (github.repository, github.token_env)"
            )));
        }
        if repo["hasDiscussionsEnabled"] != true {
            return Err((true, format!(
                "GitHub Discussions are not enabled on {repository}: Settings → General → Features → Discussions"
            )));
        }
        let categories = repo["discussionCategories"]["nodes"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let wanted = self.settings.category.to_lowercase();
        let category = categories.iter().find(|c| {
            c["name"].as_str().map(str::to_lowercase).as_deref() == Some(wanted.as_str())
                || c["slug"].as_str() == Some(wanted.as_str())
        });
        let Some(category) = category else {
            let names: Vec<&str> = categories
                .iter()
                .filter_map(|c| c["name"].as_str())
                .collect();
            return Err((true, format!(
                "{repository} has no Discussion category named '{}' (it has: {}); set github.category or create the category",
                                self.settings.category,
                names.join(", ")
            )));
        };
        let ids = (
            repo["id"].as_str().unwrap_or_default().to_owned(),
            category["id"].as_str().unwrap_or_default().to_owned(),
        );
        let _ = self.ids.set(ids);
        tracing::info!(repository, category = %self.settings.category, "GitHub Discussions ready.");
        Ok(())
    }

    /// Creates a Discussion.
    ///
    /// # Errors
    /// See [`GitHubError`].
    pub async fn create(&self, title: &str, body: &str) -> Result<Discussion, GitHubError> {
        if let Err((fatal, message)) = self.resolve().await {
            return Err(if fatal {
                GitHubError::Forbidden(message)
            } else {
                GitHubError::Unavailable(message)
            });
        }
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
