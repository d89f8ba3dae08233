//! The audit log: appending entries (several in one statement, in the transaction of the change
//! they describe, or on their own, fenced like a change) and reading it back a bounded page at a
//! time, newest first, for `rollbot audit`.

use sqlx::Row;

use super::{Store, StoreError};
use crate::domain::record::AuditEntry;
use crate::domain::rollback::{RollbackId, Timestamp};

/// At most this many entries go in one `INSERT` (6 parameters each; SQLite allows 32,766).
const ROWS_PER_INSERT: usize = 200;

/// A page of the audit log.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditPage {
    /// Oldest first.
    pub entries: Vec<AuditEntry>,
    /// Older entries in the range were left out (the page holds the newest).
    pub truncated: bool,
}

impl Store {
    /// Appends one audit entry, as the one who acts: with Postgres only while this replica
    /// leads (a replica that lost the lease adds nothing to the story).
    ///
    /// # Errors
    /// `Fenced`; database errors.
    pub async fn audit(&self, entry: &AuditEntry) -> Result<(), StoreError> {
        self.audit_all(std::slice::from_ref(entry)).await
    }

    /// Appends audit entries in one transaction, in order, as the one who acts (see
    /// [`Store::audit`]).
    ///
    /// # Errors
    /// `Fenced`; database errors.
    pub async fn audit_all(&self, entries: &[AuditEntry]) -> Result<(), StoreError> {
        self.save_all(&[], entries).await
    }

    /// Appends one audit entry whoever leads: the command line's drills, a replica saying it
    /// stepped down.
    ///
    /// # Errors
    /// Database errors.
    pub async fn audit_as_bystander(&self, entry: &AuditEntry) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        insert_audit(&mut tx, std::slice::from_ref(entry)).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Audit entries at or after `since`, oldest first, all of them (tests and small ranges;
    /// people read [`Store::audit_page`]).
    ///
    /// # Errors
    /// Database errors.
    pub async fn audit_since(&self, since: Timestamp) -> Result<Vec<AuditEntry>, StoreError> {
        let rows = sqlx::query(
            "SELECT seq, at, rollback_id, actor, kind, detail FROM audit WHERE at >= $1 ORDER BY seq",
        )
        .bind(since.0)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(audit_from_row).collect()
    }

    /// The newest `limit` audit entries at or after `since`, oldest first, and whether older
    /// ones in that range were left out. The query reads at most `limit + 1` rows, newest
    /// first, however long the log is.
    ///
    /// # Errors
    /// Database errors.
    pub async fn audit_page(&self, since: Timestamp, limit: u32) -> Result<AuditPage, StoreError> {
        let rows = sqlx::query(
            "SELECT seq, at, rollback_id, actor, kind, detail FROM audit WHERE at >= $1 \
             ORDER BY seq DESC LIMIT $2",
        )
        .bind(since.0)
        .bind(i64::from(limit) + 1)
        .fetch_all(&self.pool)
        .await?;
        let truncated = rows.len() > usize::try_from(limit).unwrap_or(usize::MAX);
        let mut entries = rows
            .iter()
            .take(usize::try_from(limit).unwrap_or(usize::MAX))
            .map(audit_from_row)
            .collect::<Result<Vec<_>, _>>()?;
        entries.reverse();
        Ok(AuditPage { entries, truncated })
    }
}

/// Inserts `entries` in order, up to [`ROWS_PER_INSERT`] per statement (one round trip for what
/// a change writes, instead of one per entry).
pub(super) async fn insert_audit(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    entries: &[AuditEntry],
) -> Result<(), StoreError> {
    for chunk in entries.chunks(ROWS_PER_INSERT) {
        let mut sql = String::from(
            "INSERT INTO audit (at, rollback_id, actor_id, actor, kind, detail) VALUES ",
        );
        for row in 0..chunk.len() {
            let p = row * 6;
            if row > 0 {
                sql.push_str(", ");
            }
            sql.push_str(&format!(
                "(${}, ${}, ${}, ${}, ${}, ${})",
                p + 1,
                p + 2,
                p + 3,
                p + 4,
                p + 5,
                p + 6
            ));
        }
        // Only placeholders we numbered ourselves: nothing to inject.
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
        for entry in chunk {
            let actor = entry
                .actor
                .as_ref()
                .map(serde_json::to_string)
                .transpose()
                .map_err(|e| StoreError::Database(e.to_string()))?;
            query = query
                .bind(entry.at.0)
                .bind(entry.rollback.map(|id| id.0))
                .bind(entry.actor.as_ref().map(|a| a.id.clone()))
                .bind(actor)
                .bind(entry.kind.clone())
                .bind(entry.detail.to_string());
        }
        query.execute(&mut **tx).await?;
    }
    Ok(())
}

fn audit_from_row(row: &sqlx::any::AnyRow) -> Result<AuditEntry, StoreError> {
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
        detail: serde_json::from_str(&detail).unwrap_or(serde_json::Value::String(detail)),
    })
}
