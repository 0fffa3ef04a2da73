//! The connections the store's statements run on: on SQLite its own, one
//! writer and a few readers, each given back without a round trip; on
//! PostgreSQL sqlx's pool.
//!
//! Why SQLite has its own (issue 32): sqlx runs each SQLite connection on a
//! thread of its own, so every statement is a hand-off to that thread and
//! back, and its pool pings every connection it takes back (one more, and
//! a task spawned to do it). A request made, mailed, viewed, approved and
//! served was about ninety such round trips, a third of them pings; on a
//! machine where waking a thread is dear they were most of the server's
//! CPU. A connection to a file cannot be lost as a network's can, so it is
//! simply kept, and the one writer also makes the process's writes take
//! turns ([`crate::Store::write_turn`]).

use crate::backend::sqlite_url_creating;
use sqlx::any::AnyTransactionManager;
use sqlx::pool::PoolConnection;
use sqlx::{Any, AnyConnection, AnyPool, Connection, Executor};
use sqlx_core::transaction::TransactionManager;
use std::sync::{Arc, Mutex as SyncMutex};
use tokio::sync::{Mutex, OwnedMutexGuard, OwnedSemaphorePermit, Semaphore};

/// Reading connections SQLite may have open at once, beside the writer.
/// They begin no transaction: nothing that ends a connection's thread in
/// sqlx (a BEGIN it cannot answer, a ROLLBACK that fails) happens on them.
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

/// One SQLite database's connections.
pub(crate) struct SqliteConnections {
    url: String,
    /// Every write of this process, one at a time.
    writer: Arc<Mutex<SqliteWriter>>,
    /// Readers opened when first needed, kept once opened.
    idle: SyncMutex<Vec<AnyConnection>>,
    readers: Arc<Semaphore>,
}

/// SQLite's writing connection.
pub(crate) struct SqliteWriter {
    pub(crate) conn: AnyConnection,
    /// A transaction of a [`crate::script::Script`] may be open on it: one
    /// that failed or was dropped before its COMMIT came back.
    pub(crate) unfinished: bool,
    /// To open it again.
    url: String,
}

impl SqliteWriter {
    /// Makes the writer ready for a write: rolls back what a script left
    /// unfinished (nothing if its COMMIT went through after all: SQLite
    /// then has no transaction to roll back, and says so), and replaces a
    /// connection sqlx still counts a transaction on that no rollback
    /// ends, which nothing of ours holds now: one whose ROLLBACK failed
    /// after SQLite had rolled back by itself (a full disk), which would
    /// refuse every BEGIN.
    pub(crate) async fn finish(&mut self) -> Result<(), sqlx::Error> {
        if self.unfinished {
            match self.conn.execute("ROLLBACK").await {
                Ok(_) => {}
                Err(error) if error.to_string().contains("no transaction is active") => {}
                // Still unfinished: no write joins what may be open.
                Err(error) => return Err(error),
            }
            self.unfinished = false;
        }
        // A transaction dropped a moment ago has its rollback queued, ahead
        // of this one, which then has nothing left to do.
        if AnyTransactionManager::get_transaction_depth(&self.conn) > 0
            && AnyTransactionManager::rollback(&mut self.conn)
                .await
                .is_err()
        {
            tracing::warn!("reopening the database's writing connection, left in a transaction");
            self.conn = connect_sqlite(&self.url).await?;
        }
        Ok(())
    }
}

/// Opens a connection to a SQLite file with the settings every connection
/// of the store has.
async fn connect_sqlite(url: &str) -> Result<AnyConnection, sqlx::Error> {
    let mut conn = AnyConnection::connect(url).await?;
    // WAL with NORMAL never corrupts the database; a power cut may lose the
    // last commits, which the expiry check makes harmless (a lost decision
    // leaves the request pending, never allowed). (Mapping the file in,
    // `mmap_size`, cost more CPU per request than it saved: each remap as
    // the file grows interrupts every core.)
    conn.execute(
        "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL;
         PRAGMA busy_timeout = 10000; PRAGMA foreign_keys = ON;",
    )
    .await?;
    Ok(conn)
}

impl Connections {
    /// SQLite's connections to the file `database_url` names (created
    /// private by the caller); the writer opened at once.
    pub(crate) async fn sqlite(database_url: &str) -> Result<Self, sqlx::Error> {
        let url = sqlite_url_creating(database_url);
        let writer = connect_sqlite(&url).await?;
        Ok(Connections::Sqlite(Arc::new(SqliteConnections {
            writer: Arc::new(Mutex::new(SqliteWriter {
                conn: writer,
                unfinished: false,
                url: url.clone(),
            })),
            url,
            idle: SyncMutex::default(),
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
            Connections::Postgres(pool) => Ok(Some(Writer::Pooled(pool.acquire().await?))),
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
                    None => connect_sqlite(&sqlite.url).await?,
                };
                Ok(Reader::Sqlite {
                    conn: Some(conn),
                    home: Arc::clone(sqlite),
                    _permit: permit,
                })
            }
            Connections::Postgres(pool) => Ok(Reader::Pooled(pool.acquire().await?)),
        }
    }
}

/// This process's turn to write and the connection it writes on: SQLite's
/// one writer until dropped, or a pooled PostgreSQL connection.
pub(crate) enum Writer {
    Sqlite(OwnedMutexGuard<SqliteWriter>),
    Pooled(PoolConnection<Any>),
}

impl std::ops::Deref for Writer {
    type Target = AnyConnection;
    fn deref(&self) -> &AnyConnection {
        match self {
            Writer::Sqlite(writer) => &writer.conn,
            Writer::Pooled(conn) => conn,
        }
    }
}

impl std::ops::DerefMut for Writer {
    fn deref_mut(&mut self) -> &mut AnyConnection {
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
        conn: Option<AnyConnection>,
        home: Arc<SqliteConnections>,
        _permit: OwnedSemaphorePermit,
    },
    Pooled(PoolConnection<Any>),
}

impl std::ops::Deref for Reader {
    type Target = AnyConnection;
    fn deref(&self) -> &AnyConnection {
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
    fn deref_mut(&mut self) -> &mut AnyConnection {
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
        // A statement cancelled half-way is safe to follow on the same
        // connection: its thread takes commands in order, and resets a
        // statement before it runs it again.
        if let Reader::Sqlite { conn, home, .. } = self
            && let Some(conn) = conn.take()
            && let Ok(mut idle) = home.idle.lock()
        {
            idle.push(conn);
        }
    }
}
