//! The state port: SQLite (sqlx). Rollbacks, their votes and steps, and an append-only audit
//! log of every command, decision and pipeline step.
//!
//! A rollback row keeps its queryable fields as columns (`image`, `state`, times) and the rest
//! as one JSON document, so the record can grow without migrations. The database enforces two
//! rules on its own: one active rollback per image and, apart from it, one active drill per
//! image (partial unique indexes: a drill never blocks a real rollback, nor a rollback a drill),
//! and an audit log that cannot be updated or deleted (triggers).

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions};
use sqlx::Row;

use crate::domain::model::ImageRef;
use crate::domain::record::{AuditEntry, RollbackRecord};
use crate::domain::rollback::{RollbackId, State, Timestamp};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot open the state database {path}: {detail}")]
    Open { path: String, detail: String },
    #[error("{image} already has an active {}", if *drill { "drill" } else { "rollback" })]
    ActiveExists { image: String, drill: bool },
    #[error("state database error: {0}")]
    Database(String),
    #[error("state database holds an unreadable record {id}: {detail}")]
    Corrupt { id: i64, detail: String },
}

impl From<sqlx::Error> for StoreError {
    fn from(error: sqlx::Error) -> Self {
        StoreError::Database(error.to_string())
    }
}

const MIGRATIONS: &[&str] = &[
    // 1: the initial schema.
    "CREATE TABLE rollbacks (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        image TEXT NOT NULL,
        state TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL,
        data TEXT NOT NULL
    );
    CREATE UNIQUE INDEX one_active_rollback_per_image ON rollbacks(image)
        WHERE state IN ('requested','approved','retagging','verifying');
    CREATE INDEX rollbacks_by_state ON rollbacks(state);
    CREATE TABLE audit (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        at INTEGER NOT NULL,
        rollback_id INTEGER,
        actor_id TEXT,
        actor TEXT,
        kind TEXT NOT NULL,
        detail TEXT NOT NULL
    );
    CREATE INDEX audit_by_time ON audit(at);
    CREATE TRIGGER audit_is_append_only_update BEFORE UPDATE ON audit
        BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
    CREATE TRIGGER audit_is_append_only_delete BEFORE DELETE ON audit
        BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;",
    // 2: the notification outbox and the Discussions created.
    "CREATE TABLE outbox (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        key TEXT NOT NULL UNIQUE,
        rollback_id INTEGER,
        sink TEXT NOT NULL,
        kind TEXT NOT NULL,
        payload TEXT NOT NULL,
        status TEXT NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        next_attempt_at INTEGER NOT NULL,
        last_error TEXT,
        created_at INTEGER NOT NULL,
        done_at INTEGER
    );
    CREATE INDEX outbox_due ON outbox(status, next_attempt_at);
    CREATE TABLE discussions (
        rollback_id INTEGER PRIMARY KEY,
        node_id TEXT NOT NULL,
        number INTEGER NOT NULL,
        url TEXT NOT NULL
    );",
    // 3: drills. A drill is a rollback record with `drill = 1`; it is rehearsed on a scratch
    // repository and never blocks a real rollback of the image: each kind has its own "one
    // active per image" index. Older rows are real rollbacks (the column's default).
    "ALTER TABLE rollbacks ADD COLUMN drill INTEGER NOT NULL DEFAULT 0;
    DROP INDEX one_active_rollback_per_image;
    CREATE UNIQUE INDEX one_active_rollback_per_image ON rollbacks(image)
        WHERE drill = 0 AND state IN ('requested','approved','retagging','verifying');
    CREATE UNIQUE INDEX one_active_drill_per_image ON rollbacks(image)
        WHERE drill = 1 AND state IN ('requested','approved','retagging','verifying');",
];

/// One notification to deliver.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Delivery {
    pub id: i64,
    /// Unique per intended effect (`github:announce:rb-17`): enqueueing twice is a no-op.
    pub key: String,
    pub rollback: Option<RollbackId>,
    /// `github`, `dockerhub`.
    pub sink: String,
    /// `announce`, `comment`, `banner_set`, `banner_remove`.
    pub kind: String,
    pub payload: serde_json::Value,
    pub attempts: u32,
    pub next_attempt_at: Timestamp,
    pub last_error: Option<String>,
}

/// A Discussion created for a rollback.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiscussionRef {
    pub node_id: String,
    pub number: i64,
    pub url: String,
}

/// The SQLite store. Cloning shares the pool.
#[derive(Debug, Clone)]
pub struct Store {
    pool: SqlitePool,
}

impl Store {
    /// Opens (creating if needed) the database at `path` and brings its schema up to date.
    ///
    /// # Errors
    /// An unusable path or file, or a database newer than this build.
    pub async fn open(path: &Path) -> Result<Store, StoreError> {
        let open_error = |detail: String| StoreError::Open {
            path: path.display().to_string(),
            detail,
        };
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|e| open_error(e.to_string()))?;
        }
        let options = SqliteConnectOptions::from_str("sqlite://")
            .map_err(|e| open_error(e.to_string()))?
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .busy_timeout(Duration::from_secs(5))
            .foreign_keys(true);
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options)
            .await
            .map_err(|e| open_error(e.to_string()))?;
        let store = Store { pool };
        store
            .migrate()
            .await
            .map_err(|e| open_error(e.to_string()))?;
        Ok(store)
    }

    async fn migrate(&self) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        let version: i64 = sqlx::query("PRAGMA user_version")
            .fetch_one(&mut *tx)
            .await?
            .try_get(0)?;
        let known = i64::try_from(MIGRATIONS.len()).unwrap_or(i64::MAX);
        if version > known {
            return Err(StoreError::Database(format!(
                "schema version {version} is newer than this rollbot ({known}); upgrade rollbot"
            )));
        }
        for (index, migration) in MIGRATIONS
            .iter()
            .enumerate()
            .skip(usize::try_from(version).unwrap_or(0))
        {
            sqlx::raw_sql(*migration).execute(&mut *tx).await?;
            // A number we format ourselves: nothing to inject.
            sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
                "PRAGMA user_version = {}",
                index + 1
            )))
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// `SELECT 1`, for `/readyz`.
    ///
    /// # Errors
    /// The database cannot answer.
    pub async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    /// Inserts a new rollback (its `id` is assigned here) with its audit entry, atomically.
    ///
    /// # Errors
    /// `ActiveExists` when the image already has an active rollback.
    pub async fn create(
        &self,
        record: &mut RollbackRecord,
        audit: AuditEntry,
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        let inserted = sqlx::query(
            "INSERT INTO rollbacks (image, state, created_at, updated_at, data, drill) VALUES (?, ?, ?, ?, '{}', ?)",
        )
        .bind(record.image.to_string())
        .bind(record.state.as_str())
        .bind(record.created_at.0)
        .bind(record.updated_at.0)
        .bind(record.drill)
        .execute(&mut *tx)
        .await;
        let id = match inserted {
            Ok(done) => done.last_insert_rowid(),
            Err(sqlx::Error::Database(error)) if error.is_unique_violation() => {
                return Err(StoreError::ActiveExists {
                    image: record.image.to_string(),
                    drill: record.drill,
                })
            }
            Err(other) => return Err(other.into()),
        };
        record.id = RollbackId(id);
        sqlx::query("UPDATE rollbacks SET data = ? WHERE id = ?")
            .bind(to_json(record)?)
            .bind(id)
            .execute(&mut *tx)
            .await?;
        insert_audit(
            &mut tx,
            &AuditEntry {
                rollback: Some(record.id),
                ..audit
            },
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Saves a changed record and its audit entries, atomically.
    ///
    /// # Errors
    /// Database errors.
    pub async fn save(
        &self,
        record: &RollbackRecord,
        audit: &[AuditEntry],
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("UPDATE rollbacks SET state = ?, updated_at = ?, data = ? WHERE id = ?")
            .bind(record.state.as_str())
            .bind(record.updated_at.0)
            .bind(to_json(record)?)
            .bind(record.id.0)
            .execute(&mut *tx)
            .await?;
        for entry in audit {
            insert_audit(&mut tx, entry).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Appends one audit entry.
    ///
    /// # Errors
    /// Database errors.
    pub async fn audit(&self, entry: &AuditEntry) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        insert_audit(&mut tx, entry).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Rollbacks that are not finished.
    ///
    /// # Errors
    /// Database errors, unreadable records.
    pub async fn active(&self) -> Result<Vec<RollbackRecord>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, data FROM rollbacks \
             WHERE state IN ('requested','approved','retagging','verifying') ORDER BY id",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(from_row).collect()
    }

    /// Failed or interrupted rollbacks updated at or after `since`. A write without an answer
    /// can land after its rollback was recorded as failed, so a restart reads their tags again.
    ///
    /// # Errors
    /// Database errors, unreadable records.
    pub async fn recently_failed(
        &self,
        since: Timestamp,
    ) -> Result<Vec<RollbackRecord>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, data FROM rollbacks \
             WHERE state IN ('failed','interrupted') AND updated_at >= ? ORDER BY id",
        )
        .bind(since.0)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(from_row).collect()
    }

    /// One rollback.
    ///
    /// # Errors
    /// Database errors, an unreadable record.
    pub async fn get(&self, id: RollbackId) -> Result<Option<RollbackRecord>, StoreError> {
        let row = sqlx::query("SELECT id, data FROM rollbacks WHERE id = ?")
            .bind(id.0)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(from_row).transpose()
    }

    /// Audit entries at or after `since`, oldest first.
    ///
    /// # Errors
    /// Database errors.
    pub async fn audit_since(&self, since: Timestamp) -> Result<Vec<AuditEntry>, StoreError> {
        let rows = sqlx::query(
            "SELECT seq, at, rollback_id, actor, kind, detail FROM audit WHERE at >= ? ORDER BY seq",
        )
        .bind(since.0)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                let actor: Option<String> = row.try_get("actor")?;
                let detail: String = row.try_get("detail")?;
                Ok(AuditEntry {
                    seq: row.try_get("seq")?,
                    at: Timestamp(row.try_get("at")?),
                    rollback: row
                        .try_get::<Option<i64>, _>("rollback_id")?
                        .map(RollbackId),
                    actor: actor.and_then(|a| serde_json::from_str(&a).ok()),
                    kind: row.try_get("kind")?,
                    detail: serde_json::from_str(&detail)
                        .unwrap_or(serde_json::Value::String(detail)),
                })
            })
            .collect()
    }
}

impl Store {
    /// Adds a delivery unless one with the same key exists. Returns whether it was added.
    ///
    /// # Errors
    /// Database errors.
    pub async fn enqueue(
        &self,
        key: &str,
        rollback: Option<RollbackId>,
        sink: &str,
        kind: &str,
        payload: &serde_json::Value,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "INSERT INTO outbox (key, rollback_id, sink, kind, payload, status, next_attempt_at, created_at)
             VALUES (?, ?, ?, ?, ?, 'pending', ?, ?) ON CONFLICT(key) DO NOTHING",
        )
        .bind(key)
        .bind(rollback.map(|r| r.0))
        .bind(sink)
        .bind(kind)
        .bind(payload.to_string())
        .bind(now.0)
        .bind(now.0)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Pending deliveries of `sink` due at `now`, oldest first.
    ///
    /// # Errors
    /// Database errors.
    pub async fn due(
        &self,
        sink: &str,
        now: Timestamp,
        limit: u32,
    ) -> Result<Vec<Delivery>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, key, rollback_id, sink, kind, payload, attempts, next_attempt_at, last_error
             FROM outbox WHERE status = 'pending' AND sink = ? AND next_attempt_at <= ? ORDER BY id LIMIT ?",
        )
        .bind(sink)
        .bind(now.0)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(delivery_from_row).collect()
    }

    /// The delivery with `key`, and its status (`pending`, `done`, `dead`).
    ///
    /// # Errors
    /// Database errors.
    pub async fn delivery(&self, key: &str) -> Result<Option<(Delivery, String)>, StoreError> {
        let row = sqlx::query(
            "SELECT id, key, rollback_id, sink, kind, payload, attempts, next_attempt_at, last_error, status
             FROM outbox WHERE key = ?",
        )
        .bind(key)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|row| Ok((delivery_from_row(&row)?, row.try_get("status")?)))
            .transpose()
    }

    /// Pending deliveries (of `sink`, or of all sinks), and the earliest next attempt among
    /// them.
    ///
    /// # Errors
    /// Database errors.
    pub async fn pending(
        &self,
        sink: Option<&str>,
    ) -> Result<(u64, Option<Timestamp>), StoreError> {
        let row = sqlx::query(
            "SELECT COUNT(*) AS n, MIN(next_attempt_at) AS next FROM outbox
             WHERE status = 'pending' AND (?1 IS NULL OR sink = ?1)",
        )
        .bind(sink)
        .fetch_one(&self.pool)
        .await?;
        let n: i64 = row.try_get("n")?;
        let next: Option<i64> = row.try_get("next")?;
        Ok((u64::try_from(n).unwrap_or(0), next.map(Timestamp)))
    }

    /// Marks a delivery done.
    ///
    /// # Errors
    /// Database errors.
    pub async fn delivered(&self, id: i64, now: Timestamp) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE outbox SET status = 'done', done_at = ?, last_error = NULL WHERE id = ?",
        )
        .bind(now.0)
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Schedules another attempt (`counted`: this was a failed attempt, not a wait).
    ///
    /// # Errors
    /// Database errors.
    pub async fn retry_later(
        &self,
        id: i64,
        at: Timestamp,
        counted: bool,
        error: Option<&str>,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE outbox SET next_attempt_at = ?, attempts = attempts + ?, last_error = COALESCE(?, last_error) WHERE id = ?",
        )
        .bind(at.0)
        .bind(i64::from(counted))
        .bind(error)
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Gives a delivery up.
    ///
    /// # Errors
    /// Database errors.
    pub async fn give_up(&self, id: i64, error: &str, now: Timestamp) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE outbox SET status = 'dead', last_error = ?, done_at = ?, attempts = attempts + 1 WHERE id = ?",
        )
        .bind(error)
        .bind(now.0)
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The status of a delivery by key: `pending`, `done`, `dead`.
    ///
    /// # Errors
    /// Database errors.
    pub async fn delivery_status(&self, key: &str) -> Result<Option<String>, StoreError> {
        let row = sqlx::query("SELECT status FROM outbox WHERE key = ?")
            .bind(key)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| r.try_get::<String, _>("status").map_err(StoreError::from))
            .transpose()
    }

    /// Records the Discussion of a rollback.
    ///
    /// # Errors
    /// Database errors.
    pub async fn save_discussion(
        &self,
        rollback: RollbackId,
        discussion: &DiscussionRef,
    ) -> Result<(), StoreError> {
        sqlx::query("INSERT OR REPLACE INTO discussions (rollback_id, node_id, number, url) VALUES (?, ?, ?, ?)")
            .bind(rollback.0)
            .bind(&discussion.node_id)
            .bind(discussion.number)
            .bind(&discussion.url)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// The Discussion of a rollback, if one was created.
    ///
    /// # Errors
    /// Database errors.
    pub async fn discussion(
        &self,
        rollback: RollbackId,
    ) -> Result<Option<DiscussionRef>, StoreError> {
        let row = sqlx::query("SELECT node_id, number, url FROM discussions WHERE rollback_id = ?")
            .bind(rollback.0)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| {
            Ok(DiscussionRef {
                node_id: r.try_get("node_id")?,
                number: r.try_get("number")?,
                url: r.try_get("url")?,
            })
        })
        .transpose()
    }

    /// The most recent rollback (not a drill) of `image` that reached `state`.
    ///
    /// # Errors
    /// Database errors, an unreadable record.
    pub async fn latest_for_image(
        &self,
        image: &ImageRef,
        state: State,
    ) -> Result<Option<RollbackRecord>, StoreError> {
        let row = sqlx::query(
            "SELECT id, data FROM rollbacks WHERE image = ? AND state = ? AND drill = 0 ORDER BY id DESC LIMIT 1",
        )
        .bind(image.to_string())
        .bind(state.as_str())
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(from_row).transpose()
    }
}

async fn insert_audit(
    tx: &mut sqlx::Transaction<'_, sqlx::Sqlite>,
    entry: &AuditEntry,
) -> Result<(), StoreError> {
    let actor = entry
        .actor
        .as_ref()
        .map(serde_json::to_string)
        .transpose()
        .map_err(|e| StoreError::Database(e.to_string()))?;
    sqlx::query(
        "INSERT INTO audit (at, rollback_id, actor_id, actor, kind, detail) VALUES (?, ?, ?, ?, ?, ?)",
    )
    .bind(entry.at.0)
    .bind(entry.rollback.map(|id| id.0))
    .bind(entry.actor.as_ref().map(|a| a.id.clone()))
    .bind(actor)
    .bind(&entry.kind)
    .bind(entry.detail.to_string())
    .execute(&mut **tx)
    .await?;
    Ok(())
}

fn delivery_from_row(row: &sqlx::sqlite::SqliteRow) -> Result<Delivery, StoreError> {
    let payload: String = row.try_get("payload")?;
    Ok(Delivery {
        id: row.try_get("id")?,
        key: row.try_get("key")?,
        rollback: row
            .try_get::<Option<i64>, _>("rollback_id")?
            .map(RollbackId),
        sink: row.try_get("sink")?,
        kind: row.try_get("kind")?,
        payload: serde_json::from_str(&payload).unwrap_or(serde_json::Value::Null),
        attempts: u32::try_from(row.try_get::<i64, _>("attempts")?).unwrap_or(0),
        next_attempt_at: Timestamp(row.try_get("next_attempt_at")?),
        last_error: row.try_get("last_error")?,
    })
}

fn to_json(record: &RollbackRecord) -> Result<String, StoreError> {
    serde_json::to_string(record).map_err(|e| StoreError::Database(e.to_string()))
}

fn from_row(row: &sqlx::sqlite::SqliteRow) -> Result<RollbackRecord, StoreError> {
    let id: i64 = row.try_get("id")?;
    let data: String = row.try_get("data")?;
    serde_json::from_str(&data).map_err(|e| StoreError::Corrupt {
        id,
        detail: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

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
            let options = SqliteConnectOptions::from_str("sqlite://")
                .expect("options")
                .filename(&path)
                .create_if_missing(true);
            let pool = SqlitePool::connect_with(options)
                .await
                .expect("old database");
            for migration in &MIGRATIONS[..2] {
                sqlx::raw_sql(*migration)
                    .execute(&pool)
                    .await
                    .expect("old schema");
            }
            sqlx::raw_sql("PRAGMA user_version = 2")
                .execute(&pool)
                .await
                .expect("version");
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
        assert_eq!(version, 3);
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
}
