//! The leader lease (Postgres only): one row, judged by the database's clock alone, so the
//! replicas' clocks never matter. A replica takes the row when it already holds it or when it
//! has expired; taking it from someone else adds one to the epoch, which fences everything the
//! previous holder might still try (`lease_held!` in `store/mod.rs`).

use std::time::Duration;

use sqlx::Row;

use super::{Dialect, Store, StoreError};

/// What an attempt to take or renew the lease found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LeaseOutcome {
    /// This replica holds the lease with `epoch`; `previous` held it before (when it changed
    /// hands with this attempt).
    Held {
        epoch: i64,
        previous: Option<String>,
    },
    /// Another replica holds it.
    Standby { holder: String },
}

impl Store {
    /// Takes the lease for `holder` for `ttl` when it is free (expired) or already `holder`'s.
    ///
    /// # Errors
    /// Database errors; a SQLite store (which has no replicas and no lease).
    pub async fn try_lead(&self, holder: &str, ttl: Duration) -> Result<LeaseOutcome, StoreError> {
        if self.dialect != Dialect::Postgres {
            return Err(StoreError::Database(
                "only a Postgres store has a leader lease".to_owned(),
            ));
        }
        // The CTE reads the row as it was before the update (one snapshot).
        let taken = sqlx::query(
            "WITH before AS (SELECT holder FROM leader WHERE id = 1)
             UPDATE leader SET
                 epoch = CASE WHEN leader.holder = $1 THEN leader.epoch ELSE leader.epoch + 1 END,
                 holder = $1,
                 expires_at = clock_timestamp() + make_interval(secs => $2)
             WHERE id = 1 AND (leader.holder = $1 OR leader.expires_at < clock_timestamp())
             RETURNING epoch, (SELECT holder FROM before) AS previous",
        )
        .bind(holder)
        .bind(ttl.as_secs_f64())
        .fetch_optional(&self.pool)
        .await?;
        match taken {
            Some(row) => {
                let previous: String = row.try_get("previous")?;
                Ok(LeaseOutcome::Held {
                    epoch: row.try_get("epoch")?,
                    previous: (!previous.is_empty() && previous != holder).then_some(previous),
                })
            }
            None => {
                let row = sqlx::query("SELECT holder FROM leader WHERE id = 1")
                    .fetch_one(&self.pool)
                    .await?;
                Ok(LeaseOutcome::Standby {
                    holder: row.try_get("holder")?,
                })
            }
        }
    }

    /// Gives the lease up (a clean shutdown), so a standby takes over at once. Only `holder`'s
    /// lease with `epoch` is released.
    ///
    /// # Errors
    /// Database errors.
    pub async fn release_lead(&self, holder: &str, epoch: i64) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE leader SET expires_at = clock_timestamp() - interval '1 second'
             WHERE id = 1 AND holder = $1 AND epoch = $2",
        )
        .bind(holder)
        .bind(epoch)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }
}
