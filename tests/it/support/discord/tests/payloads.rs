//! The payload builders checked against serenity's types: every builder deserializes into
//! what serenity reads from Discord (interactions, messages, reactions, guilds, members,
//! channels, threads, Gateway frames).

use serde_json::json;
use serenity::all::{
    Channel as SerenityChannel, ChannelType, ComponentInteractionDataKind, GuildChannel, GuildId,
    Interaction, Member, Message, PartialGuild, Reaction, ReactionType, ResolvedValue, RoleId,
    UserId,
};
use serenity::model::event::{Event, GatewayEvent};

use super::*;

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
