//! `rollbot serve`: wiring (store, engine, chat sinks, HTTP server), task tracking, and
//! graceful shutdown: stop intake, let running rollbacks finish within a deadline, say whether
//! the drain was clean. [`config`] composes the whole configuration it starts from.
//!
//! Shutdown is one mechanism: every task watches one cancellation token and is tracked by one
//! task tracker. Cancelling stops intake everywhere (HTTP, Slack, the engine's commands); the
//! engine lets running rollbacks finish within `server.shutdown_grace`; the sinks deliver what
//! the engine sent; the whole drain is bounded by `server.shutdown_grace` + [`DRAIN_MARGIN`],
//! and whatever is still running then (a sink stuck on a chat API) is left behind.
//!
//! What only the leader runs (engine, chat connections, outbox) is `lead.rs`; with SQLite this
//! process always leads, with Postgres `leader.rs` competes for the lease and starts it on
//! winning (a standby listens, answers `/readyz` 503 "standby", and connects to no chat).

pub mod config;
mod lead;
mod leader;

use std::net::SocketAddr;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use self::config::ServeSettings;
use crate::chat::console::config::ConsoleMode;
use crate::chat::console::Console;
use crate::chat::discord::Discord;
use crate::chat::run_sink;
use crate::chat::slack::Slack;
use crate::config::{Settings, StoreLocation};
use crate::engine::{self, Clock, EngineHandle, EngineOptions};
use crate::leadership::Leadership;
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
    engine_abort: Arc<OnceLock<tokio::task::AbortHandle>>,
    /// With Postgres: stops the lease loop after the drain (it then gives the lease up), and
    /// the loop's task.
    lease: Option<(CancellationToken, tokio::task::JoinHandle<()>)>,
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
    let store_settings = &daemon_settings.store;
    let leadership = Arc::new(match &store_settings.location {
        StoreLocation::Sqlite(_) => Leadership::single(),
        StoreLocation::Postgres(_) => Leadership::replica(crate::leadership::replica_name()),
    });
    let store = Store::open_at(
        &store_settings.location,
        Arc::clone(&leadership),
        store_settings.lease_ttl,
    )
    .await
    .with_context(|| format!("opening {}", store_settings.location.display()))?;
    let metrics = Arc::new(Metrics::default());
    let registries = Arc::new(Registries::led_by(
        Arc::clone(&settings),
        Arc::clone(&leadership),
    ));
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
        Some(slack_settings) => Some(
            Slack::new(
                &settings,
                slack_settings.clone(),
                engine.clone(),
                Arc::clone(&metrics),
            )
            .map_err(|e| anyhow::anyhow!("setting up Slack: {e}"))?,
        ),
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
    // Every sink gets its own copy of the engine's events.
    let mut sink_senders = Vec::new();
    let mut events = || {
        let (tx, rx) = mpsc::channel(1024);
        sink_senders.push(tx);
        rx
    };
    let console_sink = console.as_ref().map(|c| (Arc::clone(c), events()));
    let slack_sink = slack.map(|(slack, queue)| (slack, queue, events()));
    let discord_sink = discord.as_ref().map(|d| (Arc::clone(d), events()));
    // Retries are operational time, not the engine's (tests move the engine's clock by hand;
    // deliveries must still come due).
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
    let notifier_sink = notifier.as_ref().map(|n| {
        let (tx, rx) = mpsc::channel(4096);
        sink_senders.push(tx);
        (Arc::clone(n), rx)
    });
    let slack = slack_sink.as_ref().map(|(slack, _, _)| Arc::clone(slack));
    let engine_abort = Arc::new(OnceLock::new());
    let serving = Arc::new(AtomicBool::new(false));
    let leading = lead::Leading {
        parts: engine::Parts {
            settings: Arc::clone(&settings),
            store: store.clone(),
            registries: Arc::clone(&registries),
            clock: Arc::clone(&clock),
            metrics: Arc::clone(&metrics),
            sinks: sink_senders,
        },
        inbox,
        options: options.engine.clone(),
        shutdown: shutdown.clone(),
        tracker: tracker.clone(),
        vitals: Arc::clone(&vitals),
        sinks: SinkParts {
            engine: engine.clone(),
            clock: Arc::clone(&clock),
            rto: settings.rollback.rto,
            metrics: Arc::clone(&metrics),
            templates: Arc::clone(&templates),
            vitals: Arc::clone(&vitals),
            tracker: tracker.clone(),
        },
        console: console_sink,
        slack: slack_sink,
        discord: discord_sink,
        notifier: notifier_sink,
        engine_abort: Arc::clone(&engine_abort),
        serving: Arc::clone(&serving),
    };
    // The only process leads before it listens; a replica listens (probes, a standby's 503)
    // and leads once it wins the lease.
    let lease = match &store_settings.location {
        StoreLocation::Sqlite(_) => {
            metrics.set_leader(true);
            leading.begin().await?;
            None
        }
        StoreLocation::Postgres(_) => {
            let done = CancellationToken::new();
            let lease = leader::LeaseLoop {
                store: store.clone(),
                leadership: Arc::clone(&leadership),
                ttl: store_settings.lease_ttl,
                metrics: Arc::clone(&metrics),
                vitals: Arc::clone(&vitals),
                leading: Some(leading),
                tracker: tracker.clone(),
                done: done.clone(),
                shutdown: shutdown.clone(),
            };
            // Not on the tracker: it renews through the drain and is stopped after it.
            let task = tokio::spawn(lease.run());
            let failed = Arc::clone(&vitals);
            let watched = tokio::spawn(async move {
                if let Err(error) = task.await {
                    failed.fail(format!("the leader lease loop ended: {error}"));
                }
            });
            Some((done, watched))
        }
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
        leadership: Arc::clone(&leadership),
        serving,
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
        lease,
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
        if let Some((done, task)) = self.lease {
            done.cancel();
            let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
        }
        // A standby that never ran the engine left nothing running: what the store shows
        // running belongs to the leader.
        let ran_engine = self.engine_abort.get().is_some();
        let left_running = if ran_engine {
            match self.store.active().await {
                Ok(active) => active.iter().filter(|r| r.state.is_running()).count(),
                Err(error) => {
                    tracing::error!(%error, "Cannot read the state database after the drain.");
                    usize::MAX
                }
            }
        } else {
            0
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
        if let Some(engine) = self.engine_abort.get() {
            engine.abort();
        }
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
