//! `rollbot serve`: wiring (store, engine, chat sinks, HTTP server), task tracking, and
//! graceful shutdown: stop intake, let running rollbacks finish within a deadline, say whether
//! the drain was clean. [`config`] composes the whole configuration it starts from.
//!
//! Shutdown is one mechanism: every task watches one cancellation token and is tracked by one
//! task tracker. Cancelling stops intake everywhere (HTTP, Slack, the engine's commands); the
//! engine lets running rollbacks finish within `server.shutdown_grace`; the sinks deliver what
//! the engine sent; the whole drain is bounded by `server.shutdown_grace` + [`DRAIN_MARGIN`],
//! and whatever is still running then (a sink stuck on a chat API) is left behind.

pub mod config;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use self::config::ServeSettings;
use crate::chat::console::config::ConsoleMode;
use crate::chat::console::Console;
use crate::chat::discord::config::DiscordMode;
use crate::chat::discord::Discord;
use crate::chat::run_sink;
use crate::chat::slack::config::SlackMode;
use crate::chat::slack::socket::SocketMode;
use crate::chat::slack::Slack;
use crate::config::Settings;
use crate::engine::{self, Clock, EngineHandle, EngineOptions};
use crate::metrics::Metrics;
use crate::registry::Registries;
use crate::server::{router, AppState};
use crate::store::Store;
use crate::vitals::Vitals;

/// How long the drain may go on after `server.shutdown_grace` (sinks delivering the last
/// events, the HTTP server finishing its answers).
pub const DRAIN_MARGIN: Duration = Duration::from_secs(5);

/// How the daemon is started; tests replace the clock and speed up the tick.
#[derive(Debug, Clone)]
pub struct DaemonOptions {
    pub clock: Arc<dyn Clock>,
    pub engine: EngineOptions,
}

impl Default for DaemonOptions {
    fn default() -> Self {
        DaemonOptions {
            clock: Arc::new(engine::SystemClock),
            engine: EngineOptions::default(),
        }
    }
}

/// A running daemon.
#[derive(Debug)]
pub struct Daemon {
    /// The address the HTTP server listens on (port 0 in the config picks a free one).
    pub addr: SocketAddr,
    pub engine: EngineHandle,
    pub console: Option<Arc<Console>>,
    pub slack: Option<Arc<Slack>>,
    pub discord: Option<Arc<Discord>>,
    pub started_at: Instant,
    settings: Arc<Settings>,
    store: Store,
    /// Cancelled at shutdown: every task stops taking work.
    shutdown: CancellationToken,
    /// Every task the daemon started.
    tracker: TaskTracker,
    engine_abort: tokio::task::AbortHandle,
    /// The tasks the daemon cannot run without; `/healthz` fails when one ends unexpectedly.
    pub vitals: Arc<Vitals>,
}

/// Starts everything and returns once the HTTP server listens.
///
/// # Errors
/// A store that cannot be opened, an address that cannot be bound, a console without users.
pub async fn start(settings: ServeSettings, options: DaemonOptions) -> anyhow::Result<Daemon> {
    let started_at = Instant::now();
    crate::install_crypto_provider();
    let ServeSettings {
        core,
        console: console_settings,
        slack: slack_settings,
        discord: discord_settings,
        notify: notify_settings,
    } = settings;
    let settings = Arc::new(core);
    let daemon_settings = &settings.daemon;
    let console_on = match console_settings.mode {
        ConsoleMode::Auto => slack_settings.is_none() && discord_settings.is_none(),
        ConsoleMode::On => true,
        ConsoleMode::Off => false,
    };
    if console_on && console_settings.users.is_empty() {
        anyhow::bail!(
            "the console is on but console.users is empty: add [[console.users]] entries (id, name, groups) or set console.enabled = \"off\""
        );
    }
    if console_on && !daemon_settings.listen.ip().is_loopback() {
        tracing::warn!(listen = %daemon_settings.listen, "The console has no login and is listening beyond loopback: anyone who reaches it can act as any console user. Put authentication in front, or set console.enabled = \"off\".");
    }
    if settings.images.is_empty() {
        tracing::warn!(
            "No images are configured ([images.<alias>]); every /rollback request will be refused."
        );
    }
    if daemon_settings.approvals.approvers.is_empty()
        && settings.images.values().all(|e| e.approvers.is_none())
    {
        tracing::warn!(
            "No approvers are configured (approvals.approvers); no rollback can be approved."
        );
    }
    let templates = Arc::new(
        crate::notify::templates::Templates::load(
            &notify_settings
                .templates
                .iter()
                .map(|(name, path)| (*name, path.as_path()))
                .collect::<Vec<_>>(),
        )
        .map_err(|problems| anyhow::anyhow!("templates:\n  {}", problems.join("\n  ")))?,
    );
    let store = Store::open(&daemon_settings.store_path)
        .await
        .with_context(|| format!("opening {}", daemon_settings.store_path.display()))?;
    let metrics = Arc::new(Metrics::default());
    let registries = Arc::new(Registries::new(Arc::clone(&settings)));
    let clock = Arc::clone(&options.clock);

    let console = console_on.then(|| {
        Arc::new(Console::new(
            console_settings.channel.clone(),
            console_settings.users.clone(),
            console_settings.history,
            Arc::clone(&clock),
        ))
    });
    let shutdown = CancellationToken::new();
    let tracker = TaskTracker::new();
    let vitals = Arc::new(Vitals::default());
    let (engine, inbox) = engine::channel();
    let slack = match &slack_settings {
        Some(slack_settings) => {
            let (slack, queue) = Slack::new(
                &settings,
                slack_settings.clone(),
                engine.clone(),
                Arc::clone(&metrics),
            )
            .map_err(|e| anyhow::anyhow!("setting up Slack: {e}"))?;
            Some((slack, queue))
        }
        None => None,
    };
    let discord = match discord_settings {
        Some(discord_settings) => Some(
            Discord::new(
                discord_settings,
                settings.images.keys().cloned().collect(),
                engine.clone(),
                Arc::clone(&metrics),
                Arc::clone(&clock),
                tracker.clone(),
                shutdown.clone(),
            )
            .map_err(|e| anyhow::anyhow!("setting up Discord: {e}"))?,
        ),
        None => None,
    };
    let mut sink_senders = Vec::new();
    let mut console_events = None;
    let mut slack_events = None;
    let mut discord_events = None;
    if console.is_some() {
        let (tx, rx) = mpsc::channel(1024);
        sink_senders.push(tx);
        console_events = Some(rx);
    }
    if slack.is_some() {
        let (tx, rx) = mpsc::channel(1024);
        sink_senders.push(tx);
        slack_events = Some(rx);
    }
    if discord.is_some() {
        let (tx, rx) = mpsc::channel(1024);
        sink_senders.push(tx);
        discord_events = Some(rx);
    }
    let notify_on = notify_settings.github.is_some() || notify_settings.dockerhub.is_some();
    let mut notify_events = None;
    if notify_on {
        let (tx, rx) = mpsc::channel(4096);
        sink_senders.push(tx);
        notify_events = Some(rx);
    }
    let parts = engine::Parts {
        settings: Arc::clone(&settings),
        store: store.clone(),
        registries: Arc::clone(&registries),
        clock: Arc::clone(&clock),
        metrics: Arc::clone(&metrics),
        sinks: sink_senders,
    };
    let engine_task = engine::start(parts, inbox, options.engine.clone(), shutdown.clone())
        .await
        .context("starting the engine")?;
    let engine_abort = engine_task.abort_handle();
    vitals.watch(&tracker, "the engine", engine_task);
    // Each chat platform's sink: engine events into its messages, watched like the engine.
    let sinks = SinkParts {
        engine: engine.clone(),
        clock: Arc::clone(&clock),
        rto: settings.rollback.rto,
        metrics: Arc::clone(&metrics),
        templates: Arc::clone(&templates),
        vitals: Arc::clone(&vitals),
        tracker: tracker.clone(),
    };
    if let (Some(console), Some(events)) = (&console, console_events) {
        sinks.watch(Arc::clone(console), events, "the console sink");
    }
    let slack = match (slack, slack_events) {
        (Some((slack, queue)), Some(events)) => {
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
            Some(slack)
        }
        _ => None,
    };
    if let (Some(discord), Some(events)) = (&discord, discord_events) {
        sinks.watch(Arc::clone(discord), events, "the Discord sink");
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
            let link = crate::chat::discord::gateway::start(Arc::clone(discord))
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
    let notifier = match notify_events {
        Some(events) => {
            // Retries are operational time, not the engine's (tests move the engine's clock by
            // hand; deliveries must still come due).
            let notifier = crate::notify::Notifier::new(
                Arc::clone(&settings),
                &notify_settings,
                store.clone(),
                Arc::new(engine::SystemClock),
                Arc::clone(&templates),
                engine.clone(),
                Arc::clone(&metrics),
            )
            .map_err(|e| anyhow::anyhow!(e))?;
            if let Some(notifier) = &notifier {
                // The intake ends when the engine is gone (what it sent is in the outbox).
                let intake = tokio::spawn(Arc::clone(notifier).run_intake(events));
                vitals.watch(&tracker, "the notification intake", intake);
                let delivery = tokio::spawn(Arc::clone(notifier).run_delivery(shutdown.clone()));
                vitals.watch(&tracker, "the notification delivery", delivery);
                // Checked while the port is already open; a fatal answer ends the daemon.
                let check = Arc::clone(notifier).check_services();
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
            notifier
        }
        None => None,
    };

    let listener = tokio::net::TcpListener::bind(daemon_settings.listen)
        .await
        .with_context(|| format!("listening on {}", daemon_settings.listen))?;
    let addr = listener
        .local_addr()
        .context("reading the listen address")?;
    let app = router(AppState {
        settings: Arc::clone(&settings),
        engine: engine.clone(),
        store: store.clone(),
        registries,
        metrics,
        console: console.clone(),
        slack: slack.clone(),
        discord: discord.clone(),
        notifier,
        vitals: Arc::clone(&vitals),
    });
    let stopping = shutdown.clone();
    let http = tokio::spawn(async move {
        if let Err(error) = axum::serve(listener, app)
            .with_graceful_shutdown(stopping.cancelled_owned())
            .await
        {
            tracing::error!(%error, "HTTP server failed.");
        }
    });
    vitals.watch(&tracker, "the HTTP server", http);
    tracing::info!(
        %addr,
        console = console.is_some(),
        ready_ms = started_at.elapsed().as_millis() as u64,
        "rollbot is serving."
    );
    Ok(Daemon {
        addr,
        engine,
        console,
        slack,
        discord,
        started_at,
        settings,
        store,
        shutdown,
        tracker,
        engine_abort,
        vitals,
    })
}

impl Daemon {
    /// Stops intake, lets running rollbacks finish within `server.shutdown_grace` and the
    /// sinks deliver what is left, all within `server.shutdown_grace` + [`DRAIN_MARGIN`]. Returns
    /// true when the drain was clean: every task ended in time and no rollback was left running.
    pub async fn shutdown(self) -> bool {
        self.vitals.stopping();
        self.shutdown.cancel();
        self.tracker.close();
        let bound = self.settings.daemon.shutdown_grace + DRAIN_MARGIN;
        let drained = tokio::time::timeout(bound, self.tracker.wait())
            .await
            .is_ok();
        if !drained {
            tracing::warn!(
                bound_ms = bound.as_millis() as u64,
                left = self.tracker.len(),
                "The drain did not finish in time; leaving what still runs (a sink stuck on a chat API, say)."
            );
        }
        let left_running = match self.store.active().await {
            Ok(active) => active.iter().filter(|r| r.state.is_running()).count(),
            Err(error) => {
                tracing::error!(%error, "Cannot read the state database after the drain.");
                usize::MAX
            }
        };
        let clean = drained && left_running == 0;
        if clean {
            tracing::info!("rollbot stopped cleanly.");
        } else if left_running > 0 {
            tracing::warn!("rollbot stopped with rollbacks still running; they are reconciled on the next start.");
        } else {
            tracing::warn!("rollbot stopped, but not every task ended in time.");
        }
        clean
    }

    /// Runs until SIGTERM or Ctrl-C, then shuts down. Returns true when the drain was clean;
    /// false also when a task the daemon cannot run without ended (see [`Vitals`]): the
    /// process should then exit non-zero so that its supervisor restarts it.
    pub async fn run_until_signal(self) -> bool {
        self.run_until(wait_for_signal()).await
    }

    /// [`Daemon::run_until_signal`] with any stop signal.
    pub async fn run_until(self, stop: impl std::future::Future<Output = ()>) -> bool {
        let vitals = Arc::clone(&self.vitals);
        tokio::select! {
            () = stop => {
                tracing::info!("Signal received; shutting down.");
                self.shutdown().await
            }
            failure = vitals.failed() => {
                tracing::error!(%failure, "rollbot cannot go on; shutting down what is left.");
                let _ = self.shutdown().await;
                false
            }
        }
    }

    /// Fault injection for tests: the engine task dies as a bug would kill it.
    #[doc(hidden)]
    pub fn abort_engine_for_tests(&self) {
        self.engine_abort.abort();
    }
}

async fn wait_for_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut terminate) => {
                tokio::select! {
                    _ = ctrl_c => {}
                    _ = terminate.recv() => {}
                }
            }
            Err(error) => {
                tracing::warn!(%error, "Cannot listen for SIGTERM; only Ctrl-C stops rollbot.");
                let _ = ctrl_c.await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}

/// What every chat platform's sink shares, and where it is watched.
struct SinkParts {
    engine: EngineHandle,
    clock: Arc<dyn Clock>,
    rto: Duration,
    metrics: Arc<Metrics>,
    templates: Arc<crate::notify::templates::Templates>,
    vitals: Arc<Vitals>,
    tracker: TaskTracker,
}

impl SinkParts {
    /// Runs `port`'s sink (engine events into its messages), watched like the engine: the
    /// daemon cannot run without it.
    fn watch<P: crate::chat::ChatPort>(
        &self,
        port: Arc<P>,
        events: mpsc::Receiver<engine::Event>,
        name: &'static str,
    ) {
        let sink = tokio::spawn(run_sink(
            port,
            self.engine.clone(),
            events,
            Arc::clone(&self.clock),
            self.rto,
            Arc::clone(&self.metrics),
            Arc::clone(&self.templates),
        ));
        self.vitals.watch(&self.tracker, name, sink);
    }
}
