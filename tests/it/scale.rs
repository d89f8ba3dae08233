//! Many rollbacks at once (counts, not times; `deploy/bench/scale.sh` measures the times): every
//! one succeeds, one image never has two at a time even when asked twice at the same moment, each
//! costs one manifest GET for request and approval together, and the audit log, read a bounded
//! page at a time, tells each image's story in order.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use futures_util::future::join_all;
use rollbot::domain::record::AuditEntry;
use rollbot::domain::rollback::{RollbackId, Timestamp};
use rollbot::store::Store;

use crate::support::daemon::{TestDaemon, USERS};
use crate::support::images::{Kind, Seeder};
use crate::support::proxy::Proxy;
use crate::support::registry::TestRegistry;
use crate::support::{block_on, Cli};

const IMAGES: usize = 20;

/// Posts every `(path, body)` to the daemon at once; the answers' `(ok, reply)` in order.
fn all_at_once(daemon: &TestDaemon, posts: Vec<(&str, serde_json::Value)>) -> Vec<(bool, String)> {
    let http = reqwest::Client::new();
    daemon
        .runtime
        .block_on(join_all(posts.into_iter().map(|(path, body)| {
            let request = http
                .post(format!("{}{path}", daemon.base))
                .json(&body)
                .send();
            async move {
                let value: serde_json::Value = request
                    .await
                    .expect("console API answers")
                    .json()
                    .await
                    .expect("JSON");
                (
                    value["ok"] == true,
                    value["reply"].as_str().unwrap_or_default().to_owned(),
                )
            }
        })))
}

/// The console channel's version: what changes after it is what a later view with
/// `since` returns.
fn version(daemon: &TestDaemon) -> u64 {
    let (_, body) = daemon.get("/console/api/state?user=bob&limit=1");
    let view: serde_json::Value = serde_json::from_str(&body).expect("state JSON");
    view["version"].as_u64().expect("a version")
}

/// Waits (up to a minute) until the status message of every rollback in `ids` says "rolled
/// back", following the console's changes after version `since` (a page of the newest
/// messages is not enough: many change at once).
fn wait_rolled_back(daemon: &TestDaemon, ids: &[String], mut since: u64) {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut states: BTreeMap<String, String> = BTreeMap::new();
    loop {
        let (_, body) = daemon.get(&format!("/console/api/state?user=bob&since={since}"));
        let view: serde_json::Value = serde_json::from_str(&body).expect("state JSON");
        assert_eq!(
            view["truncated"], false,
            "changes were left out; poll faster"
        );
        since = view["version"].as_u64().unwrap_or(since);
        for m in view["messages"].as_array().into_iter().flatten() {
            let message: rollbot::chat::Message =
                serde_json::from_value(m["message"].clone()).expect("a message");
            // "Rollback rb-7 of app-03: rolled back"
            let heading = message.fallback.to_string();
            if let Some((id, state)) = heading
                .strip_prefix("Rollback ")
                .and_then(|rest| Some((rest.split_once(' ')?.0, rest.split_once(": ")?.1)))
            {
                states.insert(id.to_owned(), state.to_owned());
            }
        }
        if ids
            .iter()
            .all(|id| states.get(id).map(String::as_str) == Some("rolled back"))
        {
            return;
        }
        assert!(Instant::now() < deadline, "not all rolled back: {states:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn rollbacks_of_many_images_approved_at_once_all_succeed_one_at_a_time_per_image() {
    let registry = TestRegistry::start();
    let seeder = Seeder::new(&registry.host);
    let builds = block_on(join_all((0..IMAGES).map(|n| {
        let seeder = seeder.clone();
        async move {
            let repo = format!("acme/app-{n:02}");
            let v1 = seeder.push(&repo, Kind::OciIndex, "v1", &["v1"]).await;
            let v2 = seeder
                .push(&repo, Kind::OciIndex, "v2", &["v2", "latest"])
                .await;
            (v1, v2)
        }
    })));
    // rollbot reaches the registry through a proxy that counts what it asks.
    let proxy = Proxy::start(&registry.host, Vec::new());
    let dir = tempfile::tempdir().expect("dir");
    let db = dir.path().join("state/rollbot.db");
    let mut toml = format!(
        "[registries.\"{host}\"]\ninsecure = true\n\n[store]\npath = \"{}\"\n\n[server]\nlisten = \"127.0.0.1:0\"\nshutdown_grace = \"5s\"\n\n[limits]\ncommands_per_minute = 1000\nrollbacks_per_hour = 1000\n{USERS}\n",
        db.display(),
        host = proxy.host
    );
    for n in 0..IMAGES {
        toml.push_str(&format!(
            "[images.app-{n:02}]\nimage = \"{}/acme/app-{n:02}\"\n",
            proxy.host
        ));
    }
    let daemon = TestDaemon::start(&toml, &db);

    // Back to v1, then forward to v2 again: two rollbacks of every image.
    for round in [0, 1] {
        // Each image asked for twice at the same moment: exactly one request wins.
        let requests = (0..IMAGES)
            .flat_map(|n| {
                let target = if round == 0 {
                    &builds[n].0
                } else {
                    &builds[n].1
                };
                let text = format!("/rollback app-{n:02}@{} round {round}", target.digest);
                let body = serde_json::json!({ "user": "alice", "text": text });
                [
                    ("/console/api/command", body.clone()),
                    ("/console/api/command", body),
                ]
            })
            .collect();
        let answers = all_at_once(&daemon, requests);
        let mut ids = Vec::new();
        for (n, pair) in answers.chunks(2).enumerate() {
            let accepted: Vec<&(bool, String)> = pair.iter().filter(|(ok, _)| *ok).collect();
            assert_eq!(accepted.len(), 1, "app-{n:02}, round {round}: {pair:?}");
            let refused = pair.iter().find(|(ok, _)| !ok).expect("one refused");
            assert!(refused.1.contains("already"), "{}", refused.1);
            let id = accepted[0].1.split_whitespace().next().expect("an id");
            ids.push(id.to_owned());
        }

        // All approved at once.
        let since = version(&daemon);
        let approvals = ids
            .iter()
            .map(|id| {
                let body = serde_json::json!({ "user": "bob", "action": format!("approve:{id}") });
                ("/console/api/action", body)
            })
            .collect();
        for (ok, reply) in all_at_once(&daemon, approvals) {
            assert!(ok, "{reply}");
        }
        wait_rolled_back(&daemon, &ids, since);
        for (n, (v1, v2)) in builds.iter().enumerate() {
            let now = block_on(seeder.digest_of(&format!("acme/app-{n:02}"), "latest"));
            let expected = if round == 0 { &v1.digest } else { &v2.digest };
            assert_eq!(now.as_ref(), Some(expected), "app-{n:02}, round {round}");
        }
    }
    let (_, metrics) = daemon.get("/metrics");
    assert!(
        metrics.contains(&format!(
            "rollbot_rollbacks_total{{outcome=\"succeeded\"}} {}",
            2 * IMAGES
        )),
        "{metrics}"
    );
    assert!(
        metrics.contains("\nrollbot_engine_busy_seconds_total "),
        "{metrics}"
    );
    assert!(daemon.stop(), "clean shutdown");

    // One manifest GET per rollback: the request's plan reads the target, the approval's
    // re-plan reuses those bytes (HEADs check the tags and the platforms again).
    let seen = proxy.seen();
    for n in 0..IMAGES {
        let gets = seen
            .iter()
            .filter(|r| r.starts_with(&format!("GET /v2/acme/app-{n:02}/manifests/")))
            .count();
        assert_eq!(gets, 2, "app-{n:02}: {seen:?}");
    }

    // The audit log, in commit order: an image's two rollbacks never ran at the same time.
    let log = block_on(async {
        let store = Store::open(&db).await.expect("store");
        store.audit_since(Timestamp(0)).await.expect("audit")
    });
    let mut runs: BTreeMap<RollbackId, (i64, i64, String)> = BTreeMap::new();
    for entry in &log {
        let Some(id) = entry.rollback else { continue };
        let run = runs
            .entry(id)
            .or_insert((i64::MAX, i64::MIN, String::new()));
        match entry.kind.as_str() {
            "requested" => run.2 = entry.detail["image"].as_str().unwrap_or("").to_owned(),
            "state" if entry.detail["to"] == "approved" => run.0 = entry.seq,
            "finished" => {
                assert_eq!(entry.detail["outcome"], "succeeded", "{entry:?}");
                run.1 = entry.seq;
            }
            _ => {}
        }
    }
    let mut by_image: BTreeMap<String, Vec<(i64, i64)>> = BTreeMap::new();
    for (started, finished, image) in runs.into_values() {
        by_image.entry(image).or_default().push((started, finished));
    }
    assert_eq!(by_image.len(), IMAGES);
    for (image, mut runs) in by_image {
        runs.sort();
        assert_eq!(runs.len(), 2, "{image}: {runs:?}");
        assert!(runs[0].1 < runs[1].0, "{image}: the runs overlap: {runs:?}");
    }

    // `rollbot audit` prints the newest entries up to --limit, oldest first, and says when it
    // left older ones out.
    let cli = Cli::new().config(&format!("[store]\npath = \"{}\"\n", db.display()));
    let lines = |run: &crate::support::Run| -> Vec<AuditEntry> {
        run.stdout
            .lines()
            .map(|l| serde_json::from_str(l).expect("an audit entry"))
            .collect()
    };
    let limited = cli.run(&["audit", "--json", "--limit", "10"]);
    assert_eq!(limited.code, 0, "{}", limited.stderr);
    assert_eq!(lines(&limited), log[log.len() - 10..]);
    assert!(
        limited.stderr.contains("older ones were left out"),
        "{}",
        limited.stderr
    );
    let all = cli.run(&["audit", "--json", "--limit", "0"]);
    assert_eq!(lines(&all), log);
    assert!(all.stderr.is_empty(), "{}", all.stderr);
    let default = cli.run(&["audit", "--json"]);
    assert_eq!(lines(&default).len(), log.len().min(1000));
}
