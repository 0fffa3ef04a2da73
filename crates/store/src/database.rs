//! The handle on the database: opening it (SQLite made private first,
//! migrations applied), write transactions, and the server key's claim.

use crate::backend::Backend;
use crate::connections::{Connections, Reader, Writer};
use crate::lite::Conn;
use crate::{Faults, StoreError};
use sqlx::any::{AnyPoolOptions, AnyTransactionManager};
use sqlx::{Connection, Executor, Row};
use sqlx_core::transaction::TransactionManager;
use std::sync::Arc;

/// How long a writer waits for SQLite's lock (the `busy_timeout`, for
/// other processes) and for its turn in this process ([`Store::write_turn`]).
pub(crate) const BUSY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// A cheap-to-clone handle on the database.
#[derive(Clone, Debug)]
pub struct Store {
    pub(crate) connections: Connections,
    /// Off unless a test turns them on ([`Store::faults`]); shared by
    /// every clone.
    pub(crate) faults: Arc<Faults>,
}

/// A write transaction ([`Store::begin_write`]), holding this process's
/// turn to write until it commits or is dropped; dropped, it rolls back.
pub(crate) struct WriteTransaction {
    writer: Writer,
    /// Begun and neither committed nor rolled back.
    open: bool,
}

impl WriteTransaction {
    pub(crate) async fn commit(mut self) -> Result<(), sqlx::Error> {
        match &mut self.writer {
            Writer::Sqlite(writer) => {
                writer.conn.execute("COMMIT").await?;
                writer.unfinished = false;
            }
            Writer::Pooled(conn) => {
                if let Some(conn) = conn.pooled() {
                    AnyTransactionManager::commit(conn).await?;
                }
            }
        }
        self.open = false;
        Ok(())
    }

    pub(crate) async fn rollback(mut self) -> Result<(), sqlx::Error> {
        match &mut self.writer {
            // Left unfinished: rolled back before the writer's next use.
            Writer::Sqlite(writer) => writer.finish().await?,
            Writer::Pooled(conn) => {
                if let Some(conn) = conn.pooled() {
                    AnyTransactionManager::rollback(conn).await?;
                }
            }
        }
        self.open = false;
        Ok(())
    }
}

impl Drop for WriteTransaction {
    fn drop(&mut self) {
        // SQLite's writer was marked unfinished when it began; sqlx's own
        // transactions queue the rollback on the connection, ahead of
        // whatever it runs next.
        if self.open {
            self.writer.abandon();
        }
    }
}

impl std::ops::Deref for WriteTransaction {
    type Target = Conn;
    fn deref(&self) -> &Conn {
        &self.writer
    }
}

impl std::ops::DerefMut for WriteTransaction {
    fn deref_mut(&mut self) -> &mut Conn {
        &mut self.writer
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
        let migrator = backend.migrator(version);
        let connections = match backend {
            Backend::Sqlite => {
                let file = crate::connections::sqlite_file(database_url)?;
                crate::private::create_sqlite_file(database_url).map_err(sqlx::Error::Io)?;
                let mut conn = crate::connections::connect_sqlite(&file).await?;
                migrator.run(&mut conn).await?;
                conn.close().await?;
                Connections::sqlite(database_url).await?
            }
            Backend::Postgres => {
                let pool = AnyPoolOptions::new()
                    .max_connections(8)
                    .connect(database_url)
                    .await?;
                migrator.run(&mut *pool.acquire().await?).await?;
                Connections::Postgres(pool)
            }
        };
        let store = Self {
            connections,

            faults: Arc::default(),
        };
        Ok(store)
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
        let mut writer = self.write_turn().await?;
        match &mut writer {
            // Unfinished from before its BEGIN leaves: a transaction
            // cancelled at any point is rolled back before the next write.
            Writer::Sqlite(sqlite) => {
                sqlite.unfinished = true;
                sqlite.conn.execute("BEGIN IMMEDIATE").await?;
            }
            Writer::Pooled(conn) => {
                if let Some(conn) = conn.pooled() {
                    AnyTransactionManager::begin(conn, None).await?;
                }
            }
        }
        Ok(WriteTransaction { writer, open: true })
    }

    /// A write transaction whose first statement decides (see
    /// [`crate::script`]).
    pub(crate) async fn begin_script(&self) -> Result<crate::script::Script, sqlx::Error> {
        Ok(crate::script::Script::new(self.begin_write().await?))
    }

    /// This process's turn to write and the connection to write on. SQLite
    /// takes one writer at a time, and the server's writes all go through
    /// one connection: writers queue here, each woken the moment the one
    /// before is done. Without it they met in SQLite's busy handler, which
    /// sleeps 1 to 100 ms between tries: most of the time a request took
    /// under load (issue 32). A writer waits as long as the busy handler
    /// would have ([`BUSY_TIMEOUT`]) and then fails as it would have,
    /// "database is locked": writes queued behind one a stalled disk holds
    /// stop with an error, not forever. A lock another process (`doorman
    /// admin`) holds is waited for as long ([`crate::lite`]). No write
    /// awaits another while it holds its turn. On PostgreSQL, a connection
    /// from the pool.
    pub(crate) async fn write_turn(&self) -> Result<Writer, sqlx::Error> {
        self.connections.writer(BUSY_TIMEOUT).await?.ok_or_else(|| {
            sqlx::Error::Io(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "database is locked: another write held it for 10 s",
            ))
        })
    }

    /// A connection to read on (SQLite's readers see each write once it
    /// commits).
    pub(crate) async fn reader(&self) -> Result<Reader, sqlx::Error> {
        self.connections.reader().await
    }

    /// Records `fingerprint` as the server key's if the database has none
    /// yet; [`StoreError::KeyMismatch`] if it has another.
    pub async fn claim_key(&self, fingerprint: &str) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO server_identity (id, key_fingerprint) VALUES (1, $1)
             ON CONFLICT (id) DO NOTHING",
        )
        .bind(fingerprint)
        .execute(&mut *self.write_turn().await?)
        .await?;
        let row = sqlx::query("SELECT key_fingerprint FROM server_identity WHERE id = 1")
            .fetch_one(&mut *self.reader().await?)
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

    #[tokio::test]
    async fn a_write_meeting_another_process_lock_waits_for_it_as_long_as_the_busy_timeout() {
        let dir = tempfile::tempdir().expect("temp dir");
        let file = dir.path().join("doorman.db");
        let store = Store::open(&format!("sqlite://{}", file.display()))
            .await
            .expect("store");
        // Another process's write (`doorman admin`), held open.
        let other = rusqlite::Connection::open(&file).expect("a second connection");
        other
            .execute_batch(
                "BEGIN IMMEDIATE; INSERT INTO server_identity (id, key_fingerprint) VALUES (1, 'other');",
            )
            .expect("the other write");
        store
            .audit_events()
            .await
            .expect("a read goes on beside another's write");
        tokio::time::pause();
        let asked = tokio::time::Instant::now();
        let error = store
            .claim_key("ours")
            .await
            .expect_err("locked for all of the busy timeout");
        assert!(error.to_string().contains("database is locked"), "{error}");
        assert!(
            asked.elapsed() >= BUSY_TIMEOUT,
            "waited (on the paused clock) {:?}",
            asked.elapsed()
        );
        tokio::time::resume();
        other.execute_batch("ROLLBACK").expect("the other gives up");
        store
            .claim_key("ours")
            .await
            .expect("the write, once the other is done, and nothing of the other's");
    }

    #[tokio::test]
    async fn a_sqlite_url_with_options_is_refused_by_name_and_creates_nothing() {
        let dir = tempfile::tempdir().expect("temp dir");
        let file = dir.path().join("doorman.db");
        let error = Store::open(&format!("sqlite://{}?cache=shared", file.display()))
            .await
            .expect_err("an option the store does not take");
        assert!(error.to_string().contains("takes no options"), "{error}");
        assert!(!file.exists(), "nothing created");
        Store::open(&format!("sqlite://{}?mode=rwc", file.display()))
            .await
            .expect("mode=rwc, what the store does anyway");
    }

    #[tokio::test]
    async fn a_write_dropped_or_cancelled_leaves_nothing_and_the_next_one_writes() {
        let dir = tempfile::tempdir().expect("temp dir");
        let url = format!("sqlite://{}", dir.path().join("doorman.db").display());
        let store = Store::open(&url).await.expect("store");
        let mut tx = store.begin_write().await.expect("a write");
        sqlx::query("INSERT INTO server_identity (id, key_fingerprint) VALUES (1, 'dropped')")
            .execute(&mut *tx)
            .await
            .expect("insert");
        drop(tx);
        // Polled once, so its BEGIN is on its way, then dropped (or, had
        // the connection answered at once, begun and dropped).
        tokio::select! {
            biased;
            _ = store.begin_write() => {}
            _ = std::future::ready(()) => {}
        }
        store
            .claim_key("kept")
            .await
            .expect("the dropped write left no key and no transaction open");
        let reopened = Store::open(&url).await.expect("store");
        reopened
            .claim_key("kept")
            .await
            .expect("the key, committed");
    }
}
