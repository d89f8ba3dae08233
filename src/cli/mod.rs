//! Command-line interface: clap definitions, dispatch, and the one mapping from outcomes to
//! exit codes. The glue for each command is in `rollback.rs` (rollback, verify), `drill.rs`
//! (drill) and `artifacts.rs` (manifest, history, hold, gate).

mod announce;
mod artifacts;
mod drill;
mod rollback;

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::config::{ImageSettings, Settings};
use crate::daemon::ServeSettings;
use crate::domain::model::{Digest, ImageRef, Reference, Tag};
use crate::manifest::ArtifactError;
use crate::pipeline::Outcome;
use crate::registry::{RegistryClient, RegistryError};

const EXIT_CODES: &str = "Exit codes:
  0  done, or nothing to do (already at target, dry run)
  1  declined at the confirmation prompt; nothing changed (gate: a hold is active)
  2  bad input or config; nothing changed
  3  a pre-check failed (registry, incomplete target, tag moved); nothing changed
  4  retag failed part-way; the report lists every tag's digest now
  5  tags moved (or `verify` ran) but verification, a health check or the hold failed";

/// Roll container image tags back to a known-good digest, safely.
#[derive(Debug, Parser)]
#[command(name = "rollbot", version, about, after_help = EXIT_CODES)]
pub struct Cli {
    /// Config file (TOML) layered over the built-in defaults; ROLLBOT__SECTION__KEY
    /// environment variables override both.
    #[arg(long, global = true, env = "ROLLBOT_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// More log output on stderr (-v info, -vv debug). Overrides log.level.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,

    /// Talk plain HTTP to the image's registry (same as insecure = true in its config).
    #[arg(long, global = true)]
    pub insecure: bool,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Move floating tags (default `latest`) back to a known-good digest: plan, confirm,
    /// retag with the exact manifest bytes, verify, run health checks, set a hold.
    #[command(after_help = EXIT_CODES)]
    Rollback(RollbackArgs),
    /// Check that tags point at a digest and that every platform of it is present, then run
    /// the image's health checks. Changes nothing.
    #[command(after_help = EXIT_CODES)]
    Verify(VerifyArgs),
    /// Rehearse the rollback `rollback IMAGE` would make now, on a scratch repository in the
    /// same registry (rollback.drill_repository_suffix, or the image's drill_repository): copy
    /// the live and target builds there, run the whole pipeline, release its hold, delete what
    /// it wrote; time every step against the RTO. Production is only read.
    #[command(after_help = EXIT_CODES)]
    Drill(DrillArgs),
    /// Rollback manifests: generate one per build in CI, store it next to the image, show it.
    #[command(subcommand)]
    Manifest(ManifestCommand),
    /// Walk the chain of rollback manifests back from the live digest; mark digests bad.
    History(HistoryArgs),
    /// The hold that keeps CI from undoing a rollback: status, set, release.
    #[command(subcommand)]
    Hold(HoldCommand),
    /// For CI, before pushing floating tags: exit 0 when no hold is active, 1 (naming who held
    /// the image, when and why) when one is, 3 when the hold cannot be read (fails closed).
    Gate(GateArgs),
    /// Run the chat-ops daemon: /rollback commands from chat (or the built-in console),
    /// two-person approval, the same pipeline, status messages, /healthz /readyz /metrics.
    /// SIGTERM stops intake and lets running rollbacks finish (server.shutdown_grace).
    Serve(ServeArgs),
    /// Print the daemon's audit log (every command, vote, state change and step).
    Audit(AuditArgs),
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Listen here instead of server.listen (e.g. 127.0.0.1:0 for a free port).
    #[arg(long, value_name = "ADDR:PORT")]
    pub listen: Option<std::net::SocketAddr>,
}

#[derive(Debug, Args)]
pub struct AuditArgs {
    /// From when: a duration back from now ("2h", "7d") or an RFC 3339 time.
    #[arg(long, default_value = "24h", value_name = "WHEN")]
    pub since: String,

    /// At most this many entries, the newest (0: all of them). Older ones in the range are
    /// left out, and stderr says so.
    #[arg(long, default_value_t = 1000, value_name = "N")]
    pub limit: u32,

    /// One JSON object per line instead of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct RollbackArgs {
    /// host[:port]/repository, or an alias from the config's [images] table.
    #[arg(value_name = "IMAGE")]
    pub image: String,

    /// The known-good target: a digest (sha256:…) or a tag that is resolved to its digest.
    /// Default: the previous build named in the live digest's rollback manifest, skipping
    /// builds marked bad (see `rollbot history`).
    #[arg(long, value_name = "DIGEST|TAG", value_parser = Reference::parse)]
    pub to: Option<Reference>,

    /// A floating tag to move (repeatable). Default: the image's tags from the config,
    /// else rollback.tags (["latest"]).
    #[arg(long = "tag", value_name = "TAG", value_parser = Tag::parse)]
    pub tags: Vec<Tag>,

    /// Why, recorded in the hold.
    #[arg(long, value_name = "TEXT")]
    pub reason: Option<String>,

    /// Who, recorded in the hold. Default: $GITHUB_ACTOR, else $USER.
    #[arg(long, value_name = "NAME")]
    pub by: Option<String>,

    /// Do not set a hold after moving tags (CI's next push will move them again).
    #[arg(long)]
    pub no_hold: bool,

    /// Plan and print, write nothing.
    #[arg(long, conflicts_with = "yes")]
    pub dry_run: bool,

    /// Apply without asking. Required when stdin is not a terminal.
    #[arg(long, short = 'y')]
    pub yes: bool,

    /// Print one JSON report on stdout instead of text.
    #[arg(long)]
    pub json: bool,

    /// Do not announce the rollback. By default, when [github] or [dockerhub] is configured, a
    /// rollback that changed the registry is announced like the daemon's (GitHub Discussion,
    /// Docker Hub banner); a failure to announce is a warning and does not change the exit code.
    #[arg(long)]
    pub no_announce: bool,
}

#[derive(Debug, Args)]
pub struct DrillArgs {
    /// host[:port]/repository, or an alias from the config's [images] table.
    #[arg(value_name = "IMAGE")]
    pub image: String,

    /// A floating tag whose rollback to rehearse (repeatable). Default as for `rollback`.
    #[arg(long = "tag", value_name = "TAG", value_parser = Tag::parse)]
    pub tags: Vec<Tag>,

    /// Why, recorded in the scratch hold and the audit log.
    #[arg(long, value_name = "TEXT")]
    pub reason: Option<String>,

    /// Who, recorded in the scratch hold and the audit log. Default: $GITHUB_ACTOR, else $USER.
    #[arg(long, value_name = "NAME")]
    pub by: Option<String>,

    /// Print one JSON report on stdout instead of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// host[:port]/repository, or an alias from the config's [images] table.
    #[arg(value_name = "IMAGE")]
    pub image: String,

    /// The digest the tags must point at.
    #[arg(long, value_name = "DIGEST", value_parser = Digest::parse)]
    pub expect: Digest,

    /// A tag to check (repeatable). Default as for `rollback`.
    #[arg(long = "tag", value_name = "TAG", value_parser = Tag::parse)]
    pub tags: Vec<Tag>,

    /// Print one JSON report on stdout instead of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum ManifestCommand {
    /// Print the rollback manifest (JSON) for a build. Run it in CI before the floating tags
    /// move: without --previous it reads the digest the first floating tag points at now.
    /// CI order: push the image by digest → generate → `manifest push` → move the floating tags.
    Generate(GenerateArgs),
    /// Store a rollback manifest file next to the image, under the tag
    /// sha256-<hex>.rollback of the digest it describes. Pushing the same file again changes
    /// nothing.
    Push(PushArgs),
    /// Print the rollback manifest of IMAGE@DIGEST, or of the live digest.
    Show(ShowArgs),
}

#[derive(Debug, Args)]
pub struct GenerateArgs {
    /// host[:port]/repository, or an alias.
    #[arg(value_name = "IMAGE")]
    pub image: String,

    /// The digest this build pushes (of the index, for a multi-arch image).
    #[arg(long, value_name = "DIGEST", value_parser = Digest::parse)]
    pub digest: Digest,

    /// Every tag this build pushes, comma-separated or repeated: latest,v1.2.3.
    #[arg(long, value_name = "TAGS", value_delimiter = ',', required = true, value_parser = Tag::parse)]
    pub tags: Vec<Tag>,

    /// The digest to roll back to. Default: what the first floating tag points at now.
    #[arg(long, value_name = "DIGEST", value_parser = Digest::parse)]
    pub previous: Option<Digest>,

    /// Link to the CI run that built the image.
    #[arg(long, value_name = "URL", value_parser = parse_url)]
    pub build_url: Option<String>,

    /// The commit the image was built from.
    #[arg(long, value_name = "SHA", value_parser = parse_git_sha)]
    pub git_sha: Option<String>,

    /// Write the JSON to FILE instead of stdout.
    #[arg(long, short = 'o', value_name = "FILE")]
    pub output: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct PushArgs {
    /// host[:port]/repository, or an alias.
    #[arg(value_name = "IMAGE")]
    pub image: String,

    /// The file `manifest generate` wrote.
    #[arg(long, value_name = "FILE")]
    pub file: PathBuf,

    /// Replace a different rollback manifest already stored for the digest.
    #[arg(long)]
    pub force: bool,
}

#[derive(Debug, Args)]
pub struct ShowArgs {
    /// IMAGE or IMAGE@sha256:… (IMAGE: host[:port]/repository or an alias). Without a digest,
    /// the live digest of the first floating tag.
    #[arg(value_name = "IMAGE[@DIGEST]")]
    pub image: String,

    /// The floating tag whose live digest to show. Default: the image's first floating tag.
    #[arg(long, value_name = "TAG", value_parser = Tag::parse)]
    pub tag: Option<Tag>,
}

#[derive(Debug, Args)]
pub struct HistoryArgs {
    /// host[:port]/repository, or an alias.
    #[arg(value_name = "IMAGE")]
    pub image: String,

    /// How many builds to show.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u16).range(1..=500))]
    pub limit: u16,

    /// The floating tag to start from. Default: the image's first floating tag.
    #[arg(long, value_name = "TAG", value_parser = Tag::parse)]
    pub tag: Option<Tag>,

    /// Mark DIGEST bad: default target selection skips it. Needs --reason.
    #[arg(long, value_name = "DIGEST", value_parser = Digest::parse, requires = "reason", conflicts_with = "clear_bad")]
    pub mark_bad: Option<Digest>,

    /// Clear a bad mark on DIGEST.
    #[arg(long, value_name = "DIGEST", value_parser = Digest::parse)]
    pub clear_bad: Option<Digest>,

    /// Why the digest is bad (or no longer bad).
    #[arg(long, value_name = "TEXT")]
    pub reason: Option<String>,

    /// Who marks it. Default: $GITHUB_ACTOR, else $USER.
    #[arg(long, value_name = "NAME")]
    pub by: Option<String>,

    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum HoldCommand {
    /// Show the hold: active, released, or none.
    Status(HoldStatusArgs),
    /// Set a hold by hand (a rollback sets one itself).
    Set(HoldSetArgs),
    /// Release the hold: CI may move the floating tags again. Writes a released record
    /// (works on registries that do not allow deletes, like Docker Hub).
    Release(HoldReleaseArgs),
}

#[derive(Debug, Args)]
pub struct HoldStatusArgs {
    /// host[:port]/repository, or an alias.
    #[arg(value_name = "IMAGE")]
    pub image: String,

    /// Print the hold record as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct HoldSetArgs {
    /// host[:port]/repository, or an alias.
    #[arg(value_name = "IMAGE")]
    pub image: String,

    /// Why.
    #[arg(long, value_name = "TEXT")]
    pub reason: String,

    /// The digest held. Default: what the first floating tag points at now.
    #[arg(long, value_name = "DIGEST", value_parser = Digest::parse)]
    pub digest: Option<Digest>,

    /// Who. Default: $GITHUB_ACTOR, else $USER.
    #[arg(long, value_name = "NAME")]
    pub by: Option<String>,
}

#[derive(Debug, Args)]
pub struct HoldReleaseArgs {
    /// host[:port]/repository, or an alias.
    #[arg(value_name = "IMAGE")]
    pub image: String,

    /// Why it is safe to let CI push again.
    #[arg(long, value_name = "TEXT")]
    pub reason: Option<String>,

    /// Who. Default: $GITHUB_ACTOR, else $USER.
    #[arg(long, value_name = "NAME")]
    pub by: Option<String>,
}

#[derive(Debug, Args)]
pub struct GateArgs {
    /// host[:port]/repository, or an alias.
    #[arg(value_name = "IMAGE")]
    pub image: String,
}

fn parse_url(text: &str) -> Result<String, String> {
    let url = reqwest::Url::parse(text).map_err(|e| format!("'{text}' is not a URL: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!("'{text}' must be an http(s) URL"));
    }
    Ok(text.to_owned())
}

fn parse_git_sha(text: &str) -> Result<String, String> {
    let ok = (7..=64).contains(&text.len()) && text.bytes().all(|b| b.is_ascii_hexdigit());
    if ok {
        Ok(text.to_ascii_lowercase())
    } else {
        Err(format!(
            "'{text}' is not a git commit (7-64 hex characters)"
        ))
    }
}

/// The one place outcomes become exit codes.
pub fn exit_code(outcome: Outcome) -> u8 {
    match outcome {
        Outcome::Succeeded | Outcome::Verified | Outcome::AlreadyAtTarget | Outcome::DryRun => 0,
        Outcome::Declined => 1,
        Outcome::BadInput | Outcome::NotConfirmed => 2,
        Outcome::PrecheckFailed => 3,
        Outcome::RetagFailed => 4,
        Outcome::VerifyFailed => 5,
    }
}

/// The outcome of an error reading or writing rollbot's artifacts: bad input when the user
/// named something that does not exist, a failed pre-check otherwise (nothing changed).
fn artifact_outcome(error: &ArtifactError) -> Outcome {
    match error {
        ArtifactError::Registry(
            RegistryError::RepositoryUnknown { .. } | RegistryError::ManifestUnknown { .. },
        ) => Outcome::BadInput,
        _ => Outcome::PrecheckFailed,
    }
}

/// Runs a parsed command with loaded settings; prints; returns the exit code.
pub async fn run(cli: Cli, all: &ServeSettings) -> u8 {
    let insecure = cli.insecure;
    let settings = &all.core;
    match cli.command {
        Command::Rollback(args) => rollback::rollback(args, all, insecure).await,
        Command::Verify(args) => rollback::verify(args, settings, insecure).await,
        Command::Drill(args) => drill::drill(args, settings, insecure).await,
        Command::Manifest(ManifestCommand::Generate(args)) => {
            artifacts::generate(args, settings, insecure).await
        }
        Command::Manifest(ManifestCommand::Push(args)) => {
            artifacts::push(args, settings, insecure).await
        }
        Command::Manifest(ManifestCommand::Show(args)) => {
            artifacts::show(args, settings, insecure).await
        }
        Command::History(args) => artifacts::history(args, settings, insecure).await,
        Command::Hold(HoldCommand::Status(args)) => {
            artifacts::hold_status(args, settings, insecure).await
        }
        Command::Hold(HoldCommand::Set(args)) => {
            artifacts::hold_set(args, settings, insecure).await
        }
        Command::Hold(HoldCommand::Release(args)) => {
            artifacts::hold_release(args, all, insecure).await
        }
        Command::Gate(args) => artifacts::gate(args, settings, insecure).await,
        Command::Serve(args) => serve(args, all).await,
        Command::Audit(args) => audit(args, settings).await,
    }
}

async fn serve(args: ServeArgs, settings: &ServeSettings) -> u8 {
    let json_logs = settings.core.log.json;
    let problems = settings.core.serve_problems();
    if !problems.is_empty() {
        let error = crate::config::ConfigError {
            problems,
            json_logs,
        };
        return serve_failed(json_logs, &error.to_string(), 2);
    }
    let mut settings = settings.clone();
    if let Some(listen) = args.listen {
        if let Some(refusal) =
            crate::config::listen_refusal(listen, settings.core.daemon.allow_non_loopback)
        {
            return serve_failed(json_logs, &refusal, exit_code(Outcome::BadInput));
        }
        settings.core.daemon.listen = listen;
    }
    let daemon = match crate::daemon::start(settings, crate::daemon::DaemonOptions::default()).await
    {
        Ok(daemon) => daemon,
        Err(error) => {
            return serve_failed(
                json_logs,
                &format!("{error:#}"),
                exit_code(Outcome::PrecheckFailed),
            )
        }
    };
    if let Some(console) = &daemon.console {
        // An event, not a bare line, so JSON logs stay one object per line.
        tracing::info!(
            url = %format!("http://{}/console", daemon.addr),
            channel = %console.channel,
            users = %console.users.iter().map(|u| u.id.as_str()).collect::<Vec<_>>().join(","),
            "Console ready; open the URL in a browser."
        );
    }
    if daemon.run_until_signal().await {
        0
    } else {
        1
    }
}

/// `rollbot serve` cannot start: says why on stderr (as a JSON log line when `log.format` is
/// `json`, so a log pipeline sees the one line that matters) and returns `code`.
fn serve_failed(json_logs: bool, error: &str, code: u8) -> u8 {
    if json_logs {
        tracing::error!(error, exit_code = code, "rollbot cannot start.");
    } else {
        eprintln!("error: {error}");
    }
    code
}

async fn audit(args: AuditArgs, settings: &Settings) -> u8 {
    let now = crate::engine::Clock::now(&crate::engine::SystemClock);
    let since = match humantime::parse_duration(&args.since) {
        Ok(back) => now.minus(back),
        Err(_) => match humantime::parse_rfc3339_weak(&args.since) {
            Ok(time) => crate::domain::rollback::Timestamp::from_system(time),
            Err(_) => {
                return fail(
                    false,
                    Outcome::BadInput,
                    &format!(
                        "--since '{}' is neither a duration (2h, 7d) nor an RFC 3339 time",
                        args.since
                    ),
                )
            }
        },
    };
    let location = &settings.daemon.store.location;
    let store = match crate::store::Store::open_existing(location).await {
        Ok(Some(store)) => store,
        Ok(None) => {
            return fail(
                false,
                Outcome::BadInput,
                &format!("no state database at {} (store.path)", location.display()),
            )
        }
        Err(error) => return fail(false, Outcome::PrecheckFailed, &error.to_string()),
    };
    let limit = if args.limit == 0 {
        u32::MAX
    } else {
        args.limit
    };
    let page = match store.audit_page(since, limit).await {
        Ok(page) => page,
        Err(error) => return fail(false, Outcome::PrecheckFailed, &error.to_string()),
    };
    if page.truncated {
        eprintln!(
            "(only the newest {limit} entries since {}; older ones were left out: narrow --since or raise --limit, 0 for all)",
            since.rfc3339()
        );
    }
    // One lock and one buffer for the whole log, not one write per line.
    use std::io::Write as _;
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    for entry in page.entries {
        let written = if args.json {
            writeln!(out, "{}", serde_json::to_string(&entry).unwrap_or_default())
        } else {
            writeln!(
                out,
                "{}  {:<6} {:<12} {:<14} {}",
                entry.at.rfc3339(),
                entry
                    .rollback
                    .map(|id| id.to_string())
                    .unwrap_or_else(|| "-".to_owned()),
                entry.actor.as_ref().map_or("-", |a| a.id.as_str()),
                entry.kind,
                entry.detail
            )
        };
        // A closed pipe (`| head`) ends the listing, not with a panic.
        if written.is_err() {
            return 0;
        }
    }
    let _ = out.flush();
    0
}

/// An error before any work (bad alias, credentials): one line on stderr (and a small JSON
/// document on stdout with `--json`); returns the exit code.
fn fail(json: bool, outcome: Outcome, error: &str) -> u8 {
    if json {
        let value = serde_json::json!({
            "outcome": outcome,
            "error": error,
            "exit_code": exit_code(outcome),
        });
        println!("{value}");
    }
    eprintln!("error: {error}");
    exit_code(outcome)
}

/// The image, its allowlist entry, the floating tags and a registry client.
struct Target<'s> {
    image: ImageRef,
    entry: Option<&'s ImageSettings>,
    tags: Vec<Tag>,
    registry: RegistryClient,
}

/// Resolves an image argument; on failure prints the error and returns the exit code.
fn resolve<'s>(
    settings: &'s Settings,
    image: &str,
    tags: &[Tag],
    insecure: bool,
    json: bool,
) -> Result<Target<'s>, u8> {
    let (image, entry) = settings
        .resolve_image(image)
        .map_err(|error| fail(json, Outcome::BadInput, &error))?;
    let tags = settings.floating_tags(entry, tags);
    let registry = RegistryClient::for_host(&image.registry, settings, insecure)
        .map_err(|error| fail(json, Outcome::PrecheckFailed, &error.to_string()))?;
    Ok(Target {
        image,
        entry,
        tags,
        registry,
    })
}

/// `tag` (default: the image's first floating tag) and the digest it points at now; on failure
/// prints the error and returns the exit code.
async fn live_tag(target: &Target<'_>, tag: Option<&Tag>, json: bool) -> Result<(Tag, Digest), u8> {
    let Some(tag) = tag.or_else(|| target.tags.first()) else {
        return Err(fail(json, Outcome::BadInput, "no floating tag configured"));
    };
    let digest = live_digest(target, tag, json).await?;
    Ok((tag.clone(), digest))
}

/// Checks that the image has a manifest `digest`; on failure prints the error and returns the
/// exit code.
async fn existing_digest(target: &Target<'_>, digest: &Digest, json: bool) -> Result<(), u8> {
    match target
        .registry
        .head_manifest(&target.image.repository, &Reference::Digest(digest.clone()))
        .await
    {
        Ok(Some(_)) => Ok(()),
        Ok(None) => Err(fail(
            json,
            Outcome::BadInput,
            &format!("{} has no image {digest}", target.image),
        )),
        Err(error) => {
            let error = ArtifactError::Registry(error);
            Err(fail(json, artifact_outcome(&error), &error.to_string()))
        }
    }
}

/// The digest `tag` points at now; on failure prints the error and returns the exit code.
async fn live_digest(target: &Target<'_>, tag: &Tag, json: bool) -> Result<Digest, u8> {
    match target
        .registry
        .head_manifest(&target.image.repository, &Reference::Tag(tag.clone()))
        .await
    {
        Ok(Some(head)) => Ok(head.digest),
        Ok(None) => Err(fail(
            json,
            Outcome::BadInput,
            &format!("{} has no tag '{tag}'", target.image),
        )),
        Err(error) => {
            let error = ArtifactError::Registry(error);
            Err(fail(json, artifact_outcome(&error), &error.to_string()))
        }
    }
}
