//! Socket Mode, by Slack's documented protocol: `apps.connections.open` (with the app-level
//! token) returns a single-use `wss://` URL; the connection is usable once Slack sends
//! `hello`; every envelope is acknowledged by its `envelope_id` as soon as it is translated and
//! queued (Slack wants that within 3 s); pings keep it honest; a `disconnect`
//! (`refresh_requested`, `warning`, `link_disabled`, …), a close or a dropped connection makes
//! rollbot open a new one (while the old one still delivers, until the new one says `hello`).
//!
//! The state of the link is what `/readyz` reports (`Slack::problems`): not connected, and
//! why, until a `hello` arrives. At startup, a refused app-level token is a config error and
//! `start` fails; anything else (network, Slack's own trouble) is retried with backoff.
//!
//! slack-morphism's listener is not used for this: it reports neither a refused token nor a
//! lost connection to its caller, so it looks connected while nothing arrives.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt as _, StreamExt as _};
use serde_json::json;
use slack_morphism::errors::SlackClientError;
use slack_morphism::prelude::*;
use tokio::sync::{mpsc, oneshot};
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;

use super::inbound::{self, Envelope, EnvelopeBody, Frame};
use super::Slack;

/// How often rollbot pings Slack (and checks the deadlines below).
const PING_EVERY: Duration = Duration::from_secs(10);
/// A connection that has sent nothing at all (not even a pong) for this long is dead.
const SILENCE_LIMIT: Duration = Duration::from_secs(35);
/// Slack sends `hello` right after the handshake; a connection without one is retried.
const HELLO_WITHIN: Duration = Duration::from_secs(30);
const CONNECT_WITHIN: Duration = Duration::from_secs(15);
const MAX_BACKOFF: Duration = Duration::from_secs(60);

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Why no connection could be opened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
enum LinkError {
    /// Slack refused the app-level token itself: a config error, not a blip.
    #[error("{0}")]
    TokenRefused(String),
    /// Anything else (network, Slack's own trouble, rate limiting): tried again later.
    #[error("{why}")]
    Transient {
        why: String,
        retry_after: Option<Duration>,
    },
}

fn transient(why: String) -> LinkError {
    LinkError::Transient {
        why,
        retry_after: None,
    }
}

/// What `apps.connections.open` answers when the token is the problem, with the fix.
fn token_refusal(code: &str) -> Option<&'static str> {
    match code {
        "invalid_auth" | "not_authed" | "token_revoked" | "token_expired" | "account_inactive"
        | "not_allowed_token_type" => Some(
            "check slack.app_token_env / slack.app_token_file: it must be this Slack app's app-level token (xapp-…, Basic Information → App-Level Tokens) with the connections:write scope",
        ),
        "missing_scope" | "no_permission" => {
            Some("give the app-level token the connections:write scope (Basic Information → App-Level Tokens)")
        }
        "access_denied" | "team_disabled" => {
            Some("the workspace does not let this app connect; check the app's installation")
        }
        _ => None,
    }
}

/// The wait before the next attempt after `failures` failures in a row (none: at once).
fn backoff(failures: u32) -> Duration {
    match failures {
        0 => Duration::ZERO,
        n => Duration::from_secs(1u64 << (n - 1).min(6)).min(MAX_BACKOFF),
    }
}

/// What a `disconnect` frame means for the operator.
fn disconnect_reason(reason: &str) -> String {
    match reason {
        "refresh_requested" => {
            "Slack asked for a new connection (refresh_requested); reconnecting".to_owned()
        }
        "warning" => "Slack is about to close the connection (warning); reconnecting".to_owned(),
        "link_disabled" => "Slack disabled the connection (link_disabled): turn Socket Mode on in the Slack app's settings (Settings → Socket Mode); retrying".to_owned(),
        "too_many_websockets" => "Slack refused the connection (too_many_websockets): other processes hold this app's Socket Mode connections; retrying".to_owned(),
        other => format!(
            "Slack closed the connection ({}); reconnecting",
            other
                .chars()
                .filter(|c| c.is_ascii_graphic())
                .collect::<String>()
        ),
    }
}

/// `apps.connections.open`: the URL to connect to.
async fn open_url(slack: &Slack, token: &SlackApiToken) -> Result<String, LinkError> {
    let answer = slack
        .client
        .open_session(token)
        .apps_connections_open(&SlackApiAppsConnectionOpenRequest::new())
        .await;
    match answer {
        Ok(open) => link_url(open.url.0.as_str()),
        Err(SlackClientError::ApiError(error)) => match token_refusal(&error.code) {
            Some(fix) => Err(LinkError::TokenRefused(format!(
                "apps.connections.open: {}; {fix}",
                error.code
            ))),
            None => Err(transient(format!("apps.connections.open: {}", error.code))),
        },
        Err(SlackClientError::RateLimitError(limit)) => Err(LinkError::Transient {
            why: "apps.connections.open: rate limited".to_owned(),
            retry_after: limit.retry_after,
        }),
        Err(other) => Err(transient(format!("apps.connections.open failed: {other}"))),
    }
}

/// The URL Slack gave, if it is one to connect to: `wss://`, or `ws://` on loopback (tests).
fn link_url(url: &str) -> Result<String, LinkError> {
    let parsed = reqwest::Url::parse(url).map_err(|e| {
        transient(format!(
            "apps.connections.open returned an unusable URL: {e}"
        ))
    })?;
    let loopback = matches!(parsed.host_str(), Some("127.0.0.1" | "localhost" | "[::1]"));
    match parsed.scheme() {
        "wss" => Ok(url.to_owned()),
        "ws" if loopback => Ok(url.to_owned()),
        scheme => Err(transient(format!(
            "apps.connections.open returned a {scheme}:// URL; only wss:// is used"
        ))),
    }
}

/// The WebSocket handshake. Errors name the host, never the URL (its ticket is a credential).
async fn connect(url: &str) -> Result<Socket, LinkError> {
    let host = reqwest::Url::parse(url)
        .ok()
        .and_then(|u| u.host_str().map(str::to_owned))
        .unwrap_or_default();
    match tokio::time::timeout(CONNECT_WITHIN, tokio_tungstenite::connect_async(url)).await {
        Ok(Ok((socket, _))) => Ok(socket),
        Ok(Err(error)) => Err(transient(format!(
            "cannot open the Socket Mode connection to {host}: {error}"
        ))),
        Err(_) => Err(transient(format!(
            "the Socket Mode connection to {host} did not open within {} s",
            CONNECT_WITHIN.as_secs()
        ))),
    }
}

/// Translates and queues an envelope; returns the acknowledgement frame (for a slash command
/// it carries the immediate reply).
fn acknowledge(slack: &Slack, envelope: Envelope) -> String {
    if envelope.retry_attempt > 0 {
        tracing::info!(
            envelope_id = %envelope.id,
            retry_attempt = envelope.retry_attempt,
            retry_reason = envelope.retry_reason.as_deref().unwrap_or(""),
            "Slack redelivered an envelope; its idempotency key keeps it from running twice."
        );
    }
    let payload = match envelope.body {
        Ok(EnvelopeBody::Command(command)) => Some(super::ack(&slack.command(
            &command.channel,
            &command.user,
            &command.text,
            &command.trigger,
        ))),
        Ok(EnvelopeBody::Inputs(inputs)) => {
            for input in inputs {
                slack.enqueue(input);
            }
            None
        }
        Ok(EnvelopeBody::Other(kind)) => {
            tracing::debug!(
                kind,
                "Ignored a Socket Mode envelope of a type rollbot does not use."
            );
            None
        }
        Err(error) => {
            // Acknowledged all the same: a redelivery would read no better.
            tracing::warn!(envelope_id = %envelope.id, %error, "Ignored an unreadable Slack envelope.");
            None
        }
    };
    match payload {
        Some(payload) => json!({ "envelope_id": envelope.id, "payload": payload }),
        None => json!({ "envelope_id": envelope.id }),
    }
    .to_string()
}

/// What a connection tells the supervisor.
#[derive(Debug)]
enum Event {
    Hello,
    Disconnect(String),
    Closed { why: String, said_hello: bool },
}

/// One WebSocket connection: reads frames, acknowledges envelopes, pings. Ends when Slack
/// closes it, it breaks or goes silent, or the supervisor drops `close`.
async fn connection(
    id: u64,
    slack: Arc<Slack>,
    mut socket: Socket,
    events: mpsc::UnboundedSender<(u64, Event)>,
    mut close: oneshot::Receiver<()>,
) {
    let opened = Instant::now();
    let mut said_hello = false;
    let mut last_heard = Instant::now();
    let mut ticks = tokio::time::interval_at(Instant::now() + PING_EVERY, PING_EVERY);
    let why = loop {
        tokio::select! {
            frame = socket.next() => {
                last_heard = Instant::now();
                match frame {
                    Some(Ok(Message::Text(text))) => match inbound::frame(text.as_str()) {
                        Ok(Frame::Hello) => {
                            said_hello = true;
                            let _ = events.send((id, Event::Hello));
                        }
                        Ok(Frame::Disconnect { reason }) => {
                            let _ = events.send((id, Event::Disconnect(reason)));
                        }
                        Ok(Frame::Envelope(envelope)) => {
                            let ack = acknowledge(&slack, envelope);
                            if let Err(error) = socket.send(Message::Text(ack.into())).await {
                                break format!("the Socket Mode connection broke: {error}");
                            }
                        }
                        Err(error) => tracing::warn!(%error, "Ignored an unreadable Socket Mode frame."),
                    },
                    Some(Ok(Message::Close(frame))) => {
                        break match frame {
                            Some(frame) => format!(
                                "Slack closed the connection ({} {})",
                                u16::from(frame.code),
                                frame.reason.as_str().chars().filter(|c| !c.is_control()).collect::<String>()
                            ),
                            None => "Slack closed the connection".to_owned(),
                        }
                    }
                    Some(Ok(Message::Binary(_))) => tracing::warn!("Ignored a binary Socket Mode frame."),
                    // Pings are answered by tungstenite; pongs only count as signs of life.
                    Some(Ok(_)) => {}
                    Some(Err(error)) => break format!("the Socket Mode connection broke: {error}"),
                    None => break "the Socket Mode connection ended".to_owned(),
                }
            }
            _ = ticks.tick() => {
                if !said_hello && opened.elapsed() >= HELLO_WITHIN {
                    break format!("Slack sent no hello within {} s", HELLO_WITHIN.as_secs());
                }
                if last_heard.elapsed() >= SILENCE_LIMIT {
                    break format!("nothing heard from Slack for {} s", SILENCE_LIMIT.as_secs());
                }
                if let Err(error) = socket.send(Message::Ping(Vec::new().into())).await {
                    break format!("the Socket Mode connection broke: {error}");
                }
            }
            _ = &mut close => {
                let _ = tokio::time::timeout(Duration::from_secs(2), socket.close(None)).await;
                return;
            }
        }
    };
    let _ = events.send((id, Event::Closed { why, said_hello }));
}

/// Owns the connections: opens one, replaces it when Slack asks or it is lost, keeps the
/// link state `/readyz` shows.
struct Supervisor {
    slack: Arc<Slack>,
    token: SlackApiToken,
    events_tx: mpsc::UnboundedSender<(u64, Event)>,
    events: mpsc::UnboundedReceiver<(u64, Event)>,
    /// Dropping a sender closes its connection.
    closers: HashMap<u64, oneshot::Sender<()>>,
    tasks: JoinSet<()>,
    /// The connection rollbot relies on (or waits for `hello` on).
    current: Option<u64>,
    next_id: u64,
    /// Attempts in a row that did not reach `hello`.
    failures: u32,
}

impl Supervisor {
    async fn run(
        mut self,
        mut first_url: Option<String>,
        mut delay: Duration,
        stop: CancellationToken,
    ) {
        let mut wanted = true;
        loop {
            if wanted {
                tokio::select! {
                    () = tokio::time::sleep(delay) => {}
                    () = stop.cancelled() => break,
                }
                let attempt = async {
                    let url = match first_url.take() {
                        Some(url) => url,
                        None => open_url(&self.slack, &self.token).await?,
                    };
                    connect(&url).await
                };
                let attempt = tokio::select! {
                    attempt = attempt => attempt,
                    () = stop.cancelled() => break,
                };
                match attempt {
                    Ok(socket) => {
                        self.spawn(socket);
                        wanted = false;
                    }
                    Err(error) => {
                        self.failures += 1;
                        delay = match &error {
                            LinkError::Transient {
                                retry_after: Some(wait),
                                ..
                            } => (*wait).min(MAX_BACKOFF),
                            _ => backoff(self.failures),
                        };
                        match &error {
                            LinkError::TokenRefused(_) => {
                                tracing::error!(%error, retry_in_s = delay.as_secs(), "Slack refused the app-level token.")
                            }
                            LinkError::Transient { .. } => {
                                tracing::warn!(%error, retry_in_s = delay.as_secs(), "Slack Socket Mode connection failed.")
                            }
                        }
                        self.slack.socket_not_connected(error.to_string());
                        continue;
                    }
                }
            }
            tokio::select! {
                () = stop.cancelled() => break,
                Some((id, event)) = self.events.recv() => {
                    if self.on_event(id, event) {
                        wanted = true;
                        delay = backoff(self.failures);
                    }
                }
                Some(_) = self.tasks.join_next(), if !self.tasks.is_empty() => {}
            }
        }
        self.closers.clear();
        let tasks = &mut self.tasks;
        let _ = tokio::time::timeout(Duration::from_secs(3), async {
            while tasks.join_next().await.is_some() {}
        })
        .await;
        self.slack.socket_not_connected("stopped".to_owned());
    }

    fn spawn(&mut self, socket: Socket) {
        self.next_id += 1;
        let id = self.next_id;
        let (closer, close) = oneshot::channel();
        self.closers.insert(id, closer);
        self.current = Some(id);
        self.tasks.spawn(connection(
            id,
            Arc::clone(&self.slack),
            socket,
            self.events_tx.clone(),
            close,
        ));
    }

    /// Handles what a connection reported; true when a new connection is needed.
    fn on_event(&mut self, id: u64, event: Event) -> bool {
        let current = self.current == Some(id);
        match event {
            Event::Hello => {
                if current {
                    self.failures = 0;
                    self.slack.socket_connected();
                    tracing::info!("Slack Socket Mode connected.");
                    // The connections this one replaces are not needed any more.
                    self.closers.retain(|other, _| *other == id);
                }
                false
            }
            Event::Disconnect(reason) => {
                if !current {
                    return false; // one being replaced; it is closing anyway
                }
                // This one keeps delivering until the next one says hello or Slack closes it.
                self.current = None;
                if reason == "link_disabled" {
                    self.failures += 1;
                }
                let why = disconnect_reason(&reason);
                tracing::warn!(reason = %reason, "Slack Socket Mode: {why}.");
                self.slack.socket_not_connected(why);
                true
            }
            Event::Closed { why, said_hello } => {
                self.closers.remove(&id);
                if !current {
                    return false;
                }
                self.current = None;
                if !said_hello {
                    self.failures += 1;
                }
                tracing::warn!(%why, "Slack Socket Mode connection lost; reconnecting.");
                self.slack
                    .socket_not_connected(format!("{why}; reconnecting"));
                true
            }
        }
    }
}

/// Slack's Socket Mode, kept connected in the background.
#[derive(Debug)]
pub struct SocketMode;

impl SocketMode {
    /// Asks Slack for a connection URL once, then keeps a connection open in a task (returned)
    /// until `shutdown` is cancelled. Until Slack says `hello`, `/readyz` reports the link as not
    /// connected, with the reason.
    ///
    /// # Errors
    /// No app-level token, or Slack refused it (`invalid_auth`, `not_allowed_token_type`,
    /// `missing_scope`, …): a config error, with the fix. A network or Slack failure is not an
    /// error here: it is retried with backoff and shown on `/readyz`.
    pub async fn start(
        slack: Arc<Slack>,
        shutdown: CancellationToken,
    ) -> Result<JoinHandle<()>, String> {
        let Some(app_token) = slack.settings.app_token.clone() else {
            return Err("Socket Mode needs the app-level token (slack.app_token_env)".to_owned());
        };
        let token = SlackApiToken::new(app_token.expose().to_owned().into());
        let (first_url, failures, delay) = match open_url(&slack, &token).await {
            Ok(url) => {
                slack.socket_not_connected("connecting; no hello from Slack yet".to_owned());
                (Some(url), 0, Duration::ZERO)
            }
            Err(LinkError::TokenRefused(why)) => {
                return Err(format!("Slack refused the app-level token: {why}"));
            }
            Err(error @ LinkError::Transient { .. }) => {
                let delay = match &error {
                    LinkError::Transient {
                        retry_after: Some(wait),
                        ..
                    } => (*wait).min(MAX_BACKOFF),
                    _ => backoff(1),
                };
                tracing::warn!(%error, retry_in_s = delay.as_secs(), "Slack Socket Mode is not connected yet; retrying.");
                slack.socket_not_connected(error.to_string());
                (None, 1, delay)
            }
        };
        let (events_tx, events) = mpsc::unbounded_channel();
        let supervisor = Supervisor {
            slack,
            token,
            events_tx,
            events,
            closers: HashMap::new(),
            tasks: JoinSet::new(),
            current: None,
            next_id: 0,
            failures,
        };
        Ok(tokio::spawn(supervisor.run(first_url, delay, shutdown)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_starts_at_once_doubles_and_stops_at_a_minute() {
        let waits: Vec<u64> = (0..10).map(|n| backoff(n).as_secs()).collect();
        assert_eq!(waits, [0, 1, 2, 4, 8, 16, 32, 60, 60, 60]);
    }

    #[test]
    fn only_a_refused_token_is_a_config_error() {
        for code in [
            "invalid_auth",
            "not_allowed_token_type",
            "token_revoked",
            "missing_scope",
        ] {
            assert!(token_refusal(code).is_some(), "{code}");
        }
        for code in [
            "internal_error",
            "fatal_error",
            "service_unavailable",
            "request_timeout",
            "ratelimited",
            "anything_new",
        ] {
            assert!(token_refusal(code).is_none(), "{code}");
        }
    }

    #[test]
    fn only_tls_urls_are_used_beyond_loopback() {
        let cases = [
            ("wss://wss-primary.slack.com/link/?ticket=1&app_id=A1", true),
            ("ws://127.0.0.1:4000/link/?ticket=1", true),
            ("ws://wss-primary.slack.com/link/?ticket=1", false),
            ("https://wss-primary.slack.com/link/", false),
            ("not a url", false),
        ];
        for (url, usable) in cases {
            assert_eq!(link_url(url).is_ok(), usable, "{url}");
        }
    }

    #[test]
    fn disconnect_reasons_say_what_to_do() {
        assert!(disconnect_reason("link_disabled").contains("turn Socket Mode on"));
        assert!(disconnect_reason("refresh_requested").contains("reconnecting"));
        assert_eq!(
            disconnect_reason("new <reason>\n"),
            "Slack closed the connection (new<reason>); reconnecting"
        );
    }
}
