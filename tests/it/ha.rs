//! Two real `rollbot serve` processes on one real PostgreSQL, the real registry behind a
//! counting proxy, and the fake Slack: exactly one leads (ready, connected to chat), the other
//! stands by; a leader killed after an approval is replaced within about one lease TTL and the
//! rollback finishes with one PUT per tag; a leader paused mid-rollback (SIGSTOP) and resumed
//! after the takeover writes nothing, changes nothing and steps down.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::manifests::Ci;
use crate::support::block_on;
use crate::support::postgres;
use crate::support::proxy::{Proxy, Rule};
use crate::support::registry::free_port;
use crate::support::slack::FakeSlack;

const TTL: Duration = Duration::from_secs(2);

/// Console users; bob approves (no groups: the Slack self-check has none to look up). An
/// approval is good for `{expiry}`.
const PEOPLE: &str = r#"
[approvals]
approvers = ["bob"]
expiry = "{expiry}"

[console]
enabled = "on"

[[console.users]]
id = "alice"
name = "Alice"

[[console.users]]
id = "bob"
name = "Bob"
"#;

/// One `rollbot serve` process; its stderr goes to a file.
struct Replica {
    name: &'static str,
    child: Child,
    base: String,
    log: PathBuf,
    http: reqwest::Client,
}

impl Replica {
    fn start(name: &'static str, config: &Path, home: &Path) -> Replica {
        let port = free_port();
        let log = home.join(format!("{name}.log"));
        let child = Command::new(env!("CARGO_BIN_EXE_rollbot"))
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("HOME", home)
            .env("HOSTNAME", name)
            .arg("--config")
            .arg(config)
            .arg("serve")
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(File::create(&log).expect("log file"))
            .spawn()
            .expect("start rollbot serve");
        let replica = Replica {
            name,
            child,
            base: format!("http://127.0.0.1:{port}"),
            log,
            http: reqwest::Client::new(),
        };
        replica.wait("its HTTP server", Duration::from_secs(20), |r| {
            r.get("/healthz").0 == 200
        });
        replica
    }

    fn get(&self, path: &str) -> (u16, String) {
        block_on(async {
            match self.http.get(format!("{}{path}", self.base)).send().await {
                Ok(answer) => (
                    answer.status().as_u16(),
                    answer.text().await.unwrap_or_default(),
                ),
                Err(error) => (0, error.to_string()),
            }
        })
    }

    fn post(&self, path: &str, body: serde_json::Value) -> (u16, String) {
        block_on(async {
            let answer = self
                .http
                .post(format!("{}{path}", self.base))
                .json(&body)
                .send()
                .await
                .expect("an answer");
            (
                answer.status().as_u16(),
                answer.text().await.unwrap_or_default(),
            )
        })
    }

    fn say(&self, user: &str, text: &str) -> (u16, String) {
        self.post(
            "/console/api/command",
            serde_json::json!({ "user": user, "text": text }),
        )
    }

    fn click(&self, user: &str, action: &str) -> (u16, String) {
        self.post(
            "/console/api/action",
            serde_json::json!({ "user": user, "action": action }),
        )
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn wait(&self, what: &str, within: Duration, done: impl Fn(&Replica) -> bool) {
        let deadline = Instant::now() + within;
        while !done(self) {
            assert!(
                Instant::now() < deadline,
                "{}: timed out waiting for {what}; its log:\n{}",
                self.name,
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    fn signal(&self, signal: &str) {
        let sent = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.child.id().to_string())
            .status()
            .expect("kill");
        assert!(sent.success(), "kill -{signal}");
    }

    /// Waits (up to `within`) for the process to exit; its exit code.
    fn exit_code(&mut self, within: Duration) -> Option<i32> {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return Some(status.code().unwrap_or(-1));
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A registry with v1, v2, v3 pushed by CI (`latest` at v3), a proxy in front of it, a fresh
/// Postgres database, and the config both replicas share.
struct World {
    ci: Ci,
    proxy: Proxy,
    db: String,
    config: PathBuf,
    v2: String,
}

impl World {
    fn new(extra: &str) -> World {
        World::with_expiry("10m", extra)
    }

    /// [`World::new`] with approvals good for `expiry`.
    fn with_expiry(expiry: &str, extra: &str) -> World {
        let people = PEOPLE.replace("{expiry}", expiry);
        let ci = Ci::new();
        for version in ["v1", "v2", "v3"] {
            ci.build(version);
        }
        let v2 = block_on(ci.seeder.digest_of("acme/app", "v2")).expect("v2");
        let proxy = Proxy::start(&ci.registry.host, vec![]);
        let db = postgres::database();
        let config = ci.cli.home.path().join("replicas.toml");
        std::fs::write(
            &config,
            format!(
                "[registries.\"{host}\"]\ninsecure = true\nendpoint = \"{proxy}\"\n\n[images.app]\nimage = \"{host}/acme/app\"\n\n[store]\nurl = \"{db}\"\nlease_ttl = \"2s\"\n\n[server]\nshutdown_grace = \"5s\"\n{people}\n{extra}\n",
                host = ci.registry.host,
                proxy = proxy.host,
            ),
        )
        .expect("config");
        World {
            ci,
            proxy,
            db,
            config,
            v2,
        }
    }

    fn replica(&self, name: &'static str) -> Replica {
        Replica::start(name, &self.config, self.ci.cli.home.path())
    }

    /// Starts `a`, waits until it leads, then starts `b`, which must stand by.
    fn pair(&self) -> (Replica, Replica) {
        let a = self.replica("a");
        a.wait("a to lead and be ready", Duration::from_secs(20), |r| {
            r.get("/readyz").0 == 200
        });
        let b = self.replica("b");
        std::thread::sleep(TTL);
        let (status, text) = b.get("/readyz");
        assert_eq!(status, 503, "b stands by: {text}");
        assert!(text.starts_with("standby"), "{text}");
        assert_eq!(b.get("/healthz").0, 200, "a standby is alive");
        let (status, text) = b.get("/readyz/replica");
        assert_eq!(status, 200, "a standby can take over: {text}");
        (a, b)
    }

    fn sql(&self, query: &str) -> String {
        postgres::psql(&self.db, query).expect("psql")
    }

    fn state_of_first_rollback(&self) -> String {
        self.sql("SELECT state FROM rollbacks ORDER BY id LIMIT 1")
    }

    fn puts_of(&self, tag: &str) -> usize {
        let line = format!("PUT /v2/acme/app/manifests/{tag}");
        self.proxy.seen().iter().filter(|l| **l == line).count()
    }

    /// Requests a rollback of `app` on `leader`, then delays the answer to the first `HEAD` of
    /// `latest` after bob's approval (the re-plan, before any write) for `hold`, and returns
    /// once that HEAD reached the proxy: the leader is mid-rollback, nothing written yet.
    fn approve_and_catch_before_the_first_write(&self, leader: &Replica, hold: Duration) {
        self.approve_and_hold(
            leader,
            Rule::DelayFirstAnswer {
                method: "HEAD",
                suffix: "/manifests/latest".into(),
                delay: hold,
                used: Arc::new(AtomicBool::new(false)),
            },
        );
    }

    /// [`World::approve_and_catch_before_the_first_write`] with any rule for that HEAD.
    fn approve_and_hold(&self, leader: &Replica, rule: Rule) {
        let (status, text) = leader.say("alice", "/rollback app");
        assert_eq!(status, 200, "{text}");
        assert!(text.contains("\"ok\":true"), "{text}");
        let heads = |proxy: &Proxy| {
            proxy
                .seen()
                .iter()
                .filter(|l| l.as_str() == "HEAD /v2/acme/app/manifests/latest")
                .count()
        };
        let before = heads(&self.proxy);
        self.proxy.set_rules(vec![rule]);
        let (status, text) = leader.click("bob", "approve:rb-1");
        assert_eq!(status, 200, "{text}");
        let deadline = Instant::now() + Duration::from_secs(10);
        while heads(&self.proxy) == before {
            assert!(Instant::now() < deadline, "the leader never re-planned");
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(self.puts_of("latest"), 0, "nothing written yet");
    }

    fn wait_for_state(&self, state: &str, within: Duration) {
        let deadline = Instant::now() + within;
        while self.state_of_first_rollback() != state {
            assert!(
                Instant::now() < deadline,
                "the rollback is {}, not {state}; audit:\n{}",
                self.state_of_first_rollback(),
                self.sql("SELECT kind, detail FROM audit ORDER BY seq")
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

#[test]
fn exactly_one_replica_leads_and_only_it_connects_to_chat_and_takes_commands() {
    let slack = FakeSlack::start();
    let home = tempfile::tempdir().expect("dir");
    std::fs::write(home.path().join("bot"), "xoxb-test-bot-token").expect("write");
    std::fs::write(home.path().join("app"), "xapp-test-app-token").expect("write");
    let world = World::new(&format!(
        "[slack]\nenabled = true\nbot_token_file = \"{}\"\napp_token_file = \"{}\"\napi_url = \"{}\"\nchannels = [\"C0RELEASES\"]\n",
        home.path().join("bot").display(),
        home.path().join("app").display(),
        slack.api_url()
    ));
    let (mut a, mut b) = world.pair();
    assert!(a.get("/metrics").1.contains("\nrollbot_leader 1\n"));
    assert!(b.get("/metrics").1.contains("\nrollbot_leader 0\n"));
    std::thread::sleep(TTL * 2);
    assert_eq!(
        slack.connections_opened(),
        1,
        "only the leader holds a Socket Mode connection"
    );
    assert_eq!(b.get("/readyz").0, 503, "still standing by after renewals");

    // The same request on both at once: the leader takes it, the standby refuses it.
    let (on_a, on_b) = std::thread::scope(|s| {
        let on_a = s.spawn(|| a.say("alice", "/rollback app"));
        let on_b = s.spawn(|| b.say("alice", "/rollback app"));
        (on_a.join().expect("a"), on_b.join().expect("b"))
    });
    assert_eq!(on_a.0, 200, "{on_a:?}");
    assert!(on_a.1.contains("\"ok\":true"), "{on_a:?}");
    assert_eq!(on_b.0, 503, "{on_b:?}");
    assert!(on_b.1.starts_with("standby"), "{on_b:?}");
    assert_eq!(world.sql("SELECT count(*) FROM rollbacks"), "1");
    assert_eq!(
        world.sql("SELECT count(*) FROM audit WHERE kind = 'leader'"),
        "1",
        "the leader's election is audited"
    );

    // A clean stop of the leader gives the lease up: the standby leads without waiting for
    // the lease to run out, and connects to Slack in its turn.
    a.signal("TERM");
    assert_eq!(
        a.exit_code(Duration::from_secs(15)),
        Some(0),
        "{}",
        a.stderr()
    );
    assert!(
        a.stderr().contains("Gave the leader lease up."),
        "{}",
        a.stderr()
    );
    b.wait("b to lead", TTL * 4, |r| r.get("/readyz").0 == 200);
    slack.wait_until("b's Socket Mode connection", |s| {
        s.connections_opened() == 2
    });
    // A standby stopping leaves the leader's rollbacks alone and exits 0 too.
    let mut c = world.replica("c");
    assert_eq!(c.get("/readyz").0, 503);
    c.signal("TERM");
    assert_eq!(
        c.exit_code(Duration::from_secs(15)),
        Some(0),
        "{}",
        c.stderr()
    );
    b.signal("TERM");
    assert_eq!(
        b.exit_code(Duration::from_secs(15)),
        Some(0),
        "{}",
        b.stderr()
    );
}

#[test]
fn a_leader_killed_after_an_approval_is_replaced_and_the_rollback_runs_once() {
    let world = World::new("");
    let (mut a, b) = world.pair();
    world.approve_and_catch_before_the_first_write(&a, Duration::from_secs(30));

    a.signal("KILL");
    let killed = Instant::now();
    assert!(a.exit_code(Duration::from_secs(5)).is_some(), "a is gone");
    b.wait("b to take over", TTL * 4, |r| r.get("/readyz").0 == 200);
    let took_over = killed.elapsed();
    world.wait_for_state("succeeded", Duration::from_secs(20));
    let finished = killed.elapsed();
    eprintln!("takeover after {took_over:?}, rollback done after {finished:?}");

    assert_eq!(world.puts_of("latest"), 1, "{:#?}", world.proxy.seen());
    assert_eq!(world.ci.latest().as_deref(), Some(world.v2.as_str()));
    let gate = world.ci.cli.run(&["gate", &world.ci.image()]);
    assert_eq!(gate.code, 1, "the new leader set the hold: {}", gate.stderr);
    assert!(
        b.stderr().contains("This replica leads now."),
        "{}",
        b.stderr()
    );
    let leaders = world.sql("SELECT detail FROM audit WHERE kind = 'leader' ORDER BY seq");
    assert_eq!(leaders.lines().count(), 2, "{leaders}");
    assert!(
        leaders
            .lines()
            .nth(1)
            .is_some_and(|l| l.contains("\"previous\":\"a:")),
        "b took over from a: {leaders}"
    );
    let reconciled = world.sql("SELECT detail FROM audit WHERE kind = 'reconcile'");
    assert!(reconciled.contains("resume"), "{reconciled}");
}

#[test]
fn a_leader_paused_mid_rollback_wakes_up_fenced_writes_nothing_and_steps_down() {
    let world = World::new("");
    let (mut a, b) = world.pair();
    world.approve_and_catch_before_the_first_write(&a, Duration::from_secs(6));

    a.signal("STOP");
    b.wait("b to take over", TTL * 4, |r| r.get("/readyz").0 == 200);
    world.wait_for_state("succeeded", Duration::from_secs(20));
    assert_eq!(world.puts_of("latest"), 1);
    let audit_before = world.sql("SELECT count(*) FROM audit");
    let seen_before = world.proxy.seen().len();

    // a wakes up: its held HEAD answers (the tag as it was before b's retag), and everything
    // it would do next is refused.
    a.signal("CONT");
    let code = a.exit_code(Duration::from_secs(20));
    let stderr = a.stderr();
    assert!(
        code.is_some_and(|c| c != 0),
        "the old leader exits non-zero ({code:?}):\n{stderr}"
    );
    assert!(stderr.contains("lost the leadership"), "{stderr}");
    let after: Vec<String> = world.proxy.seen()[seen_before..].to_vec();
    assert!(
        after.iter().all(|line| !line.starts_with("PUT ")
            && !line.starts_with("POST ")
            && !line.starts_with("DELETE ")),
        "the old leader wrote nothing: {after:#?}"
    );
    assert_eq!(world.puts_of("latest"), 1);
    assert_eq!(
        world.state_of_first_rollback(),
        "succeeded",
        "no transition"
    );
    let states =
        world.sql("SELECT detail FROM audit WHERE kind = 'state' AND rollback_id = 1 ORDER BY seq");
    assert!(
        !states.contains("failed") && !states.contains("interrupted"),
        "{states}"
    );
    let new_entries = world.sql(&format!(
        "SELECT kind FROM audit ORDER BY seq OFFSET {audit_before}"
    ));
    assert!(
        new_entries.lines().all(|kind| kind == "leader_lost"),
        "only the step-down is audited after the takeover: {new_entries}"
    );
    assert_eq!(world.ci.latest().as_deref(), Some(world.v2.as_str()));
    assert_eq!(b.get("/readyz").0, 200, "b still leads");
}

/// The case the registry's write gate is for: the new leader leaves the tags alone (the
/// approval went stale while the old leader was paused, so it marks the rollback interrupted),
/// and the old leader wakes up to an answer saying the tag is still where the plan saw it.
/// Without the gate it would now write `latest`; with it, every write is refused before it is
/// sent, and the record stays interrupted.
#[test]
fn a_paused_leader_whose_rollback_the_new_leader_left_alone_still_writes_nothing() {
    let world = World::with_expiry("10s", "");
    let mut a = world.replica("a");
    a.wait("a to lead", Duration::from_secs(20), |r| {
        r.get("/readyz").0 == 200
    });
    let release = Arc::new(AtomicBool::new(false));
    world.approve_and_hold(
        &a,
        Rule::HoldFirstAnswer {
            method: "HEAD",
            suffix: "/manifests/latest".into(),
            release: Arc::clone(&release),
            used: Arc::new(AtomicBool::new(false)),
        },
    );
    a.signal("STOP");
    let stopped = Instant::now();
    // The approval (10 s) goes stale while a is paused; only then does b start and lead.
    std::thread::sleep(Duration::from_secs(11).saturating_sub(stopped.elapsed()));
    let b = world.replica("b");
    b.wait("b to take over", TTL * 4, |r| r.get("/readyz").0 == 200);
    world.wait_for_state("interrupted", Duration::from_secs(20));
    let seen_before = world.proxy.seen().len();

    a.signal("CONT");
    std::thread::sleep(Duration::from_millis(300));
    release.store(true, std::sync::atomic::Ordering::SeqCst);
    let code = a.exit_code(Duration::from_secs(20));
    let stderr = a.stderr();
    assert!(code.is_some_and(|c| c != 0), "{code:?}:\n{stderr}");
    assert!(stderr.contains("lost the leadership"), "{stderr}");
    assert!(
        stderr.contains("was not sent to"),
        "the old leader tried to write and the gate refused it:\n{stderr}"
    );
    let after: Vec<String> = world.proxy.seen()[seen_before..].to_vec();
    assert!(
        after.iter().all(|line| !line.starts_with("PUT ")
            && !line.starts_with("POST ")
            && !line.starts_with("DELETE ")),
        "the old leader wrote nothing: {after:#?}"
    );
    assert_eq!(world.puts_of("latest"), 0, "{:#?}", world.proxy.seen());
    assert_eq!(world.state_of_first_rollback(), "interrupted");
    assert_ne!(world.ci.latest().as_deref(), Some(world.v2.as_str()));
}
