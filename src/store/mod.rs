//! The state port, on SQLite (one node, the default) or Postgres (replicas) through sqlx's `Any`
//! driver: one set of queries (`$1` placeholders, `RETURNING`, `ON CONFLICT`, which both speak)
//! and a small dialect layer for the schema (`store/schema.rs`). Rollbacks, their votes and
//! steps, and an append-only audit log of every command, decision and pipeline step; the
//! notification outbox (`store/outbox.rs`); with Postgres, the leader lease (`store/lease.rs`).
//!
//! A rollback row keeps its queryable fields as columns (`image`, `state`, times) and the rest
//! as one JSON document, so the record can grow without migrations. The database enforces two
//! rules on its own: one active rollback per image and, apart from it, one active drill per
//! image (partial unique indexes: a drill never blocks a real rollback, nor a rollback a drill),
//! and an audit log that cannot be updated or deleted (triggers).
//!
//! Fencing: with Postgres, creating a rollback and every change of one is conditional, in the
//! same statement, on the lease row naming this replica with its epoch and not having expired
//! (and keeps that row share-locked until the transaction ends, so the lease cannot change hands
//! before the change commits). A replica that lost the lease changes nothing
//! ([`StoreError::Fenced`]).

mod lease;
mod outbox;
mod schema;

use std::path::Path;

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sqlx::any::{AnyConnectOptions, AnyPoolOptions, AnyRow};
use sqlx::AnyPool;
use sqlx::{ConnectOptions as _, Connection as _, Executor as _, Row};

pub use self::lease::LeaseOutcome;
pub use self::schema::Dialect;
use crate::config::{PostgresLocation, StoreLocation};
use crate::domain::model::ImageRef;
use crate::domain::record::{AuditEntry, RollbackRecord};
use crate::domain::rollback::{RollbackId, State, Timestamp};
use crate::leadership::Leadership;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot open the state database {path}: {detail}")]
    Open { path: String, detail: String },
    #[error("{image} already has an active {}", if *drill { "drill" } else { "rollback" })]
    ActiveExists { image: String, drill: bool },
    #[error("state database error: {0}")]
    Database(String),
    /// No connection to the database within the acquire timeout (it is down or unreachable,
    /// or every connection is busy): nothing was written, and another write now would most
    /// likely wait as long.
    #[error(
        "no connection to the state database (down, unreachable, or every connection busy): {0}"
    )]
    Unreachable(String),
    #[error("state database holds an unreadable record {id}: {detail}")]
    Corrupt { id: i64, detail: String },
    /// The database has the rollback finished (in `state`) and a change would take it
    /// elsewhere: a finished rollback's state never changes (nothing was written).
    #[error("rollback {id} is already {} in the state database; not changed", state.as_str())]
    Finished { id: RollbackId, state: State },
    /// This replica does not hold the leader lease (any more): it changed nothing.
    #[error("not written: {0}")]
    Fenced(#[from] crate::leadership::NotLeader),
    #[error("rollback {0} is not in the state database")]
    Missing(RollbackId),
}

impl From<sqlx::Error> for StoreError {
    fn from(error: sqlx::Error) -> Self {
        match error {
            // Not one connection to be had: Postgres down or partitioned (the pool keeps
            // trying to connect until its acquire timeout), or every connection busy that
            // long. An I/O error on a connection in use is not this: it is one connection,
            // and its write may even have landed.
            sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed => {
                StoreError::Unreachable(error.to_string())
            }
            error => StoreError::Database(error.to_string()),
        }
    }
}

impl StoreError {
    /// No connection could be had (nothing was written): trying another write at once only
    /// waits as long again.
    pub fn is_unreachable(&self) -> bool {
        matches!(self, StoreError::Unreachable(_))
    }
}

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

/// The condition that this replica still holds the lease, with the holder and epoch as
/// parameters `$h` and `$e`; the lease row stays share-locked until the transaction ends.
macro_rules! lease_held {
    ($h:literal, $e:literal) => {
        concat!(
            "EXISTS (SELECT 1 FROM leader WHERE id = 1 AND holder = $",
            $h,
            " AND epoch = $",
            $e,
            " AND expires_at > clock_timestamp() FOR SHARE)"
        )
    };
}

// After `lease_held!`, which it uses.
mod audit;
use self::audit::insert_audit;
pub use self::audit::AuditPage;

/// The store. Cloning shares the pool.
#[derive(Debug, Clone)]
pub struct Store {
    pool: AnyPool,
    dialect: Dialect,
    /// Who may change rollbacks: the only process (SQLite), or the lease holder (Postgres).
    leadership: Arc<Leadership>,
}

/// How long a connection from the pool may take (Postgres down, a network partition): the
/// daemon's probes and its lease renewal then fail instead of hanging.
pub const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);

/// What opening a store does with the database's schema.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Schema {
    /// Brings it up to date (the daemon; a new SQLite file).
    Migrate,
    /// Takes it only when it is this build's (the command line).
    Expect,
}

impl Store {
    /// Opens (creating if needed) the SQLite database at `path` and brings its schema up to
    /// date; this process is the only writer.
    ///
    /// # Errors
    /// An unusable path or file, or a database newer than this build.
    pub async fn open(path: &Path) -> Result<Store, StoreError> {
        Store::open_sqlite(path, Schema::Migrate).await
    }

    async fn open_sqlite(path: &Path, schema: Schema) -> Result<Store, StoreError> {
        let open_error = |detail: String| StoreError::Open {
            path: path.display().to_string(),
            detail,
        };
        let url = sqlite_url(path).map_err(open_error)?;
        let options = AnyConnectOptions::from_url(&url).map_err(|e| open_error(e.to_string()))?;
        Store::connect(
            options,
            Dialect::Sqlite,
            Arc::new(Leadership::single()),
            None,
            schema,
        )
        .await
        .map_err(|e| open_error(e.to_string()))
    }

    /// Opens the store `location` names; with Postgres, changes are fenced by `leadership`
    /// (whose lease row it keeps), and a session idle inside a transaction for longer than
    /// `lease_ttl` is ended by the server (a paused replica's open transaction cannot hold rows
    /// its successor needs).
    ///
    /// # Errors
    /// The database cannot be reached or opened, or is newer than this build.
    pub async fn open_at(
        location: &StoreLocation,
        leadership: Arc<Leadership>,
        lease_ttl: Duration,
    ) -> Result<Store, StoreError> {
        Store::open_location(location, leadership, lease_ttl, Schema::Migrate).await
    }

    async fn open_location(
        location: &StoreLocation,
        leadership: Arc<Leadership>,
        lease_ttl: Duration,
        schema: Schema,
    ) -> Result<Store, StoreError> {
        match location {
            StoreLocation::Sqlite(path) => Store::open_sqlite(path, schema).await,
            StoreLocation::Postgres(postgres) => {
                let open_error = |detail: String| StoreError::Open {
                    path: postgres.display(),
                    detail,
                };
                let options =
                    postgres_options(postgres).map_err(|e| open_error(crate::error_chain(&e)))?;
                Store::connect(
                    options,
                    Dialect::Postgres,
                    leadership,
                    Some(lease_ttl),
                    schema,
                )
                .await
                .map_err(|e| open_error(e.to_string()))
            }
        }
    }

    /// Opens the store `location` names for the command line (audit entries, reading the
    /// log), never creating a SQLite file: `None` when there is none. It never leads: it cannot
    /// create or change rollbacks on Postgres. Nor does it change the schema: a database this
    /// build would migrate is refused (a newer command line run against it would otherwise
    /// upgrade it under the daemons still running the older rollbot, which would then refuse
    /// to start).
    ///
    /// # Errors
    /// The database cannot be reached or opened, or its schema is not this build's.
    pub async fn open_existing(location: &StoreLocation) -> Result<Option<Store>, StoreError> {
        if let StoreLocation::Sqlite(path) = location {
            if !path.exists() {
                return Ok(None);
            }
        }
        let leadership = Arc::new(Leadership::replica("command line".to_owned()));
        Store::open_location(
            location,
            leadership,
            Duration::from_secs(60),
            Schema::Expect,
        )
        .await
        .map(Some)
    }

    async fn connect(
        options: AnyConnectOptions,
        dialect: Dialect,
        leadership: Arc<Leadership>,
        lease_ttl: Option<Duration>,
        on_schema: Schema,
    ) -> Result<Store, StoreError> {
        sqlx::any::install_default_drivers();
        let mut first = sqlx::AnyConnection::connect_with(&options).await?;
        let setup = match (dialect, on_schema) {
            // Persistent in the file: readers never wait for the writer. (The command line
            // changes nothing in a file that is not a current state database: the daemon that
            // made one set WAL.)
            (Dialect::Sqlite, Schema::Migrate) => Some("PRAGMA journal_mode = WAL"),
            (Dialect::Sqlite, Schema::Expect) => None,
            // The migrations' "already exists, skipping" notices are not news.
            (Dialect::Postgres, _) => Some("SET client_min_messages = warning"),
        };
        if let Some(setup) = setup {
            first.execute(setup).await?;
        }
        match on_schema {
            Schema::Migrate => schema::migrate(&mut first, dialect).await?,
            Schema::Expect => schema::expect_current(&mut first, dialect).await?,
        }
        first.close().await?;
        let idle_limit = lease_ttl.map(|ttl| ttl.as_millis().max(1000));
        let pool = AnyPoolOptions::new()
            .max_connections(match dialect {
                Dialect::Sqlite => 4,
                Dialect::Postgres => 8,
            })
            // A SQLite connection is a file handle in this process and cannot go stale: no
            // `SELECT 1` round trip before every use (Postgres keeps it: a server restarts).
            .test_before_acquire(dialect == Dialect::Postgres)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .after_connect(move |conn, _| {
                Box::pin(async move {
                    if let Some(ms) = idle_limit {
                        // A number we format ourselves: nothing to inject.
                        conn.execute(sqlx::AssertSqlSafe(format!(
                            "SET idle_in_transaction_session_timeout = {ms}"
                        )))
                        .await?;
                    }
                    Ok(())
                })
            })
            .connect_with(options)
            .await?;
        Ok(Store {
            pool,
            dialect,
            leadership,
        })
    }

    /// The SQL this store speaks.
    pub fn dialect(&self) -> Dialect {
        self.dialect
    }

    /// Closes the pool: every later use fails as when the database cannot be reached.
    #[cfg(test)]
    pub(crate) async fn close(&self) {
        self.pool.close().await;
    }

    /// Who may change rollbacks through this store.
    pub fn leadership(&self) -> &Arc<Leadership> {
        &self.leadership
    }

    /// The epoch to fence a change with: `None` when there is nothing to fence (the only
    /// process), an error when this replica does not lead.
    fn fence(&self) -> Result<Option<i64>, StoreError> {
        match self.leadership.fence() {
            None => Ok(None),
            Some(Ok(epoch)) => Ok(Some(epoch)),
            Some(Err(not)) => Err(StoreError::Fenced(not)),
        }
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
    /// `ActiveExists` when the image already has an active rollback; `Fenced` when this
    /// replica does not hold the lease.
    pub async fn create(
        &self,
        record: &mut RollbackRecord,
        audit: AuditEntry,
    ) -> Result<(), StoreError> {
        let fence = self.fence()?;
        let mut tx = self.pool.begin().await?;
        let insert = match fence {
            None => {
                "INSERT INTO rollbacks (image, state, created_at, updated_at, data, drill, approved_at) \
                     VALUES ($1, $2, $3, $4, '{}', $5, $6) RETURNING id"
            }
            Some(_) => concat!(
                "INSERT INTO rollbacks (image, state, created_at, updated_at, data, drill, approved_at) \
                 SELECT $1, $2, $3, $4, '{}', $5, $6 WHERE ",
                lease_held!(7, 8),
                " RETURNING id"
            ),
        };
        let mut query = sqlx::query(insert)
            .bind(record.image.to_string())
            .bind(record.state.as_str())
            .bind(record.created_at.0)
            .bind(record.updated_at.0)
            .bind(i64::from(record.drill))
            .bind(record.approved_at.map(|at| at.0));
        if let Some(epoch) = fence {
            query = query.bind(self.leadership.holder.as_str()).bind(epoch);
        }
        let id: i64 = match query.fetch_optional(&mut *tx).await {
            Ok(Some(row)) => row.try_get("id")?,
            Ok(None) => return Err(StoreError::Fenced(crate::leadership::NotLeader)),
            Err(sqlx::Error::Database(error)) if error.is_unique_violation() => {
                return Err(StoreError::ActiveExists {
                    image: record.image.to_string(),
                    drill: record.drill,
                })
            }
            Err(other) => return Err(other.into()),
        };
        record.id = RollbackId(id);
        sqlx::query("UPDATE rollbacks SET data = $1 WHERE id = $2")
            .bind(to_json(record)?)
            .bind(id)
            .execute(&mut *tx)
            .await?;
        let audit = AuditEntry {
            rollback: Some(record.id),
            ..audit
        };
        insert_audit(&mut tx, std::slice::from_ref(&audit)).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Saves a changed record and its audit entries, atomically.
    ///
    /// # Errors
    /// `Fenced` when this replica does not hold the lease (nothing saved); `Finished` when the
    /// record is finished in the database and would change state (nothing saved); a record
    /// that is not there; database errors.
    pub async fn save(
        &self,
        record: &RollbackRecord,
        audit: &[AuditEntry],
    ) -> Result<(), StoreError> {
        self.save_all(&[record], audit).await
    }

    /// Saves changed records and audit entries (in order) in one transaction: all or nothing.
    /// The engine commits what a batch of its messages changed this way, one commit instead of
    /// one per change. With Postgres every record's update is fenced by the lease, and audit
    /// entries without a record by a read of it, all in the transaction.
    ///
    /// # Errors
    /// `Fenced` when this replica does not hold the lease (nothing saved); `Finished` when a
    /// record is finished in the database and would change state (nothing saved); a record
    /// that is not there (nothing saved); database errors.
    pub async fn save_all(
        &self,
        records: &[&RollbackRecord],
        audit: &[AuditEntry],
    ) -> Result<(), StoreError> {
        let fence = self.fence()?;
        if records.is_empty() && audit.is_empty() {
            return Ok(());
        }
        let mut tx = self.pool.begin().await?;
        // A finished rollback keeps its state (its record may still change: the tags read
        // again after a restart), whatever a caller's bug or a stale writer sends.
        let update = match fence {
            None => concat!(
                "UPDATE rollbacks SET state = $1, updated_at = $2, data = $3, approved_at = $5 ",
                "WHERE id = $4 AND ",
                "(state = $1 OR state IN ('requested','approved','retagging','verifying'))"
            ),
            Some(_) => concat!(
                "UPDATE rollbacks SET state = $1, updated_at = $2, data = $3, approved_at = $5 ",
                "WHERE id = $4 AND ",
                "(state = $1 OR state IN ('requested','approved','retagging','verifying')) AND ",
                lease_held!(6, 7)
            ),
        };
        for record in records {
            let mut query = sqlx::query(update)
                .bind(record.state.as_str())
                .bind(record.updated_at.0)
                .bind(to_json(record)?)
                .bind(record.id.0)
                .bind(record.approved_at.map(|at| at.0));
            if let Some(epoch) = fence {
                query = query.bind(self.leadership.holder.as_str()).bind(epoch);
            }
            let done = query.execute(&mut *tx).await?;
            if done.rows_affected() != 1 {
                return Err(self.not_updated(&mut tx, record, fence).await);
            }
        }
        if let (Some(epoch), true) = (fence, records.is_empty()) {
            let held = sqlx::query(concat!("SELECT 1 AS held WHERE ", lease_held!(1, 2)))
                .bind(self.leadership.holder.as_str())
                .bind(epoch)
                .fetch_optional(&mut *tx)
                .await?;
            if held.is_none() {
                return Err(StoreError::Fenced(crate::leadership::NotLeader));
            }
        }
        insert_audit(&mut tx, audit).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Why `record`'s update changed no row: not the leader (first: a replica that lost the
    /// lease learns that, whatever the row says), no such rollback, or finished.
    async fn not_updated(
        &self,
        tx: &mut sqlx::Transaction<'_, sqlx::Any>,
        record: &RollbackRecord,
        fence: Option<i64>,
    ) -> StoreError {
        if let Some(epoch) = fence {
            let held = sqlx::query(concat!("SELECT 1 AS held WHERE ", lease_held!(1, 2)))
                .bind(self.leadership.holder.as_str())
                .bind(epoch)
                .fetch_optional(&mut **tx)
                .await;
            match held {
                Ok(Some(_)) => {}
                Ok(None) => return StoreError::Fenced(crate::leadership::NotLeader),
                Err(error) => return error.into(),
            }
        }
        let stored: Result<Option<String>, _> =
            sqlx::query_scalar("SELECT state FROM rollbacks WHERE id = $1")
                .bind(record.id.0)
                .fetch_optional(&mut **tx)
                .await;
        match stored {
            Err(error) => error.into(),
            Ok(None) => StoreError::Missing(record.id),
            Ok(Some(stored)) => match State::parse(&stored) {
                Some(state) if state.is_terminal() && state != record.state => {
                    StoreError::Finished {
                        id: record.id,
                        state,
                    }
                }
                // Active and still not updated: on Postgres, the lease lapsed at the update
                // and was renewed since.
                _ if fence.is_some() => StoreError::Fenced(crate::leadership::NotLeader),
                _ => StoreError::Corrupt {
                    id: record.id.0,
                    detail: format!("its update changed nothing (stored state '{stored}')"),
                },
            },
        }
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

    /// The newest `limit` failed or interrupted rollbacks updated at or after `since`, oldest
    /// first. A write without an answer can land after its rollback was recorded as failed, so a
    /// restart reads their tags again; the bound keeps a start quick after a bad day.
    ///
    /// # Errors
    /// Database errors, unreadable records.
    pub async fn recently_failed(
        &self,
        since: Timestamp,
        limit: u32,
    ) -> Result<Vec<RollbackRecord>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, data FROM rollbacks \
             WHERE state IN ('failed','interrupted') AND updated_at >= $1 ORDER BY id DESC LIMIT $2",
        )
        .bind(since.0)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        let mut records = rows.iter().map(from_row).collect::<Result<Vec<_>, _>>()?;
        records.reverse();
        Ok(records)
    }

    /// When the rollbacks (not drills) whose pipeline started at or after `since` were
    /// approved, oldest first; the newest `limit` of them. The hourly limit's memory across
    /// restarts.
    ///
    /// # Errors
    /// Database errors.
    pub async fn started_since(
        &self,
        since: Timestamp,
        limit: u32,
    ) -> Result<Vec<Timestamp>, StoreError> {
        // The index alone (`rollbacks_started`), no row read: an approval is saved with the
        // pipeline's start, so every rollback approved has started.
        let sql = "SELECT approved_at FROM rollbacks WHERE drill = 0 AND approved_at >= $1 \
             ORDER BY approved_at DESC LIMIT $2";
        let newest_first = sqlx::query_scalar::<_, i64>(sql)
            .bind(since.0)
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await?;
        Ok(newest_first.into_iter().rev().map(Timestamp).collect())
    }

    /// One rollback.
    ///
    /// # Errors
    /// Database errors, an unreadable record.
    pub async fn get(&self, id: RollbackId) -> Result<Option<RollbackRecord>, StoreError> {
        let row = sqlx::query("SELECT id, data FROM rollbacks WHERE id = $1")
            .bind(id.0)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(from_row).transpose()
    }
}

impl Store {
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
            "SELECT id, data FROM rollbacks WHERE image = $1 AND state = $2 AND drill = 0 ORDER BY id DESC LIMIT 1",
        )
        .bind(image.to_string())
        .bind(state.as_str())
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(from_row).transpose()
    }
}

/// The `sqlite://` URL of `path` (its directory created if missing) that opens exactly that
/// file, creating it if missing: the directory made absolute first (a relative `d/../x.db` would
/// otherwise read as host `d`), every byte but unreserved ones percent-encoded (a `%41` in a
/// name stays `%41`).
fn sqlite_url(path: &Path) -> Result<reqwest::Url, String> {
    let parent = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent).map_err(|e| e.to_string())?;
    let parent = std::fs::canonicalize(parent).map_err(|e| e.to_string())?;
    let name = path
        .file_name()
        .ok_or_else(|| "the path names no file".to_owned())?;
    let absolute = parent.join(name);
    let encoded = percent_encoded(absolute.as_os_str().as_encoded_bytes(), b"/-_.~");
    reqwest::Url::parse(&format!("sqlite://{encoded}?mode=rwc")).map_err(|e| e.to_string())
}

/// The connection options for `postgres`: its URL with the password (a secret: the URL built
/// here is never shown). The driver reads the password back from the URL percent-decoded, so
/// every byte of it but a letter or digit is escaped here (`Url::set_password` leaves a `%` as
/// it is: `%41` would reach the server as `A`).
fn postgres_options(postgres: &PostgresLocation) -> Result<AnyConnectOptions, sqlx::Error> {
    let mut url = postgres.url.clone();
    if let Some(password) = &postgres.password {
        let escaped = percent_encoded(password.expose().as_bytes(), b"");
        url.set_password(Some(&escaped)).map_err(|()| {
            sqlx::Error::Configuration("the store URL cannot hold a password".into())
        })?;
    }
    AnyConnectOptions::from_url(&url)
}

/// `bytes` with every byte but an ASCII letter, a digit or one of `keep` percent-encoded.
fn percent_encoded(bytes: &[u8], keep: &[u8]) -> String {
    use std::fmt::Write as _;
    let mut encoded = String::with_capacity(bytes.len() * 3);
    for &byte in bytes {
        if byte.is_ascii_alphanumeric() || keep.contains(&byte) {
            encoded.push(char::from(byte));
        } else {
            let _ = write!(encoded, "%{byte:02X}");
        }
    }
    encoded
}

fn to_json(record: &RollbackRecord) -> Result<String, StoreError> {
    serde_json::to_string(record).map_err(|e| StoreError::Database(e.to_string()))
}

fn from_row(row: &AnyRow) -> Result<RollbackRecord, StoreError> {
    let id: i64 = row.try_get("id")?;
    let data: String = row.try_get("data")?;
    serde_json::from_str(&data).map_err(|e| StoreError::Corrupt {
        id,
        detail: e.to_string(),
    })
}

#[cfg(test)]
mod tests;
