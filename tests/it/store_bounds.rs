//! The store with many rollbacks behind it, on SQLite and on a real Postgres alike: the reads
//! that can grow are bounded (the audit log a page at a time, the failed rollbacks a start reads
//! again), both dialects have the same indexes for them, and the engine's batch of changes is
//! saved whole or not at all.

use rollbot::config::StoreLocation;
use rollbot::domain::record::AuditEntry;
use rollbot::domain::rollback::{RollbackId, State, Timestamp};
use rollbot::store::{Store, StoreError};

use crate::store::{each_backend, leading};
use crate::support::records::sample;
use crate::support::{block_on, postgres};

fn entry(at: i64, kind: &str) -> AuditEntry {
    AuditEntry::new(
        Timestamp(at),
        None,
        None,
        kind,
        serde_json::json!({ "at": at }),
    )
}

#[test]
fn an_audit_page_is_the_newest_entries_oldest_first_and_says_what_it_left_out() {
    each_backend(|location| {
        let backend = location.display();
        block_on(async {
            let store = leading(&location, "a").await;
            // 450 entries at 1..=450 ms, written 200 to a statement (and three transactions).
            let entries: Vec<AuditEntry> = (1..=450).map(|at| entry(at, "command")).collect();
            store.audit_all(&entries[..400]).await.expect("append");
            for e in &entries[400..] {
                store.audit(e).await.expect("append");
            }
            let all = store.audit_since(Timestamp(0)).await.expect("all");
            let times: Vec<i64> = all.iter().map(|e| e.at.0).collect();
            assert_eq!(times, (1..=450).collect::<Vec<_>>(), "{backend}: in order");

            let page = store.audit_page(Timestamp(0), 100).await.expect("page");
            let times: Vec<i64> = page.entries.iter().map(|e| e.at.0).collect();
            assert_eq!(times, (351..=450).collect::<Vec<_>>(), "{backend}");
            assert!(page.truncated, "{backend}: older entries were left out");

            let since = store.audit_page(Timestamp(401), 100).await.expect("page");
            assert_eq!(since.entries.len(), 50, "{backend}");
            assert!(!since.truncated, "{backend}: nothing left out");
            assert_eq!(since.entries, all[400..], "{backend}: the same entries");

            let exact = store.audit_page(Timestamp(351), 100).await.expect("page");
            assert_eq!(exact.entries.len(), 100, "{backend}");
            assert!(!exact.truncated, "{backend}: exactly the limit");
        });
    });
}

#[test]
fn a_start_reads_again_only_the_newest_failed_rollbacks() {
    each_backend(|location| {
        let backend = location.display();
        block_on(async {
            let store = leading(&location, "a").await;
            let mut ids = Vec::new();
            for n in 0..30 {
                let mut record = sample(
                    &format!("registry.example.com/acme/app{n}"),
                    State::Requested,
                );
                store
                    .create(&mut record, entry(1, "requested"))
                    .await
                    .expect("create");
                record.state = if n % 3 == 0 {
                    State::Succeeded
                } else {
                    State::Failed
                };
                record.updated_at = Timestamp(1000 + n);
                store.save(&record, &[]).await.expect("save");
                if record.state == State::Failed {
                    ids.push(record.id);
                }
            }
            let read = |since: i64, limit: u32| {
                let store = store.clone();
                async move {
                    store
                        .recently_failed(Timestamp(since), limit)
                        .await
                        .expect("read")
                        .iter()
                        .map(|r| r.id)
                        .collect::<Vec<RollbackId>>()
                }
            };
            assert_eq!(read(0, 100).await, ids, "{backend}: all 20, oldest first");
            assert_eq!(read(0, 5).await, ids[15..], "{backend}: the newest 5");
            assert_eq!(read(1025, 100).await, ids[16..], "{backend}: since");
        });
    });
}

#[test]
fn a_batch_of_changes_is_saved_whole_or_not_at_all() {
    each_backend(|location| {
        let backend = location.display();
        block_on(async {
            let store = leading(&location, "a").await;
            let mut app = sample("registry.example.com/acme/app", State::Requested);
            let mut web = sample("registry.example.com/acme/web", State::Requested);
            store
                .create(&mut app, entry(1, "requested"))
                .await
                .expect("app");
            store
                .create(&mut web, entry(2, "requested"))
                .await
                .expect("web");
            let before = store.audit_since(Timestamp(0)).await.expect("log").len();

            // A record that is not in the database spoils the batch: nothing of it is saved.
            let mut gone = app.clone();
            gone.id = RollbackId(app.id.0 + web.id.0 + 100);
            app.state = State::Approved;
            web.state = State::Cancelled;
            let refused = store
                .save_all(
                    &[&app, &gone, &web],
                    &[entry(3, "state"), entry(4, "state")],
                )
                .await;
            assert!(
                matches!(refused, Err(StoreError::Missing(id)) if id == gone.id),
                "{backend}: {refused:?}"
            );
            let stored = |id| {
                let store = store.clone();
                async move { store.get(id).await.expect("get").expect("there").state }
            };
            assert_eq!(stored(app.id).await, State::Requested, "{backend}");
            assert_eq!(stored(web.id).await, State::Requested, "{backend}");
            let log = store.audit_since(Timestamp(0)).await.expect("log");
            assert_eq!(log.len(), before, "{backend}: no audit entry either");

            store
                .save_all(&[&app, &web], &[entry(3, "state"), entry(4, "state")])
                .await
                .expect("a batch of existing records");
            assert_eq!(stored(app.id).await, State::Approved, "{backend}");
            assert_eq!(stored(web.id).await, State::Cancelled, "{backend}");
            let log = store.audit_since(Timestamp(0)).await.expect("log");
            let added: Vec<i64> = log[before..].iter().map(|e| e.at.0).collect();
            assert_eq!(added, [3, 4], "{backend}: the entries, in order");
        });
    });
}

#[test]
fn a_replica_that_does_not_lead_saves_no_batch() {
    let location = postgres::location();
    block_on(async {
        let leader = leading(&location, "a").await;
        let mut app = sample("registry.example.com/acme/app", State::Requested);
        leader
            .create(&mut app, entry(1, "requested"))
            .await
            .expect("app");
        let standby = Store::open_at(
            &location,
            std::sync::Arc::new(rollbot::leadership::Leadership::replica("b".to_owned())),
            std::time::Duration::from_secs(60),
        )
        .await
        .expect("open");
        app.state = State::Cancelled;
        for attempt in [
            standby.save_all(&[&app], &[entry(2, "state")]).await,
            standby.audit_all(&[entry(2, "command")]).await,
        ] {
            assert!(matches!(attempt, Err(StoreError::Fenced(_))), "{attempt:?}");
        }
        let stored = leader.get(app.id).await.expect("get").expect("there");
        assert_eq!(stored.state, State::Requested);
        assert_eq!(
            leader.audit_since(Timestamp(0)).await.expect("log").len(),
            1
        );
    });
}

/// Every index of the rollbacks table, as `name (columns)` with the dialect's quoting removed.
fn rollback_indexes(location: &StoreLocation) -> Vec<String> {
    let listing = match location {
        StoreLocation::Sqlite(path) => {
            let output = std::process::Command::new("python3")
                .arg("-c")
                .arg(format!(
                    "import sqlite3\nc=sqlite3.connect('{}')\nfor (sql,) in c.execute(\"SELECT sql FROM sqlite_master WHERE type='index' AND tbl_name='rollbacks' AND sql IS NOT NULL\"): print(' '.join(sql.split()))\n",
                    path.display()
                ))
                .output()
                .expect("python3");
            String::from_utf8_lossy(&output.stdout).into_owned()
        }
        StoreLocation::Postgres(pg) => postgres::psql(
            pg.url.as_str(),
            "SELECT indexdef FROM pg_indexes WHERE tablename = 'rollbacks' AND indexname <> 'rollbacks_pkey'",
        )
        .expect("psql"),
    };
    let mut indexes: Vec<String> = listing
        .lines()
        .filter_map(|sql| {
            // "CREATE [UNIQUE] INDEX name ON [public.]rollbacks [USING btree ](columns) …"
            let name = sql.split(" INDEX ").nth(1)?.split_whitespace().next()?;
            let columns = &sql[sql.find('(')?..=sql.find(')')?];
            Some(format!("{name} {columns}"))
        })
        .collect();
    indexes.sort();
    indexes
}

#[test]
fn both_dialects_have_the_same_indexes_for_the_reads_that_grow() {
    let dir = tempfile::tempdir().expect("dir");
    let sqlite = StoreLocation::Sqlite(dir.path().join("state.db"));
    let postgres = postgres::location();
    let mut found = Vec::new();
    for location in [&sqlite, &postgres] {
        block_on(async {
            leading(location, "a").await;
        });
        found.push(rollback_indexes(location));
    }
    assert_eq!(found[0], found[1], "SQLite and Postgres alike");
    for wanted in [
        "rollbacks_by_image (image, state, id)",
        "rollbacks_by_state (state, updated_at)",
        "rollbacks_started (drill, approved_at)",
        "one_active_rollback_per_image (image)",
        "one_active_drill_per_image (image)",
    ] {
        assert!(
            found[0].iter().any(|i| i == wanted),
            "{wanted}: {:?}",
            found[0]
        );
    }
}
