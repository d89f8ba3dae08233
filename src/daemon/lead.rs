//! What only the leader runs: the engine (with the restart reconciliation: a failover is a
//! restart on another host), the chat sinks and connections (Slack Socket Mode, the Discord
//! Gateway, their self-checks), and the notification outbox. With SQLite the one process starts
//! it before it listens; with Postgres a replica starts it once it wins the lease
//! (`daemon/leader.rs`), and a standby never connects to chat.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use anyhow::Context as _;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::SinkParts;
use crate::chat::console::Console;
use crate::chat::discord::config::DiscordMode;
use crate::chat::discord::Discord;
use crate::chat::slack::config::SlackMode;
use crate::chat::slack::socket::SocketMode;
use crate::chat::slack::Slack;
use crate::engine::{self, EngineOptions};
use crate::notify::Notifier;
use crate::vitals::Vitals;

/// Everything the leader starts, prepared by `daemon::start` (which constructs, but does not
/// connect).
pub(super) struct Leading {
    pub parts: engine::Parts,
    pub inbox: engine::Inbox,
    pub options: EngineOptions,
    pub shutdown: CancellationToken,
    pub tracker: TaskTracker,
    pub vitals: Arc<Vitals>,
    pub sinks: SinkParts,
    pub console: Option<(Arc<Console>, mpsc::Receiver<engine::Event>)>,
    pub slack: Option<(
        Arc<Slack>,
        mpsc::Receiver<crate::chat::slack::SlackInput>,
        mpsc::Receiver<engine::Event>,
    )>,
    pub discord: Option<(Arc<Discord>, mpsc::Receiver<engine::Event>)>,
    pub notifier: Option<(Arc<Notifier>, mpsc::Receiver<engine::Event>)>,
    /// Set once the engine runs (fault injection for tests).
    pub engine_abort: Arc<OnceLock<tokio::task::AbortHandle>>,
    /// Set once everything here has started: `/readyz` and the chat endpoints wait for it.
    pub serving: Arc<AtomicBool>,
}

impl std::fmt::Debug for Leading {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Leading").finish_non_exhaustive()
    }
}

impl Leading {
    /// Starts the engine (reconciling what a previous leader left running), the sinks, the chat
    /// connections and the outbox.
    ///
    /// # Errors
    /// The engine cannot start (the store), a chat platform refuses the token, a link cannot
    /// be set up.
    pub async fn begin(self) -> anyhow::Result<()> {
        let Leading {
            parts,
            inbox,
            options,
            shutdown,
            tracker,
            vitals,
            sinks,
            console,
            slack,
            discord,
            notifier,
            engine_abort,
            serving,
        } = self;
        let engine_task = engine::start(parts, inbox, options, shutdown.clone())
            .await
            .context("starting the engine")?;
        let _ = engine_abort.set(engine_task.abort_handle());
        vitals.watch(&tracker, "the engine", engine_task);
        if let Some((console, events)) = console {
            sinks.watch(console, events, "the console sink");
        }
        if let Some((slack, queue, events)) = slack {
            sinks.watch(Arc::clone(&slack), events, "the Slack sink");
            let worker = tokio::spawn(Arc::clone(&slack).run_inputs(queue, shutdown.clone()));
            vitals.watch(&tracker, "the Slack input worker", worker);
            if tokio::time::timeout(Duration::from_secs(15), slack.self_check())
                .await
                .is_err()
            {
                tracing::error!("The Slack self-check did not finish within 15 s.");
            }
            if slack.settings.mode == SlackMode::Socket {
                let link = SocketMode::start(Arc::clone(&slack), shutdown.clone())
                    .await
                    .map_err(|e| anyhow::anyhow!(e))?;
                vitals.watch(&tracker, "the Slack Socket Mode link", link);
            }
        }
        if let Some((discord, events)) = discord {
            sinks.watch(Arc::clone(&discord), events, "the Discord sink");
            let checked = tokio::time::timeout(Duration::from_secs(15), async {
                discord.check_token().await?;
                discord.self_check().await;
                Ok::<(), String>(())
            })
            .await;
            match checked {
                Ok(Ok(())) => {}
                Ok(Err(refused)) => anyhow::bail!(refused),
                Err(_) => tracing::error!("The Discord self-check did not finish within 15 s."),
            }
            if discord.settings.mode == DiscordMode::Gateway {
                let link = crate::chat::discord::gateway::start(Arc::clone(&discord))
                    .await
                    .map_err(|e| anyhow::anyhow!(e))?;
                let failed = Arc::clone(&vitals);
                let link = tokio::spawn(async move {
                    match link.await {
                        Ok(Ok(())) => {}
                        Ok(Err(why)) => failed.fail(why),
                        Err(error) => {
                            failed.fail(format!("the Discord Gateway link panicked: {error}"))
                        }
                    }
                });
                vitals.watch(&tracker, "the Discord Gateway link", link);
            }
        }
        if let Some((notifier, events)) = notifier {
            // The intake ends when the engine is gone (what it sent is in the outbox).
            let intake = tokio::spawn(Arc::clone(&notifier).run_intake(events));
            vitals.watch(&tracker, "the notification intake", intake);
            let delivery = tokio::spawn(Arc::clone(&notifier).run_delivery(shutdown.clone()));
            vitals.watch(&tracker, "the notification delivery", delivery);
            // Checked while the port is already open; a fatal answer ends the daemon.
            let check = Arc::clone(&notifier).check_services();
            let (vitals, stopping) = (Arc::clone(&vitals), shutdown.clone());
            tracker.spawn(async move {
                tokio::select! {
                    result = check => {
                        if let Err(message) = result {
                            vitals.fail(message);
                        }
                    }
                    () = stopping.cancelled() => {}
                }
            });
        }
        serving.store(true, Ordering::SeqCst);
        Ok(())
    }
}
