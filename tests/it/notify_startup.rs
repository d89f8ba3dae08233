//! Startup with GitHub and Docker Hub: their checks run while the HTTP port already answers,
//! `/readyz` says what is pending, and a fatal answer stops `rollbot serve` with the fix. The
//! fakes, registry and config are `notify`'s [`World`].

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::notify::{World, OWNER_TEXT};
use crate::support::block_on;
use crate::support::registry::free_port;
use crate::support::services::{wait_until, HUB_TOKEN};

/// `rollbot serve` as a process, with a world's config, on a free port; its log goes to a file.
struct Served {
    child: Child,
    base: String,
    log: std::path::PathBuf,
}

impl Served {
    fn start(world: &World, toml: &str) -> Served {
        let home = world.ci.cli.home.path();
        let config = home.join("serve.toml");
        std::fs::write(&config, toml).expect("config");
        let log = home.join(format!("serve-{}.log", free_port()));
        let port = free_port();
        let child = Command::new(env!("CARGO_BIN_EXE_rollbot"))
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("HOME", home)
            .arg("--config")
            .arg(&config)
            .arg("serve")
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log file"))
            .spawn()
            .expect("start rollbot serve");
        Served {
            child,
            base: format!("http://127.0.0.1:{port}"),
            log,
        }
    }

    /// (status, body) of a GET, waiting (up to 10 s) for the port to answer; `None` if the
    /// process ended first.
    fn get(&mut self, path: &str) -> Option<(u16, String)> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let answer = block_on(async {
                let response = reqwest::get(format!("{}{path}", self.base)).await.ok()?;
                let status = response.status().as_u16();
                Some((status, response.text().await.unwrap_or_default()))
            });
            if answer.is_some() || self.child.try_wait().ok().flatten().is_some() {
                return answer;
            }
            assert!(
                Instant::now() < deadline,
                "rollbot serve did not answer {path}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits (up to 20 s) for the process to end by itself; (exit code, log).
    fn wait_for_exit(mut self) -> (i32, String) {
        let deadline = Instant::now() + Duration::from_secs(20);
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                break status;
            }
            assert!(
                Instant::now() < deadline,
                "rollbot serve is still running:\n{}",
                std::fs::read_to_string(&self.log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        (
            status.code().unwrap_or(-1),
            std::fs::read_to_string(&self.log).unwrap_or_default(),
        )
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn wrong_docker_hub_credentials_or_a_missing_category_stop_rollbot_serve_with_the_fix() {
    let world = World::new(OWNER_TEXT, 4);
    let home = world.ci.cli.home.path();
    std::fs::write(home.join("hub-token"), "dckr_pat_wrong").expect("token");
    let (code, stderr) = Served::start(&world, &world.toml).wait_for_exit();
    assert_ne!(code, 0, "{stderr}");
    assert!(
        stderr.contains("Docker Hub rejected the credentials of acmebot (401)"),
        "{stderr}"
    );

    // GitHub answers only when the test lets it: the port is open meanwhile, /readyz says what
    // is pending, and the answer (no such category) then stops rollbot as it would have at
    // startup.
    std::fs::write(home.join("hub-token"), HUB_TOKEN).expect("token");
    let hold = world.github.hold_next("RollbotRepository");
    let toml = world
        .toml
        .replace("category = \"Announcements\"", "category = \"Incidents\"");
    let mut served = Served::start(&world, &toml);
    hold.wait_until_arrived("GitHub's first call");
    assert_eq!(served.get("/healthz"), Some((200, "ok\n".to_owned())));
    assert!(
        hold.open(),
        "the port answered while rollbot still waited for GitHub"
    );
    let (status, body) = served.get("/readyz").expect("/readyz answers");
    assert_eq!(status, 503, "{body}");
    assert!(
        body.contains("github: resolving the repository and its Discussion category"),
        "{body}"
    );
    hold.release();
    let (code, stderr) = served.wait_for_exit();
    assert_ne!(code, 0, "{stderr}");
    assert!(stderr.contains("acme/app has no Discussion category named 'Incidents' (it has: Announcements, General)"), "{stderr}");
}

#[test]
fn the_http_port_opens_before_github_answers_and_readyz_says_what_is_pending() {
    let world = World::new(OWNER_TEXT, 4);
    let hold = world.github.hold_next("RollbotRepository");
    let daemon = world.daemon();
    hold.wait_until_arrived("GitHub's first call");
    assert_eq!(daemon.get("/healthz"), (200, "ok\n".to_owned()));
    assert!(
        hold.open(),
        "the port answered while rollbot still waited for GitHub"
    );
    let (status, body) = daemon.get("/readyz");
    assert_eq!(status, 503, "{body}");
    assert!(
        body.contains("github: resolving the repository and its Discussion category…"),
        "{body}"
    );
    // The console works meanwhile.
    let (ok, reply) = daemon.say("alice", "/rollback app:v2 v3 crashes on start");
    assert!(ok, "{reply}");

    hold.release();
    wait_until("/readyz to turn ready", || {
        (daemon.get("/readyz") == (200, "ready\n".to_owned())).then_some(())
    });
    assert_eq!(
        world.github.requests("RollbotRepository"),
        1,
        "the held call itself was answered (no timeout and retry)"
    );
}
