//! The store's own checks on SQLite: errors told apart, paths, older databases, the
//! command line's schema rule.

use std::str::FromStr;

use sqlx::sqlite::{SqliteConnectOptions, SqlitePool};

use super::*;

/// No connection (closed pool, refused, timed out waiting) is told apart from a write the
/// database refused: only the latter is worth trying change by change.
#[tokio::test]
async fn a_database_out_of_reach_is_told_apart_from_a_refused_write() {
    let dir = tempfile::tempdir().expect("dir");
    let store = Store::open(&dir.path().join("rollbot.db"))
        .await
        .expect("store");
    let refused = sqlx::query("INSERT INTO nowhere VALUES (1)")
        .execute(&store.pool)
        .await
        .map_err(StoreError::from)
        .expect_err("no such table");
    assert!(!refused.is_unreachable(), "{refused}");
    store.close().await;
    let closed = store.get(RollbackId(1)).await.expect_err("closed");
    assert!(closed.is_unreachable(), "{closed}");
    assert!(StoreError::from(sqlx::Error::PoolTimedOut).is_unreachable());
    // One connection's failure is not the database's: that write alone is retried.
    let reset = StoreError::from(sqlx::Error::from(std::io::Error::other("reset")));
    assert!(!reset.is_unreachable());
}

/// The file opened is the one the path names, as the filesystem resolves it: `..` after a
/// directory, and a `%` in a name, taken literally.
#[tokio::test]
async fn a_sqlite_path_opens_exactly_the_file_it_names() {
    let dir = tempfile::tempdir().expect("dir");
    std::fs::create_dir(dir.path().join("d")).expect("d");
    let path = dir.path().join("d/../x%41 y.db");
    let store = Store::open(&path).await.expect("opens");
    store.ping().await.expect("answers");
    assert!(dir.path().join("x%41 y.db").exists(), "the named file");
    assert!(!dir.path().join("d/x%41 y.db").exists());
    assert!(!dir.path().join("xA y.db").exists());
}

/// A database as a rollbot from before drills made it (schema 2) at `path`.
async fn schema_2_database(path: &Path) -> SqlitePool {
    let options = SqliteConnectOptions::from_str("sqlite://")
        .expect("options")
        .filename(path)
        .create_if_missing(true);
    let pool = SqlitePool::connect_with(options)
        .await
        .expect("old database");
    for migration in &schema::migrations(Dialect::Sqlite)[..2] {
        sqlx::raw_sql(*migration)
            .execute(&pool)
            .await
            .expect("old schema");
    }
    sqlx::raw_sql("PRAGMA user_version = 2")
        .execute(&pool)
        .await
        .expect("version");
    pool
}

/// The command line (`rollbot audit`, a CLI drill's audit entry) never changes the schema:
/// an older database is refused as it is, and taken once the daemon brought it up to date.
#[tokio::test]
async fn the_command_line_refuses_an_older_database_and_leaves_its_schema_alone() {
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("old.db");
    schema_2_database(&path).await.close().await;
    let location = StoreLocation::Sqlite(path.clone());

    let error = Store::open_existing(&location)
        .await
        .expect_err("older than this build");
    assert!(
        error
            .to_string()
            .contains("schema version 2 is older than this rollbot's")
            && error.to_string().contains("rollbot serve"),
        "{error}"
    );
    let pool = SqlitePool::connect_with(SqliteConnectOptions::new().filename(&path))
        .await
        .expect("file");
    let version: i64 = sqlx::query("PRAGMA user_version")
        .fetch_one(&pool)
        .await
        .expect("version")
        .get(0);
    assert_eq!(version, 2, "left as it was");
    pool.close().await;

    Store::open(&path).await.expect("the daemon migrates it");
    Store::open_existing(&location)
        .await
        .expect("now this build's")
        .expect("exists");
}

/// A database made by a rollbot from before drills (schema 2) opens: its rollbacks become
/// real rollbacks (`drill = 0`), and from then on a drill and a rollback of one image can
/// both be active, but not two of either.
#[tokio::test]
async fn an_older_database_opens_and_gets_one_active_drill_beside_one_active_rollback() {
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("old.db");
    let insert = |drill: Option<bool>| {
        let (columns, value) = match drill {
            Some(drill) => (", drill", format!(", {}", i64::from(drill))),
            None => ("", String::new()),
        };
        format!(
            "INSERT INTO rollbacks (image, state, created_at, updated_at, data{columns}) VALUES ('registry.example.com/acme/app', 'requested', 1, 1, '{{}}'{value})"
        )
    };
    {
        let pool = schema_2_database(&path).await;
        sqlx::raw_sql(sqlx::AssertSqlSafe(insert(None)))
            .execute(&pool)
            .await
            .expect("an active rollback of the old kind");
        pool.close().await;
    }

    let store = Store::open(&path).await.expect("the old database opens");
    let version: i64 = sqlx::query("PRAGMA user_version")
        .fetch_one(&store.pool)
        .await
        .expect("version")
        .get(0);
    assert_eq!(version, schema::migrations(Dialect::Sqlite).len() as i64);
    let drill: i64 = sqlx::query("SELECT drill FROM rollbacks WHERE id = 1")
        .fetch_one(&store.pool)
        .await
        .expect("row")
        .get(0);
    assert_eq!(drill, 0, "an older rollback is a real rollback");
    let run = |sql: String| {
        let pool = store.pool.clone();
        async move { sqlx::raw_sql(sqlx::AssertSqlSafe(sql)).execute(&pool).await }
    };
    assert!(run(insert(Some(true))).await.is_ok(), "a drill beside it");
    for drill in [false, true] {
        let second = run(insert(Some(drill)))
            .await
            .expect_err("a second of its kind");
        assert!(second.to_string().contains("UNIQUE"), "{second}");
    }
}

/// A file that is not a state database (empty, or another program's) is refused by the command
/// line and left exactly as it was.
#[tokio::test]
async fn the_command_line_leaves_a_file_that_is_not_a_state_database_alone() {
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("empty.db");
    std::fs::write(&path, b"").expect("empty file");
    let error = Store::open_existing(&StoreLocation::Sqlite(path.clone()))
        .await
        .expect_err("no schema");
    assert!(
        error
            .to_string()
            .contains("no rollbot schema in this database"),
        "{error}"
    );
    assert_eq!(std::fs::read(&path).expect("file").len(), 0, "untouched");
    assert!(!dir.path().join("empty.db-wal").exists());
}

/// A database from before the approval-time column (schema 4) gets it filled from the records
/// when it is brought up to date: the hourly limit still sees the rollbacks started before the
/// upgrade.
#[tokio::test]
async fn an_upgrade_fills_the_approval_times_from_the_records() {
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("v4.db");
    {
        let options = SqliteConnectOptions::new()
            .filename(&path)
            .create_if_missing(true);
        let pool = SqlitePool::connect_with(options).await.expect("database");
        for migration in &schema::migrations(Dialect::Sqlite)[..4] {
            sqlx::raw_sql(*migration)
                .execute(&pool)
                .await
                .expect("schema 4");
        }
        sqlx::raw_sql(
            "PRAGMA user_version = 4;
            INSERT INTO rollbacks (image, state, created_at, updated_at, data, drill) VALUES
                ('r.example.com/acme/a', 'succeeded', 1, 2, '{\"approved_at\": 1700000000000}', 0),
                ('r.example.com/acme/b', 'succeeded', 1, 2, '{\"approved_at\": 1700000060000}', 1),
                ('r.example.com/acme/c', 'expired', 1, 2, '{\"approved_at\": null}', 0);",
        )
        .execute(&pool)
        .await
        .expect("rollbacks of schema 4");
        pool.close().await;
    }
    let store = Store::open(&path).await.expect("brought up to date");
    let started = store
        .started_since(Timestamp(1_699_999_000_000), 10)
        .await
        .expect("read");
    assert_eq!(started, [Timestamp(1_700_000_000_000)], "not the drill's");
}
