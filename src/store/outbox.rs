//! The notification outbox (one row per intended effect, delivered with retries by
//! `notify::delivery`) and the Discussions created for rollbacks.

use sqlx::any::AnyRow;
use sqlx::Row;

use super::{Delivery, DiscussionRef, Store, StoreError};
use crate::domain::rollback::{RollbackId, Timestamp};

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
             VALUES ($1, $2, $3, $4, $5, 'pending', $6, $7) ON CONFLICT(key) DO NOTHING",
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
             FROM outbox WHERE status = 'pending' AND sink = $1 AND next_attempt_at <= $2 ORDER BY id LIMIT $3",
        )
        .bind(sink)
        .bind(now.0)
        .bind(i64::from(limit))
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
             FROM outbox WHERE key = $1",
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
             WHERE status = 'pending' AND ($1 IS NULL OR sink = $1)",
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
            "UPDATE outbox SET status = 'done', done_at = $1, last_error = NULL WHERE id = $2",
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
            "UPDATE outbox SET next_attempt_at = $1, attempts = attempts + $2, last_error = COALESCE($3, last_error) WHERE id = $4",
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
            "UPDATE outbox SET status = 'dead', last_error = $1, done_at = $2, attempts = attempts + 1 WHERE id = $3",
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
        let row = sqlx::query("SELECT status FROM outbox WHERE key = $1")
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
        sqlx::query("INSERT INTO discussions (rollback_id, node_id, number, url) VALUES ($1, $2, $3, $4) ON CONFLICT (rollback_id) DO UPDATE SET node_id = excluded.node_id, number = excluded.number, url = excluded.url")
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
        let row =
            sqlx::query("SELECT node_id, number, url FROM discussions WHERE rollback_id = $1")
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
}

fn delivery_from_row(row: &AnyRow) -> Result<Delivery, StoreError> {
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
