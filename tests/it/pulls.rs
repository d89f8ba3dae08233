//! What a rollback costs a registry that rate-limits pulls: every request is counted by kind at a
//! proxy in front of the real registry (so the count does not trust rollbot's own), and compared
//! with the report's counts and its request timeline. Docker Hub counts manifest GETs as pulls;
//! HEADs are free.

use crate::rollback::World;
use crate::support::images::Kind;
use crate::support::proxy::{Proxy, Rule};
use crate::support::{block_on, Cli};

/// Requests by kind, as a registry sees them.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct ByKind {
    manifest_get: u64,
    manifest_head: u64,
    manifest_put: u64,
    blob_head: u64,
    /// Upload starts (POST) and completions (PUT).
    blob_upload: u64,
    other: u64,
}

impl ByKind {
    /// Counts request lines (`HEAD /v2/acme/app/manifests/latest`).
    fn of(seen: &[String]) -> ByKind {
        let mut counts = ByKind::default();
        for line in seen {
            let (method, path) = line.split_once(' ').unwrap_or((line, ""));
            let slot = match (method, path) {
                ("GET", p) if p.contains("/manifests/") => &mut counts.manifest_get,
                ("HEAD", p) if p.contains("/manifests/") => &mut counts.manifest_head,
                ("PUT", p) if p.contains("/manifests/") => &mut counts.manifest_put,
                ("HEAD", p) if p.contains("/blobs/") => &mut counts.blob_head,
                ("POST" | "PUT", p) if p.contains("/blobs/uploads/") => &mut counts.blob_upload,
                _ => &mut counts.other,
            };
            *slot += 1;
        }
        counts
    }

    /// The report's `registry.requests`.
    fn reported(requests: &serde_json::Value) -> ByKind {
        let n = |key: &str| requests[key].as_u64().unwrap_or_else(|| panic!("{key}"));
        ByKind {
            manifest_get: n("manifest_get"),
            manifest_head: n("manifest_head"),
            manifest_put: n("manifest_put"),
            blob_head: n("blob_head"),
            blob_upload: n("blob_upload"),
            other: n("token")
                + n("tags_list")
                + n("blob_get")
                + n("blob_mount")
                + n("manifest_delete"),
        }
    }
}

/// `rollbot rollback IMAGE --to DIGEST --yes` (with the hold, and with `--no-hold`) of a
/// two-platform index and of a single-platform manifest (config and one layer): one manifest
/// GET, the target's bytes; everything else HEADs and PUTs (the hold is one manifest PUT).
#[test]
fn a_rollback_to_a_digest_costs_one_counted_pull_and_otherwise_heads_and_puts() {
    let cases = [
        // kind, hold, the empty blob already in the repository, expected requests.
        //
        // The index with the hold: plan: GET, HEAD latest + both platforms, and with them HEAD
        // of the hold tag (to put it back if nothing moves); retag: the `in_progress` hold's manifest PUT, PUT latest
        // (the plan's HEAD, milliseconds old, is its compare-and-swap read); verify: HEAD
        // latest (the platforms were found by the plan), meanwhile the `active` hold's PUT.
        (
            Kind::OciIndex,
            true,
            true,
            ByKind {
                manifest_get: 1,
                manifest_head: 5,
                manifest_put: 3,
                blob_head: 0,
                blob_upload: 0,
                other: 0,
            },
        ),
        // The first hold in a repository: its manifest PUT is refused (the empty blob it names
        // is not there), the blob is uploaded (POST + PUT), the PUT sent again.
        (
            Kind::OciIndex,
            true,
            false,
            ByKind {
                manifest_get: 1,
                manifest_head: 5,
                manifest_put: 4,
                blob_head: 0,
                blob_upload: 2,
                other: 0,
            },
        ),
        // Without the hold the plan's HEAD of latest is the compare-and-swap read of its write.
        (
            Kind::OciIndex,
            false,
            true,
            ByKind {
                manifest_get: 1,
                manifest_head: 4,
                manifest_put: 1,
                ..ByKind::default()
            },
        ),
        // A single manifest references blobs (config, layer): HEADed by the plan.
        (
            Kind::DockerSchema2,
            true,
            true,
            ByKind {
                manifest_get: 1,
                manifest_head: 3,
                manifest_put: 3,
                blob_head: 2,
                blob_upload: 0,
                other: 0,
            },
        ),
        (
            Kind::DockerSchema2,
            false,
            true,
            ByKind {
                manifest_get: 1,
                manifest_head: 2,
                manifest_put: 1,
                blob_head: 2,
                ..ByKind::default()
            },
        ),
    ];
    for (kind, hold, seeded, expected) in cases {
        let world = World::new(kind);
        // The empty config blob every rollbot artifact names is there, as it is once CI pushed
        // a rollback manifest (or an earlier rollback held the image): it is not uploaded again.
        if seeded {
            block_on(world.seeder.push_blob("acme/app", b"{}"));
        }
        let proxy = Proxy::start(&world.registry.host, Vec::new());
        let image = format!("{}/acme/app", proxy.host);
        let mut args = vec![
            "rollback",
            &image,
            "--to",
            &world.v2.digest,
            "--yes",
            "--insecure",
            "--json",
        ];
        if !hold {
            args.push("--no-hold");
        }
        let run = Cli::new().run(&args);
        let case = format!("{kind:?}, hold {hold}, empty blob there {seeded}");
        assert_eq!(run.code, 0, "{case}\n{}\n{}", run.stdout, run.stderr);
        let report = run.json();
        assert_eq!(report["outcome"], "succeeded", "{case}");
        assert_eq!(
            world.digest_of("latest").as_deref(),
            Some(world.v2.digest.as_str()),
            "{case}"
        );

        let seen = proxy.seen();
        let counted = ByKind::of(&seen);
        // On a loaded machine the plan's read of latest (or of the hold tag) can be older than
        // `MAX_READ_AGE` (100 ms) when its write is due: then it is read once more, right
        // before that write (and the target's digest is HEADed again before the first one).
        let count = |line: &str| seen.iter().filter(|r| *r == line).count();
        let target = format!("HEAD /v2/acme/app/manifests/{}", world.v2.digest);
        let reread = u64::from(count("HEAD /v2/acme/app/manifests/latest") == 3)
            + u64::from(hold && count("HEAD /v2/acme/app/manifests/rollbot-hold") == 2)
            + u64::from(count(&target) == 1);
        let expected = ByKind {
            manifest_head: expected.manifest_head + reread,
            ..expected
        };
        assert_eq!(counted, expected, "{case}: {seen:#?}");
        assert_eq!(
            ByKind::reported(&report["registry"]["requests"]),
            counted,
            "{case}: the report counts what reached the registry"
        );
        assert_eq!(report["registry"]["counted_pulls"], 1, "{case}");
        let gets: Vec<&String> = seen.iter().filter(|r| r.starts_with("GET ")).collect();
        assert_eq!(
            gets,
            [&format!("GET /v2/acme/app/manifests/{}", world.v2.digest)],
            "{case}: the one pull is the target's bytes"
        );

        // `--json` lists every request with its answer, in the order answered.
        let timeline = report["registry"]["timeline"]
            .as_array()
            .unwrap_or_else(|| panic!("{case}: no timeline in {report}"));
        let mut listed: Vec<String> = timeline
            .iter()
            .map(|t| t["request"].as_str().expect("request").to_owned())
            .collect();
        let mut sent = seen.clone();
        listed.sort();
        sent.sort();
        assert_eq!(listed, sent, "{case}");
        // Answered, each: a success, a HEAD's "not there" (no earlier hold), or, for the first
        // hold in a repository, the refusal of its first PUT.
        assert!(
            timeline.iter().all(|t| {
                let status = t["status"].as_u64().expect("status");
                let request = t["request"].as_str().unwrap_or_default();
                let head = request.starts_with("HEAD ");
                let first_hold = !seeded && request.ends_with("/manifests/rollbot-hold");
                ((200..300).contains(&status)
                    || (head && status == 404)
                    || (first_hold && status == 400))
                    && t["sent_us"].is_u64()
                    && t["took_us"].is_u64()
            }),
            "{case}: {timeline:#?}"
        );
    }
}

/// The first hold in a repository, on a registry that refuses a manifest naming a missing blob
/// with 404 instead of distribution's 400 (same `MANIFEST_BLOB_UNKNOWN` body): the blob is
/// uploaded and the PUT sent again. Any other refusal of the hold is not retried, and no tag
/// moves.
#[test]
fn the_first_hold_uploads_the_empty_blob_only_when_refused_for_it() {
    for (rule, succeeds) in [
        (Rule::RewriteStatus { from: 400, to: 404 }, true),
        (
            Rule::FailPutTag {
                tag: "rollbot-hold".into(),
                status: 400,
            },
            false,
        ),
    ] {
        let case = format!("{rule:?}");
        let world = World::new(Kind::OciIndex);
        let proxy = Proxy::start(&world.registry.host, vec![rule]);
        let image = format!("{}/acme/app", proxy.host);
        let run = Cli::new().run(&[
            "rollback",
            &image,
            "--to",
            &world.v2.digest,
            "--yes",
            "--insecure",
            "--json",
        ]);
        let seen = proxy.seen();
        let uploads = seen
            .iter()
            .filter(|r| r.contains("/blobs/uploads/"))
            .count();
        let latest = world.digest_of("latest");
        if succeeds {
            assert_eq!(run.code, 0, "{case}\n{}\n{}", run.stdout, run.stderr);
            assert_eq!(latest.as_deref(), Some(world.v2.digest.as_str()), "{case}");
            assert_eq!(uploads, 2, "{case}: {seen:#?}");
            assert!(world.digest_of("rollbot-hold").is_some(), "{case}");
        } else {
            assert_ne!(run.code, 0, "{case}\n{}", run.stdout);
            assert_ne!(latest.as_deref(), Some(world.v2.digest.as_str()), "{case}");
            assert_eq!(uploads, 0, "{case}: {seen:#?}");
            assert!(
                run.json()["error"]
                    .as_str()
                    .is_some_and(|e| e.contains("could not record the rollback in the hold")),
                "{case}: {}",
                run.stdout
            );
        }
    }
}
