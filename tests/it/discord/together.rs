//! Slack and Discord on one engine: each rollback is announced only where it was requested.

use super::{text_of, world_with, CAROL};
use crate::slack::{ALICE as SLACK_ALICE, BOB as SLACK_BOB, CHANNEL as SLACK_CHANNEL};
use crate::support::discord::{APPROVERS, CHANNEL};
use crate::support::slack::{slash_command, FakeSlack, APP_TOKEN};

#[test]
fn slack_and_discord_together_each_rollback_is_announced_where_it_was_requested() {
    let slack = FakeSlack::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let secret = |name: &str, value: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, format!("{value}\n")).expect("secret file");
        path.display().to_string()
    };
    let extra = format!(
        r#"
[approvals]
approvers = ["{SLACK_BOB}", "group:{APPROVERS}"]

[slack]
enabled = true
mode = "socket"
bot_token_file = "{bot}"
app_token_file = "{app}"
signing_secret_file = "{signing}"
api_url = "{api}"
channels = ["{SLACK_CHANNEL}"]
"#,
        bot = secret("bot-token", "xoxb-test-bot-token"),
        app = secret("app-token", APP_TOKEN),
        signing = secret("signing-secret", "test-signing-secret"),
        api = slack.api_url(),
    );
    // Bob approves on Slack by user id; on Discord the approver role decides.
    let w = world_with("gateway", &extra, |_| {});
    w.wait_ready();

    // rb-1 from Discord, rejected there.
    let plan = w.request();
    w.click(CAROL, plan, "reject");
    w.wait_plan(plan, "rejected");
    assert!(
        slack
            .calls("chat.postMessage")
            .iter()
            .chain(slack.calls("chat.update").iter())
            .all(|c| !text_of(&c.body).contains("rb-1")),
        "rb-1 is not announced on Slack"
    );

    // rb-2 from Slack, approved there.
    slack.send(slash_command("e1", SLACK_CHANNEL, SLACK_ALICE, "app"));
    let posted = slack.wait_for("chat.postMessage", "the plan on Slack", |b| {
        text_of(b).contains("approve:rb-2")
    });
    assert_eq!(posted["channel"], SLACK_CHANNEL);
    let ts = slack
        .calls("chat.postMessage")
        .iter()
        .position(|c| c.body == posted)
        .map(|i| format!("1700000000.{:06}", 101 + i))
        .expect("posted");
    slack.send(slack.click("e2", SLACK_CHANNEL, SLACK_BOB, &ts, "approve:rb-2"));
    slack.wait_for("chat.postMessage", "the done reply on Slack", |b| {
        b["thread_ts"] == ts.as_str() && text_of(b).contains("rb-2 done.")
    });
    assert_eq!(w.latest(), w.v2);
    let discord_channel = w.discord.messages(CHANNEL);
    assert_eq!(
        discord_channel.len(),
        1,
        "only rb-1's plan: {discord_channel:?}"
    );
    assert!(!text_of(&discord_channel[0]).contains("rb-2"));
    assert!(w
        .discord
        .calls_to("POST /channels/*/messages")
        .iter()
        .all(|c| !text_of(&c.body).contains("rb-2")));
}
