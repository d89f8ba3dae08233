//! Adversarial review of the Discord adapter: who can vote, and what Discord sends that must
//! not count.

use std::time::Duration;

use super::{plain, world_with, CAROL};
use crate::support::discord::{Failure, APPROVERS, BOB, BOT_ID, BOT_ROLE, CHANNEL, GUILD};

/// Votes the audit log recorded (counted or refused).
fn votes(w: &super::World) -> Vec<serde_json::Value> {
    crate::daemon::audit_entries(&w.daemon.db)
        .into_iter()
        .filter(|e| e["kind"] == "vote" || e["kind"] == "vote_refused")
        .collect()
}

#[test]
fn the_bots_own_seeded_reactions_are_no_votes_even_when_get_users_me_failed_at_start() {
    // The bot holds the approver role (it is how the channel was opened to it), and Discord
    // answered GET /users/@me with a 500 once, at start: the bot's id is not known from it.
    let w = world_with("gateway", "", |d| {
        d.set_member_roles(GUILD, BOT_ID, &[BOT_ROLE, APPROVERS]);
        d.fail(
            "GET /users/@me",
            Failure::Api {
                status: 500,
                code: 0,
                message: "Internal Server Error",
            },
            1,
        );
    });
    w.discord.wait_connected();
    let plan = w.request();
    w.discord.wait_until("the reactions are seeded", |d| {
        d.calls_to(&format!(
            "PUT /channels/{CHANNEL}/messages/{plan}/reactions/*/@me"
        ))
        .len()
            == 2
    });
    // Discord tells every session of the reactions the bot added itself.
    for emoji in ["✅", "❌"] {
        let mut own = w.discord.reaction(BOT_ID, plan, emoji);
        own["member"]["user"]["bot"] = serde_json::json!(true);
        assert!(w.discord.dispatch_reaction(&own));
    }
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(votes(&w), Vec::<serde_json::Value>::new(), "no vote at all");
    assert_ne!(w.latest(), w.v2, "nothing moved");
    assert!(
        plain(&w.discord.content(plan)).contains("waiting for approval"),
        "{}",
        w.discord.content(plan)
    );
    assert!(
        w.thread_messages(plan).is_empty(),
        "no refusal pinging the bot: {:?}",
        w.thread_messages(plan)
    );
    // A person's reaction still counts (the bot's id came with READY).
    assert!(w
        .discord
        .dispatch_reaction(&w.discord.reaction(CAROL, plan, "✅")));
    w.wait_rolled_back(plan);
}

#[test]
fn a_reaction_whose_member_is_someone_else_is_not_a_vote() {
    let w = world_with("gateway", "", |_| {});
    w.wait_ready();
    let plan = w.request();
    // Bob (no role) reacting, with an approver's member object: the roles are not Bob's.
    let mut forged = w.discord.reaction(BOB, plan, "✅");
    forged["member"] = w.discord.reaction(CAROL, plan, "✅")["member"].clone();
    assert!(w.discord.dispatch_reaction(&forged));
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(votes(&w), Vec::<serde_json::Value>::new(), "no vote at all");
    assert_ne!(w.latest(), w.v2, "nothing moved");
}
