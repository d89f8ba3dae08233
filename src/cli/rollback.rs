//! `rollbot rollback` and `rollbot verify`: arguments to the pipeline, the confirmation
//! prompt, target selection from rollback manifests, printing.

use std::io::{BufRead as _, IsTerminal as _, Write as _};
use std::time::Instant;

use super::{announce, exit_code, resolve, RollbackArgs, Target, VerifyArgs};
use crate::config::Settings;
use crate::daemon::ServeSettings;
use crate::domain::model::{Reference, Tag};
use crate::manifest;
use crate::pipeline::{
    self, Confirmation, HoldOptions, Outcome, Report, RollbackRequest, RunOptions,
};
use crate::registry::RegistryError;
use crate::report;

pub(super) async fn rollback(args: RollbackArgs, all: &ServeSettings, insecure: bool) -> u8 {
    let settings = &all.core;
    let started = Instant::now();
    let json = args.json;
    let target = match resolve(settings, &args.image, &args.tags, insecure, json) {
        Ok(target) => target,
        Err(code) => return code,
    };
    if json {
        // Where the time goes, request by request (timed from the start of the command).
        target.registry.keep_timeline(started);
    }
    let (to, expect_from, target_source, prefetched) = match args.to.clone() {
        Some(to) => (to, Vec::new(), None, None),
        None => match choose_target(&target, json).await {
            Ok(chosen) => chosen,
            Err(code) => return code,
        },
    };
    let Target {
        image,
        entry,
        tags,
        registry,
    } = target;
    let request = RollbackRequest {
        image,
        target: to,
        tags,
        expect_from,
        target_source,
        prefetched,
    };
    let alias = if settings.images.contains_key(&args.image) {
        args.image.clone()
    } else {
        request.image.repository.to_string()
    };
    let hold = (!args.no_hold).then(|| HoldOptions {
        reason: args
            .reason
            .clone()
            .unwrap_or_else(|| format!("rolled back to {} with rollbot", request.target)),
        by: manifest::actor(args.by.as_deref()),
    });
    let options = RunOptions {
        dry_run: args.dry_run,
        rto: settings.rollback.rto,
        checks: entry.map(|e| e.checks.clone()).unwrap_or_default(),
        hold,
    };
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
        if let Some(source) = &request.target_source {
            println!("  target chosen: {source}");
        }
    }
    let yes = args.yes;
    let confirm = |plan: &pipeline::Plan| {
        if yes {
            // Decided before the plan: it is applied straight away, its reads of the tags
            // being the compare-and-swap reads of the first write.
            return Confirmation::Preapproved;
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
    let report = pipeline::run(
        &registry,
        &request,
        &options,
        started,
        confirm,
        &mut print_progress,
    )
    .await;
    let code = finish(&report, json);
    if !args.no_announce {
        let who = announce::Who {
            alias: &alias,
            by: manifest::actor(args.by.as_deref()),
            reason: args.reason.clone(),
            entry,
        };
        announce::announce(all, &report, who).await;
    }
    code
}

/// Target, the live digests it was chosen from, how, and its manifest if already read.
pub(super) type Chosen = (
    Reference,
    Vec<(Tag, crate::domain::model::Digest)>,
    Option<String>,
    Option<pipeline::Prefetched>,
);

/// The default target ([`pipeline::default_target`]): finishing an unfinished rollback the hold
/// records, else the previous build. Refuses (printing the history it read) otherwise.
pub(super) async fn choose_target(target: &Target<'_>, json: bool) -> Result<Chosen, u8> {
    match pipeline::default_target(&target.registry, &target.image, &target.tags).await {
        Ok(chosen) => Ok((
            Reference::Digest(chosen.digest),
            chosen.expect_from,
            Some(chosen.source),
            chosen.prefetched,
        )),
        Err(refusal) => {
            let mut message = refusal.reason;
            if let Some(suggestion) = refusal.suggestion {
                message.push_str(&format!(
                    "; the newest complete build before it is {suggestion} (--to {suggestion})"
                ));
            }
            if json {
                let value = serde_json::json!({
                    "outcome": refusal.outcome,
                    "error": message,
                    "exit_code": exit_code(refusal.outcome),
                    "history": refusal.history,
                });
                println!("{value}");
            } else if let Some(history) = &refusal.history {
                print!("{}", report::history(history));
            }
            eprintln!("error: {message}");
            Err(exit_code(refusal.outcome))
        }
    }
}

pub(super) async fn verify(args: VerifyArgs, settings: &Settings, insecure: bool) -> u8 {
    let started = Instant::now();
    let json = args.json;
    let Target {
        image,
        entry,
        tags,
        registry,
    } = match resolve(settings, &args.image, &args.tags, insecure, json) {
        Ok(target) => target,
        Err(code) => return code,
    };
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
                RegistryError::RepositoryUnknown { .. } | RegistryError::ManifestUnknown { .. }
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
        pipeline::References::Read(&references),
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
