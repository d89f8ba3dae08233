//! Interaction callbacks and follow-ups through serenity as Discord documents them: deferring,
//! the first follow-up editing the loading message, visible answers, unknown and late
//! interactions, component updates, autocomplete choices and an expired token.

use std::time::Duration;

use serde_json::json;
use serenity::all::{
    ChannelId, CommandInteraction, CreateAutocompleteResponse, CreateInteractionResponse,
    CreateInteractionResponseFollowup, CreateInteractionResponseMessage, CreateMessage,
    EditInteractionResponse, Interaction, Message,
};

use crate::support::block_on;

use super::*;

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
