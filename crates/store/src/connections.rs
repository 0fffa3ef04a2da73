//! The connections the store's statements run on: on SQLite its own
//! ([`crate::lite`]), one writer and a few readers, kept once opened; on
//! PostgreSQL sqlx's pool.
//!
//! A connection to a file cannot be lost as a network's can, so SQLite's
//! are simply kept (sqlx's pool also pinged each it took back), and the
//! one writer makes the process's writes take turns
//! ([`crate::Store::write_turn`]).

use crate::checkpoints::Checkpoints;
use crate::lite::{Conn, Lite};
use sqlx::any::AnyTransactionManager;
use sqlx::{AnyPool, Connection, Executor};
use sqlx_core::transaction::TransactionManager;
use std::sync::{Arc, Mutex as SyncMutex};
use tokio::sync::{Mutex, OwnedMutexGuard, OwnedSemaphorePermit, Semaphore};

/// Reading connections SQLite may have open at once, beside the writer.
const SQLITE_READERS: usize = 3;

/// How long a read waits for a connection.
const READ_PATIENCE: std::time::Duration = std::time::Duration::from_secs(30);

/// Where statements run.
#[derive(Clone)]
pub(crate) enum Connections {
    Sqlite(Arc<SqliteConnections>),
    Postgres(AnyPool),
}

impl std::fmt::Debug for Connections {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Connections::Sqlite(_) => f.write_str("Connections::Sqlite"),
            Connections::Postgres(pool) => {
                f.debug_tuple("Connections::Postgres").field(pool).finish()
            }
        }
    }
}

/// One SQLite database's connections ([`crate::lite`]).
pub(crate) struct SqliteConnections {
    file: std::path::PathBuf,
    /// Every write of this process, one at a time.
    writer: Arc<Mutex<SqliteWriter>>,
    /// Readers opened when first needed, kept once opened.
    idle: SyncMutex<Vec<Lite>>,
    _checkpoints: Checkpoints,
    readers: Arc<Semaphore>,
}

/// SQLite's writing connection.
pub(crate) struct SqliteWriter {
    pub(crate) conn: Conn,
    /// A transaction may be open on it: one that failed, or was dropped,
    /// before its COMMIT came back.
    pub(crate) unfinished: bool,
}

impl SqliteWriter {
    /// Makes the writer ready for a write: rolls back what a transaction
    /// left unfinished (nothing if its COMMIT went through after all).
    pub(crate) async fn finish(&mut self) -> Result<(), sqlx::Error> {
        if self.unfinished {
            if self.conn.in_transaction()
                && let Err(error) = self.conn.execute("ROLLBACK").await
                && self.conn.in_transaction()
            {
                // Still unfinished: no write joins what may be open.
                return Err(error);
            }
            self.unfinished = false;
        }
        Ok(())
    }
}

/// Rolls back what `writer` has unfinished as soon as its turn comes back,
/// rather than at the next write: until then SQLite's write lock is held,
/// which another process (`doorman admin`) would wait for.
fn finish_soon(writer: &OwnedMutexGuard<SqliteWriter>) {
    let writer = Arc::clone(OwnedMutexGuard::mutex(writer));
    if let Ok(runtime) = tokio::runtime::Handle::try_current() {
        runtime.spawn(async move {
            if let Err(error) = writer.lock_owned().await.finish().await {
                tracing::warn!(%error, "cannot roll back an unfinished write");
            }
        });
    }
}

/// Opens an sqlx connection to the SQLite file `file`, for the migrations:
/// the file the store's own connections open, named the same way.
pub(crate) async fn connect_sqlite(
    file: &std::path::Path,
) -> Result<sqlx::SqliteConnection, sqlx::Error> {
    let options = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(file)
        .create_if_missing(true)
        .journal_mode(sqlx::sqlite::SqliteJournalMode::Wal)
        .busy_timeout(crate::database::BUSY_TIMEOUT)
        .foreign_keys(true);
    sqlx::SqliteConnection::connect_with(&options).await
}

/// The file a SQLite database URL names. Its options are not SQLite's to
/// choose: the store creates the file itself, private, and writes to it.
pub(crate) fn sqlite_file(database_url: &str) -> Result<std::path::PathBuf, sqlx::Error> {
    // `mode=rwc` is what the store does anyway.
    if database_url
        .split_once('?')
        .is_some_and(|(_, options)| options != "mode=rwc")
    {
        return Err(sqlx::Error::Configuration(
            format!(
                "a SQLite database URL takes no options but mode=rwc: {}",
                crate::shown_url(database_url)
            )
            .into(),
        ));
    }
    crate::backend::sqlite_file(database_url).ok_or_else(|| {
        sqlx::Error::Configuration(
            format!("not a SQLite file: {}", crate::shown_url(database_url)).into(),
        )
    })
}

impl Connections {
    /// SQLite's connections to the file `database_url` names (created
    /// private and migrated by the caller); the writer opened at once.
    pub(crate) async fn sqlite(database_url: &str) -> Result<Self, sqlx::Error> {
        let file = sqlite_file(database_url)?;
        let checkpoints = Checkpoints::start(&file)?;
        let writer = Lite::open_writer(&file, &checkpoints)?;
        Ok(Connections::Sqlite(Arc::new(SqliteConnections {
            writer: Arc::new(Mutex::new(SqliteWriter {
                conn: Conn::Lite(writer),
                unfinished: false,
            })),
            file,
            idle: SyncMutex::default(),
            _checkpoints: checkpoints,
            readers: Arc::new(Semaphore::new(SQLITE_READERS)),
        })))
    }

    /// The connection that writes, waiting at most `patience` for SQLite's
    /// writer; `None` when the wait ran out.
    pub(crate) async fn writer(
        &self,
        patience: std::time::Duration,
    ) -> Result<Option<Writer>, sqlx::Error> {
        match self {
            Connections::Sqlite(sqlite) => {
                let writer = Arc::clone(&sqlite.writer).lock_owned();
                let Ok(mut writer) = tokio::time::timeout(patience, writer).await else {
                    return Ok(None);
                };
                writer.finish().await?;
                Ok(Some(Writer::Sqlite(writer)))
            }
            Connections::Postgres(pool) => {
                Ok(Some(Writer::Pooled(Conn::Pooled(pool.acquire().await?))))
            }
        }
    }

    /// A connection to read on, waiting at most [`READ_PATIENCE`] for one
    /// (as sqlx's pool would have) when all are busy, as on a stalled disk.
    pub(crate) async fn reader(&self) -> Result<Reader, sqlx::Error> {
        match self {
            Connections::Sqlite(sqlite) => {
                let permit = tokio::time::timeout(
                    READ_PATIENCE,
                    Arc::clone(&sqlite.readers).acquire_owned(),
                )
                .await
                .map_err(|_| sqlx::Error::PoolTimedOut)?
                .map_err(|_| sqlx::Error::PoolClosed)?;
                let idle = sqlite.idle.lock().map(|mut idle| idle.pop()).ok().flatten();
                let conn = match idle {
                    Some(conn) => conn,
                    None => Lite::open(&sqlite.file)?,
                };
                Ok(Reader::Sqlite {
                    conn: Some(Conn::Lite(conn)),
                    home: Arc::clone(sqlite),
                    _permit: permit,
                })
            }
            Connections::Postgres(pool) => Ok(Reader::Pooled(Conn::Pooled(pool.acquire().await?))),
        }
    }
}

/// This process's turn to write and the connection it writes on: SQLite's
/// one writer until dropped, or a pooled PostgreSQL connection.
pub(crate) enum Writer {
    Sqlite(OwnedMutexGuard<SqliteWriter>),
    Pooled(Conn),
}

impl Writer {
    /// Rolls back the transaction left open on it: SQLite's writer (marked
    /// unfinished) as soon as its turn comes back, or else before its next
    /// use; PostgreSQL's queued on the connection, ahead of what it runs
    /// next.
    pub(crate) fn abandon(&mut self) {
        match self {
            Writer::Sqlite(writer) => finish_soon(writer),
            Writer::Pooled(conn) => {
                if let Some(conn) = conn.pooled() {
                    AnyTransactionManager::start_rollback(conn);
                }
            }
        }
    }
}

impl std::ops::Deref for Writer {
    type Target = Conn;
    fn deref(&self) -> &Conn {
        match self {
            Writer::Sqlite(writer) => &writer.conn,
            Writer::Pooled(conn) => conn,
        }
    }
}

impl std::ops::DerefMut for Writer {
    fn deref_mut(&mut self) -> &mut Conn {
        match self {
            Writer::Sqlite(writer) => &mut writer.conn,
            Writer::Pooled(conn) => conn,
        }
    }
}

/// A connection to read on, given back when dropped.
pub(crate) enum Reader {
    Sqlite {
        /// Always there until dropped.
        conn: Option<Conn>,
        home: Arc<SqliteConnections>,
        _permit: OwnedSemaphorePermit,
    },
    Pooled(Conn),
}

impl std::ops::Deref for Reader {
    type Target = Conn;
    fn deref(&self) -> &Conn {
        match self {
            Reader::Sqlite {
                conn: Some(conn), ..
            } => conn,
            Reader::Sqlite { conn: None, .. } => {
                unreachable!("a reader's connection, until dropped")
            }
            Reader::Pooled(conn) => conn,
        }
    }
}

impl std::ops::DerefMut for Reader {
    fn deref_mut(&mut self) -> &mut Conn {
        match self {
            Reader::Sqlite {
                conn: Some(conn), ..
            } => conn,
            Reader::Sqlite { conn: None, .. } => {
                unreachable!("a reader's connection, until dropped")
            }
            Reader::Pooled(conn) => conn,
        }
    }
}

impl Drop for Reader {
    fn drop(&mut self) {
        // A query runs whole or not at all (it awaits nothing but a lock
        // held elsewhere, before it begins): nothing is left half-way on a
        // reader given back.
        if let Reader::Sqlite { conn, home, .. } = self
            && let Some(Conn::Lite(conn)) = conn.take()
            && let Ok(mut idle) = home.idle.lock()
        {
            idle.push(conn);
        }
    }
}
