//! Discord, against the loopback fake (REST API v10 and the Gateway) with the real registry and
//! the real daemon: the full flow over the Gateway, approvals by button, reaction and
//! subcommand, roles, autocomplete, registration, duplicates and double clicks, 429s, the
//! self-check on `/readyz`; HTTP mode's request signing.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::manifests::Ci;
use crate::support::daemon::TestDaemon;
use crate::support::discord::{FakeDiscord, ALICE, APPROVERS, APP_ID, CHANNEL, GUILD, TOKEN};

/// A second member with the approver role (ALICE has it too; BOB has no role).
pub(crate) const CAROL: u64 = 1_100_000_000_000_000_303;

pub(crate) struct World {
    pub(crate) ci: Ci,
    pub(crate) discord: FakeDiscord,
    pub(crate) daemon: TestDaemon,
    pub(crate) v2: String,
}

/// The `[discord]` section for `fake`, secrets written under `home`.
pub(crate) fn discord_section(
    fake: &FakeDiscord,
    home: &std::path::Path,
    mode: &str,
    public_key: &str,
) -> String {
    let secret = |name: &str, value: &str| {
        let path = home.join(name);
        std::fs::write(&path, format!("{value}\n")).expect("secret file");
        path.display().to_string()
    };
    format!(
        r#"
[discord]
enabled = true
mode = "{mode}"
bot_token_file = "{token}"
public_key_file = "{key}"
application_id = "{APP_ID}"
guilds = ["{GUILD}"]
channels = ["{CHANNEL}"]
api_url = "{api}"
"#,
        token = secret("discord-token", TOKEN),
        key = secret("discord-public-key", public_key),
        api = fake.base,
    )
}

/// Images v1..v3 pushed, a fake Discord (CAROL added as an approver), a daemon with Discord in
/// `mode` and `extra` config. The approvers are the members of the APPROVERS role unless
/// `extra` has its own `[approvals]`.
pub(crate) fn world(mode: &str, extra: &str) -> World {
    world_with(mode, extra, |_| {})
}

/// [`world`], with the fake Discord changed by `prepare` before the daemon starts.
pub(crate) fn world_with(mode: &str, extra: &str, prepare: impl FnOnce(&FakeDiscord)) -> World {
    world_keyed(mode, extra, &http::public_key_hex(), None, prepare)
}

/// [`world_with`], with the application's `public_key` and the daemon's clock starting at
/// `clock` (Unix seconds; now when `None`).
pub(crate) fn world_keyed(
    mode: &str,
    extra: &str,
    public_key: &str,
    clock: Option<i64>,
    prepare: impl FnOnce(&FakeDiscord),
) -> World {
    let ci = Ci::new();
    for version in ["v1", "v2", "v3"] {
        ci.build(version);
    }
    let v2 = crate::support::block_on(ci.seeder.digest_of("acme/app", "v2")).expect("v2");
    let discord = FakeDiscord::start();
    discord.add_member(GUILD, CAROL, "carol", &[APPROVERS]);
    prepare(&discord);
    let home = ci.cli.home.path();
    let db = home.join("state/rollbot.db");
    let toml = format!(
        r#"
[registries."{host}"]
insecure = true

[images.app]
image = "{host}/acme/app"

[store]
path = "{db}"

[server]
listen = "127.0.0.1:0"

{approvals}
{section}
{extra}
"#,
        host = ci.registry.host,
        db = db.display(),
        section = discord_section(&discord, home, mode, public_key),
        approvals = if extra.contains("[approvals]") {
            String::new()
        } else {
            format!("[approvals]\napprovers = [\"group:{APPROVERS}\"]\n")
        },
    );
    let daemon = match clock {
        Some(seconds) => {
            let start = rollbot::domain::rollback::Timestamp(seconds * 1000);
            let clock = std::sync::Arc::new(rollbot::engine::ManualClock::new(start));
            TestDaemon::start_with_clock(&toml, &db, clock)
        }
        None => TestDaemon::start(&toml, &db),
    };
    World {
        ci,
        discord,
        daemon,
        v2,
    }
}

/// Everything a message or payload says, for `contains` checks: its JSON with Discord's
/// markdown escapes read back (`rb\\-1` is what shows as `rb-1`).
pub(crate) fn text_of(value: &Value) -> String {
    match value {
        Value::String(s) => plain(s),
        Value::Object(o) if o.contains_key("content") => {
            plain(o["content"].as_str().unwrap_or_default())
        }
        other => plain(&other.to_string()),
    }
}

/// Content as it shows in Discord: a backslash before ASCII punctuation is an escape, a
/// zero-width space is invisible.
pub(crate) fn plain(content: &str) -> String {
    let mut out = String::with_capacity(content.len());
    let mut chars = content.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' if chars.peek().is_some_and(char::is_ascii_punctuation) => {
                out.extend(chars.next());
            }
            '\u{200b}' => {}
            c => out.push(c),
        }
    }
    out
}

/// Whether a message's content shows `expect`.
fn shows(message: &Value, expect: &str) -> bool {
    message["content"]
        .as_str()
        .is_some_and(|c| plain(c).contains(expect))
}

fn id_of(value: &Value) -> u64 {
    value
        .as_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not a snowflake: {value}"))
}

/// The `custom_id`s of a message's buttons.
fn buttons(message: &Value) -> Vec<String> {
    message["components"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|row| row["components"].as_array().cloned().unwrap_or_default())
        .filter_map(|b| b["custom_id"].as_str().map(str::to_owned))
        .collect()
}

impl World {
    /// Waits until the bot is connected and `/readyz` says ready.
    pub(crate) fn wait_ready(&self) {
        self.discord.wait_connected();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let (status, body) = self.daemon.get("/readyz");
            if status == 200 {
                return;
            }
            assert!(Instant::now() < deadline, "never ready: {body}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `/rollback <subcommand>` by `user` in the channel, over the Gateway; returns the
    /// interaction.
    pub(crate) fn command(&self, user: u64, subcommand: &str, options: &[(&str, &str)]) -> Value {
        let interaction = self.discord.command(user, CHANNEL, subcommand, options);
        self.discord.dispatch_interaction(&interaction);
        interaction
    }

    /// The text the person who ran a command got back in the deferred (ephemeral) response.
    pub(crate) fn answer(&self, interaction: &Value, what: &str, expect: &str) -> Value {
        let id = id_of(&interaction["id"]);
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(original) = self.discord.original(id) {
                if shows(&original, expect) {
                    return original;
                }
            }
            if Instant::now() > deadline {
                panic!(
                    "{what}: no answer containing {expect:?}; response {:?}, original {:?}",
                    self.discord.response(id),
                    self.discord.original(id)
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// The ephemeral follow-up a button click got.
    pub(crate) fn followup(&self, interaction: &Value, expect: &str) -> Value {
        let id = id_of(&interaction["id"]);
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(f) = self
                .discord
                .followups(id)
                .into_iter()
                .find(|f| shows(f, expect))
            {
                return f;
            }
            assert!(
                Instant::now() < deadline,
                "no follow-up containing {expect:?}: {:?}",
                self.discord.followups(id)
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// ALICE requests a rollback of `app` by the request subcommand; returns the plan
    /// message's id.
    pub(crate) fn request(&self) -> u64 {
        let interaction = self.command(
            ALICE,
            "request",
            &[("image", "app"), ("reason", "app v3 crashes on start")],
        );
        let answer = self.answer(&interaction, "the request", "rb-1");
        assert_eq!(answer["flags"].as_u64().unwrap_or(0) & 64, 64, "{answer}");
        self.plan()
    }

    /// The plan message (the first visible message in the channel).
    pub(crate) fn plan(&self) -> u64 {
        self.discord
            .wait_until("the plan is posted", |d| !d.messages(CHANNEL).is_empty());
        id_of(&self.discord.messages(CHANNEL)[0]["id"])
    }

    /// `user` clicks the plan's button whose custom id starts with `action`.
    pub(crate) fn click(&self, user: u64, plan: u64, action: &str) -> Value {
        let message = self.discord.message(plan);
        let custom_id = buttons(&message)
            .into_iter()
            .find(|b| b.starts_with(action))
            .unwrap_or_else(|| panic!("no {action} button on {message}"));
        let interaction = self.discord.click(user, plan, &custom_id);
        self.discord.dispatch_interaction(&interaction);
        interaction
    }

    /// The thread's messages (the thread's id is the plan's).
    pub(crate) fn thread_messages(&self, plan: u64) -> Vec<Value> {
        self.discord.messages(plan)
    }

    /// Waits for a thread reply containing `expect`.
    pub(crate) fn wait_thread(&self, plan: u64, expect: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(m) = self
                .thread_messages(plan)
                .into_iter()
                .find(|m| shows(m, expect))
            {
                return m;
            }
            assert!(
                Instant::now() < deadline,
                "no thread reply containing {expect:?}: {:?}",
                self.thread_messages(plan)
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Waits until the plan message says `expect`.
    pub(crate) fn wait_plan(&self, plan: u64, expect: &str) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while !plain(&self.discord.content(plan)).contains(expect) {
            assert!(
                Instant::now() < deadline,
                "the plan never said {expect:?}: {}",
                self.discord.content(plan)
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// The reply in the plan's thread containing `expect` was sent allowed to ping exactly
    /// `users` (and no one else: no roles, no @everyone).
    pub(crate) fn assert_pings(&self, plan: u64, expect: &str, users: &[u64]) {
        let sent = self
            .discord
            .calls_to(&format!("POST /channels/{plan}/messages"))
            .into_iter()
            .find(|c| shows(&c.body, expect))
            .unwrap_or_else(|| panic!("no reply {expect:?} was sent"));
        let users: Vec<String> = users.iter().map(ToString::to_string).collect();
        assert_eq!(
            sent.body["allowed_mentions"],
            json!({ "parse": [], "users": users, "roles": [], "replied_user": false }),
            "{}",
            sent.body
        );
    }

    pub(crate) fn latest(&self) -> String {
        crate::support::block_on(self.ci.seeder.digest_of("acme/app", "latest")).expect("latest")
    }

    pub(crate) fn wait_rolled_back(&self, plan: u64) {
        self.wait_plan(plan, "rolled back");
        let done = self.wait_thread(plan, "rb-1 done.");
        assert!(
            shows(&done, &format!("<@{ALICE}>")),
            "the done reply mentions the requester: {done}"
        );
        self.assert_pings(plan, "rb-1 done.", &[ALICE]);
        assert_eq!(self.latest(), self.v2);
    }
}

mod flow;
mod http;
mod review;
mod together;
