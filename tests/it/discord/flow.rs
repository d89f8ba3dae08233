//! Discord over the Gateway: the whole flow, each way of approving, roles, autocomplete,
//! registration, duplicates, 429s, the self-check.

use std::time::{Duration, Instant};

use serde_json::Value;
use serenity::all::Permissions;

use super::{id_of, text_of, world, world_with, CAROL};
use crate::support::discord::{Failure, ALICE, BOB, CHANNEL, GUILD, TOKEN};

#[test]
fn the_full_flow_over_the_gateway_self_approval_refused_then_approved_by_a_role_member() {
    let w = world("gateway", "");
    let identify = w.discord.wait_connected();
    // serenity sends `Bot <token>`, which Discord accepts.
    assert_eq!(identify.token, format!("Bot {TOKEN}"));
    // GUILDS | GUILD_MESSAGE_REACTIONS: nothing privileged.
    assert_eq!(identify.intents, (1 << 0) | (1 << 10));
    w.wait_ready();

    let plan = w.request();
    let message = w.discord.message(plan);
    assert_eq!(
        super::buttons(&message),
        ["approve:rb-1", "reject:rb-1"],
        "{message}"
    );
    let sent = &w
        .discord
        .calls_to(&format!("POST /channels/{CHANNEL}/messages"))[0];
    assert_eq!(
        sent.authorization.as_deref(),
        Some(format!("Bot {TOKEN}").as_str())
    );
    // The plan pings nobody; the approve and reject reactions are seeded on it.
    assert_eq!(
        sent.body["allowed_mentions"]["parse"],
        serde_json::json!([])
    );
    w.discord.wait_until("the reactions are seeded", |d| {
        d.calls_to(&format!(
            "PUT /channels/{CHANNEL}/messages/{plan}/reactions/*/@me"
        ))
        .len()
            == 2
    });

    // Alice (an approver by role) cannot approve her own request: told only to her.
    let own = w.click(ALICE, plan, "approve");
    let refusal = w.followup(&own, "you cannot approve or reject your own request");
    assert_eq!(refusal["flags"].as_u64().unwrap_or(0) & 64, 64, "{refusal}");
    assert_eq!(
        w.discord.response(id_of(&own["id"])).expect("acknowledged")["type"],
        6,
        "a click is acknowledged without a loading state"
    );
    // Bob has no approver role.
    let bob = w.click(BOB, plan, "approve");
    w.followup(&bob, "You cannot approve rb-1");
    assert_ne!(w.latest(), w.v2, "nothing moved");

    // Carol has the role.
    let carol = w.click(CAROL, plan, "approve");
    w.followup(&carol, "rb-1 approved; rolling back now.");
    let approved = w.wait_thread(plan, &format!("<@{CAROL}> approved rb-1"));
    assert!(
        text_of(&approved).contains(&format!("<@{ALICE}>")),
        "{approved}"
    );
    w.assert_pings(plan, &format!("<@{CAROL}> approved rb-1"), &[ALICE, CAROL]);
    w.wait_rolled_back(plan);
    // The thread is on the plan message and named after the rollback.
    let thread = w.discord.thread(plan).expect("a thread on the plan");
    assert!(
        thread["name"].as_str().unwrap_or_default().contains("rb-1"),
        "{thread}"
    );
    // The plan was edited in place, its buttons gone once decided.
    assert!(super::buttons(&w.discord.message(plan)).is_empty());
    assert_eq!(w.discord.messages(CHANNEL).len(), 1, "one channel message");
    let (_, status) = w.daemon.get("/metrics");
    assert!(!status.contains("rollbot_chat_api_errors_total{platform=\"discord\""));
}

#[test]
fn the_command_is_registered_by_bulk_overwrite_with_the_documented_payload() {
    let w = world("gateway", "");
    w.wait_ready();
    let put = w
        .discord
        .calls_to(&format!("PUT /applications/*/guilds/{GUILD}/commands"));
    assert_eq!(put.len(), 1, "one bulk overwrite");
    assert_eq!(put[0].status, 200);
    let commands = put[0].body.as_array().expect("a list").clone();
    assert_eq!(commands.len(), 1);
    let rollback = &commands[0];
    assert_eq!(rollback["name"], "rollback");
    // A chat input command: `type` 1, Discord's default when left out.
    assert!(
        matches!(rollback["type"].as_u64(), None | Some(1)),
        "{rollback}"
    );
    let verbs: Vec<&str> = rollback["options"]
        .as_array()
        .expect("subcommands")
        .iter()
        .map(|o| {
            assert_eq!(o["type"], 1, "a subcommand: {o}");
            o["name"].as_str().expect("a name")
        })
        .collect();
    for verb in [
        "request", "approve", "reject", "cancel", "status", "history", "release",
    ] {
        assert!(verbs.contains(&verb), "{verb} in {verbs:?}");
    }
    let option = |verb: &str, name: &str| -> Value {
        rollback["options"]
            .as_array()
            .expect("subcommands")
            .iter()
            .find(|o| o["name"] == verb)
            .and_then(|o| o["options"].as_array())
            .and_then(|o| o.iter().find(|p| p["name"] == name).cloned())
            .unwrap_or_else(|| panic!("{verb} has no option {name}"))
    };
    assert_eq!(option("request", "image")["autocomplete"], true);
    assert_eq!(option("request", "image")["required"], true);
    assert_eq!(option("approve", "id")["autocomplete"], true);
    assert_eq!(option("request", "reason")["type"], 3);
    // What the fake stored is what Discord would answer.
    assert_eq!(w.discord.commands(GUILD).len(), 1);
}

#[test]
fn autocomplete_answers_image_aliases_and_active_rollback_ids() {
    let w = world("gateway", "");
    w.wait_ready();
    let ask = |subcommand: &str, option: &str, typed: &str| -> Value {
        let interaction =
            w.discord
                .autocomplete(BOB, CHANNEL, subcommand, &[(option, typed)], option);
        w.discord.dispatch_interaction(&interaction);
        let id = id_of(&interaction["id"]);
        w.discord
            .wait_until("the autocomplete answer", |d| d.response(id).is_some());
        let response = w.discord.response(id).expect("answered");
        assert_eq!(response["type"], 8, "{response}");
        response["data"]["choices"].clone()
    };
    assert_eq!(
        ask("request", "image", "a"),
        serde_json::json!([{ "name": "app", "value": "app" }])
    );
    assert_eq!(ask("request", "image", "zzz"), serde_json::json!([]));
    assert_eq!(ask("approve", "id", ""), serde_json::json!([]));
    w.request();
    assert_eq!(
        ask("approve", "id", "rb"),
        serde_json::json!([{ "name": "rb-1", "value": "rb-1" }])
    );
}

#[test]
fn approval_by_reaction_and_a_reaction_without_the_role_is_refused_in_the_thread() {
    let w = world("gateway", "");
    w.wait_ready();
    let plan = w.request();
    // People react to the reactions rollbot added (added once the engine knows the plan).
    w.discord.wait_until("the reactions are seeded", |d| {
        d.calls_to(&format!(
            "PUT /channels/{CHANNEL}/messages/{plan}/reactions/*/@me"
        ))
        .len()
            == 2
    });
    // Another emoji is nothing; Bob's ✅ is refused (in the thread, pinging only him).
    assert!(w
        .discord
        .dispatch_reaction(&w.discord.reaction(CAROL, plan, "🎉")));
    assert!(w
        .discord
        .dispatch_reaction(&w.discord.reaction(BOB, plan, "✅")));
    let refused = w.wait_thread(plan, "You cannot approve rb-1");
    assert!(
        text_of(&refused).contains(&format!("<@{BOB}>")),
        "{refused}"
    );
    w.assert_pings(plan, "You cannot approve rb-1", &[BOB]);
    assert_ne!(w.latest(), w.v2, "nothing moved");
    assert!(w
        .discord
        .dispatch_reaction(&w.discord.reaction(CAROL, plan, "✅")));
    w.wait_rolled_back(plan);
    assert!(
        !w.discord
            .messages(plan)
            .iter()
            .any(|m| text_of(m).contains("tada")),
        "the other emoji did nothing"
    );
}

#[test]
fn approval_by_the_approve_subcommand() {
    let w = world("gateway", "");
    w.wait_ready();
    let plan = w.request();
    let approve = w.command(CAROL, "approve", &[("id", "rb-1")]);
    let answer = w.answer(&approve, "the approval", "rb-1 approved; rolling back now.");
    assert_eq!(answer["flags"].as_u64().unwrap_or(0) & 64, 64, "{answer}");
    assert_eq!(
        w.discord.response(id_of(&approve["id"])).expect("deferred")["type"],
        5
    );
    w.wait_rolled_back(plan);
    // Usage errors are answered at once, ephemerally, and change nothing.
    let bad = w.command(CAROL, "approve", &[("id", "seventeen")]);
    let id = id_of(&bad["id"]);
    w.discord
        .wait_until("the usage answer", |d| d.response(id).is_some());
    let usage = w.discord.response(id).expect("answered");
    assert_eq!(usage["type"], 4, "{usage}");
    assert_eq!(usage["data"]["flags"], 64, "{usage}");
}

#[test]
fn a_duplicate_delivery_and_a_double_click_run_the_rollback_once() {
    let w = world("gateway", "");
    w.wait_ready();
    let plan = w.request();
    let click = w.click(CAROL, plan, "approve");
    // The Gateway delivers the same interaction again, and Carol clicks a second time.
    w.discord.dispatch_interaction(&click);
    w.click(CAROL, plan, "approve");
    w.wait_rolled_back(plan);
    std::thread::sleep(Duration::from_millis(300));
    let count = |needle: &str| {
        w.discord
            .messages(plan)
            .iter()
            .filter(|m| text_of(m).contains(needle))
            .count()
    };
    assert_eq!(count("rb-1 done."), 1);
    assert_eq!(count("approved rb-1"), 1, "one approval");
    // The duplicate's second callback was refused by Discord (40060) and changed nothing.
    let callbacks = w.discord.callbacks(id_of(&click["id"]));
    assert_eq!(callbacks.len(), 2, "{callbacks:?}");
    assert_eq!(callbacks[1].status, 400);
    let audit = crate::daemon::audit_entries(&w.daemon.db);
    let votes = audit.iter().filter(|e| e["kind"] == "vote").count();
    assert_eq!(votes, 1, "{audit:?}");
}

#[test]
fn a_429_on_the_plan_edit_waits_for_retry_after_and_api_errors_are_counted() {
    let w = world("gateway", "");
    w.wait_ready();
    let plan = w.request();
    w.discord.fail(
        &format!("PATCH /channels/{CHANNEL}/messages/{plan}"),
        Failure::RateLimited {
            retry_after_ms: 700,
        },
        1,
    );
    // Missing Permissions on the thread: logged with the fix, counted, the rollback unharmed.
    w.discord.fail(
        &format!("POST /channels/{CHANNEL}/messages/{plan}/threads"),
        Failure::Api {
            status: 403,
            code: 50013,
            message: "Missing Permissions",
        },
        1,
    );
    let started = Instant::now();
    w.click(CAROL, plan, "approve");
    w.wait_plan(plan, "rolled back");
    let edits = w
        .discord
        .calls_to(&format!("PATCH /channels/{CHANNEL}/messages/{plan}"));
    assert_eq!(edits[0].status, 429, "{edits:?}");
    assert!(edits.iter().any(|c| c.status == 200));
    assert!(started.elapsed() >= Duration::from_millis(700));
    assert_eq!(w.latest(), w.v2);
    let (_, metrics) = w.daemon.get("/metrics");
    assert!(
        metrics.contains("rollbot_chat_api_errors_total{platform=\"discord\",code=\"50013\"} 1"),
        "{metrics}"
    );
}

#[test]
fn a_missing_channel_permission_is_named_on_readyz() {
    let w = world_with("gateway", "", |d| {
        d.deny_bot(CHANNEL, Permissions::ADD_REACTIONS);
    });
    w.discord.wait_connected();
    let deadline = Instant::now() + Duration::from_secs(20);
    let body = loop {
        let (status, body) = w.daemon.get("/readyz");
        if body.contains("Add Reactions") {
            assert_eq!(status, 503, "{body}");
            break body;
        }
        assert!(Instant::now() < deadline, "readyz never named it: {body}");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(body.contains(&CHANNEL.to_string()), "{body}");
}

#[test]
fn an_interaction_discord_no_longer_knows_is_counted_and_changes_nothing() {
    let w = world("gateway", "");
    w.wait_ready();
    // Past Discord's 3 seconds the callback gets 404 10062 Unknown Interaction.
    w.discord.set_ack_deadline(Duration::ZERO);
    let late = w.command(ALICE, "request", &[("image", "app"), ("reason", "late")]);
    let id = id_of(&late["id"]);
    w.discord.wait_until("the refused callback", |d| {
        d.callbacks(id).iter().any(|c| c.status == 404)
    });
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, metrics) = w.daemon.get("/metrics");
        if metrics.contains("rollbot_chat_api_errors_total{platform=\"discord\",code=\"10062\"} 1")
        {
            break;
        }
        assert!(Instant::now() < deadline, "not counted: {metrics}");
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(300));
    assert!(w.discord.messages(CHANNEL).is_empty(), "no plan was posted");
}
