//! Gateway mode: serenity's client keeps the Gateway WebSocket (HELLO, IDENTIFY, heartbeats,
//! resumes and reconnects are serenity's); this module hands its events to the adapter:
//! interactions are answered on the callback route and their work tracked, reactions become
//! votes, and the link's state is on `/readyz` ("not connected (why)" until READY, and again
//! while serenity reconnects). Discord refusing the token (close code 4004) ends `serve`.
//!
//! Intents: `GUILDS` and `GUILD_MESSAGE_REACTIONS`, both non-privileged; interactions need no
//! intent.

use std::sync::Arc;

use serenity::all::{
    ConnectionStage, Context, EventHandler, GatewayIntents, Interaction, Reaction, Ready,
    ShardStageUpdateEvent,
};
use serenity::async_trait;
use serenity::gateway::GatewayError;
use serenity::http::HttpBuilder;
use tokio::task::JoinHandle;

use super::interactions::Work;
use super::Discord;

/// The serenity event handler: everything goes to the adapter.
struct Handler {
    discord: Arc<Discord>,
}

#[async_trait]
impl EventHandler for Handler {
    async fn ready(&self, _: Context, ready: Ready) {
        tracing::info!(bot = %ready.user.name, guilds = ready.guilds.len(), "Discord Gateway connected.");
        // The bot's own reactions (it seeds ✅ and ❌ on every plan) come back as events: they
        // must be known as its own even when `GET /users/@me` failed at start.
        let _ = self.discord.bot_user.set(ready.user.id.get());
        self.discord.gateway_connected();
    }

    async fn shard_stage_update(&self, _: Context, event: ShardStageUpdateEvent) {
        match event.new {
            ConnectionStage::Connected => self.discord.gateway_connected(),
            stage => self
                .discord
                .gateway_not_connected(format!("the Gateway link is {stage}")),
        }
    }

    async fn interaction_create(&self, _: Context, interaction: Interaction) {
        let id = interaction.id().get();
        let token = interaction.token().to_owned();
        let Some((response, work)) = self.discord.answer(interaction).await else {
            return;
        };
        let path = format!("/interactions/{id}/{token}/callback");
        let sent = self
            .discord
            .rest
            .post("POST /interactions/{id}/{token}/callback", &path, &response)
            .await;
        match sent {
            Ok(_) => {
                if let Some(work) = work {
                    self.discord.spawn(work);
                }
            }
            // A duplicate delivery: the first one is being handled.
            Err(error) if error.is(40_060) => {
                tracing::info!(interaction = id, "Duplicate Discord interaction ignored.");
            }
            // Not acknowledged: Discord told the person it failed, so nothing is done.
            Err(error) => {
                tracing::warn!(interaction = id, code = error.code, %error, "A Discord interaction could not be answered; nothing was done.");
            }
        }
    }

    async fn reaction_add(&self, _: Context, reaction: Reaction) {
        self.discord.reaction(reaction).await;
    }
}

impl Discord {
    /// Runs an interaction's work as a task the daemon waits for at shutdown.
    pub(super) fn spawn(self: &Arc<Self>, work: Work) {
        let discord = Arc::clone(self);
        self.tasks.spawn(async move { discord.run(work).await });
    }
}

/// The Gateway URL Discord names (`GET /gateway`): `wss://`, or `ws://` on loopback when the
/// API itself is a loopback fake.
async fn gateway_url(discord: &Discord) -> Result<String, String> {
    let answer = discord
        .rest
        .get("GET /gateway", "/gateway")
        .await
        .map_err(|e| e.to_string())?;
    let url = answer
        .get("url")
        .and_then(serde_json::Value::as_str)
        .ok_or("Discord's GET /gateway answered no url")?;
    let loopback_api = discord.settings.api_url.starts_with("http://");
    let plain = !url.chars().any(|c| c.is_whitespace() || c.is_control());
    let ok = plain
        && (url.starts_with("wss://")
            || (loopback_api
                && (url.starts_with("ws://127.0.0.1:") || url.starts_with("ws://localhost:"))));
    if ok {
        Ok(url.to_owned())
    } else {
        Err(format!(
            "Discord's GET /gateway named an unusable URL '{url}'"
        ))
    }
}

/// Connects to the Gateway and keeps the link in a task (returned) until `shutdown` is
/// cancelled.
///
/// # Errors
/// The client cannot be built, or the Gateway URL cannot be learned.
pub async fn start(discord: Arc<Discord>) -> Result<JoinHandle<Result<(), String>>, String> {
    // serenity's own HTTP client only asks for the Gateway URL; the base-URL rewrite needs its
    // rate limiter off (rollbot makes every other call itself, see `rest`).
    let http = HttpBuilder::new(discord.settings.bot_token.expose())
        .proxy(discord.settings.api_url.clone())
        .ratelimiter_disabled(true)
        .application_id(discord.settings.application_id.0.into())
        .build();
    let url = gateway_url(&discord).await?;
    let intents = GatewayIntents::GUILDS | GatewayIntents::GUILD_MESSAGE_REACTIONS;
    let mut client = serenity::all::ClientBuilder::new_with_http(http, intents)
        .event_handler(Handler {
            discord: Arc::clone(&discord),
        })
        .await
        .map_err(|e| format!("cannot build the Discord client: {e}"))?;
    *client.ws_url.lock().await = url;
    discord.gateway_not_connected("connecting; no READY from Discord yet".to_owned());
    let shards = Arc::clone(&client.shard_manager);
    let stop = discord.shutdown.clone();
    Ok(tokio::spawn(async move {
        tokio::select! {
            result = client.start() => match result {
                Ok(()) => Err("the Discord Gateway client stopped".to_owned()),
                Err(serenity::Error::Gateway(GatewayError::InvalidAuthentication)) => Err(
                    "Discord refused the bot token on the Gateway (close code 4004); check discord.bot_token_env / discord.bot_token_file".to_owned(),
                ),
                Err(error) => Err(format!("the Discord Gateway link ended: {error}")),
            },
            () = stop.cancelled() => {
                shards.shutdown_all().await;
                Ok(())
            }
        }
    }))
}
