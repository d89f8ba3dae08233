//! Test support: a real registry per test, image seeding, a misbehaving proxy, and a runner for
//! the built `rollbot` binary with an isolated environment.

pub mod browser;
pub mod daemon;
pub mod discord;
pub mod discord_payloads;
pub mod images;
pub mod postgres;
pub mod proxy;
pub mod records;
pub mod registry;
pub mod services;
pub mod slack;
pub mod slack_payloads;
pub mod workflows;

use std::future::Future;
use std::path::PathBuf;
use std::process::Command;

/// Runs a future on a fresh current-thread runtime (tests stay plain `#[test]` functions).
pub fn block_on<F: Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(future)
}

/// A thread running an axum app on 127.0.0.1 (a free port), for the loopback fakes of
/// services; stopped on drop.
pub struct HttpServer {
    /// `http://127.0.0.1:<port>`
    pub base: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl HttpServer {
    pub fn start(app: axum::Router) -> HttpServer {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.set_nonblocking(true).expect("nonblocking");
        let base = format!("http://{}", listener.local_addr().expect("addr"));
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
                let _ = axum::serve(listener, app)
                    .with_graceful_shutdown(async {
                        let _ = stopped.await;
                    })
                    .await;
            });
        });
        HttpServer {
            base,
            stop: Some(stop),
            thread: Some(thread),
        }
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// What one run of the binary did.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| {
            panic!(
                "stdout is not JSON ({e}):\n{}\nstderr:\n{}",
                self.stdout, self.stderr
            )
        })
    }

    /// The `error: …` lines on stderr.
    pub fn errors(&self) -> Vec<&str> {
        self.stderr
            .lines()
            .filter(|l| l.starts_with("error"))
            .collect()
    }
}

/// A sandbox for the binary: its own HOME (no stray Docker credentials), an optional config.
#[derive(Debug)]
pub struct Cli {
    pub home: tempfile::TempDir,
    config: Option<PathBuf>,
    env: Vec<(String, String)>,
}

impl Cli {
    pub fn new() -> Cli {
        Cli {
            home: tempfile::tempdir().expect("home"),
            config: None,
            env: Vec::new(),
        }
    }

    /// Writes `toml` as the config file passed with `--config`.
    pub fn config(mut self, toml: &str) -> Cli {
        let path = self.home.path().join("rollbot.toml");
        std::fs::write(&path, toml).expect("write config");
        self.config = Some(path);
        self
    }

    pub fn env(mut self, key: &str, value: &str) -> Cli {
        self.env.push((key.to_owned(), value.to_owned()));
        self
    }

    pub fn run(&self, args: &[&str]) -> Run {
        let mut command = Command::new(env!("CARGO_BIN_EXE_rollbot"));
        command
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("HOME", self.home.path())
            .stdin(std::process::Stdio::null());
        for (key, value) in &self.env {
            command.env(key, value);
        }
        if let Some(config) = &self.config {
            command.arg("--config").arg(config);
        }
        let output = command.args(args).output().expect("run rollbot");
        Run {
            code: output.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }
}
