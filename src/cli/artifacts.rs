//! `rollbot manifest generate|push|show`, `history`, `hold status|set|release` and `gate`:
//! arguments to `manifest.rs`, printing.

use super::{
    artifact_outcome, existing_digest, exit_code, fail, live_tag, resolve, GateArgs, GenerateArgs,
    HistoryArgs, HoldReleaseArgs, HoldSetArgs, HoldStatusArgs, PushArgs, ShowArgs, Target,
};
use crate::config::Settings;
use crate::daemon::ServeSettings;
use crate::domain::model::{Digest, Tag};
use crate::manifest::{self, GenerateRequest, Hold, RollbackManifest, Stored};
use crate::pipeline::Outcome;
use crate::report;

pub(super) async fn generate(args: GenerateArgs, settings: &Settings, insecure: bool) -> u8 {
    let target = match resolve(settings, &args.image, &[], insecure, false) {
        Ok(target) => target,
        Err(code) => return code,
    };
    let plain_http = insecure || settings.registry(&target.image.registry).insecure;
    let request = GenerateRequest {
        image: target.image.clone(),
        digest: args.digest,
        tags: args.tags,
        floating: target.tags.clone(),
        previous: args.previous,
        build_url: args.build_url,
        git_sha: args.git_sha,
        insecure: plain_http,
    };
    let manifest = match manifest::generate(&target.registry, &request).await {
        Ok(manifest) => manifest,
        Err(error) => return fail(false, artifact_outcome(&error), &error.to_string()),
    };
    let mut text = serde_json::to_string_pretty(&manifest).unwrap_or_default();
    text.push('\n');
    match &args.output {
        None => print!("{text}"),
        Some(path) => {
            if let Err(error) = std::fs::write(path, &text) {
                return fail(
                    false,
                    Outcome::BadInput,
                    &format!("cannot write {}: {error}", path.display()),
                );
            }
            eprintln!(
                "wrote {} (previous digest: {})",
                path.display(),
                manifest
                    .previous_digest
                    .as_ref()
                    .map_or("none, first build".to_owned(), Digest::to_string)
            );
        }
    }
    0
}

pub(super) async fn push(args: PushArgs, settings: &Settings, insecure: bool) -> u8 {
    let target = match resolve(settings, &args.image, &[], insecure, false) {
        Ok(target) => target,
        Err(code) => return code,
    };
    let name = args.file.display().to_string();
    let document = match std::fs::read(&args.file) {
        Ok(bytes) => bytes,
        Err(error) => {
            return fail(
                false,
                Outcome::BadInput,
                &format!("cannot read {name}: {error}"),
            )
        }
    };
    // The file is input: a malformed one or one for another image is exit 2.
    match RollbackManifest::parse(&document, &name) {
        Ok(parsed) if parsed.image != target.image => {
            return fail(
                false,
                Outcome::BadInput,
                &format!("{name} describes {}, not {}", parsed.image, target.image),
            )
        }
        Ok(_) => {}
        Err(error) => return fail(false, Outcome::BadInput, &error.to_string()),
    }
    match manifest::push_manifest(
        &target.registry,
        &target.image,
        &document,
        &name,
        args.force,
    )
    .await
    {
        Ok((manifest, stored)) => {
            let tag = Tag::for_digest(&manifest.current_digest, "rollback");
            let what = match stored {
                Stored::Written => "stored",
                Stored::AlreadyStored => "already stored, nothing written",
                Stored::Replaced => "replaced the previous one",
            };
            println!(
                "rollback manifest of {}@{} -> {}:{tag} ({what})",
                target.image, manifest.current_digest, target.image
            );
            0
        }
        Err(error) => fail(false, artifact_outcome(&error), &error.to_string()),
    }
}

pub(super) async fn show(args: ShowArgs, settings: &Settings, insecure: bool) -> u8 {
    let (image_text, digest) = match args.image.rsplit_once('@') {
        Some((image, digest)) => match Digest::parse(digest) {
            Ok(digest) => (image, Some(digest)),
            Err(error) => return fail(false, Outcome::BadInput, &error.to_string()),
        },
        None => (args.image.as_str(), None),
    };
    let target = match resolve(settings, image_text, &[], insecure, false) {
        Ok(target) => target,
        Err(code) => return code,
    };
    let digest = match digest {
        Some(digest) => digest,
        None => match live_tag(&target, args.tag.as_ref(), false).await {
            Ok((_, digest)) => digest,
            Err(code) => return code,
        },
    };
    match manifest::read_manifest(&target.registry, &target.image, &digest).await {
        Ok(Some(manifest)) => {
            println!(
                "{}",
                serde_json::to_string_pretty(&manifest).unwrap_or_default()
            );
            0
        }
        Ok(None) => fail(
            false,
            Outcome::PrecheckFailed,
            &format!(
                "{}@{digest} has no rollback manifest (no tag {})",
                target.image,
                Tag::for_digest(&digest, "rollback")
            ),
        ),
        Err(error) => fail(false, artifact_outcome(&error), &error.to_string()),
    }
}

pub(super) async fn history(args: HistoryArgs, settings: &Settings, insecure: bool) -> u8 {
    let json = args.json;
    let target = match resolve(settings, &args.image, &[], insecure, json) {
        Ok(target) => target,
        Err(code) => return code,
    };
    let marking = match (&args.mark_bad, &args.clear_bad) {
        (Some(digest), _) => Some((digest, true)),
        (None, Some(digest)) => Some((digest, false)),
        (None, None) => None,
    };
    if let Some((digest, bad)) = marking {
        return mark(&target, digest, bad, &args, json).await;
    }
    let (tag, live) = match live_tag(&target, args.tag.as_ref(), json).await {
        Ok(live) => live,
        Err(code) => return code,
    };
    let history = manifest::walk(
        &target.registry,
        &target.image,
        &live,
        usize::from(args.limit),
        true,
        |_| false,
    )
    .await;
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&history).unwrap_or_default()
        );
    } else {
        println!("history of {} from {tag} ({})", target.image, live.short());
        print!("{}", report::history(&history));
    }
    match &history.end {
        manifest::HistoryEnd::Error { detail } => {
            eprintln!("error: {detail}");
            exit_code(Outcome::PrecheckFailed)
        }
        _ => 0,
    }
}

async fn mark(
    target: &Target<'_>,
    digest: &Digest,
    bad: bool,
    args: &HistoryArgs,
    json: bool,
) -> u8 {
    if let Err(code) = existing_digest(target, digest, json).await {
        return code;
    }
    let reason = args
        .reason
        .clone()
        .unwrap_or_else(|| "mark cleared".to_owned());
    let by = manifest::actor(args.by.as_deref());
    match manifest::mark(&target.registry, &target.image, digest, bad, &reason, &by).await {
        Ok(record) => {
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&record).unwrap_or_default()
                );
            } else if bad {
                println!(
                    "marked {}@{digest} bad ({reason}); default target selection skips it",
                    target.image
                );
            } else {
                println!("cleared the bad mark on {}@{digest}", target.image);
            }
            0
        }
        Err(error) => fail(json, artifact_outcome(&error), &error.to_string()),
    }
}

pub(super) async fn hold_status(args: HoldStatusArgs, settings: &Settings, insecure: bool) -> u8 {
    let target = match resolve(settings, &args.image, &[], insecure, args.json) {
        Ok(target) => target,
        Err(code) => return code,
    };
    match manifest::read_hold(&target.registry, &target.image).await {
        Ok(hold) => {
            if args.json {
                let value = serde_json::json!({ "image": target.image, "hold": hold });
                println!(
                    "{}",
                    serde_json::to_string_pretty(&value).unwrap_or_default()
                );
            } else {
                match hold {
                    None => println!("no hold on {}", target.image),
                    Some(hold) if hold.is_active() => println!("ACTIVE: {}", hold.describe()),
                    Some(hold) => println!("released: {}", hold.describe()),
                }
            }
            0
        }
        Err(error) => fail(args.json, artifact_outcome(&error), &error.to_string()),
    }
}

pub(super) async fn hold_set(args: HoldSetArgs, settings: &Settings, insecure: bool) -> u8 {
    let target = match resolve(settings, &args.image, &[], insecure, false) {
        Ok(target) => target,
        Err(code) => return code,
    };
    let digest = match args.digest {
        Some(digest) => match existing_digest(&target, &digest, false).await {
            Ok(()) => digest,
            Err(code) => return code,
        },
        None => match live_tag(&target, None, false).await {
            Ok((_, digest)) => digest,
            Err(code) => return code,
        },
    };
    let hold = Hold::active(
        target.image.clone(),
        digest,
        target.tags.clone(),
        args.reason,
        manifest::actor(args.by.as_deref()),
    );
    match manifest::write_hold(&target.registry, &hold).await {
        Ok(()) => {
            println!("hold set: {}", hold.describe());
            0
        }
        Err(error) => fail(false, artifact_outcome(&error), &error.to_string()),
    }
}

pub(super) async fn hold_release(args: HoldReleaseArgs, all: &ServeSettings, insecure: bool) -> u8 {
    let settings = &all.core;
    let target = match resolve(settings, &args.image, &[], insecure, false) {
        Ok(target) => target,
        Err(code) => return code,
    };
    let hold = match manifest::read_hold(&target.registry, &target.image).await {
        Ok(Some(hold)) if hold.is_active() => hold,
        Ok(_) => {
            println!("no active hold on {}; nothing written", target.image);
            return 0;
        }
        Err(error) => return fail(false, artifact_outcome(&error), &error.to_string()),
    };
    let hold_warning = hold.release_warning();
    let released = hold.released(
        manifest::actor(args.by.as_deref()),
        manifest::now_rfc3339(),
        args.reason,
    );
    if let Err(error) = manifest::write_hold(&target.registry, &released).await {
        return fail(false, artifact_outcome(&error), &error.to_string());
    }
    println!("hold released: {}", released.describe());
    if let Some(warning) = hold_warning {
        println!("note: {warning}");
    }
    let repository = target.entry.and_then(|entry| entry.dockerhub.clone());
    if let Some(repository) = repository {
        match crate::notify::remove_banner_now(all.notify.dockerhub.as_ref(), &repository).await {
            Ok(true) => println!(
                "removed the rollback banner from the Docker Hub description of {repository}"
            ),
            Ok(false) => {}
            Err(error) => {
                eprintln!("error: the hold is released, but the Docker Hub banner of {repository} could not be removed: {error}");
                return exit_code(Outcome::VerifyFailed);
            }
        }
    }
    0
}

/// Exit 0: no active hold. 1: held. 3: the hold cannot be read (fails closed: a gate that
/// cannot check must not let CI push).
pub(super) async fn gate(args: GateArgs, settings: &Settings, insecure: bool) -> u8 {
    let target = match resolve(settings, &args.image, &[], insecure, false) {
        Ok(target) => target,
        Err(code) => return code,
    };
    match manifest::read_hold(&target.registry, &target.image).await {
        Ok(Some(hold)) if hold.is_active() => {
            eprintln!(
                "held: {}\nDo not push the floating tags. Release the hold when the fix is ready: rollbot hold release {} --reason '…'",
                hold.describe(),
                target.image
            );
            1
        }
        Ok(_) => {
            println!("no active hold on {}; pushing is allowed", target.image);
            0
        }
        Err(error) => {
            eprintln!(
                "error: cannot read the hold of {} ({error}); refusing to allow a push (the gate fails closed)",
                target.image
            );
            exit_code(Outcome::PrecheckFailed)
        }
    }
}
