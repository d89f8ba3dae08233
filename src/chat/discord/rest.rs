//! Discord's REST API as rollbot calls it: one request path (`Bot` token, JSON in and out),
//! rate limits honoured (a 429 waits for its `retry_after`, then the call is made again),
//! and every error answer turned into a [`DiscordError`] carrying Discord's own code, the
//! fix for the codes an operator can fix, and a count in `/metrics`.
//!
//! rollbot makes its own calls instead of going through serenity's `Http` because with
//! serenity's rate limiter on, its base-URL override is ignored (so no test could reach a fake),
//! and with it off a 429's `retry_after` is lost. Request bodies are serenity's builders
//! (`CreateMessage`, `CreateInteractionResponse`, …) serialized as they are.

use std::sync::Arc;
use std::time::Duration;

use reqwest::Method;
use serde::Serialize;
use serde_json::Value;

use crate::error_chain;
use crate::metrics::Metrics;
use crate::secret::Secret;

/// Retries after a 429 before the call fails.
const RATE_LIMIT_RETRIES: u32 = 3;
/// The longest rollbot waits for one 429 (a longer `retry_after` fails the call instead).
const LONGEST_WAIT: Duration = Duration::from_secs(30);

/// What Discord (or the way to it) answered instead of success.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("Discord {route} failed: {what}{}", fix.map(|f| format!("; {f}")).unwrap_or_default())]
pub struct DiscordError {
    /// `POST /channels/{id}/messages`.
    pub route: String,
    /// HTTP status; 0 when there was no answer.
    pub status: u16,
    /// Discord's JSON error code (50013, 10062…), when it sent one.
    pub code: Option<i64>,
    /// Discord's message (or the transport's error), with the code.
    pub what: String,
    /// What the operator should do, for the codes they can do something about.
    pub fix: Option<&'static str>,
}

impl DiscordError {
    /// The value of the `code` label in `/metrics`: Discord's code, else the HTTP status.
    pub fn metric_code(&self) -> String {
        match (self.code, self.status) {
            (Some(code), _) => code.to_string(),
            (None, 0) => "unreachable".to_owned(),
            (None, status) => format!("http_{status}"),
        }
    }

    /// The token was refused (HTTP 401): nothing will work until the operator fixes it.
    pub fn is_unauthorized(&self) -> bool {
        self.status == 401
    }

    /// Discord answered with this JSON error code.
    pub fn is(&self, code: i64) -> bool {
        self.code == Some(code)
    }
}

/// The fix for a Discord error code or status an operator can act on.
fn fix_for(status: u16, code: Option<i64>) -> Option<&'static str> {
    match (status, code) {
        (401, _) => Some("check the bot token (discord.bot_token_env / discord.bot_token_file)"),
        (_, Some(50001)) => Some(
            "Missing Access: the bot cannot see this channel or guild; add it to the guild with the README's install URL and let its role view the channel",
        ),
        (_, Some(50013)) => Some(
            "Missing Permissions: give the bot's role View Channel, Send Messages, Read Message History, Add Reactions, Create Public Threads and Send Messages in Threads in this channel",
        ),
        (_, Some(10062)) => Some(
            "Unknown Interaction: Discord's 3-second deadline passed before rollbot answered (a slow or overloaded host?)",
        ),
        (_, Some(40060)) => Some("the interaction was already answered (a duplicate delivery)"),
        (_, Some(30046)) => Some(
            "Discord limits edits to messages older than an hour: the status is posted as a thread reply instead",
        ),
        (_, Some(10003)) => Some("Unknown Channel: check discord.channels (ids, not names)"),
        (_, Some(10004)) => Some("Unknown Guild: check discord.guilds, and that the bot was added to it"),
        (_, Some(50035)) => Some("Discord refused the request body (a rollbot bug: please report it)"),
        _ => None,
    }
}

/// The REST client: base URL, token and the metrics its errors count in.
pub struct Rest {
    client: reqwest::Client,
    /// `https://discord.com/api/v10`
    base: String,
    authorization: Secret,
    metrics: Arc<Metrics>,
}

impl std::fmt::Debug for Rest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rest")
            .field("base", &self.base)
            .finish_non_exhaustive()
    }
}

impl Rest {
    /// A client of the API under `api_url` (`https://discord.com`).
    ///
    /// # Errors
    /// The HTTP client cannot be built (no TLS backend).
    pub fn new(api_url: &str, token: &Secret, metrics: Arc<Metrics>) -> Result<Rest, String> {
        let client = reqwest::Client::builder()
            // Discord's documented form: "DiscordBot ($url, $versionNumber)".
            .user_agent(concat!(
                "DiscordBot (https://github.com/rollbot/rollbot, ",
                env!("CARGO_PKG_VERSION"),
                ")"
            ))
            .timeout(Duration::from_secs(15))
            .build()
            .map_err(|error| format!("cannot build the Discord client: {}", error_chain(&error)))?;
        Ok(Rest {
            client,
            base: format!("{}/api/v10", api_url.trim_end_matches('/')),
            authorization: Secret::new(format!("Bot {}", token.expose())),
            metrics,
        })
    }

    pub async fn get(&self, route: &str, path: &str) -> Result<Value, DiscordError> {
        self.call(Method::GET, route, path, None::<&()>).await
    }

    pub async fn post(
        &self,
        route: &str,
        path: &str,
        body: &impl Serialize,
    ) -> Result<Value, DiscordError> {
        self.call(Method::POST, route, path, Some(body)).await
    }

    pub async fn patch(
        &self,
        route: &str,
        path: &str,
        body: &impl Serialize,
    ) -> Result<Value, DiscordError> {
        self.call(Method::PATCH, route, path, Some(body)).await
    }

    pub async fn put(
        &self,
        route: &str,
        path: &str,
        body: Option<&impl Serialize>,
    ) -> Result<Value, DiscordError> {
        self.call(Method::PUT, route, path, body).await
    }

    /// The one request path. `route` names the call for logs and errors without its ids'
    /// values mattering (`PATCH /channels/{c}/messages/{m}`); `path` is the real one.
    async fn call<B: Serialize + ?Sized>(
        &self,
        method: Method,
        route: &str,
        path: &str,
        body: Option<&B>,
    ) -> Result<Value, DiscordError> {
        let url = format!("{}{path}", self.base);
        let mut retries = 0;
        loop {
            let mut request = self
                .client
                .request(method.clone(), &url)
                .header("Authorization", self.authorization.expose());
            request = match body {
                Some(body) => request.json(body),
                // Discord wants a length on bodiless PUTs (reactions).
                None if method == Method::PUT => request.header("Content-Length", "0"),
                None => request,
            };
            let error = match request.send().await {
                Ok(response) => {
                    let status = response.status().as_u16();
                    let retry_header = response
                        .headers()
                        .get("retry-after")
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.trim().parse::<f64>().ok());
                    let text = response.text().await.unwrap_or_default();
                    let json: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
                    if (200..300).contains(&status) {
                        return Ok(json);
                    }
                    if status == 429 {
                        let seconds = json
                            .get("retry_after")
                            .and_then(Value::as_f64)
                            .or(retry_header)
                            .unwrap_or(1.0);
                        let wait =
                            Duration::try_from_secs_f64(seconds.max(0.0)).unwrap_or(LONGEST_WAIT);
                        if retries < RATE_LIMIT_RETRIES && wait <= LONGEST_WAIT {
                            retries += 1;
                            let global = json.get("global").and_then(Value::as_bool) == Some(true);
                            tracing::warn!(
                                route,
                                wait_ms = wait.as_millis() as u64,
                                global,
                                "Discord rate limited the call; retrying after retry_after."
                            );
                            tokio::time::sleep(wait).await;
                            continue;
                        }
                    }
                    let code = json.get("code").and_then(Value::as_i64);
                    let message = json
                        .get("message")
                        .and_then(Value::as_str)
                        .map(str::to_owned)
                        .unwrap_or_else(|| format!("HTTP {status}"));
                    DiscordError {
                        route: route.to_owned(),
                        status,
                        code,
                        what: match code {
                            Some(code) => format!("{message} ({code})"),
                            None => message,
                        },
                        fix: fix_for(status, code),
                    }
                }
                Err(error) => DiscordError {
                    route: route.to_owned(),
                    status: 0,
                    code: None,
                    what: error_chain(&error),
                    fix: None,
                },
            };
            self.metrics.chat_api_error("discord", &error.metric_code());
            return Err(error);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_name_the_route_the_code_and_the_fix() {
        let error = DiscordError {
            route: "POST /channels/{c}/messages".to_owned(),
            status: 403,
            code: Some(50013),
            what: "Missing Permissions (50013)".to_owned(),
            fix: fix_for(403, Some(50013)),
        };
        let text = error.to_string();
        assert!(
            text.starts_with("Discord POST /channels/{c}/messages failed: Missing Permissions (50013); Missing Permissions: give the bot's role"),
            "{text}"
        );
        assert_eq!(error.metric_code(), "50013");
        assert!(fix_for(401, None).is_some_and(|f| f.contains("bot token")));
        for code in [50001, 10062, 30046, 40060] {
            assert!(fix_for(400, Some(code)).is_some(), "{code}");
        }
        assert_eq!(fix_for(500, None), None);
    }
}
