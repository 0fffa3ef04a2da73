//! The handle on the database: opening it (SQLite made private first,
//! migrations applied), write transactions, and the server key's claim.

use crate::backend::{Backend, sqlite_url_creating};
use crate::{Faults, StoreError};
use sqlx::any::AnyPoolOptions;
use sqlx::{AnyConnection, AnyPool, Executor, Row};
use std::sync::Arc;
use tokio::sync::{Mutex, OwnedMutexGuard};

/// How long a writer waits for SQLite's lock (the `busy_timeout` below)
/// and for its turn in this process ([`Store::write_turn`]).
const BUSY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// A cheap-to-clone handle on the database.
#[derive(Clone, Debug)]
pub struct Store {
    pub(crate) pool: AnyPool,
    pub(crate) backend: Backend,
    /// Off unless a test turns them on ([`Store::faults`]); shared by
    /// every clone.
    pub(crate) faults: std::sync::Arc<Faults>,
    /// SQLite's writers, one at a time in this process (see
    /// [`Store::write_turn`]); none for PostgreSQL.
    writers: Option<Arc<Mutex<()>>>,
}

/// A write transaction ([`Store::begin_write`]), holding this process's
/// turn to write on SQLite until it commits or is dropped.
pub(crate) struct WriteTransaction {
    tx: sqlx::Transaction<'static, sqlx::Any>,
    _turn: Option<OwnedMutexGuard<()>>,
}

impl WriteTransaction {
    pub(crate) async fn commit(self) -> Result<(), sqlx::Error> {
        self.tx.commit().await
    }

    pub(crate) async fn rollback(self) -> Result<(), sqlx::Error> {
        self.tx.rollback().await
    }
}

impl std::ops::Deref for WriteTransaction {
    type Target = AnyConnection;
    fn deref(&self) -> &AnyConnection {
        &self.tx
    }
}

impl std::ops::DerefMut for WriteTransaction {
    fn deref_mut(&mut self) -> &mut AnyConnection {
        &mut self.tx
    }
}

impl Store {
    /// Opens (creating if needed) the database and applies pending migrations.
    pub async fn open(database_url: &str) -> Result<Self, StoreError> {
        Self::open_migrated_to(database_url, i64::MAX).await
    }

    /// Opens the database migrated only up to `version`: what an older
    /// release left, for upgrade tests.
    #[doc(hidden)]
    pub async fn open_migrated_to(database_url: &str, version: i64) -> Result<Self, StoreError> {
        sqlx::any::install_default_drivers();
        let backend = Backend::of(database_url)?;
        let pool = match backend {
            Backend::Sqlite => {
                crate::private::create_sqlite_file(database_url).map_err(sqlx::Error::Io)?;
                AnyPoolOptions::new()
                    .max_connections(4)
                    // A connection to a file cannot be lost as a network's
                    // can: no ping before each use (each one a round trip
                    // to the connection's thread, and a statement or more
                    // of them for every request).
                    .test_before_acquire(false)
                    .after_connect(|conn, _| {
                        Box::pin(async move {
                            // WAL with NORMAL never corrupts the database; a power
                            // cut may lose the last commits, which the expiry check
                            // makes harmless (a lost decision leaves the request
                            // pending, never allowed).
                            conn.execute(
                                "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL;
                                 PRAGMA busy_timeout = 10000; PRAGMA foreign_keys = ON;",
                            )
                            .await?;
                            Ok(())
                        })
                    })
                    .connect(&sqlite_url_creating(database_url))
                    .await?
            }
            Backend::Postgres => {
                AnyPoolOptions::new()
                    .max_connections(8)
                    .connect(database_url)
                    .await?
            }
        };
        backend.migrator(version).run(&pool).await?;
        let writers = (backend == Backend::Sqlite).then(Arc::default);
        Ok(Self {
            pool,
            backend,
            faults: std::sync::Arc::default(),
            writers,
        })
    }

    /// The switches with which a test makes this store's writes fail or
    /// stall (see `faults`); inert unless a test uses them.
    pub fn faults(&self) -> &Faults {
        &self.faults
    }

    /// A transaction that will write. On SQLite it takes the write lock at
    /// once (`BEGIN IMMEDIATE`): a transaction that read first and wrote
    /// after another connection's commit would fail with "database is
    /// locked" (SQLITE_BUSY_SNAPSHOT), which no busy timeout waits out.
    /// A test's injected fault ([`Store::faults`]) fails or stalls it
    /// before it begins.
    pub(crate) async fn begin_write(&self) -> Result<WriteTransaction, sqlx::Error> {
        self.faults.before_write().await?;
        let turn = self.write_turn().await?;
        let tx = match self.backend {
            Backend::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await?,
            Backend::Postgres => self.pool.begin().await?,
        };
        Ok(WriteTransaction { tx, _turn: turn })
    }

    /// This process's turn to write, on SQLite, which takes one writer at
    /// a time: held by the server's writes, writers queue here and each is
    /// woken the moment the one before commits. Without it they met in
    /// SQLite's busy handler, which sleeps 1 to 100 ms between tries: most
    /// of the time a request took under load (issue 32). A writer waits as
    /// long as the busy handler would have ([`BUSY_TIMEOUT`]) and then
    /// fails as it would have, "database is locked": a stalled disk stops
    /// writes with an error, not forever. Another process (`doorman
    /// admin`) still meets the busy handler, as before. No write awaits
    /// another while it holds its turn.
    pub(crate) async fn write_turn(&self) -> Result<Option<OwnedMutexGuard<()>>, sqlx::Error> {
        let Some(writers) = &self.writers else {
            return Ok(None);
        };
        match tokio::time::timeout(BUSY_TIMEOUT, Arc::clone(writers).lock_owned()).await {
            Ok(turn) => Ok(Some(turn)),
            Err(_) => Err(sqlx::Error::Io(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "database is locked: another write held it for 10 s",
            ))),
        }
    }

    /// Records `fingerprint` as the server key's if the database has none
    /// yet; [`StoreError::KeyMismatch`] if it has another.
    pub async fn claim_key(&self, fingerprint: &str) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO server_identity (id, key_fingerprint) VALUES (1, $1)
             ON CONFLICT (id) DO NOTHING",
        )
        .bind(fingerprint)
        .execute(&self.pool)
        .await?;
        let row = sqlx::query("SELECT key_fingerprint FROM server_identity WHERE id = 1")
            .fetch_one(&self.pool)
            .await?;
        let known: String = row.try_get("key_fingerprint")?;
        if doorman_core::secret::constant_time_eq(&known, fingerprint) {
            Ok(())
        } else {
            Err(StoreError::KeyMismatch)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_writer_waits_its_turn_as_long_as_the_busy_timeout_then_fails() {
        let dir = tempfile::tempdir().expect("temp dir");
        let url = format!("sqlite://{}", dir.path().join("doorman.db").display());
        let store = Store::open(&url).await.expect("store");
        let stalled = store.write_turn().await.expect("the first turn");
        tokio::time::pause();
        let error = store.begin_write().await.err().expect("no turn while held");
        assert!(error.to_string().contains("database is locked"), "{error}");
        drop(stalled);
        tokio::time::resume();
        let tx = store.begin_write().await.expect("the turn, once free");
        tx.commit().await.expect("commit");
    }
}
