//! `rollbot drill`: the rollback `rollbot rollback IMAGE` would make now, rehearsed on the
//! image's scratch repository (the target chosen on production exactly as a rollback chooses
//! it), printed step by step against the RTO, and recorded in the daemon's audit log when its
//! database exists.

use std::io::Write as _;
use std::time::Instant;

use serde_json::json;

use super::rollback::choose_target;
use super::{exit_code, fail, resolve, DrillArgs, Target};
use crate::config::Settings;
use crate::domain::model::Reference;
use crate::domain::record::AuditEntry;
use crate::domain::rollback::Actor;
use crate::manifest;
use crate::pipeline::{self, DrillReport, DrillRequest, HoldOptions, Outcome, RunOptions};
use crate::report;

pub(super) async fn drill(args: DrillArgs, settings: &Settings, insecure: bool) -> u8 {
    let started = Instant::now();
    let json = args.json;
    let target = match resolve(settings, &args.image, &args.tags, insecure, json) {
        Ok(target) => target,
        Err(code) => return code,
    };
    let scratch = match settings.drill_image(&target.image, target.entry) {
        Ok(scratch) => scratch,
        Err(error) => return fail(json, Outcome::BadInput, &error),
    };
    let (to, live, target_source, prefetched) = match choose_target(&target, json).await {
        Ok(chosen) => chosen,
        Err(code) => return code,
    };
    let Reference::Digest(to) = to else {
        return fail(
            json,
            Outcome::PrecheckFailed,
            "no target digest was chosen; nothing was written",
        );
    };
    let Target {
        image,
        entry,
        registry,
        ..
    } = target;
    let by = manifest::actor(args.by.as_deref());
    let request = DrillRequest {
        production: image,
        scratch,
        live,
        target: to,
        target_source,
        prefetched: prefetched.map(|read| read.manifest),
    };
    let options = RunOptions {
        dry_run: false,
        rto: settings.rollback.rto,
        checks: entry.map(|e| e.checks.clone()).unwrap_or_default(),
        hold: Some(HoldOptions {
            reason: args
                .reason
                .clone()
                .unwrap_or_else(|| format!("DRILL of {} with rollbot", request.production)),
            by: format!("{by} (drill)"),
        }),
    };
    if !json {
        println!(
            "DRILL: rehearsing the rollback of {} to {} (tags: {}) on {}; production is only read",
            request.production,
            request.target,
            request
                .live
                .iter()
                .map(|(tag, _)| tag.as_str())
                .collect::<Vec<_>>()
                .join(", "),
            request.scratch
        );
        if let Some(source) = &request.target_source {
            println!("  target chosen: {source}");
        }
    }
    let mut print_progress = |event: pipeline::Progress<'_>| {
        if !json {
            print!("{}", report::progress(&event));
            let _ = std::io::stdout().flush();
        }
    };
    let report =
        pipeline::rehearse(&registry, &request, &options, started, &mut print_progress).await;
    audit(settings, &report, &by, args.reason.as_deref()).await;
    if json {
        let mut value = serde_json::to_value(&report).unwrap_or_default();
        if let Some(object) = value.as_object_mut() {
            object.insert("exit_code".to_owned(), exit_code(report.outcome).into());
        }
        match serde_json::to_string_pretty(&value) {
            Ok(text) => println!("{text}"),
            Err(error) => eprintln!("error: cannot serialise the report: {error}"),
        }
    } else {
        print!("{}", report::drill_summary(&report));
    }
    if let Some(error) = &report.error {
        eprintln!("error: {error}");
    }
    exit_code(report.outcome)
}

/// Appends the drill to the daemon's audit log (kind `drill`) when its database exists at
/// `store.path` (or `store.url`); the CLI never creates one. A failure is a warning: the drill
/// happened.
async fn audit(settings: &Settings, report: &DrillReport, by: &str, reason: Option<&str>) {
    let location = &settings.daemon.store.location;
    let now = crate::engine::Clock::now(&crate::engine::SystemClock);
    let actor = Actor {
        id: by.to_owned(),
        name: by.to_owned(),
        groups: Vec::new(),
    };
    let entry = AuditEntry::new(now, None, Some(&actor), "drill", detail(report, reason));
    let written = match crate::store::Store::open_existing(location).await {
        Ok(Some(store)) => store
            .audit_as_bystander(&entry)
            .await
            .map_err(|e| e.to_string()),
        Ok(None) => Ok(()),
        Err(error) => Err(error.to_string()),
    };
    if let Err(error) = written {
        eprintln!(
            "warning: the drill could not be recorded in the audit log at {}: {error}",
            location.display()
        );
    }
}

/// What the audit log keeps of a CLI drill.
fn detail(report: &DrillReport, reason: Option<&str>) -> serde_json::Value {
    let mut detail = report.audit_detail();
    detail["via"] = json!("cli");
    detail["reason"] = json!(reason);
    detail
}
