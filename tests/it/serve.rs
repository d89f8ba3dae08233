//! `rollbot serve` as a process: loopback-only listening, and SIGTERM draining a running
//! rollback.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::manifests::Ci;
use crate::support::block_on;
use crate::support::daemon::USERS;
use crate::support::registry::free_port;

fn serve_config(ci: &Ci, extra: &str) -> String {
    let db = ci.cli.home.path().join("serve.db");
    format!(
        "[registries.\"{host}\"]\ninsecure = true\n\n[images.app]\nimage = \"{host}/acme/app\"\n{extra}\n[store]\npath = \"{}\"\n{USERS}\n",
        db.display(),
        host = ci.registry.host
    )
}

struct Served {
    child: Child,
    base: String,
    http: reqwest::Client,
}

impl Served {
    fn start(config_path: &std::path::Path, home: &std::path::Path) -> Served {
        let port = free_port();
        let child = Command::new(env!("CARGO_BIN_EXE_rollbot"))
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("HOME", home)
            .arg("--config")
            .arg(config_path)
            .arg("serve")
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start rollbot serve");
        let served = Served {
            child,
            base: format!("http://127.0.0.1:{port}"),
            http: reqwest::Client::new(),
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while block_on(served.http.get(format!("{}/healthz", served.base)).send()).is_err() {
            assert!(Instant::now() < deadline, "rollbot serve did not come up");
            std::thread::sleep(Duration::from_millis(20));
        }
        served
    }

    fn post(&self, path: &str, body: serde_json::Value) -> serde_json::Value {
        block_on(async {
            self.http
                .post(format!("{}{path}", self.base))
                .json(&body)
                .send()
                .await
                .expect("answer")
                .json()
                .await
                .expect("json")
        })
    }

    fn channel(&self) -> String {
        block_on(async {
            self.http
                .get(format!("{}/console/api/state?user=bob", self.base))
                .send()
                .await
                .expect("answer")
                .text()
                .await
                .expect("text")
        })
    }

    fn wait_for(&self, what: &str, needle: &str) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !self.channel().contains(needle) {
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}:\n{}",
                self.channel()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Sends SIGTERM and waits for the exit; returns (exit code, stderr).
    fn terminate(mut self) -> (i32, String) {
        let status = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status()
            .expect("kill");
        assert!(status.success());
        let output = std::mem::replace(
            &mut self.child,
            Command::new("true").spawn().expect("placeholder"),
        )
        .wait_with_output()
        .expect("wait");
        (
            output.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&output.stderr).into_owned(),
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
fn sigterm_stops_intake_and_lets_the_running_rollback_finish() {
    let ci = Ci::new();
    for version in ["v1", "v2", "v3"] {
        ci.build(version);
    }
    let v2 = block_on(ci.seeder.digest_of("acme/app", "v2")).expect("v2");
    let slow = "[[images.app.checks]]\nname = \"takes-a-second\"\ncommand = [\"sleep\", \"1\"]\n";
    let path = ci.cli.home.path().join("serve.toml");
    std::fs::write(&path, serve_config(&ci, slow)).expect("config");
    let served = Served::start(&path, ci.cli.home.path());
    let requested = served.post(
        "/console/api/command",
        serde_json::json!({ "user": "alice", "text": "/rollback app" }),
    );
    assert_eq!(requested["ok"], true, "{requested}");
    let approved = served.post(
        "/console/api/action",
        serde_json::json!({ "user": "bob", "action": "approve:rb-1" }),
    );
    assert_eq!(approved["ok"], true, "{approved}");
    served.wait_for("the health check to start", "✓ verify");

    let (code, stderr) = served.terminate();
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains("waiting for running rollbacks"), "{stderr}");
    assert!(
        stderr.contains("Rollback finished"),
        "the running rollback finished: {stderr}"
    );
    assert!(stderr.contains("rollbot stopped cleanly."), "{stderr}");
    assert_eq!(ci.latest().as_deref(), Some(v2.as_str()));
    let gate = ci.cli.run(&["gate", &ci.image()]);
    assert_eq!(
        gate.code, 1,
        "the hold was written before exit: {}",
        gate.stderr
    );
}

#[test]
fn serve_refuses_non_loopback_addresses_unless_allowed() {
    let ci = Ci::new();
    let path = ci.cli.home.path().join("serve.toml");
    std::fs::write(
        &path,
        serve_config(&ci, "").replace("[store]", "[server]\nlisten = \"0.0.0.0:8080\"\n\n[store]"),
    )
    .expect("config");
    let run = crate::support::Cli::new().run(&["--config", &path.display().to_string(), "serve"]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(run.stderr.contains("server.listen: 0.0.0.0:8080 is not a loopback address; set server.allow_non_loopback = true"), "{}", run.stderr);

    std::fs::write(&path, serve_config(&ci, "")).expect("config");
    let run = crate::support::Cli::new().run(&[
        "--config",
        &path.display().to_string(),
        "serve",
        "--listen",
        "0.0.0.0:0",
    ]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(
        run.stderr.contains("is not a loopback address"),
        "{}",
        run.stderr
    );
}

#[test]
fn serve_refuses_configs_that_could_never_work_with_exit_2_and_json_when_logs_are_json() {
    let ci = Ci::new();
    let path = ci.cli.home.path().join("serve.toml");
    let config = path.display().to_string();
    for (extra, env, expected) in [
        (
            "",
            &[("ROLLBOT__APPROVALS__EXPIRY", "8000y")][..],
            "approvals.expiry: '8000y' is out of range: between 10s and 7days",
        ),
        (
            "",
            &[("ROLLBOT__LOG__LEVEL", "nonsense")][..],
            "log.level: 'nonsense' is not a log filter",
        ),
        (
            "approvers = []\n",
            &[][..],
            "images.app.approvers: rollbacks of app could never be approved: no approvers are configured",
        ),
        (
            "approvers = [\"bob\"]\nrequired_approvals = 2\n",
            &[][..],
            "2 approvals are required but only 1 person could ever approve",
        ),
    ] {
        std::fs::write(&path, serve_config(&ci, extra)).expect("config");
        let mut cli = crate::support::Cli::new();
        for (key, value) in env {
            cli = cli.env(key, value);
        }
        let run = cli.run(&["--config", &config, "serve"]);
        assert_eq!(run.code, 2, "{expected}: {}", run.stderr);
        assert!(run.stderr.contains(expected), "{expected}: {}", run.stderr);

        // The same with JSON logs: one JSON object per line, the problem in it.
        let run = cli
            .env("ROLLBOT__LOG__FORMAT", "json")
            .run(&["--config", &config, "serve"]);
        assert_eq!(run.code, 2, "{expected}: {}", run.stderr);
        let lines: Vec<serde_json::Value> = run
            .stderr
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
            .collect();
        assert!(
            lines
                .iter()
                .any(|l| l["level"] == "ERROR" && l.to_string().contains(expected)),
            "{expected}: {}",
            run.stderr
        );
    }
}

#[test]
fn json_log_lines_about_a_rollback_carry_its_id_and_image() {
    let ci = Ci::new();
    for version in ["v1", "v2", "v3"] {
        ci.build(version);
    }
    let path = ci.cli.home.path().join("serve.toml");
    std::fs::write(&path, serve_config(&ci, "\n[log]\nformat = \"json\"\n")).expect("config");
    let served = Served::start(&path, ci.cli.home.path());
    let requested = served.post(
        "/console/api/command",
        serde_json::json!({ "user": "alice", "text": "/rollback app" }),
    );
    assert_eq!(requested["ok"], true, "{requested}");
    let approved = served.post(
        "/console/api/action",
        serde_json::json!({ "user": "bob", "action": "approve:rb-1" }),
    );
    assert_eq!(approved["ok"], true, "{approved}");
    served.wait_for("the rollback", "rb-1 done.");
    let (code, stderr) = served.terminate();
    assert_eq!(code, 0, "{stderr}");

    let lines: Vec<serde_json::Value> = stderr
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    // The pipeline's line (in the engine's task) and the engine's own.
    for message in ["Tag moved.", "Rollback finished."] {
        let line = lines
            .iter()
            .find(|l| l["fields"]["message"] == message)
            .unwrap_or_else(|| panic!("no {message:?} line in:\n{stderr}"));
        assert_eq!(line["span"]["name"], "rollback", "{line}");
        assert_eq!(line["span"]["rollback_id"], "rb-1", "{line}");
        assert_eq!(line["span"]["image"], ci.image().as_str(), "{line}");
    }
}
