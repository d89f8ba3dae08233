//! Socket Mode: slack-morphism's listener opens the WebSocket (`apps.connections.open` with the
//! app-level token) and acknowledges each envelope after our callback returns, so the callbacks
//! only translate and queue (Slack wants the ack within 3 s). The listener's own signal handling
//! (`serve()`) is not used: the daemon calls `start` and `shutdown`.

use std::sync::Arc;

use slack_morphism::prelude::*;

use super::inbound;
use super::Slack;

/// The adapter, reachable from slack-morphism's fn-pointer callbacks through user state.
struct SlackState(Arc<Slack>);

type CallbackError = Box<dyn std::error::Error + Send + Sync>;

async fn adapter(states: &SlackClientEventsUserState) -> Result<Arc<Slack>, CallbackError> {
    states
        .read()
        .await
        .get_user_state::<SlackState>()
        .map(|state| Arc::clone(&state.0))
        .ok_or_else(|| "the Slack adapter is not registered".into())
}

async fn on_command(
    event: SlackCommandEvent,
    _client: Arc<SlackHyperClient>,
    states: SlackClientEventsUserState,
) -> Result<SlackCommandEventResponse, CallbackError> {
    let slack = adapter(&states).await?;
    let command = inbound::SlashCommand::from_event(&event)?;
    let text = slack.command(
        &command.channel,
        &command.user,
        &command.text,
        &command.trigger,
    );
    Ok(
        SlackCommandEventResponse::new(SlackMessageContent::new().with_text(text))
            .with_response_type(SlackMessageResponseType::Ephemeral),
    )
}

async fn on_interaction(
    event: SlackInteractionEvent,
    _client: Arc<SlackHyperClient>,
    states: SlackClientEventsUserState,
) -> Result<(), CallbackError> {
    let slack = adapter(&states).await?;
    for input in inbound::interaction_inputs(&event)? {
        slack.enqueue(input);
    }
    Ok(())
}

async fn on_push(
    event: SlackPushEventCallback,
    _client: Arc<SlackHyperClient>,
    states: SlackClientEventsUserState,
) -> Result<(), CallbackError> {
    let slack = adapter(&states).await?;
    if let Some(input) = inbound::event_input(&event)? {
        slack.enqueue(input);
    }
    Ok(())
}

/// Acks even when a callback failed: a redelivery would fail the same way.
fn on_error(
    error: Box<dyn std::error::Error + Send + Sync>,
    _client: Arc<SlackHyperClient>,
    _states: SlackClientEventsUserState,
) -> HttpStatusCode {
    tracing::warn!(%error, "Slack event handling failed.");
    HttpStatusCode::OK
}

/// A running Socket Mode connection.
pub struct SocketMode {
    listener: SlackClientSocketModeListener<SlackClientHyperHttpsConnector>,
}

impl std::fmt::Debug for SocketMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SocketMode")
    }
}

impl SocketMode {
    /// Connects with the app-level token and starts receiving.
    ///
    /// # Errors
    /// No app token, or Slack refused `apps.connections.open`.
    pub async fn start(slack: Arc<Slack>) -> Result<SocketMode, String> {
        let Some(app_token) = slack.settings.app_token.clone() else {
            return Err("Socket Mode needs the app-level token (slack.app_token_env)".to_owned());
        };
        let environment = Arc::new(
            SlackClientEventsListenerEnvironment::new(Arc::clone(&slack.client))
                .with_error_handler(on_error)
                .with_user_state(SlackState(Arc::clone(&slack))),
        );
        let callbacks = SlackSocketModeListenerCallbacks::new()
            .with_command_events(on_command)
            .with_interaction_events(on_interaction)
            .with_push_events(on_push);
        let listener = SlackClientSocketModeListener::new(
            &SlackClientSocketModeConfig::new(),
            environment,
            callbacks,
        );
        listener
            .listen_for(&SlackApiToken::new(app_token.expose().to_owned().into()))
            .await
            .map_err(|e| format!("Slack Socket Mode: apps.connections.open failed: {e}"))?;
        listener.start().await;
        tracing::info!("Slack Socket Mode connected.");
        Ok(SocketMode { listener })
    }

    pub async fn shutdown(&self) {
        self.listener.shutdown().await;
    }
}
