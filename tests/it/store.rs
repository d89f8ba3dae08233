//! The store on its own, on SQLite and on a real Postgres alike: the rules the database itself
//! enforces (one active rollback per image, an append-only audit log), the outbox, and on
//! Postgres the leader lease and the fencing of every rollback change by it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rollbot::config::StoreLocation;
use rollbot::domain::record::{AuditEntry, RollbackRecord};
use rollbot::domain::rollback::{RollbackId, State, Timestamp};
use rollbot::leadership::Leadership;
use rollbot::store::{LeaseOutcome, Store, StoreError};

use crate::support::records::sample;
use crate::support::{block_on, postgres};

const TTL: Duration = Duration::from_secs(60);

fn record(image: &str) -> RollbackRecord {
    sample(image, State::Requested)
}

fn entry(at: i64) -> AuditEntry {
    AuditEntry::new(
        Timestamp(at),
        None,
        None,
        "requested",
        serde_json::json!({}),
    )
}

/// A store at `location`. On Postgres it leads (holds the lease) as `holder`, so that its
/// changes pass the fence, like a leader's.
pub(crate) async fn leading(location: &StoreLocation, holder: &str) -> Store {
    match location {
        StoreLocation::Sqlite(path) => Store::open(path).await.expect("open"),
        StoreLocation::Postgres(_) => {
            let leadership = Arc::new(Leadership::replica(holder.to_owned()));
            let store = Store::open_at(location, Arc::clone(&leadership), TTL)
                .await
                .expect("open");
            let asked = Instant::now();
            match store.try_lead(holder, TTL).await.expect("lease") {
                LeaseOutcome::Held { epoch, .. } => leadership.granted(epoch, asked, TTL),
                other => panic!("{holder} should lead a fresh database: {other:?}"),
            }
            store
        }
    }
}

/// SQLite in a temporary directory, and a fresh Postgres database.
pub(crate) fn each_backend(test: impl Fn(StoreLocation)) {
    let dir = tempfile::tempdir().expect("dir");
    test(StoreLocation::Sqlite(dir.path().join("nested/state.db")));
    test(postgres::location());
}

#[test]
fn the_database_allows_one_active_rollback_per_image_and_keeps_records_across_opens() {
    each_backend(|location| {
        let backend = location.display();
        let (first_id, second_id, other_id) = block_on(async {
            let store = leading(&location, "a").await;
            let mut first = record("registry.example.com/acme/app");
            store.create(&mut first, entry(1)).await.expect("first");
            let mut second = record("registry.example.com/acme/app");
            let refused = store.create(&mut second, entry(1)).await;
            assert!(
                matches!(refused, Err(StoreError::ActiveExists { .. })),
                "{backend}: {refused:?}"
            );
            let mut other = record("registry.example.com/acme/other");
            store
                .create(&mut other, entry(1))
                .await
                .expect("other image");

            first.state = State::Rejected;
            store.save(&first, &[]).await.expect("save");
            store
                .create(&mut second, entry(2))
                .await
                .expect("the image is free again");
            (first.id, second.id, other.id)
        });
        block_on(async {
            let store = leading(&location, "a").await;
            let active: Vec<RollbackId> = store
                .active()
                .await
                .expect("active")
                .iter()
                .map(|r| r.id)
                .collect();
            let mut expected = vec![other_id, second_id];
            expected.sort_by_key(|id| id.0);
            assert_eq!(active, expected, "{backend}");
            assert_eq!(
                store.get(first_id).await.expect("get").map(|r| r.state),
                Some(State::Rejected),
                "{backend}"
            );
        });
    });
}

#[test]
fn a_finished_rollback_never_changes_state_again() {
    each_backend(|location| {
        let backend = location.display();
        block_on(async {
            let store = leading(&location, "a").await;
            let mut finished = record("registry.example.com/acme/app");
            store.create(&mut finished, entry(1)).await.expect("create");
            let mut other = record("registry.example.com/acme/other");
            store.create(&mut other, entry(1)).await.expect("create");
            finished.state = State::Cancelled;
            store.save(&finished, &[]).await.expect("cancelled");

            // A stale copy (a bug, a writer that missed the cancellation) is refused, and so is
            // the batch it is in: nothing of it is saved.
            let mut stale = finished.clone();
            stale.state = State::Approved;
            other.state = State::Rejected;
            let refused = store.save_all(&[&other, &stale], &[entry(2)]).await;
            match refused {
                Err(StoreError::Finished { id, state }) => {
                    assert_eq!((id, state), (finished.id, State::Cancelled), "{backend}");
                }
                other => panic!("{backend}: {other:?}"),
            }
            let state_of = |id| {
                let store = &store;
                async move { store.get(id).await.expect("get").expect("there").state }
            };
            assert_eq!(state_of(finished.id).await, State::Cancelled, "{backend}");
            assert_eq!(state_of(other.id).await, State::Requested, "{backend}");
            assert_eq!(
                store.audit_since(Timestamp(0)).await.expect("audit").len(),
                2
            );

            // Finished to another finished state is refused too; the same state with new
            // details (the tags read again after a restart) is saved.
            stale.state = State::Succeeded;
            let refused = store.save(&stale, &[]).await;
            assert!(
                matches!(refused, Err(StoreError::Finished { .. })),
                "{backend}: {refused:?}"
            );
            finished.error = Some("read again".to_owned());
            store.save(&finished, &[]).await.expect("same state");
            let stored = store.get(finished.id).await.expect("get").expect("there");
            assert_eq!(stored.error.as_deref(), Some("read again"), "{backend}");
        });
    });
}

#[test]
fn the_audit_log_is_append_only() {
    each_backend(|location| {
        block_on(async {
            let store = leading(&location, "a").await;
            store
                .audit(&AuditEntry::new(
                    Timestamp(5),
                    None,
                    None,
                    "command",
                    serde_json::json!({ "text": "/rollback help" }),
                ))
                .await
                .expect("append");
            assert_eq!(
                store.audit_since(Timestamp(0)).await.expect("read").len(),
                1
            );
        });
        // Even a direct connection cannot rewrite history.
        let attempts = ["UPDATE audit SET kind = 'x'", "DELETE FROM audit"];
        match &location {
            StoreLocation::Sqlite(path) => {
                let output = std::process::Command::new("python3")
                    .arg("-c")
                    .arg(format!(
                        "import sqlite3,sys\nc=sqlite3.connect('{}')\nfor q in {attempts:?}:\n    try:\n        c.execute(q); print('allowed', q)\n    except Exception as e: print('refused', e)\n",
                        path.display()
                    ))
                    .output();
                if let Ok(output) = output {
                    let text = String::from_utf8_lossy(&output.stdout);
                    assert!(!text.contains("allowed"), "{text}");
                    assert_eq!(
                        text.matches("the audit log is append-only").count(),
                        2,
                        "{text}"
                    );
                }
            }
            StoreLocation::Postgres(pg) => {
                for sql in attempts.iter().copied().chain(["TRUNCATE audit"]) {
                    let refused = postgres::psql(pg.url.as_str(), sql).expect_err(sql);
                    assert!(
                        refused.contains("the audit log is append-only"),
                        "{sql}: {refused}"
                    );
                }
            }
        }
    });
}

#[test]
fn an_effect_is_queued_once_and_a_discussion_is_recorded_once() {
    each_backend(|location| {
        let backend = location.display();
        block_on(async {
            let store = leading(&location, "a").await;
            let payload = serde_json::json!({ "title": "rollback" });
            let rollback = Some(RollbackId(1));
            for expected in [true, false] {
                let added = store
                    .enqueue(
                        "github:announce:rb-1",
                        rollback,
                        "github",
                        "announce",
                        &payload,
                        Timestamp(10),
                    )
                    .await
                    .expect("enqueue");
                assert_eq!(added, expected, "{backend}");
            }
            let due = store.due("github", Timestamp(10), 10).await.expect("due");
            assert_eq!(due.len(), 1, "{backend}");
            assert_eq!(due[0].payload, payload);
            assert_eq!(
                store.pending(None).await.expect("pending"),
                (1, Some(Timestamp(10)))
            );
            store
                .retry_later(due[0].id, Timestamp(20), true, Some("503"))
                .await
                .expect("retry");
            assert!(store
                .due("github", Timestamp(19), 10)
                .await
                .expect("due")
                .is_empty());
            store
                .delivered(due[0].id, Timestamp(21))
                .await
                .expect("delivered");
            assert_eq!(
                store
                    .delivery_status("github:announce:rb-1")
                    .await
                    .expect("status")
                    .as_deref(),
                Some("done"),
                "{backend}"
            );
            for number in [4, 5] {
                let discussion = rollbot::store::DiscussionRef {
                    node_id: format!("D_{number}"),
                    number,
                    url: format!("https://github.com/acme/app/discussions/{number}"),
                };
                store
                    .save_discussion(RollbackId(1), &discussion)
                    .await
                    .expect("save");
                assert_eq!(
                    store.discussion(RollbackId(1)).await.expect("read"),
                    Some(discussion)
                );
            }
        });
    });
}

#[test]
fn two_stores_creating_a_rollback_of_one_image_at_once_get_one_accepted_one_refused() {
    each_backend(|location| {
        let backend = location.display();
        block_on(async {
            let one = leading(&location, "a").await;
            let two = match &location {
                StoreLocation::Sqlite(path) => Store::open(path).await.expect("second"),
                StoreLocation::Postgres(_) => one.clone(),
            };
            let (mut a, mut b) = (
                record("registry.example.com/acme/app"),
                record("registry.example.com/acme/app"),
            );
            let (first, second) =
                tokio::join!(one.create(&mut a, entry(1)), two.create(&mut b, entry(1)));
            let refused = [&first, &second]
                .iter()
                .filter(|r| matches!(r, Err(StoreError::ActiveExists { .. })))
                .count();
            assert_eq!(refused, 1, "{backend}: {first:?} {second:?}");
            assert_eq!(one.active().await.expect("active").len(), 1);
        });
    });
}

#[test]
fn the_lease_goes_to_one_replica_and_an_old_leader_can_change_nothing() {
    let location = postgres::location();
    block_on(async {
        let short = Duration::from_millis(600);
        let a_lead = Arc::new(Leadership::replica("a".into()));
        let a = Store::open_at(&location, Arc::clone(&a_lead), TTL)
            .await
            .expect("a");
        let b_lead = Arc::new(Leadership::replica("b".into()));
        let b = Store::open_at(&location, Arc::clone(&b_lead), TTL)
            .await
            .expect("b");

        let mut rollback = record("registry.example.com/acme/app");
        let not_leading = a.create(&mut rollback, entry(1)).await;
        assert!(
            matches!(not_leading, Err(StoreError::Fenced(_))),
            "{not_leading:?}"
        );

        let asked = Instant::now();
        let LeaseOutcome::Held {
            epoch: first,
            previous,
        } = a.try_lead("a", short).await.expect("a leads")
        else {
            panic!("a should lead");
        };
        assert_eq!(previous, None);
        a_lead.granted(first, asked, TTL); // a believes it leads for long: only the database knows
        assert_eq!(
            b.try_lead("b", short).await.expect("b"),
            LeaseOutcome::Standby { holder: "a".into() }
        );
        assert_eq!(
            a.try_lead("a", short).await.expect("renew"),
            LeaseOutcome::Held {
                epoch: first,
                previous: None
            }
        );
        a.create(&mut rollback, entry(1))
            .await
            .expect("the leader creates");
        let mut second_one = record("registry.example.com/acme/web");
        a.create(&mut second_one, entry(1))
            .await
            .expect("the leader creates");

        tokio::time::sleep(short + Duration::from_millis(200)).await;
        // The lease ran out and nobody took it yet: a, which still believes it leads, is
        // refused by the database alone (its audit entries too).
        let expired = a.audit(&entry(3)).await;
        assert!(matches!(expired, Err(StoreError::Fenced(_))), "{expired:?}");
        let expired = a.save(&rollback, &[]).await;
        assert!(matches!(expired, Err(StoreError::Fenced(_))), "{expired:?}");
        let expired = a.save_all(&[&rollback, &second_one], &[entry(3)]).await;
        assert!(matches!(expired, Err(StoreError::Fenced(_))), "{expired:?}");
        let asked = Instant::now();
        let LeaseOutcome::Held {
            epoch: second,
            previous,
        } = b.try_lead("b", TTL).await.expect("b takes over")
        else {
            panic!("b should take the expired lease");
        };
        assert_eq!((second, previous.as_deref()), (first + 1, Some("a")));
        b_lead.granted(second, asked, TTL);

        // a still thinks it leads (a paused process): the database refuses its changes.
        rollback.state = State::Approved;
        let fenced = a.save(&rollback, &[entry(2)]).await;
        assert!(matches!(fenced, Err(StoreError::Fenced(_))), "{fenced:?}");
        // The engine's batches and its audit entries alike, every record of a batch.
        second_one.state = State::Cancelled;
        for fenced in [
            a.save_all(&[&rollback, &second_one], &[entry(2), entry(3)])
                .await,
            a.save_all(&[&second_one, &rollback], &[]).await,
            a.audit_all(&[entry(2), entry(3)]).await,
        ] {
            assert!(matches!(fenced, Err(StoreError::Fenced(_))), "{fenced:?}");
        }
        let mut another = record("registry.example.com/acme/other");
        let fenced = a.create(&mut another, entry(2)).await;
        assert!(matches!(fenced, Err(StoreError::Fenced(_))), "{fenced:?}");
        let stored = b.get(rollback.id).await.expect("get").expect("there");
        assert_eq!(
            stored.state,
            State::Requested,
            "the old leader changed nothing"
        );
        let stored = b.get(second_one.id).await.expect("get").expect("there");
        assert_eq!(stored.state, State::Requested, "nor in a batch");
        assert_eq!(b.active().await.expect("active").len(), 2);
        let log = b.audit_since(Timestamp(0)).await.expect("log");
        assert_eq!(log.len(), 2, "the two creations only: {log:?}");
        b.save(&rollback, &[entry(2)])
            .await
            .expect("the new leader changes it");
        // b finishes one: a, fenced, is told it no longer leads, not that the rollback is
        // finished (whatever the row says, a replica that lost the lease steps down).
        b.save(&second_one, &[])
            .await
            .expect("the new leader finishes it");
        let mut stale = second_one.clone();
        stale.state = State::Approved;
        for fenced in [
            a.save(&stale, &[]).await,
            a.save_all(&[&rollback, &stale], &[entry(4)]).await,
        ] {
            assert!(matches!(fenced, Err(StoreError::Fenced(_))), "{fenced:?}");
        }

        // A clean shutdown gives the lease up: another replica takes it at once.
        assert!(b.release_lead("b", second).await.expect("release"));
        let LeaseOutcome::Held { epoch: third, .. } = a.try_lead("a", TTL).await.expect("a again")
        else {
            panic!("a should take the released lease");
        };
        assert_eq!(third, second + 1);
    });
}

#[test]
fn replicas_starting_together_create_the_schema_once() {
    let location = postgres::location();
    block_on(async {
        let opens = (0..4).map(|n| {
            let location = location.clone();
            async move {
                let leadership = Arc::new(Leadership::replica(format!("r{n}")));
                Store::open_at(&location, leadership, TTL).await
            }
        });
        for opened in futures_util::future::join_all(opens).await {
            opened.expect("every replica opens the database");
        }
    });
    let StoreLocation::Postgres(pg) = &location else {
        unreachable!()
    };
    // Postgres 1 (the schema SQLite reached in 3), 2 (the indexes for many rollbacks) and 3
    // (approval times for the hourly limit).
    assert_eq!(
        postgres::psql(pg.url.as_str(), "SELECT version FROM rollbot_schema").expect("version"),
        "3"
    );
}

/// The command line never changes the schema: on a Postgres database no daemon has brought
/// up to date, `rollbot audit` and a CLI drill's entry are refused and nothing is created
/// (a newer command line would otherwise upgrade the schema under older daemons, which would
/// then refuse to start).
#[test]
fn the_command_line_never_creates_or_migrates_the_postgres_schema() {
    let location = postgres::location();
    let StoreLocation::Postgres(pg) = &location else {
        unreachable!()
    };
    let error = block_on(Store::open_existing(&location)).expect_err("no schema yet");
    assert!(
        error
            .to_string()
            .contains("no rollbot schema in this database"),
        "{error}"
    );
    assert_eq!(
        postgres::psql(
            pg.url.as_str(),
            "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'"
        )
        .expect("tables"),
        "0",
        "nothing created"
    );
    block_on(async {
        let leadership = Arc::new(Leadership::replica("daemon".to_owned()));
        Store::open_at(&location, leadership, TTL)
            .await
            .expect("the daemon creates it");
        Store::open_existing(&location)
            .await
            .expect("now this build's")
            .expect("a database");
    });
}

/// The hourly limit's memory across restarts: when the rollbacks started since a time were
/// approved. Not a drill's, not a request never approved, not one approved before that time
/// and only updated since.
#[test]
fn the_rollbacks_started_since_a_time_are_read_back_for_the_hourly_limit() {
    each_backend(|location| {
        block_on(async {
            let store = leading(&location, "a").await;
            let since = Timestamp(1_795_000_000_000);
            let minutes = |m: i64| Timestamp(since.0 + m * 60_000);
            let save = |image: &str, state: State, approved: Option<i64>, drill: bool| {
                let mut record = record(image);
                record.drill = drill;
                let store = &store;
                async move {
                    store.create(&mut record, entry(1)).await.expect("create");
                    record.state = state;
                    record.approved_at = approved.map(minutes);
                    // The one approved first was updated last.
                    record.updated_at = minutes(if approved == Some(10) { 40 } else { 30 });
                    store.save(&record, &[]).await.expect("save");
                }
            };
            save(
                "registry.example.com/acme/a",
                State::Succeeded,
                Some(20),
                false,
            )
            .await;
            save(
                "registry.example.com/acme/b",
                State::Retagging,
                Some(10),
                false,
            )
            .await;
            save(
                "registry.example.com/acme/c",
                State::Failed,
                Some(-60),
                false,
            )
            .await;
            save(
                "registry.example.com/acme/d",
                State::Succeeded,
                Some(25),
                true,
            )
            .await;
            save("registry.example.com/acme/e", State::Requested, None, false).await;
            save("registry.example.com/acme/f", State::Expired, None, false).await;

            let started = store.started_since(since, 10).await.expect("read");
            assert_eq!(started, [minutes(10), minutes(20)], "{location:?}");
            let newest = store.started_since(since, 1).await.expect("read");
            assert_eq!(newest, [minutes(20)], "the newest approval, {location:?}");
        });
    });
}

/// Opens the store a config's `[store]` section (`store`) names, the way `rollbot serve` reads
/// it, and asks it something: the location as `Debug` shows it, or why it failed.
fn open_configured(store: &str) -> Result<String, StoreError> {
    let dir = tempfile::tempdir().expect("dir");
    let config = dir.path().join("rollbot.toml");
    std::fs::write(
        &config,
        format!("[images.app]\nimage = \"registry.example.com/acme/app\"\n\n[store]\n{store}"),
    )
    .expect("config");
    let settings: rollbot::config::Settings =
        rollbot::config::load(Some(&config), &std::collections::HashMap::new())
            .expect("a valid config");
    block_on(async {
        let leadership = Arc::new(Leadership::replica("a".into()));
        let store = Store::open_at(&settings.daemon.store.location, leadership, TTL).await?;
        store.ping().await?;
        Ok(format!("{:?}", settings.daemon.store.location))
    })
}

/// A Postgres that asks for a password: rollbot reads it from `store.password_file` (the one
/// secret rule) and connects, whatever characters it holds (a URL's `@ : / % # ? &`, a space,
/// quotes); a wrong one is refused with an error that never shows it.
#[test]
fn a_postgres_password_from_a_file_connects_and_a_wrong_one_is_refused_unshown() {
    let url = postgres::database_with_password();
    let dir = tempfile::tempdir().expect("dir");
    let open = |password: &str| {
        let file = dir.path().join("pg-password");
        std::fs::write(&file, format!("{password}\n")).expect("password file");
        open_configured(&format!(
            "url = \"{url}\"\npassword_file = \"{}\"\n",
            file.display()
        ))
    };
    let shown = open(postgres::PASSWORD).expect("connects with the password");
    assert!(!shown.contains(postgres::PASSWORD), "{shown}");

    let wrong = "Not-The-Password-42";
    let error = open(wrong).expect_err("refused").to_string();
    assert!(
        error.contains("password authentication failed") && error.contains(postgres::PASSWORD_ROLE),
        "{error}"
    );
    assert!(!error.contains(wrong), "{error}");
}

/// Postgres over TLS (rustls): `sslmode=verify-full` with the CA in `sslrootcert` reaches a
/// server that refuses every connection without TLS; without that CA (the system's roots do
/// not vouch for this server) the connection is refused.
#[test]
fn postgres_over_tls_is_verified_against_the_configured_ca() {
    let (url, ca) = postgres::tls_database();
    let open = |query: &str| open_configured(&format!("url = \"{url}?{query}\"\n"));
    open(&format!("sslmode=verify-full&sslrootcert={}", ca.display()))
        .expect("TLS, the server verified");
    let plain = open("sslmode=disable").expect_err("the server takes TLS only");
    assert!(plain.to_string().contains("no encryption"), "{plain}");
    let unverified = open("sslmode=verify-full").expect_err("nobody vouches for the server");
    assert!(
        unverified
            .to_string()
            .to_lowercase()
            .contains("certificate"),
        "{unverified}"
    );
}
