//! The fake Discord checked against serenity 0.12.5 itself: every payload builder deserializes
//! into serenity's types; a real serenity `Client` connects through `GET /gateway`, gets READY
//! and GUILD_CREATE, receives interactions and reactions, answers, heartbeats, resumes after a
//! close or op 7 and shuts down; a wrong token or a privileged intent ends `start()` with
//! serenity's error; REST calls through serenity's `Http` read back, and injected failures and
//! Discord's refusals arrive as the errors serenity makes of them.

use std::sync::mpsc;
use std::time::Duration;

use serde_json::{json, Value};
use serenity::all::{
    ApplicationId, ButtonStyle, Channel as SerenityChannel, ChannelId, ChannelType, ClientBuilder,
    Command, CommandInteraction, CommandOptionType, ComponentInteractionDataKind, Context,
    CreateActionRow, CreateAutocompleteResponse, CreateButton, CreateCommand, CreateCommandOption,
    CreateInteractionResponse, CreateInteractionResponseFollowup, CreateInteractionResponseMessage,
    CreateMessage, CreateThread, EditInteractionResponse, EditMessage, EventHandler,
    GatewayIntents, Guild, GuildChannel, GuildId, Http, HttpBuilder, Interaction, Member, Message,
    MessageId, PartialGuild, Permissions, Reaction, ReactionType, Ready, ResolvedValue,
    ResumedEvent, RoleId, UserId,
};
use serenity::http::HttpError;
use serenity::model::event::{Event, GatewayEvent};

use super::*;
use crate::support::block_on;

fn http(fake: &FakeDiscord, token: &str) -> Http {
    HttpBuilder::new(token)
        .proxy(&fake.base)
        .ratelimiter_disabled(true)
        .application_id(ApplicationId::new(APP_ID))
        .build()
}

/// Discord's answer inside a serenity error: (HTTP status, JSON error code, error paths).
fn refusal<T: std::fmt::Debug>(result: serenity::Result<T>) -> (u16, isize, Vec<String>) {
    match result {
        Err(serenity::Error::Http(HttpError::UnsuccessfulRequest(response))) => (
            response.status_code.as_u16(),
            response.error.code,
            response
                .error
                .errors
                .iter()
                .map(|e| e.path.clone())
                .collect(),
        ),
        other => panic!("expected Discord to refuse, got {other:?}"),
    }
}

fn parse<T: serde::de::DeserializeOwned>(value: &Value) -> T {
    serde_json::from_value(value.clone())
        .unwrap_or_else(|e| panic!("serenity cannot read {value:#}: {e}"))
}

#[test]
fn every_payload_builder_deserializes_into_serenitys_types() {
    let place = Place::new(GUILD, CHANNEL);
    let alice = Invoker::new(ALICE, "alice", &[APPROVERS]);

    let command = command_interaction(
        &place,
        &alice,
        "request",
        &[("image", "web"), ("reason", "bad deploy")],
    );
    let Interaction::Command(command) = parse::<Interaction>(&command) else {
        panic!("not a command");
    };
    assert_eq!(command.data.name, "rollback");
    assert_eq!(
        command.user.id,
        UserId::new(ALICE),
        "user is filled from member"
    );
    let invoking = command.member.as_ref().expect("member");
    assert_eq!(invoking.roles, vec![RoleId::new(APPROVERS)]);
    assert_eq!(command.guild_id, Some(GuildId::new(GUILD)));
    assert_eq!(command.app_permissions.map(|p| p.bits()), Some(DEFAULT_BOT));
    assert_eq!(command.attachment_size_limit, 10_485_760);
    let options = command.data.options();
    assert_eq!(options.len(), 1);
    assert_eq!(options[0].name, "request");
    let ResolvedValue::SubCommand(inner) = &options[0].value else {
        panic!("a subcommand: {:?}", options[0].value);
    };
    let values: Vec<(&str, &str)> = inner
        .iter()
        .map(|o| match o.value {
            ResolvedValue::String(s) => (o.name, s),
            ref other => panic!("a string option: {other:?}"),
        })
        .collect();
    assert_eq!(values, [("image", "web"), ("reason", "bad deploy")]);

    let typing = autocomplete_interaction(&place, &alice, "request", &[("image", "we")], "image");
    let Interaction::Autocomplete(typing) = parse::<Interaction>(&typing) else {
        panic!("not an autocomplete");
    };
    let focused = typing.data.autocomplete().expect("a focused option");
    assert_eq!((focused.name, focused.value), ("image", "we"));

    let posted = json!({ "content": "Rollback rb-17 needs approval", "components": [
        { "type": 1, "components": [
            { "type": 2, "style": 3, "label": "Approve", "custom_id": "approve:rb-17" },
            { "type": 2, "style": 4, "label": "Reject", "custom_id": "reject:rb-17" }
        ]}
    ]});
    let shown = message(snowflake(), CHANNEL, &posted, &timestamp());
    let parsed: Message = parse(&shown);
    assert_eq!(parsed.components[0].components.len(), 2);
    let click = button_interaction(&place, &alice, &shown, "approve:rb-17");
    let Interaction::Component(click) = parse::<Interaction>(&click) else {
        panic!("not a component");
    };
    assert_eq!(click.data.custom_id, "approve:rb-17");
    assert!(matches!(
        click.data.kind,
        ComponentInteractionDataKind::Button
    ));
    assert_eq!(click.message.id, parsed.id);

    let reaction: Reaction = parse(&reaction_add(&place, &alice, 42, BOT_ID, "✅"));
    assert_eq!(reaction.user_id, Some(UserId::new(ALICE)));
    assert_eq!(reaction.emoji, ReactionType::Unicode("✅".to_owned()));
    let reacting = reaction.member.expect("member");
    assert_eq!(reacting.roles, vec![RoleId::new(APPROVERS)]);
    assert_eq!(reacting.guild_id, GuildId::new(GUILD));
    assert_eq!(reaction.message_author_id, Some(UserId::new(BOT_ID)));

    let roles = vec![
        role(GUILD, GUILD, "@everyone", DEFAULT_EVERYONE, 0),
        bot_role(BOT_ROLE, DEFAULT_BOT, 1),
    ];
    let partial: PartialGuild = parse(&guild(GUILD, "Acme", OWNER, roles));
    assert_eq!(partial.owner_id, UserId::new(OWNER));
    assert!(partial.roles.contains_key(&RoleId::new(GUILD)));
    let joined = timestamp();
    let _: Member = parse(&member(BOB, "bob", false, &[], &joined));
    let channel = text_channel(
        CHANNEL,
        GUILD,
        "releases",
        vec![overwrite(BOT_ID, 1, 0, 64)],
    );
    let SerenityChannel::Guild(channel) = parse::<SerenityChannel>(&channel) else {
        panic!("a guild channel");
    };
    assert_eq!(channel.permission_overwrites.len(), 1);
    let thread: GuildChannel = parse(&thread_channel(7, GUILD, CHANNEL, "rb-17", 1440, &joined));
    assert_eq!(thread.kind, ChannelType::PublicThread);
    let _: ChannelType = parse(&partial_channel(CHANNEL, GUILD, "releases", 0, 0)["type"]);

    let ready_frame = dispatch(
        "READY",
        1,
        ready("abc", "ws://x", Some(&json!([0, 1])), &[GUILD]),
    );
    assert!(matches!(
        parse::<GatewayEvent>(&ready_frame),
        GatewayEvent::Dispatch(1, Event::Ready(_))
    ));
    assert!(matches!(
        parse::<GatewayEvent>(&hello(41_250)),
        GatewayEvent::Hello(41_250)
    ));
}

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

fn buttons(id: &str) -> Vec<CreateActionRow> {
    vec![CreateActionRow::Buttons(vec![
        CreateButton::new(format!("approve:{id}"))
            .label("Approve")
            .style(ButtonStyle::Success),
        CreateButton::new(format!("reject:{id}"))
            .label("Reject")
            .style(ButtonStyle::Danger),
    ])]
}

#[test]
fn rest_calls_through_serenity_hit_the_fake_and_read_back() {
    let fake = FakeDiscord::start();
    let http = http(&fake, TOKEN);
    block_on(async {
        assert_eq!(
            http.get_current_user().await.expect("me").id,
            UserId::new(BOT_ID)
        );
        assert_eq!(
            http.get_gateway().await.expect("gateway").url,
            fake.gateway_url()
        );
        let guild = http.get_guild(GuildId::new(GUILD)).await.expect("guild");
        assert_eq!(guild.roles[&RoleId::new(GUILD)].name, "@everyone");
        let alice = http
            .get_member(GuildId::new(GUILD), UserId::new(ALICE))
            .await
            .expect("member");
        assert_eq!(alice.roles, [RoleId::new(APPROVERS)]);
        let nobody = http.get_member(GuildId::new(GUILD), UserId::new(9)).await;
        assert_eq!(refusal(nobody), (404, 10007, vec![]));

        // Commands: a bulk overwrite, then the interactions the fake builds carry its id.
        let rollback = CreateCommand::new("rollback")
            .description("Roll an image back")
            .add_option(
                CreateCommandOption::new(
                    CommandOptionType::SubCommand,
                    "request",
                    "Ask for a rollback",
                )
                .add_sub_option(
                    CreateCommandOption::new(CommandOptionType::String, "image", "alias")
                        .required(true)
                        .set_autocomplete(true),
                )
                .add_sub_option(CreateCommandOption::new(
                    CommandOptionType::String,
                    "reason",
                    "why",
                )),
            );
        let registered: Vec<Command> = GuildId::new(GUILD)
            .set_commands(&http, vec![rollback.clone()])
            .await
            .expect("registered");
        assert_eq!(registered[0].name, "rollback");
        assert_eq!(fake.commands(GUILD).len(), 1);
        let again = GuildId::new(GUILD)
            .set_commands(&http, vec![rollback])
            .await
            .expect("again");
        assert_eq!(again[0].id, registered[0].id, "the same name keeps its id");
        let typed = fake.command(BOB, CHANNEL, "request", &[("image", "web")]);
        assert_eq!(typed["data"]["id"], registered[0].id.to_string());
        let bad = CreateCommand::new("Rollback").description("upper case");
        let refused = GuildId::new(GUILD).set_commands(&http, vec![bad]).await;
        assert_eq!(refusal(refused), (400, 50035, vec!["0.name".to_owned()]));

        // A message with buttons, edited; read back from the fake and through serenity.
        let channel = ChannelId::new(CHANNEL);
        let posted = channel
            .send_message(
                &http,
                CreateMessage::new()
                    .content("Rollback rb-17 needs approval")
                    .components(buttons("rb-17")),
            )
            .await
            .expect("posted");
        assert_eq!(posted.channel_id, channel);
        assert_eq!(posted.author.id, UserId::new(BOT_ID));
        assert_eq!(posted.components[0].components.len(), 2);
        let edited = channel
            .edit_message(
                &http,
                posted.id,
                EditMessage::new()
                    .content("Approved by alice")
                    .components(vec![]),
            )
            .await
            .expect("edited");
        assert_eq!(edited.content, "Approved by alice");
        assert!(edited.components.is_empty() && edited.edited_timestamp.is_some());
        assert_eq!(fake.content(posted.id.get()), "Approved by alice");
        assert_eq!(fake.messages(CHANNEL).len(), 1);
        let patch = fake.wait_for("PATCH /channels/*/messages/*", "the edit", |c| {
            c.status == 200
        });
        assert_eq!(patch.body["content"], "Approved by alice");
        assert_eq!(patch.authorization, Some(format!("Bot {TOKEN}")));

        // Reactions, and the same without ADD_REACTIONS in the channel.
        posted.react(&http, '✅').await.expect("reacted");
        let read = channel.message(&http, posted.id).await.expect("read");
        assert!(read.reactions[0].me);
        let reacted = fake.calls_to("PUT /channels/*/messages/*/reactions/*/@me");
        assert_eq!(
            reacted[0].path,
            format!(
                "/channels/{CHANNEL}/messages/{}/reactions/✅/@me",
                posted.id
            )
        );
        fake.deny_bot(CHANNEL, Permissions::ADD_REACTIONS);
        assert!(!fake
            .permissions(CHANNEL, BOT_ID)
            .contains(Permissions::ADD_REACTIONS));
        assert_eq!(
            refusal(posted.react(&http, '👀').await),
            (403, 50013, vec![])
        );

        // A thread from the message: its id is the message's; only one per message.
        let thread = channel
            .create_thread_from_message(&http, posted.id, CreateThread::new("rb-17"))
            .await
            .expect("thread");
        assert_eq!(thread.id.get(), posted.id.get());
        assert_eq!(thread.kind, ChannelType::PublicThread);
        assert_eq!(thread.parent_id, Some(channel));
        let twice = channel
            .create_thread_from_message(&http, posted.id, CreateThread::new("again"))
            .await;
        assert_eq!(refusal(twice), (400, 160_004, vec![]));
        thread
            .id
            .say(&http, "Step 1/3: retagging")
            .await
            .expect("in the thread");
        assert_eq!(
            fake.messages(thread.id.get())[0]["content"],
            "Step 1/3: retagging"
        );
        assert_eq!(
            fake.thread(posted.id.get()).expect("thread")["message_count"],
            1
        );
        assert_eq!(fake.message(posted.id.get())["flags"], 32, "HAS_THREAD");

        // Injected failures, with the rate limiter disabled.
        fake.fail(
            "PATCH /channels/*/messages/*",
            Failure::RateLimited {
                retry_after_ms: 250,
            },
            1,
        );
        let limited = channel
            .edit_message(&http, posted.id, EditMessage::new().content("x"))
            .await;
        let (status, code, _) = refusal(limited);
        assert_eq!(status, 429);
        assert_eq!(
            code, -1,
            "Discord's 429 body has no code; serenity says it could not decode it"
        );
        assert_eq!(
            fake.content(posted.id.get()),
            "Approved by alice",
            "a 429 changes nothing"
        );
        channel
            .edit_message(&http, posted.id, EditMessage::new().content("y"))
            .await
            .expect("once only");
        fake.fail(
            "POST /channels/*/messages",
            Failure::Api {
                status: 403,
                code: 50013,
                message: "Missing Permissions",
            },
            5,
        );
        assert_eq!(
            refusal(channel.say(&http, "hi").await),
            (403, 50013, vec![])
        );
        fake.clear_failures();
        channel.say(&http, "hi").await.expect("failures cleared");

        // Discord's own refusals (serenity's builders refuse over-long content before sending,
        // so the raw route).
        let long = json!({ "content": "x".repeat(2001) });
        let refused = http.send_message(channel, vec![], &long).await;
        assert_eq!(refusal(refused), (400, 50035, vec!["content".to_owned()]));
        let twins = vec![CreateActionRow::Buttons(vec![
            CreateButton::new("a").label("A"),
            CreateButton::new("a").label("B"),
        ])];
        let duplicate = channel
            .send_message(&http, CreateMessage::new().content("x").components(twins))
            .await;
        assert_eq!(
            refusal(duplicate),
            (
                400,
                50035,
                vec!["components.0.components.1.custom_id".to_owned()]
            )
        );
        assert_eq!(refusal(channel.say(&http, "").await), (400, 50006, vec![]));
        let gone = channel
            .edit_message(&http, MessageId::new(5), EditMessage::new().content("x"))
            .await;
        assert_eq!(refusal(gone), (404, 10008, vec![]));
        assert_eq!(
            refusal(ChannelId::new(5).say(&http, "x").await),
            (404, 10003, vec![])
        );
    });
}

#[test]
fn a_429_is_sent_as_discord_sends_it() {
    let fake = FakeDiscord::start();
    fake.fail(
        "PATCH /channels/*/messages/*",
        Failure::RateLimited {
            retry_after_ms: 250,
        },
        1,
    );
    fake.fail(
        "POST /channels/*/messages",
        Failure::GlobalRateLimited {
            retry_after_ms: 1500,
        },
        1,
    );
    let client = reqwest::Client::new();
    let (route, global) = block_on(async {
        let auth = format!("Bot {TOKEN}");
        let route = client
            .patch(format!(
                "{}/api/v10/channels/{CHANNEL}/messages/1",
                fake.base
            ))
            .header("authorization", &auth)
            .json(&json!({ "content": "x" }))
            .send()
            .await
            .expect("answer");
        let global = client
            .post(format!("{}/api/v10/channels/{CHANNEL}/messages", fake.base))
            .header("authorization", &auth)
            .json(&json!({ "content": "x" }))
            .send()
            .await
            .expect("answer");
        (route, global)
    });
    assert_eq!(route.status(), 429);
    let header = |r: &reqwest::Response, name: &str| {
        r.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    assert_eq!(header(&route, "retry-after"), "1");
    assert_eq!(header(&route, "x-ratelimit-scope"), "user");
    assert_eq!(header(&route, "x-ratelimit-reset-after"), "0.250");
    assert_eq!(header(&route, "x-ratelimit-remaining"), "0");
    assert_eq!(header(&global, "x-ratelimit-global"), "true");
    assert_eq!(header(&global, "x-ratelimit-scope"), "global");
    let (route, global) = block_on(async {
        (
            route.json::<Value>().await.expect("json"),
            global.json::<Value>().await.expect("json"),
        )
    });
    assert_eq!(
        route,
        json!({ "message": "You are being rate limited.", "retry_after": 0.25, "global": false })
    );
    assert_eq!(global["global"], true);
}

#[test]
fn the_world_is_configurable_and_permissions_match_serenitys_computation() {
    let fake = FakeDiscord::start();
    let http = http(&fake, TOKEN);
    const OTHER: u64 = 1_100_000_000_000_009_000;
    const DEPLOYS: u64 = 1_100_000_000_000_009_001;
    const MUTED: u64 = 1_100_000_000_000_009_002;
    const CAROL: u64 = 1_100_000_000_000_009_003;
    fake.add_guild(OTHER, "Other");
    fake.add_role(OTHER, MUTED, "muted", Permissions::empty());
    fake.add_member(OTHER, CAROL, "carol", &[MUTED]);
    fake.add_channel(OTHER, DEPLOYS, "deploys");
    fake.set_overwrite(
        DEPLOYS,
        Target::Role(MUTED),
        Permissions::empty(),
        Permissions::SEND_MESSAGES,
    );
    fake.set_member_roles(OTHER, BOT_ID, &[MUTED]);
    fake.set_role_permissions(
        OTHER,
        OTHER,
        Permissions::VIEW_CHANNEL | Permissions::SEND_MESSAGES | Permissions::ADD_REACTIONS,
    );
    block_on(async {
        let guild = http.get_guild(GuildId::new(OTHER)).await.expect("guild");
        let SerenityChannel::Guild(channel) = http
            .get_channel(ChannelId::new(DEPLOYS))
            .await
            .expect("channel")
        else {
            panic!("a guild channel");
        };
        for user in [CAROL, BOT_ID] {
            let member = http
                .get_member(GuildId::new(OTHER), UserId::new(user))
                .await
                .expect("member");
            assert_eq!(
                guild.user_permissions_in(&channel, &member),
                fake.permissions(DEPLOYS, user),
                "serenity and the fake agree for {user}"
            );
        }
        assert_eq!(
            refusal(ChannelId::new(DEPLOYS).say(&http, "x").await),
            (403, 50013, vec![])
        );
        fake.set_member_roles(OTHER, BOT_ID, &[]);
        ChannelId::new(DEPLOYS)
            .say(&http, "x")
            .await
            .expect("no longer muted");
        fake.set_role_permissions(OTHER, OTHER, Permissions::SEND_MESSAGES);
        assert_eq!(
            refusal(http.get_channel(ChannelId::new(DEPLOYS)).await),
            (403, 50001, vec![])
        );
        fake.remove_member(OTHER, BOT_ID);
        assert_eq!(
            refusal(http.get_guild(GuildId::new(OTHER)).await),
            (404, 10004, vec![])
        );
    });
}

/// A command interaction the fake knows, as serenity reads it.
fn command(fake: &FakeDiscord, user: u64) -> CommandInteraction {
    let Interaction::Command(command) =
        parse::<Interaction>(&fake.command(user, CHANNEL, "request", &[("image", "web")]))
    else {
        panic!("a command");
    };
    command
}

#[test]
fn interaction_callbacks_and_followups_behave_as_discord_documents() {
    let fake = FakeDiscord::start();
    let http = http(&fake, TOKEN);
    block_on(async {
        // Deferred ephemerally: the first follow-up edits the loading message (and stays
        // ephemeral), later ones are new messages; edit_response edits the original.
        let slow = command(&fake, ALICE);
        slow.defer_ephemeral(&http).await.expect("deferred");
        let loading = fake.original(slow.id.get()).expect("a loading message");
        assert_eq!(loading["flags"], 64 | 128);
        let first = slow
            .create_followup(
                &http,
                CreateInteractionResponseFollowup::new()
                    .content("Queued")
                    .ephemeral(false),
            )
            .await
            .expect("first follow-up");
        assert_eq!(first.id.to_string(), loading["id"].as_str().expect("id"));
        assert_eq!(fake.original(slow.id.get()).expect("original")["flags"], 64);
        let second = slow
            .create_followup(
                &http,
                CreateInteractionResponseFollowup::new()
                    .content("Done")
                    .ephemeral(true),
            )
            .await
            .expect("second follow-up");
        assert_ne!(second.id, first.id);
        let followups = fake.followups(slow.id.get());
        assert_eq!((followups.len(), &followups[0]["flags"]), (1, &json!(64)));
        slow.edit_response(
            &http,
            EditInteractionResponse::new().content("Queued as rb-18"),
        )
        .await
        .expect("edited");
        assert_eq!(
            fake.original(slow.id.get()).expect("original")["content"],
            "Queued as rb-18"
        );
        assert!(
            fake.messages(CHANNEL).is_empty(),
            "ephemeral messages are not in the channel"
        );
        assert_eq!(refusal(slow.defer(&http).await), (400, 40060, vec![]));

        // A visible answer is a channel message with the interaction's metadata.
        let visible = command(&fake, BOB);
        let answer = CreateInteractionResponseMessage::new().content("Rollback rb-19 requested");
        visible
            .create_response(&http, CreateInteractionResponse::Message(answer))
            .await
            .expect("answered");
        let shown: Message = parse(&fake.messages(CHANNEL)[0]);
        assert_eq!(shown.content, "Rollback rb-19 requested");
        assert_eq!(shown.webhook_id.map(|w| w.get()), Some(APP_ID));
        assert!(shown.interaction_metadata.is_some());

        // Interactions the fake never delivered, or answered too late.
        let Interaction::Command(stranger) = parse::<Interaction>(&command_interaction(
            &Place::new(GUILD, CHANNEL),
            &Invoker::new(BOB, "bob", &[]),
            "request",
            &[],
        )) else {
            panic!("a command");
        };
        assert_eq!(refusal(stranger.defer(&http).await), (404, 10062, vec![]));
        fake.set_ack_deadline(Duration::from_millis(50));
        let late = command(&fake, BOB);
        std::thread::sleep(Duration::from_millis(100));
        assert_eq!(refusal(late.defer(&http).await), (404, 10062, vec![]));
        fake.set_ack_deadline(Duration::from_secs(3));

        // A button: UPDATE_MESSAGE edits the clicked message; a deferred update then an edit
        // of @original edit it too.
        let posted = ChannelId::new(CHANNEL)
            .send_message(
                &http,
                CreateMessage::new()
                    .content("Rollback rb-20 needs approval")
                    .components(buttons("rb-20")),
            )
            .await
            .expect("posted");
        let Interaction::Component(click) =
            parse::<Interaction>(&fake.click(ALICE, posted.id.get(), "approve:rb-20"))
        else {
            panic!("a click");
        };
        let update = CreateInteractionResponseMessage::new()
            .content("Approved by alice")
            .components(vec![]);
        click
            .create_response(&http, CreateInteractionResponse::UpdateMessage(update))
            .await
            .expect("updated");
        assert_eq!(fake.content(posted.id.get()), "Approved by alice");
        let Interaction::Component(again) =
            parse::<Interaction>(&fake.click(BOB, posted.id.get(), "reject:rb-20"))
        else {
            panic!("a click");
        };
        again.defer(&http).await.expect("deferred update");
        assert_eq!(fake.response(again.id.get()).expect("response")["type"], 6);
        again
            .edit_response(
                &http,
                EditInteractionResponse::new().content("Rejected by bob"),
            )
            .await
            .expect("edited");
        assert_eq!(fake.content(posted.id.get()), "Rejected by bob");

        // Autocomplete takes choices only.
        let Interaction::Autocomplete(typing) = parse::<Interaction>(&fake.autocomplete(
            ALICE,
            CHANNEL,
            "request",
            &[("image", "w")],
            "image",
        )) else {
            panic!("an autocomplete");
        };
        let wrong = CreateInteractionResponse::Message(
            CreateInteractionResponseMessage::new().content("no"),
        );
        assert_eq!(
            refusal(typing.create_response(&http, wrong).await),
            (400, 50035, vec!["type".to_owned()])
        );
        let choices = CreateAutocompleteResponse::new()
            .add_string_choice("web", "web")
            .add_string_choice("worker", "worker");
        typing
            .create_response(&http, CreateInteractionResponse::Autocomplete(choices))
            .await
            .expect("suggested");
        let response = fake.response(typing.id.get()).expect("response");
        assert_eq!(
            (
                response["type"].clone(),
                response["data"]["choices"][1]["value"].clone()
            ),
            (json!(8), json!("worker"))
        );

        // After 15 minutes the token no longer works.
        fake.expire_token(slow.id.get());
        let expired = slow
            .create_followup(
                &http,
                CreateInteractionResponseFollowup::new().content("late"),
            )
            .await;
        assert_eq!(refusal(expired), (401, 50027, vec![]));
    });
}
