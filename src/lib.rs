//! rollbot: roll a container image's floating tags back to a known-good digest, safely.
//!
//! # Codemap
//!
//! A rollback flows top to bottom through these modules:
//!
//! - `main.rs`: the binary. Parses the command line (`cli`), loads `config`, runs, maps the
//!   outcome to an exit code. Nothing else.
//!
//! The CLI path: `cli` → `pipeline` → `registry`. The daemon (`rollbot serve`):
//!
//! ```text
//! chat adapters ──Inbound{Actor, ChannelRef, Command}──▶ engine ──Event──▶ chat sinks (status
//! (chat::console, chat::slack,  ◀──Answer (worded by chat::reply)──│        message, thread
//!  chat::discord)                               │ policy, state     replies), notify (outbox
//!                                               │ pipeline tasks    → GitHub, Docker Hub)
//!                                               ▼
//!                              store (SQLite) · registry · Clock
//! ```
//!
//! Adapters get the engine's handle when they are built (`engine::channel`); a reaction is a
//! command naming the message, which the engine resolves. Every log line about a rollback is in
//! its `rollback` span (`engine::rollback_span`: `rollback_id`, `image`).
//! - [`cli`]: clap definitions (`rollback`, `drill`, `verify`, `manifest`, `history`, `hold`,
//!   `gate`) and the glue from arguments to the pipeline (`cli/rollback.rs`: alias resolution,
//!   target selection, the confirmation prompt; `cli/drill.rs`: the drill, appended to the
//!   daemon's audit log when its database exists) and to the artifacts (`cli/artifacts.rs`);
//!   `cli/announce.rs` announces a command-line rollback through [`notify::now`].
//!   `cli::exit_code` is the one place outcomes become exit codes.
//! - [`config`]: layered config (`config/default.toml` compiled in → `--config FILE` →
//!   `ROLLBOT__SECTION__KEY`, [`config::Layers`]) and its reader: each section is read with
//!   serde (`deny_unknown_fields`) into its own `…Section` type through `config/de.rs`, which
//!   reports every unknown key with "did you mean", and whose [`config::Checked`] fields keep a
//!   bad value's problem (with key path and origin) instead of ending the read; the section's
//!   `validate` returns every problem ([`config::Problems`], the shared typed readers, the one
//!   secret rule in [`config::Secrets`]). It owns the core sections, read into
//!   [`config::Settings`] (`rollback`, `log`, `registries`, `images` with their checks, `store`,
//!   `server`, `approvals`, `limits`) and knows no adapter: each adapter reads its own section
//!   beside itself (`chat/console/config.rs`, `chat/slack/config.rs`, `notify/config.rs`,
//!   `notify/github/config.rs`, `notify/dockerhub/config.rs`), and
//!   [`daemon::ServeSettings`] composes them all, with unknown sections, into one report.
//! - [`domain`]: the vocabulary, no I/O: [`domain::model`] has `Digest`, `Tag`, `Repository`,
//!   `RegistryHost`, `ImageRef`, `Reference`, each parsed once at the edge;
//!   [`domain::rollback`] `RollbackId`, `Actor`, `Timestamp` and the `State` machine;
//!   [`domain::command`] the `/rollback` grammar (chat text → `Command`, `drill` included);
//!   [`domain::policy`] the two-person rule as one pure function; [`domain::record`] the records
//!   everyone shares (rollback, with its `drill` flag; audit entry, planned tag, step, target and
//!   check reports);
//!   [`domain::reconcile`] what a restart does with a rollback left running; [`domain::clock`].
//! - [`engine`]: the single owner of rollback state (one task). `Inbound` commands in, `Event`s
//!   out; each command answers with a typed `Answer`, a refusal is a `Refusal` worded once
//!   (`engine/answer.rs`). `engine/mod.rs` is the handle, the messages and the loop, which only
//!   dispatches:
//!   `engine/commands/` has one file per command (request, which takes drills too, vote, cancel,
//!   status, history, release); `transitions.rs` persists every state change before announcing
//!   it (an approval and the pipeline's start in one transaction, with the vote's command);
//!   `run.rs` runs approved rollbacks in tracked tasks that report back (the approval's re-plan
//!   reuses the target's bytes the request read, HEADing it by digest), and `batch.rs` records
//!   the reports waiting together in one commit, then announces them in order (one the database
//!   refuses is kept, goes with the next report of its rollback and is tried again at later
//!   ticks, backing off); `drill.rs` approved
//!   drills (`pipeline::rehearse`); `restart.rs` reconciles what a previous process left running
//!   (the decision is `domain::reconcile`; a drill is ended as interrupted, untouched);
//!   `refuse.rs` rate limits commands per user (governor) and audits every refusal;
//!   `hourly.rs` limits rollbacks started per hour (a sliding window, read back from the store
//!   at start). The `Clock` is
//!   `domain::clock`.
//! - [`chat`]: the platform-neutral message model (blocks, buttons, and [`chat::text::Text`]:
//!   typed spans, so a mention is a span rollbot adds and never a pattern in words), the
//!   rendering of status messages and thread replies (a drill's say DRILL; `chat/summary.rs`
//!   reads the chat summary template's markup while its values stay plain), [`chat::reply`] (the
//!   words a person gets back for each engine `Answer`), and the sink task driving a `ChatPort`;
//!   [`chat::console`] is
//!   the built-in local chat (web page + JSON API); [`chat::slack`] is Slack: Socket Mode
//!   (`chat::slack::socket`, rollbot's own client of the documented protocol: `hello`, acks,
//!   `disconnect`, reconnects; its link state is on `/readyz`) or HTTP mode (`/slack/*`,
//!   verified by `chat::slack::signing`), every payload parsed at the edge by
//!   `chat::slack::inbound`, every text sent rendered by [`chat::slack::mrkdwn`], Block Kit
//!   rendering, approvals by button, reaction or text,
//!   user-group approvers, the startup self-check. [`chat::discord`] is Discord on serenity:
//!   the Gateway (`chat/discord/gateway.rs`, serenity's client pointed at Discord's or a fake's
//!   URLs) or the HTTP interactions endpoint (`/discord/interactions`, verified by
//!   `chat::discord::signing`); `interactions.rs` answers every interaction within Discord's
//!   3 seconds (PONG, ephemeral answer, or the right defer) and runs the work after;
//!   `commands.rs` is the `/rollback` definition and its translation into the one grammar;
//!   `rest.rs` rollbot's own REST client (429 waits, errors with Discord's code and the fix);
//!   [`chat::discord::markdown`] renders every text sent; `selfcheck.rs` registers the command
//!   and checks guild, channel and permissions for `/readyz`.
//! - [`notify`]: GitHub Discussions ([`notify::github`], GraphQL) and the Docker Hub
//!   description banner ([`notify::dockerhub`], between labelled marker comments; drills are never
//!   queued) through a persisted outbox with retries and backoff, delivered in one lane per service
//!   (`notify/delivery.rs`, one failure mapper for both services); the services' startup
//!   checks run in the background and answer fatal or transient (`notify/failure.rs`);
//!   `notify/http.rs` is what both services' HTTP clients share; [`notify::now`] announces at
//!   once, without the outbox, for the command line.
//!   [`notify::templates`] are the minijinja communication templates (`config/templates/`),
//!   checked at startup; [`notify::markup`] makes untrusted values safe for each output
//!   before they reach a template.
//! - [`server`]: axum: `/healthz`, `/readyz` (a standby: 503 "standby"), `/readyz/replica`,
//!   `/metrics`, the console, Slack's and Discord's HTTP modes (503 on a standby).
//! - [`daemon`]: wiring for `rollbot serve` (`daemon/lead.rs`: what only the leader runs —
//!   engine, chat connections, outbox; `daemon/leader.rs`: a replica's lease loop, which starts
//!   it on winning and ends the process on losing); one shutdown (a cancellation token every task
//!   watches, a task tracker for every task, the drain bounded by `server.shutdown_grace` + 5 s);
//!   `daemon/config.rs`
//!   composes the whole configuration ([`daemon::ServeSettings`]) that the binary loads for
//!   every command.
//! - [`vitals`]: the tasks the daemon cannot run without; when one ends unexpectedly
//!   `/healthz` fails and `serve` exits non-zero (crash-only: restart reconciliation recovers).
//! - [`metrics`]: Prometheus text exposition from atomics.
//! - [`pipeline`]: plan → retag → verify → checks, and the [`pipeline::Report`] of a run
//!   (`pipeline/outcome.rs`). `pipeline/plan.rs` does the one manifest GET (the target's bytes)
//!   and the completeness pre-check; `pipeline/retag.rs` writes those bytes under each tag with
//!   compare-and-swap, recording its intent in the hold first and reading every tag back when
//!   it stops (approved beforehand — `--yes`, or the daemon's re-plan after an approval — the
//!   plan's own reads are the first write's compare-and-swap reads); `pipeline/verify.rs` reads
//!   back by HEAD; the `active` hold records the finished rollback so CI does not undo it,
//!   written while verification runs;
//!   `pipeline/target.rs` chooses the target when none was named (finishing an unfinished
//!   rollback the hold records, never going further back).
//!   `pipeline/drill/` rehearses a rollback ([`pipeline::rehearse`]): the live build and the
//!   target copied by digest into the image's scratch repository (`drill/scratch.rs`: blobs
//!   mounted, deleted again afterwards), the same `run` there, the scratch hold released, each
//!   step timed against the RTO; it writes only to the scratch repository.
//! - [`manifest`]: rollbot's small OCI artifacts next to the image: the rollback manifest CI
//!   writes per build (`sha256-<hex>.rollback`, naming the previous digest, so history is a
//!   chain), bad-digest marks (`sha256-<hex>.bad`), and the hold (`rollbot-hold`,
//!   `manifest/hold.rs`, its document inside its manifest: one PUT) that `gate` checks in CI. `manifest/history.rs` walks the chain and
//!   `select_target` picks the default rollback target from it.
//! - [`registry`]: the registry port, a small distribution-spec client over `reqwest`. Every
//!   request takes one path: `registry/manifests.rs` (manifest HEAD/GET/PUT, tag lists) and
//!   `registry/blobs.rs` (blob HEAD/GET/upload, an upload started before its bytes are known,
//!   cross-repository mount) describe it as an `Op`
//!   (manifest DELETE too, for drills' clean-up) and call it
//!   (`registry/request.rs`: status check, size-limited body reads); `registry/send.rs` sends
//!   it with auth (`registry/authorize.rs`: Basic, Bearer tokens cached per scope) and retries
//!   (429 after `Retry-After`, 502–504), at most `MAX_READS_IN_FLIGHT` reads per client
//!   waiting for answers (writes never wait); `registry/answers.rs` turns answers into a
//!   [`registry::RegistryError`] (`registry/error.rs`: retryable, or a write that may have
//!   landed). `registry/client.rs` builds a client from config, `registry/counts.rs` counts
//!   requests by kind (and, when asked, times each one: `--json`'s `registry.timeline`),
//!   `registry/pool.rs` shares one client per host, `registry/presence.rs`
//!   finds what a manifest references that is gone. [`registry::auth`] resolves credentials
//!   (also from the Docker credentials file) and parses challenges; [`registry::oci`] keeps
//!   manifests as exact bytes and lists what they reference.
//! - [`checks`]: health checks after a retag: commands (argv, no shell) and HTTP probes; what a
//!   command printed is capped and has rollbot's secret values redacted before it leaves.
//! - [`store`]: SQLite (one node) or Postgres (replicas) through sqlx's `Any` driver, one set
//!   of queries and a dialect layer for the schema (`store/schema.rs`, the same indexes in
//!   both): rollback records, votes and steps (several saved in one transaction,
//!   `Store::save_all`), and an append-only audit log (enforced by triggers; `store/audit.rs`
//!   appends it and reads it a bounded page at a time); one active rollback per
//!   image and, apart from it, one active drill per image (enforced by partial unique indexes);
//!   the outbox (`store/outbox.rs`); with Postgres the leader lease row on the database's clock
//!   (`store/lease.rs`), and every rollback change fenced by the lease's holder and epoch;
//!   every update of a rollback is conditional on it not being finished in another state
//!   (`StoreError::Finished`, which the engine answers in `Engine::finished_elsewhere`).
//! - [`leadership`]: whether this process may act: always with SQLite; with Postgres while it
//!   holds the lease, until a deadline on its monotonic clock. The store fences rollback
//!   changes with its epoch and the registry client asks it before sending any write.
//! - [`report`]: text rendering of progress and reports, a drill's too (`--json` serialises the
//!   report).
//! - [`secret`]: `Secret`, a string that never prints.
//!
//! Tests: `tests/it/` is the one integration test binary. It starts Debian's
//! `docker-registry` on 127.0.0.1 per test, pushes its own images, and drives the library and
//! the built binary.
//!
//! # Layers
//!
//! Imports only go down this list (a module may also use one on its own line); a tidy test
//! (`tests/it/tidy.rs`) derives the module graph from the code and fails on an import against
//! this order or on any circle. `main.rs` is above them all.
//!
//! ```text
//! cli
//! daemon
//! server
//! chat notify
//! engine
//! report
//! pipeline
//! checks manifest store
//! registry
//! config
//! domain leadership metrics secret vitals
//! ```
//!
//! # Architecture invariants
//!
//! - A retag never re-serialises a manifest: the bytes written are the bytes read, and their
//!   sha256 is checked against the digest asked for and every digest header seen.
//! - Nothing is written before the plan's checks pass (target complete, every tag where the
//!   plan saw it). Each tag write is preceded by a compare-and-swap read of that tag answered
//!   at most `MAX_READ_AGE` (100 ms) before rollbot sends the write (a bearer-token registry's
//!   push token is fetched before): the plan's own HEAD in a run approved
//!   before its plan (`--yes`, the daemon's re-plan), the gate's after a prompt, or a HEAD
//!   right before the write when those are older.
//! - One manifest GET per rollback with a named target (the target's bytes, the one counted
//!   pull on Docker Hub); everything else is HEAD or PUT (and, once per repository, the upload
//!   of the empty blob rollbot's artifacts name).
//! - The hold is recorded before the first tag write (`in_progress`) and set (`active`) before
//!   a run reports success; each is one manifest PUT.
//! - `domain/` names no SDK or HTTP crate; HTTP clients (`reqwest`) live only in `registry/`,
//!   `checks` and `notify/` (elsewhere only `reqwest::Url` parses URLs), Slack's SDK only in
//!   `chat::slack`; the engine names no chat platform (adapters translate to
//!   `Inbound`/`Command`).
//! - The engine is the only writer of rollback state; every state change goes through
//!   `State::can_become` and is persisted (with its audit entry) before it is announced. The
//!   audit table refuses updates and deletes; the database refuses a second active rollback of
//!   an image (and a second active drill; a drill, which only writes its scratch repository,
//!   never blocks a rollback).
//! - Approvals are bound to (image, tags, from-digests, target digest): execution re-plans
//!   against exactly that and aborts if any tag moved.
//! - A sink failing (chat down) never changes a rollback's outcome.
//! - Secrets are [`secret::Secret`] and never reach a log line, an error or a report.
//! - Untrusted text (chat input, names, other services' errors, health-check output) reaches
//!   GitHub and Docker Hub only through [`notify::templates::Context::escaped`]: it never
//!   becomes markup, a mention, a reference or a banner marker. In chat it is a plain
//!   [`chat::Span`]; everything rollbot sends to Slack is rendered by
//!   [`chat::slack::mrkdwn::render`], which escapes plain text with no exceptions, and the
//!   console page builds DOM text nodes, never HTML.
//! - Deliberately absent: `oci-client` (it hides the PUT's `Docker-Content-Digest`, the GET's
//!   `Content-Type` and rate-limit headers, and silently falls back from HEAD to a counted
//!   GET), `docker pull/tag/push` semantics (they flatten multi-arch indexes), a shell for
//!   health-check commands.

pub mod chat;
pub mod checks;
pub mod cli;
pub mod config;
pub mod daemon;
pub mod domain;
pub mod engine;
pub mod leadership;
pub mod manifest;
pub mod metrics;
pub mod notify;
pub mod pipeline;
pub mod registry;
pub mod report;
pub mod secret;
pub mod server;
pub mod store;
pub mod vitals;

/// Locks `mutex`, ignoring poisoning: a panic elsewhere mid-update leaves a cache, a counter or
/// a message list that is still usable (at worst a token is fetched again).
pub(crate) fn lock<T>(mutex: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// An error with its sources, for people: `reqwest` hides the useful part ("Connection
/// refused") in its source chain.
pub(crate) fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// Installs rustls' ring provider for the process (slack-morphism's TLS client asks for the
/// process default). Safe to call more than once.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Installs the stderr log subscriber with a `tracing` filter such as `warn` or
/// `rollbot=debug`. An invalid filter falls back to `warn` (config validation rejects those
/// before this point).
pub fn init_logging(filter: &str, json: bool) {
    let targets: tracing_subscriber::filter::Targets = filter.parse().unwrap_or_else(|_| {
        tracing_subscriber::filter::Targets::new().with_default(tracing::Level::WARN)
    });
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    let registry = tracing_subscriber::registry().with(targets);
    let _ = if json {
        registry
            .with(
                tracing_subscriber::fmt::layer()
                    .json()
                    .with_writer(std::io::stderr),
            )
            .try_init()
    } else {
        registry
            .with(
                tracing_subscriber::fmt::layer()
                    .with_writer(std::io::stderr)
                    .with_target(false),
            )
            .try_init()
    };
}
