//! A real serenity `Client` against the fake's Gateway: it connects through `GET /gateway`,
//! gets READY and GUILD_CREATE, receives interactions and reactions, answers, heartbeats,
//! resumes after a close or op 7 and shuts down; a wrong token or a privileged intent ends
//! `start()` with serenity's error.

use std::sync::mpsc;
use std::time::Duration;

use serde_json::json;
use serenity::all::{
    ApplicationId, ChannelId, ClientBuilder, Context, CreateInteractionResponse,
    CreateInteractionResponseMessage, EventHandler, GatewayIntents, Guild, GuildId, Interaction,
    Reaction, ReactionType, Ready, ResumedEvent, RoleId, UserId,
};
use serenity::http::HttpError;
use serenity::model::event::GatewayEvent;

use crate::support::block_on;

use super::*;

/// What the test's event handler saw.
#[derive(Debug)]
enum Seen {
    Ready(Box<Ready>),
    Guild(GuildId),
    Interaction(Box<Interaction>),
    /// Discord refused the handler's answer with this JSON code.
    Refused(isize),
    Reaction(Box<Reaction>),
    Resumed,
}

struct Handler(mpsc::Sender<Seen>);

#[serenity::async_trait]
impl EventHandler for Handler {
    async fn ready(&self, _: Context, ready: Ready) {
        let _ = self.0.send(Seen::Ready(Box::new(ready)));
    }

    async fn guild_create(&self, _: Context, guild: Guild, _: Option<bool>) {
        let _ = self.0.send(Seen::Guild(guild.id));
    }

    async fn resume(&self, _: Context, _: ResumedEvent) {
        let _ = self.0.send(Seen::Resumed);
    }

    async fn interaction_create(&self, ctx: Context, interaction: Interaction) {
        if let Interaction::Command(command) = &interaction {
            let answer = CreateInteractionResponse::Message(
                CreateInteractionResponseMessage::new()
                    .content("Request noted")
                    .ephemeral(true),
            );
            if let Err(serenity::Error::Http(HttpError::UnsuccessfulRequest(refused))) =
                command.create_response(&ctx.http, answer).await
            {
                let _ = self.0.send(Seen::Refused(refused.error.code));
            }
        }
        let _ = self.0.send(Seen::Interaction(Box::new(interaction)));
    }

    async fn reaction_add(&self, _: Context, reaction: Reaction) {
        let _ = self.0.send(Seen::Reaction(Box::new(reaction)));
    }
}

/// A serenity `Client` running on its own thread and runtime.
struct Running {
    events: mpsc::Receiver<Seen>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    ended: mpsc::Receiver<serenity::Result<()>>,
}

// serenity's own error type, as `Client::start` returns it.
#[allow(clippy::result_large_err)]
impl Running {
    fn start(fake: &FakeDiscord, token: &str, intents: GatewayIntents) -> Running {
        rollbot::install_crypto_provider();
        let http = http(fake, token);
        let (seen, events) = mpsc::channel();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let (end, ended) = mpsc::channel();
        std::thread::spawn(move || {
            block_on(async move {
                let mut client = ClientBuilder::new_with_http(http, intents)
                    .event_handler(Handler(seen))
                    .await
                    .expect("client");
                let manager = client.shard_manager.clone();
                tokio::spawn(async move {
                    if stopped.await.is_ok() {
                        manager.shutdown_all().await;
                    }
                });
                let _ = end.send(client.start().await);
            });
        });
        Running {
            events,
            stop: Some(stop),
            ended,
        }
    }

    fn next(&self, what: &str) -> Seen {
        self.events
            .recv_timeout(Duration::from_secs(20))
            .unwrap_or_else(|_| panic!("the client never saw {what}"))
    }

    /// How `client.start()` ended (20 s).
    fn ended(&self) -> serenity::Result<()> {
        self.ended
            .recv_timeout(Duration::from_secs(20))
            .expect("client.start() returned")
    }

    fn shut_down(mut self) -> serenity::Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.ended()
    }
}

#[test]
fn a_serenity_client_connects_receives_dispatches_answers_resumes_and_shuts_down() {
    let fake = FakeDiscord::start();
    fake.set_heartbeat_interval(Duration::from_millis(1000));
    let intents = GatewayIntents::GUILDS | GatewayIntents::GUILD_MESSAGE_REACTIONS;
    let client = Running::start(&fake, TOKEN, intents);

    let identify = fake.wait_connected();
    assert_eq!(identify.token, format!("Bot {TOKEN}"));
    assert_eq!(identify.intents, intents.bits());
    assert_eq!(identify.shard, Some(json!([0, 1])));
    assert_eq!(identify.properties["browser"], "serenity");
    assert!(identify.compress, "serenity asks for payload compression");
    assert_eq!(fake.identifies().len(), 1);
    let Seen::Ready(ready) = client.next("READY") else {
        panic!("READY first");
    };
    assert_eq!(ready.user.id, UserId::new(BOT_ID));
    assert_eq!(ready.session_id, identify.session_id);
    assert_eq!(ready.application.id, ApplicationId::new(APP_ID));
    assert_eq!(ready.guilds[0].id, GuildId::new(GUILD));
    assert!(matches!(client.next("GUILD_CREATE"), Seen::Guild(g) if g == GuildId::new(GUILD)));
    let gateway_calls = fake.calls_to("GET /gateway");
    assert_eq!(gateway_calls.len(), 1, "the URL came from GET /gateway");
    assert_eq!(gateway_calls[0].route(), "GET /gateway");

    // A slash command, answered ephemerally by the handler; then the same delivery again.
    let command = fake.command(
        ALICE,
        CHANNEL,
        "request",
        &[("image", "web"), ("reason", "bad deploy")],
    );
    let id: u64 = command["id"]
        .as_str()
        .expect("id")
        .parse()
        .expect("snowflake");
    fake.dispatch_interaction(&command);
    let Seen::Interaction(seen) = client.next("INTERACTION_CREATE") else {
        panic!("the interaction");
    };
    let Interaction::Command(seen) = *seen else {
        panic!("a command");
    };
    assert_eq!(seen.id.get(), id);
    assert_eq!(seen.member.expect("member").roles, [RoleId::new(APPROVERS)]);
    let response = fake.response(id).expect("the callback was accepted");
    assert_eq!(response["type"], 4);
    assert_eq!(response["data"]["flags"], 64);
    assert_eq!(
        fake.original(id).expect("original")["content"],
        "Request noted"
    );
    fake.dispatch_interaction(&command);
    assert!(matches!(client.next("the refusal"), Seen::Refused(40060)));
    assert!(matches!(client.next("the duplicate"), Seen::Interaction(_)));
    let statuses: Vec<u16> = fake.callbacks(id).iter().map(|c| c.status).collect();
    assert_eq!(statuses, [204, 400]);

    // A reaction on a message the bot posted.
    let http = http(&fake, TOKEN);
    let posted = block_on(ChannelId::new(CHANNEL).say(&http, "Rollback rb-17 needs approval"))
        .expect("posted");
    let reaction = fake.reaction(ALICE, posted.id.get(), "✅");
    assert!(fake.dispatch_reaction(&reaction));
    let Seen::Reaction(seen) = client.next("MESSAGE_REACTION_ADD") else {
        panic!("the reaction");
    };
    assert_eq!(seen.message_id, posted.id);
    assert_eq!(seen.user_id, Some(UserId::new(ALICE)));
    assert_eq!(seen.member.expect("member").roles, [RoleId::new(APPROVERS)]);
    assert_eq!(seen.emoji, ReactionType::Unicode("✅".to_owned()));

    fake.wait_until("a heartbeat was acknowledged", |f| f.heartbeats() >= 1);

    // Closed with 4000: serenity resumes on a new connection; what was sent meanwhile is
    // replayed before RESUMED.
    fake.close_gateway(4000);
    let again = fake.reaction(BOB, posted.id.get(), "✅");
    assert!(fake.dispatch_reaction(&again));
    let mut after = vec![client.next("the replay or RESUMED"), client.next("both")];
    after.sort_by_key(|s| matches!(s, Seen::Resumed));
    assert!(
        matches!(&after[0], Seen::Reaction(r) if r.user_id == Some(UserId::new(BOB))),
        "{after:?}"
    );
    assert!(matches!(after[1], Seen::Resumed));
    assert_eq!(fake.resumes(), 1);
    assert_eq!(fake.connections_opened(), 2);

    // Op 7 RECONNECT: the same again.
    fake.request_reconnect();
    assert!(matches!(client.next("RESUMED"), Seen::Resumed));
    assert_eq!(fake.resumes(), 2);
    assert_eq!(
        fake.identifies().len(),
        1,
        "resumed, never identified again"
    );

    assert!(client.shut_down().is_ok());
    for frame in fake.dispatched() {
        parse::<GatewayEvent>(&frame);
    }
    let events: Vec<String> = fake
        .dispatched()
        .iter()
        .map(|f| f["t"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(&events[..2], ["READY", "GUILD_CREATE"]);
}

#[test]
fn a_wrong_token_or_a_privileged_intent_ends_client_start_with_serenitys_error() {
    let fake = FakeDiscord::start();
    let client = Running::start(&fake, "not-the-token", GatewayIntents::GUILDS);
    assert!(matches!(
        client.ended(),
        Err(serenity::Error::Gateway(
            serenity::gateway::GatewayError::InvalidAuthentication
        ))
    ));
    let refused = block_on(http(&fake, "not-the-token").get_current_user());
    assert_eq!(refusal(refused), (401, 0, vec![]));

    let content = GatewayIntents::GUILDS | GatewayIntents::MESSAGE_CONTENT;
    let client = Running::start(&fake, TOKEN, content);
    assert!(matches!(
        client.ended(),
        Err(serenity::Error::Gateway(
            serenity::gateway::GatewayError::DisallowedGatewayIntents
        ))
    ));
    fake.allow_privileged_intents(GatewayIntents::MESSAGE_CONTENT.bits());
    let client = Running::start(&fake, TOKEN, content);
    assert_eq!(fake.wait_connected().intents, content.bits());
    assert!(client.shut_down().is_ok());
}
