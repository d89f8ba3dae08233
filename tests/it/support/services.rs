//! Loopback fakes of GitHub's GraphQL API and Docker Hub's API. They record every request and
//! can be told to fail, or (GitHub) to keep a call open until the test lets it answer
//! ([`Hold`]). The GitHub fake validates each GraphQL document (and its variables)
//! against GitHub's public schema (`tests/it/fixtures/github-schema.graphql`), so a field typo
//! in rollbot fails a test.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use apollo_compiler::validation::Valid;
use apollo_compiler::{ExecutableDocument, Schema};
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, patch, post};
use axum::{Json, Router};
use serde_json::{json, Value};

use super::HttpServer;

fn schema() -> &'static Valid<Schema> {
    static SCHEMA: OnceLock<Valid<Schema>> = OnceLock::new();
    SCHEMA.get_or_init(|| {
        let sdl = include_str!("../fixtures/github-schema.graphql");
        match Schema::parse_and_validate(sdl, "github-schema.graphql") {
            Ok(schema) => schema,
            // GitHub's schema uses a few constructs a strict validator frowns on; the types are
            // what matters here.
            Err(with_errors) => Valid::assume_valid(with_errors.partial),
        }
    })
}

/// Validates a GraphQL document and its variables against GitHub's schema.
pub fn validate(query: &str, variables: &Value) -> Result<(), String> {
    let schema = schema();
    let document = ExecutableDocument::parse_and_validate(schema, query, "request.graphql")
        .map_err(|e| e.errors.to_string())?;
    let operation = document
        .operations
        .get(None)
        .map_err(|e| format!("{e:?}"))?;
    let values: apollo_compiler::response::JsonValue =
        serde::Deserialize::deserialize(variables.clone())
            .map_err(|e: serde_json::Error| e.to_string())?;
    let map = values.as_object().cloned().unwrap_or_default();
    apollo_compiler::request::coerce_variable_values(schema, operation, &map)
        .map_err(|e| format!("variables: {e:?}"))?;
    Ok(())
}

pub fn wait_until<T>(what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

// ---- GitHub ---------------------------------------------------------------------------------

/// What the next GraphQL call of an operation gets instead of an answer.
#[derive(Debug, Clone)]
pub enum GitHubFailure {
    /// HTTP 200 with an `errors` array.
    Errors(&'static str),
    /// HTTP 200, `errors: [{type: RATE_LIMITED}]`, `x-ratelimit-remaining: 0`, reset in 1 s.
    RateLimited,
}

/// A call the fake keeps open until [`Hold::release`] (or until the `Hold` is dropped, so a
/// failing test cannot leave the fake's server waiting for ever).
pub struct Hold {
    gate: Arc<Gate>,
}

struct Gate {
    arrived: tokio::sync::watch::Sender<bool>,
    released: tokio::sync::watch::Sender<bool>,
    /// The caller hung up (timed out) while the call was held.
    abandoned: std::sync::atomic::AtomicBool,
}

/// Notes an abandoned call: the handler's future is dropped when the client goes away.
struct Waiting<'a> {
    gate: &'a Gate,
    answered: bool,
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        if !self.answered {
            self.gate
                .abandoned
                .store(true, std::sync::atomic::Ordering::SeqCst);
        }
    }
}

impl Hold {
    /// Whether the held call has come in.
    pub fn arrived(&self) -> bool {
        *self.gate.arrived.borrow()
    }

    /// Waits (up to 15 s) until the held call has come in.
    pub fn wait_until_arrived(&self, what: &str) {
        wait_until(what, || self.arrived().then_some(()));
    }

    /// Whether the held call has come in and its caller is still waiting for the answer.
    pub fn open(&self) -> bool {
        self.arrived()
            && !*self.gate.released.borrow()
            && !self
                .gate
                .abandoned
                .load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Lets the held call answer.
    pub fn release(&self) {
        self.gate.released.send_replace(true);
    }
}

impl Drop for Hold {
    fn drop(&mut self) {
        self.release();
    }
}

#[derive(Default)]
struct GitHubState {
    requests: Vec<Value>,
    invalid: Vec<String>,
    categories: Vec<(String, String)>,
    discussions_enabled: bool,
    discussions: Vec<Value>,
    comments: Vec<Value>,
    failures: HashMap<String, VecDeque<GitHubFailure>>,
    holds: HashMap<String, VecDeque<Arc<Gate>>>,
    down: bool,
}

pub struct FakeGitHub {
    server: HttpServer,
    state: Arc<Mutex<GitHubState>>,
}

impl FakeGitHub {
    pub fn start() -> FakeGitHub {
        let state = Arc::new(Mutex::new(GitHubState {
            categories: vec![
                ("DIC_kwDOAnnounce".into(), "Announcements".into()),
                ("DIC_kwDOGeneral0".into(), "General".into()),
            ],
            discussions_enabled: true,
            ..GitHubState::default()
        }));
        let app = Router::new()
            .route("/graphql", post(graphql))
            .with_state(Arc::clone(&state));
        FakeGitHub {
            server: HttpServer::start(app),
            state,
        }
    }

    pub fn url(&self) -> String {
        format!("{}/graphql", self.server.base)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, GitHubState> {
        self.state.lock().expect("state")
    }

    pub fn set_down(&self, down: bool) {
        self.lock().down = down;
    }

    pub fn fail_next(&self, operation: &str, failure: GitHubFailure) {
        self.lock()
            .failures
            .entry(operation.to_owned())
            .or_default()
            .push_back(failure);
    }

    /// The next call of `operation` is kept open until the returned [`Hold`] is released.
    pub fn hold_next(&self, operation: &str) -> Hold {
        let gate = Arc::new(Gate {
            arrived: tokio::sync::watch::Sender::new(false),
            released: tokio::sync::watch::Sender::new(false),
            abandoned: std::sync::atomic::AtomicBool::new(false),
        });
        self.lock()
            .holds
            .entry(operation.to_owned())
            .or_default()
            .push_back(Arc::clone(&gate));
        Hold { gate }
    }

    pub fn discussions(&self) -> Vec<Value> {
        self.lock().discussions.clone()
    }

    pub fn comments(&self) -> Vec<Value> {
        self.lock().comments.clone()
    }

    /// Requests whose document did not validate against GitHub's schema.
    pub fn invalid(&self) -> Vec<String> {
        self.lock().invalid.clone()
    }

    pub fn requests(&self, operation: &str) -> usize {
        self.lock()
            .requests
            .iter()
            .filter(|r| r["query"].as_str().is_some_and(|q| q.contains(operation)))
            .count()
    }

    pub fn wait_for_comments(&self, n: usize) -> Vec<Value> {
        wait_until(&format!("{n} Discussion comments"), || {
            let comments = self.comments();
            (comments.len() >= n).then_some(comments)
        })
    }

    pub fn wait_for_discussion(&self) -> Value {
        wait_until("a Discussion", || self.discussions().first().cloned())
    }
}

fn operation_of(query: &str) -> &'static str {
    [
        "RollbotRepository",
        "RollbotAnnounce",
        "RollbotComment",
        "RollbotRecentDiscussions",
    ]
    .into_iter()
    .find(|name| query.contains(name))
    .unwrap_or("unknown")
}

async fn graphql(
    State(state): State<Arc<Mutex<GitHubState>>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let request: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let operation = operation_of(request["query"].as_str().unwrap_or_default());
    let gate = state
        .lock()
        .expect("state")
        .holds
        .get_mut(operation)
        .and_then(VecDeque::pop_front);
    if let Some(gate) = gate {
        let mut waiting = Waiting {
            gate: &gate,
            answered: false,
        };
        gate.arrived.send_replace(true);
        let mut released = gate.released.subscribe();
        let _ = released.wait_for(|released| *released).await;
        waiting.answered = true;
    }
    answer(&mut state.lock().expect("state"), &headers, request)
}

fn answer(state: &mut GitHubState, headers: &HeaderMap, request: Value) -> Response {
    let query = request["query"].as_str().unwrap_or_default().to_owned();
    let variables = request["variables"].clone();
    state.requests.push(request.clone());
    if state.down {
        return (StatusCode::SERVICE_UNAVAILABLE, "down").into_response();
    }
    let authorized = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v == "Bearer ghp-test-token");
    let agent = headers.get("user-agent").is_some();
    if !authorized || !agent {
        return (
            StatusCode::UNAUTHORIZED,
            Json(json!({ "message": "Bad credentials" })),
        )
            .into_response();
    }
    if let Err(error) = validate(&query, &variables) {
        state.invalid.push(format!("{query}\n{variables}\n{error}"));
        return Json(json!({ "errors": [{ "message": format!("invalid request: {error}") }] }))
            .into_response();
    }
    let operation = operation_of(&query);
    if let Some(failure) = state
        .failures
        .get_mut(operation)
        .and_then(VecDeque::pop_front)
    {
        return match failure {
            GitHubFailure::Errors(message) => {
                Json(json!({ "data": null, "errors": [{ "message": message }] })).into_response()
            }
            GitHubFailure::RateLimited => {
                let reset = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs())
                    + 1;
                (
                    [("x-ratelimit-remaining", "0".to_owned()), ("x-ratelimit-reset", reset.to_string())],
                    Json(json!({ "errors": [{ "type": "RATE_LIMITED", "message": "API rate limit exceeded" }] })),
                )
                    .into_response()
            }
        };
    }
    let data = match operation {
        "RollbotRepository" => json!({ "repository": {
            "id": "R_kgDOrepo0001",
            "hasDiscussionsEnabled": state.discussions_enabled,
            "discussionCategories": { "nodes": state.categories.iter().map(|(id, name)| json!({ "id": id, "name": name, "slug": name.to_lowercase() })).collect::<Vec<_>>() }
        }}),
        "RollbotAnnounce" => {
            let number = state.discussions.len() + 1;
            let discussion = json!({
                "id": format!("D_kwDOdisc{number:04}"), "number": number,
                "url": format!("https://github.com/acme/app/discussions/{number}"),
                "title": variables["title"], "body": variables["body"], "categoryId": variables["categoryId"]
            });
            state.discussions.push(discussion.clone());
            json!({ "createDiscussion": { "discussion": { "id": discussion["id"], "number": number, "url": discussion["url"] } } })
        }
        "RollbotComment" => {
            let number = state.comments.len() + 1;
            state.comments.push(
                json!({ "discussionId": variables["discussionId"], "body": variables["body"] }),
            );
            json!({ "addDiscussionComment": { "comment": { "id": format!("DC_kwDO{number:04}"), "url": format!("https://github.com/acme/app/discussions/1#discussioncomment-{number}") } } })
        }
        "RollbotRecentDiscussions" => {
            json!({ "repository": { "discussions": { "nodes": state.discussions.iter().rev().map(|d| json!({ "id": d["id"], "number": d["number"], "url": d["url"], "title": d["title"] })).collect::<Vec<_>>() } } })
        }
        _ => {
            return Json(json!({ "errors": [{ "message": "unknown operation" }] })).into_response()
        }
    };
    Json(json!({ "data": data })).into_response()
}

// ---- Docker Hub -----------------------------------------------------------------------------

#[derive(Debug, Clone, Copy)]
pub enum HubFailure {
    Status(u16),
    /// 429 with `X-Retry-After` one second from now.
    RateLimited,
}

#[derive(Default)]
struct HubState {
    descriptions: HashMap<String, String>,
    patches: Vec<String>,
    logins: usize,
    failures: VecDeque<HubFailure>,
    down: bool,
    tokens: Vec<String>,
}

pub struct FakeDockerHub {
    server: HttpServer,
    state: Arc<Mutex<HubState>>,
}

pub const HUB_USER: &str = "acmebot";
pub const HUB_TOKEN: &str = "dckr_pat_test";

impl FakeDockerHub {
    pub fn start(repository: &str, description: &str) -> FakeDockerHub {
        let state = Arc::new(Mutex::new(HubState::default()));
        state
            .lock()
            .expect("state")
            .descriptions
            .insert(repository.to_owned(), description.to_owned());
        let app = Router::new()
            .route("/v2/auth/token", post(hub_login))
            .route(
                "/v2/namespaces/{namespace}/repositories/{repository}",
                get(hub_get),
            )
            .route(
                "/v2/repositories/{namespace}/{repository}",
                patch(hub_patch),
            )
            .with_state(Arc::clone(&state));
        FakeDockerHub {
            server: HttpServer::start(app),
            state,
        }
    }

    pub fn url(&self) -> String {
        self.server.base.clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HubState> {
        self.state.lock().expect("state")
    }

    pub fn description(&self, repository: &str) -> String {
        self.lock()
            .descriptions
            .get(repository)
            .cloned()
            .unwrap_or_default()
    }

    pub fn patches(&self) -> usize {
        self.lock().patches.len()
    }

    pub fn set_down(&self, down: bool) {
        self.lock().down = down;
    }

    /// The next PATCH fails like this.
    pub fn fail_next_patch(&self, failure: HubFailure) {
        self.lock().failures.push_back(failure);
    }

    pub fn wait_for_description(
        &self,
        repository: &str,
        what: &str,
        check: impl Fn(&str) -> bool,
    ) -> String {
        wait_until(what, || {
            let description = self.description(repository);
            check(&description).then_some(description)
        })
    }
}

async fn hub_login(State(state): State<Arc<Mutex<HubState>>>, Json(body): Json<Value>) -> Response {
    let mut state = state.lock().expect("state");
    if state.down {
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    }
    state.logins += 1;
    if body["identifier"] != HUB_USER || body["secret"] != HUB_TOKEN {
        return (
            StatusCode::UNAUTHORIZED,
            Json(json!({ "detail": "Incorrect authentication credentials" })),
        )
            .into_response();
    }
    let token = format!("jwt-{}", state.logins);
    state.tokens.push(token.clone());
    Json(json!({ "access_token": token })).into_response()
}

fn bearer_ok(state: &HubState, headers: &HeaderMap) -> bool {
    headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .is_some_and(|token| state.tokens.iter().any(|t| t == token))
}

async fn hub_get(
    State(state): State<Arc<Mutex<HubState>>>,
    Path((namespace, repository)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    let state = state.lock().expect("state");
    if state.down {
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    }
    if !bearer_ok(&state, &headers) {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    let key = format!("{namespace}/{repository}");
    match state.descriptions.get(&key) {
        Some(description) => Json(
            json!({ "name": repository, "namespace": namespace, "full_description": description }),
        )
        .into_response(),
        None => (
            StatusCode::NOT_FOUND,
            Json(json!({ "message": "object not found" })),
        )
            .into_response(),
    }
}

async fn hub_patch(
    State(state): State<Arc<Mutex<HubState>>>,
    Path((namespace, repository)): Path<(String, String)>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    let mut state = state.lock().expect("state");
    if state.down {
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    }
    if let Some(failure) = state.failures.pop_front() {
        return match failure {
            HubFailure::Status(403) => (
                StatusCode::FORBIDDEN,
                Json(json!({ "message": "insufficient scope", "errinfo": {} })),
            )
                .into_response(),
            HubFailure::Status(code) => StatusCode::from_u16(code)
                .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
                .into_response(),
            HubFailure::RateLimited => {
                let at = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs())
                    + 1;
                (
                    StatusCode::TOO_MANY_REQUESTS,
                    [("x-retry-after", at.to_string())],
                    "slow down",
                )
                    .into_response()
            }
        };
    }
    if !bearer_ok(&state, &headers) {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    let Some(text) = body["full_description"].as_str() else {
        return (
            StatusCode::BAD_REQUEST,
            Json(json!({ "message": "full_description missing" })),
        )
            .into_response();
    };
    if text.len() > 25_000 {
        return (StatusCode::BAD_REQUEST, Json(json!({ "message": "full_description: ensure this field has no more than 25000 characters" }))).into_response();
    }
    let key = format!("{namespace}/{repository}");
    state.patches.push(text.to_owned());
    state.descriptions.insert(key, text.to_owned());
    Json(json!({ "name": repository, "namespace": namespace, "full_description": text }))
        .into_response()
}

#[cfg(test)]
mod tests {
    #[test]
    fn rollbots_graphql_documents_validate_and_a_typo_does_not() {
        use serde_json::json;
        let variables = [
            json!({ "owner": "acme", "name": "app" }),
            json!({ "repositoryId": "R_1", "categoryId": "DIC_1", "title": "t", "body": "b" }),
            json!({ "discussionId": "D_1", "body": "b" }),
            json!({ "owner": "acme", "name": "app" }),
        ];
        for (document, variables) in rollbot::notify::github::DOCUMENTS.iter().zip(variables) {
            super::validate(document, &variables).unwrap_or_else(|e| panic!("{document}\n{e}"));
        }
        let typo = rollbot::notify::github::ADD_COMMENT
            .replace("discussionId: $discussionId", "discusionId: $discussionId");
        assert!(super::validate(&typo, &json!({ "discussionId": "D_1", "body": "b" })).is_err());
        let missing = super::validate(
            rollbot::notify::github::ADD_COMMENT,
            &json!({ "body": "b" }),
        );
        assert!(missing.is_err(), "a missing required variable fails");
    }
}
