//! serenity's `Http` against the fake's REST API: calls read back (commands, messages,
//! reactions, threads), injected failures and Discord's refusals arrive as serenity's errors,
//! a 429 is sent as Discord sends it, and the configurable world's permissions match
//! serenity's computation.

use serde_json::{json, Value};
use serenity::all::{
    Channel as SerenityChannel, ChannelId, ChannelType, Command, CommandOptionType,
    CreateActionRow, CreateButton, CreateCommand, CreateCommandOption, CreateMessage, CreateThread,
    EditMessage, GuildId, MessageId, Permissions, RoleId, UserId,
};

use crate::support::block_on;

use super::*;

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
