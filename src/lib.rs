//! rollbot: roll a container image's floating tags back to a known-good digest, safely.
//!
//! # Codemap
//!
//! A rollback flows top to bottom through these modules:
//!
//! - `main.rs`: the binary. Parses the command line (`cli`), loads `config`, runs, maps the
//!   outcome to an exit code. Nothing else.
//! - [`cli`]: clap definitions (`rollback`, `verify`, `manifest`, `history`, `hold`, `gate`) and
//!   the glue from arguments to the pipeline (`cli/rollback.rs`: alias resolution, target
//!   selection, the confirmation prompt) and to the artifacts (`cli/artifacts.rs`).
//!   `cli::exit_code` is the one place outcomes become exit codes.
//! - [`config`]: layered config (`config/default.toml` compiled in → `--config FILE` →
//!   `ROLLBOT__SECTION__KEY`), validated once into [`config::Settings`], every problem reported
//!   at once with its key path.
//! - [`domain`]: the vocabulary, no I/O: [`domain::model`] has `Digest`, `Tag`, `Repository`,
//!   `RegistryHost`, `ImageRef`, `Reference`, each parsed once at the edge.
//! - [`pipeline`]: plan → retag → verify → checks, and the [`pipeline::Report`] of a run.
//!   `plan` does the one manifest GET (the target's bytes) and the completeness pre-check;
//!   `retag` writes those bytes under each tag with compare-and-swap; `verify` reads back by HEAD;
//!   `set_hold` records the rollback so CI does not undo it.
//! - [`manifest`]: rollbot's small OCI artifacts next to the image: the rollback manifest CI
//!   writes per build (`sha256-<hex>.rollback`, naming the previous digest, so history is a
//!   chain), bad-digest marks (`sha256-<hex>.bad`), and the hold (`rollbot-hold`) that `gate`
//!   checks in CI. `select_target` picks the default rollback target from the chain.
//! - [`registry`]: the registry port, a small distribution-spec client over `reqwest`:
//!   manifest HEAD/GET/PUT, blob HEAD/upload, Basic and Bearer auth ([`registry::auth`], which
//!   also reads the Docker credentials file), retries, request counts.
//!   [`registry::oci`] keeps manifests as exact bytes and lists what they reference.
//! - [`checks`]: health checks after a retag: commands (argv, no shell) and HTTP probes.
//! - [`store`]: SQLite (sqlx): rollback records, votes and steps, and an append-only audit log
//!   (enforced by triggers); one active rollback per image (enforced by a partial unique index).
//! - [`report`]: text rendering of progress and reports (`--json` serialises the report).
//! - [`secret`]: `Secret`, a string that never prints.
//!
//! Tests: `tests/it/` is the one integration test binary. It starts Debian's
//! `docker-registry` on 127.0.0.1 per test, pushes its own images, and drives the library and
//! the built binary.
//!
//! # Architecture invariants
//!
//! - A retag never re-serialises a manifest: the bytes written are the bytes read, and their
//!   sha256 is checked against the digest asked for and every digest header seen.
//! - Nothing is written before the plan's checks pass (target complete, every tag where the
//!   plan saw it). Each write is preceded by a compare-and-swap read of that tag.
//! - One manifest GET per rollback; everything else is HEAD or PUT (Docker Hub counts GETs).
//! - `domain/` names no SDK or HTTP crate; `reqwest` appears only in `registry/` and `checks`.
//! - Secrets are [`secret::Secret`] and never reach a log line, an error or a report.
//! - Deliberately absent: `oci-client` (it hides the PUT's `Docker-Content-Digest`, the GET's
//!   `Content-Type` and rate-limit headers, and silently falls back from HEAD to a counted
//!   GET), `docker pull/tag/push` semantics (they flatten multi-arch indexes), a shell for
//!   health-check commands.

pub mod checks;
pub mod cli;
pub mod config;
pub mod domain;
pub mod manifest;
pub mod pipeline;
pub mod registry;
pub mod report;
pub mod secret;
pub mod store;

/// Installs the stderr log subscriber with a `tracing` filter such as `warn` or
/// `rollbot=debug`. An invalid filter falls back to `warn` (config validation rejects those
/// before this point).
pub fn init_logging(filter: &str) {
    let targets: tracing_subscriber::filter::Targets = filter.parse().unwrap_or_else(|_| {
        tracing_subscriber::filter::Targets::new().with_default(tracing::Level::WARN)
    });
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    let _ = tracing_subscriber::registry()
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                .with_target(false),
        )
        .with(targets)
        .try_init();
}
