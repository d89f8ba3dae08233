//! What a rollback costs a registry that rate-limits pulls: every request is counted by kind at a
//! proxy in front of the real registry (so the count does not trust rollbot's own), and compared
//! with the report's counts and its request timeline. Docker Hub counts manifest GETs as pulls;
//! HEADs are free.

use crate::rollback::World;
use crate::support::images::Kind;
use crate::support::proxy::Proxy;
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
        // kind, hold, expected requests.
        //
        // The index with the hold: plan: GET, HEAD latest + both platforms, and with them the
        // hold's reads: HEAD of the hold tag (to put it back if nothing moves) and of the empty
        // blob its manifest names; retag: the `in_progress` hold's manifest PUT and, sent with
        // it, HEAD latest (the compare-and-swap read), PUT latest; verify: HEAD latest (the
        // platforms were found by the plan), meanwhile the `active` hold's manifest PUT.
        (
            Kind::OciIndex,
            true,
            ByKind {
                manifest_get: 1,
                manifest_head: 6,
                manifest_put: 3,
                blob_head: 1,
                blob_upload: 0,
                other: 0,
            },
        ),
        // Without the hold the plan's HEAD of latest is the compare-and-swap read of its write.
        (
            Kind::OciIndex,
            false,
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
            ByKind {
                manifest_get: 1,
                manifest_head: 4,
                manifest_put: 3,
                blob_head: 3,
                blob_upload: 0,
                other: 0,
            },
        ),
        (
            Kind::DockerSchema2,
            false,
            ByKind {
                manifest_get: 1,
                manifest_head: 2,
                manifest_put: 1,
                blob_head: 2,
                ..ByKind::default()
            },
        ),
    ];
    for (kind, hold, expected) in cases {
        let world = World::new(kind);
        // The empty config blob every rollbot artifact names is there, as it is once CI pushed
        // a rollback manifest (or an earlier rollback held the image): it is not uploaded again.
        block_on(world.seeder.push_blob("acme/app", b"{}"));
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
        let case = format!("{kind:?}, hold {hold}");
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
        // Answered, each: a success, or a HEAD's "not there" (no earlier hold).
        assert!(
            timeline.iter().all(|t| {
                let status = t["status"].as_u64().expect("status");
                let head = t["request"]
                    .as_str()
                    .is_some_and(|r| r.starts_with("HEAD "));
                ((200..300).contains(&status) || (head && status == 404))
                    && t["sent_us"].is_u64()
                    && t["took_us"].is_u64()
            }),
            "{case}: {timeline:#?}"
        );
    }
}
