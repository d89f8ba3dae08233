//! Command-line interface: clap definitions, and the glue from arguments to the pipeline.
//!
//! Exit codes (also in `--help`): 0 done or nothing to do; 1 declined at the prompt;
//! 2 bad input or config; 3 a pre-check failed, nothing changed; 4 retag failed part-way;
//! 5 retag done (or `verify` run) but verification or a health check failed.

use std::io::{BufRead as _, IsTerminal as _, Write as _};
use std::path::PathBuf;
use std::time::Instant;

use clap::{Args, Parser, Subcommand};

use crate::config::{ImageSettings, Settings};
use crate::domain::model::{Digest, ImageRef, Reference, Tag};
use crate::pipeline::{self, Confirmation, Outcome, Report, RollbackRequest, RunOptions};
use crate::registry::RegistryClient;
use crate::report;

const EXIT_CODES: &str = "Exit codes:
  0  done, or nothing to do (already at target, dry run)
  1  declined at the confirmation prompt; nothing changed
  2  bad input or config; nothing changed
  3  a pre-check failed (registry, incomplete target, tag moved); nothing changed
  4  retag failed part-way; the report lists every tag's digest now
  5  tags moved (or `verify` ran) but verification or a health check failed";

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

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Move floating tags (default `latest`) back to a known-good digest: plan, confirm,
    /// retag with the exact manifest bytes, verify, run health checks.
    #[command(after_help = EXIT_CODES)]
    Rollback(RollbackArgs),
    /// Check that tags point at a digest and that every platform of it is present, then run
    /// the image's health checks. Changes nothing.
    #[command(after_help = EXIT_CODES)]
    Verify(VerifyArgs),
}

#[derive(Debug, Args)]
pub struct RollbackArgs {
    /// host[:port]/repository, or an alias from the config's [images] table.
    #[arg(value_name = "IMAGE")]
    pub image: String,

    /// The known-good target: a digest (sha256:…) or a tag that is resolved to its digest.
    #[arg(long, value_name = "DIGEST|TAG", value_parser = Reference::parse)]
    pub to: Reference,

    /// A floating tag to move (repeatable). Default: the image's tags from the config,
    /// else rollback.tags (["latest"]).
    #[arg(long = "tag", value_name = "TAG", value_parser = Tag::parse)]
    pub tags: Vec<Tag>,

    /// Talk plain HTTP to this registry (same as insecure = true in its config).
    #[arg(long)]
    pub insecure: bool,

    /// Plan and print, write nothing.
    #[arg(long, conflicts_with = "yes")]
    pub dry_run: bool,

    /// Apply without asking. Required when stdin is not a terminal.
    #[arg(long, short = 'y')]
    pub yes: bool,

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

    /// Talk plain HTTP to this registry.
    #[arg(long)]
    pub insecure: bool,

    /// Print one JSON report on stdout instead of text.
    #[arg(long)]
    pub json: bool,
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

/// Runs a parsed command with loaded settings; prints the report; returns the exit code.
pub async fn run(command: Command, settings: &Settings) -> u8 {
    match command {
        Command::Rollback(args) => rollback(args, settings).await,
        Command::Verify(args) => verify(args, settings).await,
    }
}

/// An error before the pipeline started (bad alias, credentials): exit 2 or 3, one line.
fn early_failure(json: bool, outcome: Outcome, error: &str) -> u8 {
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

/// The image, its allowlist entry, the floating tags and a registry client, or the exit code
/// of an error already printed.
struct Target<'s> {
    image: ImageRef,
    entry: Option<&'s ImageSettings>,
    tags: Vec<Tag>,
    registry: RegistryClient,
}

fn resolve<'s>(
    settings: &'s Settings,
    image: &str,
    tags: &[Tag],
    insecure: bool,
    json: bool,
) -> Result<Target<'s>, u8> {
    let (image, entry) = settings
        .resolve_image(image)
        .map_err(|error| early_failure(json, Outcome::BadInput, &error))?;
    let tags = settings.floating_tags(entry, tags);
    let registry = RegistryClient::for_host(&image.registry, settings, insecure)
        .map_err(|error| early_failure(json, Outcome::PrecheckFailed, &error.to_string()))?;
    Ok(Target {
        image,
        entry,
        tags,
        registry,
    })
}

async fn rollback(args: RollbackArgs, settings: &Settings) -> u8 {
    let Target {
        image,
        entry,
        tags,
        registry,
    } = match resolve(settings, &args.image, &args.tags, args.insecure, args.json) {
        Ok(target) => target,
        Err(code) => return code,
    };
    let request = RollbackRequest {
        image,
        target: args.to,
        tags,
    };
    let options = RunOptions {
        dry_run: args.dry_run,
        rto: settings.rollback.rto,
        checks: entry.map(|e| e.checks.clone()).unwrap_or_default(),
    };
    let json = args.json;
    if !json {
        println!(
            "rollback {} -> {} (tags: {})",
            request.image,
            request.target,
            request
                .tags
                .iter()
                .map(Tag::as_str)
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    let yes = args.yes;
    let confirm = |plan: &pipeline::Plan| {
        if yes {
            return Confirmation::Proceed;
        }
        if !std::io::stdin().is_terminal() {
            return Confirmation::NoTerminal;
        }
        let moving = plan.tags.iter().filter(|t| !t.already_at_target).count();
        eprint!(
            "Move {moving} tag{} of {} to {}? [y/N] ",
            if moving == 1 { "" } else { "s" },
            plan.image,
            plan.target.digest
        );
        let _ = std::io::stderr().flush();
        let mut answer = String::new();
        let _ = std::io::stdin().lock().read_line(&mut answer);
        if matches!(answer.trim(), "y" | "Y" | "yes" | "YES" | "Yes") {
            Confirmation::Proceed
        } else {
            Confirmation::Declined
        }
    };
    let mut print_progress = |event: pipeline::Progress<'_>| {
        if !json {
            print!("{}", report::progress(&event));
            let _ = std::io::stdout().flush();
        }
    };
    let report = pipeline::run(&registry, &request, &options, confirm, &mut print_progress).await;
    finish(&report, json)
}

async fn verify(args: VerifyArgs, settings: &Settings) -> u8 {
    let started = Instant::now();
    let Target {
        image,
        entry,
        tags,
        registry,
    } = match resolve(settings, &args.image, &args.tags, args.insecure, args.json) {
        Ok(target) => target,
        Err(code) => return code,
    };
    let json = args.json;
    let mut report = Report::new(
        "verify",
        &image,
        &Reference::Digest(args.expect.clone()),
        &tags,
    );
    let mut print_progress = |event: pipeline::Progress<'_>| {
        if !json {
            print!("{}", report::progress(&event));
        }
    };
    // The one manifest GET: the expected manifest, to learn what it references.
    let manifest = match registry
        .get_manifest(&image.repository, &Reference::Digest(args.expect.clone()))
        .await
    {
        Ok(manifest) => manifest,
        Err(error) => {
            let outcome = if matches!(
                error,
                crate::registry::RegistryError::RepositoryUnknown { .. }
                    | crate::registry::RegistryError::ManifestUnknown { .. }
            ) {
                Outcome::BadInput
            } else {
                Outcome::PrecheckFailed
            };
            let report = report.finish(
                outcome,
                Some(error.to_string()),
                started,
                settings.rollback.rto,
                Some(&registry),
            );
            return finish(&report, json);
        }
    };
    let references = match manifest.references() {
        Ok(references) => references,
        Err(error) => {
            let report = report.finish(
                Outcome::PrecheckFailed,
                Some(format!("{} {}: {error}", image, args.expect)),
                started,
                settings.rollback.rto,
                Some(&registry),
            );
            return finish(&report, json);
        }
    };
    let checks = entry.map(|e| e.checks.clone()).unwrap_or_default();
    pipeline::verify_and_check(
        &registry,
        &image,
        &tags,
        &args.expect,
        &references,
        &checks,
        &mut report,
        &mut print_progress,
    )
    .await;
    let outcome = report.outcome;
    let error = report.error.take();
    let report = report.finish(
        outcome,
        error,
        started,
        settings.rollback.rto,
        Some(&registry),
    );
    finish(&report, json)
}

fn finish(report: &Report, json: bool) -> u8 {
    if json {
        let mut value = serde_json::to_value(report).unwrap_or_default();
        if let Some(object) = value.as_object_mut() {
            object.insert("exit_code".to_owned(), exit_code(report.outcome).into());
        }
        match serde_json::to_string_pretty(&value) {
            Ok(text) => println!("{text}"),
            Err(error) => eprintln!("error: cannot serialise the report: {error}"),
        }
    } else {
        print!("{}", report::summary(report));
    }
    if let Some(error) = &report.error {
        eprintln!("error: {error}");
    }
    exit_code(report.outcome)
}
