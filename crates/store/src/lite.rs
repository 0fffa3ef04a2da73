//! SQLite connections of the store's own ([`Lite`]), run on the task that
//! uses them, and the checkpoints of their write-ahead log
//! ([`crate::checkpoints`]), on a thread of their own.
//!
//! Why (issue 32): sqlx runs each SQLite connection on a thread of its
//! own, so that every query is a hand-off to that thread and back. A
//! request made, mailed, viewed, approved and served was about thirty of
//! them, each waking two threads; on a machine where waking an idle CPU
//! goes out to the hypervisor, those wake-ups were a third of the server's
//! CPU. The store's queries take microseconds: SQLite in WAL mode with
//! `synchronous = NORMAL` syncs on commit only when the log starts over
//! after a checkpoint (its header), and a read waits for no writer. What
//! could take long is kept off the runtime's threads: a
//! statement that finds the database locked by another process (`doorman
//! admin`) waits in pauses the runtime goes on between, as long as
//! SQLite's busy handler would have; the checkpoints, which write pages
//! into the database file and sync it, run on their own thread. A disk
//! that stalls a write stalls the thread that makes it; the server's
//! relays, on threads of their own, go on.
//!
//! Queries keep sqlx's shape, so that the store's statements run on either
//! database unchanged: [`Conn`] is an sqlx `Executor` for the `Any`
//! driver, its statements' `$N` bind the N-th argument of the whole query
//! (as sqlx's SQLite driver binds them), and its rows are `AnyRow`s whose
//! values have the types SQLite stored them with. Migrations still run on
//! an sqlx connection, before these are opened.

use crate::checkpoints::{Checkpoints, Writes};
use crate::database::BUSY_TIMEOUT;
use futures_util::future::BoxFuture;
use futures_util::stream::BoxStream;
use futures_util::{StreamExt, TryStreamExt};
use rusqlite::types::{ToSqlOutput, Value, ValueRef};
use sqlx::any::{Any, AnyQueryResult, AnyRow, AnyStatement, AnyTypeInfo, AnyTypeInfoKind};
use sqlx::pool::PoolConnection;
use sqlx::{AnyConnection, Either, Execute, Executor};
use sqlx_core::any::{AnyColumn, AnyValue, AnyValueKind};
use sqlx_core::ext::ustr::UStr;
use std::sync::Arc;

/// Prepared statements each connection keeps: every statement the store
/// runs, with room to spare.
const PREPARED_STATEMENTS: usize = 256;

/// A connection to read and write on: the store's own to SQLite, or one
/// of sqlx's pool to PostgreSQL.
pub(crate) enum Conn {
    Lite(Lite),
    Pooled(PoolConnection<Any>),
}

impl std::fmt::Debug for Conn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Conn::Lite(_) => f.write_str("Conn::Lite"),
            Conn::Pooled(conn) => f.debug_tuple("Conn::Pooled").field(conn).finish(),
        }
    }
}

impl Conn {
    /// Whether a transaction is open on it (SQLite's; sqlx tracks its own).
    pub(crate) fn in_transaction(&self) -> bool {
        match self {
            Conn::Lite(lite) => !lite.conn.is_autocommit(),
            Conn::Pooled(_) => false,
        }
    }

    /// sqlx's connection, which PostgreSQL's transactions and the
    /// migrations need.
    pub(crate) fn pooled(&mut self) -> Option<&mut AnyConnection> {
        match self {
            Conn::Pooled(conn) => Some(conn),
            Conn::Lite(_) => None,
        }
    }
}

/// One SQLite connection, run on the task that uses it.
pub(crate) struct Lite {
    conn: rusqlite::Connection,
    /// The writer's: counts each of its queries, for [`Checkpoints`].
    writes: Option<Arc<Writes>>,
}

impl Lite {
    /// Opens the SQLite file at `path` (which exists) with the settings
    /// every connection of the store has.
    pub(crate) fn open(path: &std::path::Path) -> Result<Self, sqlx::Error> {
        Ok(Lite {
            conn: connect(path)?,
            writes: None,
        })
    }

    /// Opens the connection that writes, whose writes `checkpoints` makes
    /// checkpoints of.
    pub(crate) fn open_writer(
        path: &std::path::Path,
        checkpoints: &Checkpoints,
    ) -> Result<Self, sqlx::Error> {
        Ok(Lite {
            conn: connect(path)?,
            writes: Some(Arc::clone(&checkpoints.writes)),
        })
    }

    /// Runs the statement `sql` with `values` bound: its rows, then its
    /// count. One that finds the database locked waits for it.
    async fn query(
        &mut self,
        sql: String,
        values: Vec<AnyValueKind>,
    ) -> Result<Vec<Either<AnyQueryResult, AnyRow>>, sqlx::Error> {
        let mut waited = std::time::Duration::ZERO;
        let mut pause = std::time::Duration::from_millis(1);
        let mut tries = 0;
        let answer = loop {
            match run(&mut self.conn, &sql, &values) {
                // A lock held a moment (a checkpoint restarting the log,
                // another process's write): tried again at once, a few
                // times, before pausing.
                Err(Failed::Busy(_)) if tries < 3 => {
                    tries += 1;
                    tokio::task::yield_now().await;
                }
                Err(Failed::Busy(_)) if waited < BUSY_TIMEOUT => {
                    tokio::time::sleep(pause).await;
                    waited += pause;
                    pause = (pause * 2).min(std::time::Duration::from_millis(100));
                }
                Err(Failed::Busy(error) | Failed::Other(error)) => break Err(error),
                Ok(results) => break Ok(results),
            }
        };
        if let Some(writes) = &self.writes {
            writes.made();
        }
        answer
    }
}

/// Why a statement failed: the database locked, or otherwise.
enum Failed {
    Busy(sqlx::Error),
    Other(sqlx::Error),
}

impl From<sqlx::Error> for Failed {
    fn from(error: sqlx::Error) -> Self {
        Failed::Other(error)
    }
}

fn connect(path: &std::path::Path) -> Result<rusqlite::Connection, sqlx::Error> {
    let conn = rusqlite::Connection::open(path).map_err(error)?;
    conn.busy_timeout(std::time::Duration::ZERO)
        .map_err(error)?;
    conn.set_prepared_statement_cache_capacity(PREPARED_STATEMENTS);
    // As the store's sqlx connections were: WAL with NORMAL never corrupts
    // the database; a power cut may lose the last commits, which the
    // expiry check makes harmless (a lost decision leaves the request
    // pending, never allowed). No busy handler: it would sleep on the
    // runtime's thread (`Lite::query` waits instead). No checkpoints on
    // commit: their writes and fsync would too (`Checkpoints` does them).
    conn.query_row("PRAGMA journal_mode = WAL", [], |_| Ok(()))
        .map_err(error)?;
    conn.query_row("PRAGMA wal_autocheckpoint = 0", [], |_| Ok(()))
        .map_err(error)?;
    conn.execute_batch("PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON;")
        .map_err(error)?;
    Ok(conn)
}

/// Runs the statement `sql` (one: the store sends no others), as sqlx's
/// SQLite driver does: its rows, then its count (SQLite's `changes()`,
/// which a statement that changes nothing leaves as the one before it set
/// it). `$N` binds the N-th of `values`.
fn run(
    conn: &mut rusqlite::Connection,
    sql: &str,
    values: &[AnyValueKind],
) -> Result<Vec<Either<AnyQueryResult, AnyRow>>, Failed> {
    // Locked, the statement did nothing: a write takes its lock first.
    let failed = |error: rusqlite::Error| {
        if error.sqlite_error_code() == Some(rusqlite::ErrorCode::DatabaseBusy) {
            Failed::Busy(self::error(error))
        } else {
            Failed::Other(self::error(error))
        }
    };
    let mut results = Vec::new();
    let mut statement = conn.prepare_cached(sql).map_err(failed)?;
    for index in 1..=statement.parameter_count() {
        let n = statement
            .parameter_name(index)
            .and_then(|name| name.strip_prefix('$').or_else(|| name.strip_prefix('?')))
            .and_then(|n| n.parse::<usize>().ok())
            .ok_or_else(|| {
                sqlx::Error::Protocol(format!("a parameter not of the form $N in: {sql}"))
            })?;
        // Unbound, as sqlx leaves it: NULL.
        if let Some(value) = n.checked_sub(1).and_then(|i| values.get(i)) {
            statement
                .raw_bind_parameter(index, bound(value)?)
                .map_err(failed)?;
        }
    }
    let columns = Columns::of(&statement);
    let mut rows = statement.raw_query();
    while let Some(row) = rows.next().map_err(failed)? {
        results.push(Either::Right(columns.row(row)?));
    }
    drop(rows);
    results.push(Either::Left(AnyQueryResult {
        rows_affected: conn.changes(),
        last_insert_id: Some(conn.last_insert_rowid()),
    }));
    Ok(results)
}

fn bound(value: &AnyValueKind) -> Result<ToSqlOutput<'_>, sqlx::Error> {
    Ok(match value {
        AnyValueKind::Null(_) => ToSqlOutput::Owned(Value::Null),
        AnyValueKind::Bool(b) => ToSqlOutput::Owned(Value::Integer(i64::from(*b))),
        AnyValueKind::SmallInt(i) => ToSqlOutput::Owned(Value::Integer(i64::from(*i))),
        AnyValueKind::Integer(i) => ToSqlOutput::Owned(Value::Integer(i64::from(*i))),
        AnyValueKind::BigInt(i) => ToSqlOutput::Owned(Value::Integer(*i)),
        AnyValueKind::Real(f) => ToSqlOutput::Owned(Value::Real(f64::from(*f))),
        AnyValueKind::Double(f) => ToSqlOutput::Owned(Value::Real(*f)),
        AnyValueKind::Text(text) => ToSqlOutput::Borrowed(ValueRef::Text(text.as_bytes())),
        AnyValueKind::TextSlice(text) => ToSqlOutput::Borrowed(ValueRef::Text(text.as_bytes())),
        AnyValueKind::Blob(blob) => ToSqlOutput::Borrowed(ValueRef::Blob(blob)),
        other => {
            return Err(sqlx::Error::Protocol(format!(
                "a value SQLite cannot take: {other:?}"
            )));
        }
    })
}

/// A statement's columns, as its rows carry them.
struct Columns {
    names: Arc<sqlx_core::HashMap<UStr, usize>>,
    columns: Vec<AnyColumn>,
}

impl Columns {
    fn of(statement: &rusqlite::Statement<'_>) -> Self {
        let columns: Vec<AnyColumn> = statement
            .column_names()
            .into_iter()
            .enumerate()
            .map(|(ordinal, name)| AnyColumn {
                ordinal,
                name: UStr::from(name.to_string()),
                type_info: AnyTypeInfo {
                    kind: AnyTypeInfoKind::Null,
                },
            })
            .collect();
        let names = columns
            .iter()
            .map(|column| (column.name.clone(), column.ordinal))
            .collect();
        Columns {
            names: Arc::new(names),
            columns,
        }
    }

    fn row(&self, row: &rusqlite::Row<'_>) -> Result<AnyRow, sqlx::Error> {
        let mut values = Vec::with_capacity(self.columns.len());
        for index in 0..self.columns.len() {
            let kind = match row.get_ref(index).map_err(error)? {
                ValueRef::Null => AnyValueKind::Null(AnyTypeInfoKind::Null),
                ValueRef::Integer(i) => AnyValueKind::BigInt(i),
                ValueRef::Real(f) => AnyValueKind::Double(f),
                ValueRef::Text(text) => {
                    AnyValueKind::Text(Arc::new(String::from_utf8(text.to_vec()).map_err(|e| {
                        sqlx::Error::ColumnDecode {
                            index: index.to_string(),
                            source: Box::new(e),
                        }
                    })?))
                }
                ValueRef::Blob(blob) => AnyValueKind::Blob(Arc::new(blob.to_vec())),
            };
            values.push(AnyValue { kind });
        }
        Ok(AnyRow {
            column_names: Arc::clone(&self.names),
            columns: self.columns.clone(),
            values,
        })
    }
}

/// SQLite's error, as sqlx's SQLite driver would give it: its extended code
/// tells a unique violation (a duplicate name, which callers answer) from
/// a failure.
#[derive(Debug)]
pub(crate) struct LiteError {
    code: i32,
    message: String,
}

impl std::fmt::Display for LiteError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "(code: {}) {}", self.code, self.message)
    }
}

impl std::error::Error for LiteError {}

impl sqlx::error::DatabaseError for LiteError {
    fn message(&self) -> &str {
        &self.message
    }

    fn code(&self) -> Option<std::borrow::Cow<'_, str>> {
        Some(self.code.to_string().into())
    }

    fn as_error(&self) -> &(dyn std::error::Error + Send + Sync + 'static) {
        self
    }

    fn as_error_mut(&mut self) -> &mut (dyn std::error::Error + Send + Sync + 'static) {
        self
    }

    fn into_error(self: Box<Self>) -> Box<dyn std::error::Error + Send + Sync + 'static> {
        self
    }

    fn kind(&self) -> sqlx::error::ErrorKind {
        use rusqlite::ffi;
        match self.code {
            ffi::SQLITE_CONSTRAINT_UNIQUE | ffi::SQLITE_CONSTRAINT_PRIMARYKEY => {
                sqlx::error::ErrorKind::UniqueViolation
            }
            ffi::SQLITE_CONSTRAINT_FOREIGNKEY => sqlx::error::ErrorKind::ForeignKeyViolation,
            ffi::SQLITE_CONSTRAINT_NOTNULL => sqlx::error::ErrorKind::NotNullViolation,
            ffi::SQLITE_CONSTRAINT_CHECK => sqlx::error::ErrorKind::CheckViolation,
            _ => sqlx::error::ErrorKind::Other,
        }
    }
}

pub(crate) fn error(error: rusqlite::Error) -> sqlx::Error {
    match error {
        rusqlite::Error::SqliteFailure(failure, message) => {
            let message = message.unwrap_or_else(|| failure.to_string());
            sqlx::Error::Database(Box::new(LiteError {
                code: failure.extended_code,
                message,
            }))
        }
        other => sqlx::Error::Protocol(other.to_string()),
    }
}

/// The query's text and its encoded arguments, taken from sqlx's query.
fn parts<'q>(mut query: impl Execute<'q, Any>) -> Result<(String, Vec<AnyValueKind>), sqlx::Error> {
    let values = query
        .take_arguments()
        .map_err(sqlx::Error::Encode)?
        .map(|arguments| arguments.values.0)
        .unwrap_or_default();
    Ok((query.sql().as_str().to_string(), values))
}

impl<'c> Executor<'c> for &'c mut Conn {
    type Database = Any;

    fn fetch_many<'e, 'q: 'e, E>(
        self,
        query: E,
    ) -> BoxStream<'e, Result<Either<AnyQueryResult, AnyRow>, sqlx::Error>>
    where
        'c: 'e,
        E: 'q + Execute<'q, Any>,
    {
        match self {
            Conn::Pooled(conn) => (&mut **conn).fetch_many(query),
            Conn::Lite(lite) => {
                let answered = async move {
                    let (sql, values) = parts(query)?;
                    lite.query(sql, values).await
                };
                futures_util::stream::once(answered)
                    .map_ok(|results| futures_util::stream::iter(results.into_iter().map(Ok)))
                    .try_flatten()
                    .boxed()
            }
        }
    }

    fn fetch_optional<'e, 'q: 'e, E>(
        self,
        query: E,
    ) -> BoxFuture<'e, Result<Option<AnyRow>, sqlx::Error>>
    where
        'c: 'e,
        E: 'q + Execute<'q, Any>,
    {
        match self {
            Conn::Pooled(conn) => (&mut **conn).fetch_optional(query),
            // The whole query runs, as its writes must; a listing asked
            // for one row (none of the store's) would still be read whole.
            Conn::Lite(lite) => Box::pin(async move {
                let (sql, values) = parts(query)?;
                let results = lite.query(sql, values).await?;
                Ok(results.into_iter().find_map(Either::right))
            }),
        }
    }

    fn prepare_with<'e>(
        self,
        sql: sqlx::SqlStr,
        parameters: &'e [AnyTypeInfo],
    ) -> BoxFuture<'e, Result<AnyStatement, sqlx::Error>>
    where
        'c: 'e,
    {
        match self {
            Conn::Pooled(conn) => (&mut **conn).prepare_with(sql, parameters),
            Conn::Lite(_) => Box::pin(async {
                Err(sqlx::Error::Protocol(
                    "the store prepares SQLite's statements itself".into(),
                ))
            }),
        }
    }
}
