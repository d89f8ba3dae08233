//! `spawn_daemon()`: the real daemon in-process on 127.0.0.1 port 0, with a manual clock, driven
//! through the console's HTTP API like a person at the console would.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rollbot::daemon::{Daemon, DaemonOptions};
use rollbot::engine::{EngineOptions, ManualClock};

/// A daemon running on its own runtime.
pub struct TestDaemon {
    pub runtime: tokio::runtime::Runtime,
    pub daemon: Option<Daemon>,
    pub clock: Arc<ManualClock>,
    pub base: String,
    pub db: PathBuf,
    http: reqwest::Client,
}

/// Console users every test config has: alice (requester), bob (approver), carol (approver
/// through group sre), dave (not an approver).
pub const USERS: &str = r#"
[approvals]
approvers = ["bob", "group:sre"]

[[console.users]]
id = "alice"
name = "Alice"

[[console.users]]
id = "bob"
name = "Bob"

[[console.users]]
id = "carol"
name = "Carol"
groups = ["sre"]

[[console.users]]
id = "dave"
name = "Dave"
"#;

/// A console message's model, as the console's API serves it.
fn message(console_message: &serde_json::Value) -> rollbot::chat::Message {
    serde_json::from_value(console_message["message"].clone()).expect("a console message")
}

/// A config for `image` (host/repo) as alias `app`, state in `db`.
pub fn config(registry_host: &str, db: &Path, extra: &str) -> String {
    config_through(registry_host, None, db, extra)
}

/// [`config`], with the registry reached through `endpoint` (a fault proxy) when given.
pub fn config_through(
    registry_host: &str,
    endpoint: Option<&str>,
    db: &Path,
    extra: &str,
) -> String {
    let endpoint = endpoint
        .map(|e| format!("endpoint = \"{e}\"\n"))
        .unwrap_or_default();
    format!(
        "[registries.\"{registry_host}\"]\ninsecure = true\n{endpoint}\n[images.app]\nimage = \"{registry_host}/acme/app\"\n\n[store]\npath = \"{}\"\n\n[server]\nlisten = \"127.0.0.1:0\"\nshutdown_grace = \"5s\"\n{USERS}\n{extra}\n",
        db.display()
    )
}

impl TestDaemon {
    /// Starts a daemon with `toml` (written next to `db`), clock at a fixed time.
    pub fn start(toml: &str, db: &Path) -> TestDaemon {
        // Real "now" (so audit timestamps make sense), then only moved by the test.
        let now = rollbot::engine::Clock::now(&rollbot::engine::SystemClock);
        TestDaemon::start_with_clock(toml, db, Arc::new(ManualClock::new(now)))
    }

    pub fn start_with_clock(toml: &str, db: &Path, clock: Arc<ManualClock>) -> TestDaemon {
        let path = db.with_extension("toml");
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).expect("state dir");
        }
        std::fs::write(&path, toml).expect("write config");
        if let Ok(level) = std::env::var("ROLLBOT_TEST_LOG") {
            rollbot::init_logging(&level, false);
        }
        let settings = rollbot::config::load(Some(&path), &HashMap::new())
            .unwrap_or_else(|e| panic!("test config is invalid: {e}"));
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        let options = DaemonOptions {
            clock: Arc::clone(&clock) as Arc<dyn rollbot::engine::Clock>,
            engine: EngineOptions {
                tick: Duration::from_millis(50),
            },
        };
        let daemon = runtime
            .block_on(rollbot::daemon::start(settings, options))
            .unwrap_or_else(|e| panic!("daemon did not start: {e:#}"));
        let base = format!("http://{}", daemon.addr);
        TestDaemon {
            runtime,
            daemon: Some(daemon),
            clock,
            base,
            db: db.to_path_buf(),
            http: reqwest::Client::new(),
        }
    }

    /// Types `text` at the console as `user`; returns (ok, reply).
    pub fn say(&self, user: &str, text: &str) -> (bool, String) {
        self.post(
            "/console/api/command",
            serde_json::json!({ "user": user, "text": text }),
        )
    }

    /// Clicks a button (`approve:rb-1`) as `user`.
    pub fn click(&self, user: &str, action: &str) -> (bool, String) {
        self.post(
            "/console/api/action",
            serde_json::json!({ "user": user, "action": action }),
        )
    }

    fn post(&self, path: &str, body: serde_json::Value) -> (bool, String) {
        let url = format!("{}{path}", self.base);
        let value: serde_json::Value = self.runtime.block_on(async {
            self.http
                .post(url)
                .json(&body)
                .send()
                .await
                .expect("console API answers")
                .json()
                .await
                .expect("console API JSON")
        });
        (
            value["ok"].as_bool().unwrap_or(false),
            value["reply"].as_str().unwrap_or_default().to_owned(),
        )
    }

    /// GET a path; (status, body).
    pub fn get(&self, path: &str) -> (u16, String) {
        let url = format!("{}{path}", self.base);
        self.runtime.block_on(async {
            let response = self.http.get(url).send().await.expect("answers");
            let status = response.status().as_u16();
            (status, response.text().await.unwrap_or_default())
        })
    }

    /// The console channel as `user` sees it.
    pub fn channel(&self, user: &str) -> Vec<serde_json::Value> {
        let (_, body) = self.get(&format!("/console/api/state?user={user}"));
        let value: serde_json::Value = serde_json::from_str(&body).expect("state JSON");
        value["messages"].as_array().cloned().unwrap_or_default()
    }

    /// The fallback text of every message everyone in the channel sees (in the canonical form:
    /// mentions as `<@id>`).
    pub fn public_lines(&self) -> Vec<String> {
        self.channel("bob")
            .iter()
            .filter(|m| m["only_for"].is_null())
            .map(|m| message(m).fallback.to_string())
            .collect()
    }

    /// All text of the channel as `user` sees it, each message in the canonical form
    /// ([`rollbot::chat::Message::to_text`]: mentions as `<@id>`, buttons as `[Label](action)`).
    pub fn channel_text(&self, user: &str) -> String {
        self.channel(user)
            .iter()
            .map(|m| message(m).to_text())
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// The status message header of the first status message (e.g. "Rollback rb-1 of app: rolled back").
    pub fn status_header(&self) -> Option<String> {
        self.channel("bob").iter().find_map(|m| {
            m["message"]["blocks"]
                .as_array()?
                .iter()
                .find(|b| b["type"] == "header")
                .and_then(|b| b["text"].as_str().map(str::to_owned))
        })
    }

    /// Waits (up to 10 s) until `condition` holds for the channel text.
    pub fn wait_for(&self, what: &str, condition: impl Fn(&str) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let text = self.channel_text("bob");
            if condition(&text) {
                return;
            }
            if Instant::now() > deadline {
                panic!("timed out waiting for {what}; channel:\n{text}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits (up to 10 s) until the engine has recorded where rollback `id`'s status message
    /// is. Only from then on is a reaction to that message recognised; a person cannot react
    /// sooner, but a test that reacts the moment the fake sees the post can.
    pub fn wait_status_recorded(&self, id: i64) {
        self.runtime.block_on(async {
            let store = rollbot::store::Store::open(&self.db).await.expect("store");
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                let record = store
                    .get(rollbot::domain::rollback::RollbackId(id))
                    .await
                    .expect("readable");
                if record.is_some_and(|r| r.status_ref.is_some()) {
                    return;
                }
                assert!(
                    Instant::now() < deadline,
                    "rollback {id}'s status message was never recorded"
                );
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        });
    }

    /// Graceful stop; returns whether the drain was clean.
    pub fn stop(mut self) -> bool {
        let daemon = self.daemon.take().expect("running");
        self.runtime.block_on(daemon.shutdown())
    }

    /// Stops without any shutdown code running, like `kill -9`: the runtime's tasks are
    /// dropped where they are. What the store committed stays.
    pub fn crash(mut self) {
        let daemon = self.daemon.take();
        std::mem::forget(daemon);
        // Leaking the daemon keeps its handles from running Drop logic; the runtime goes.
        let runtime = std::mem::replace(
            &mut self.runtime,
            tokio::runtime::Builder::new_current_thread()
                .build()
                .expect("rt"),
        );
        runtime.shutdown_background();
    }
}
