//! The database, one module for each thing it stores: operators and agents
//! and their ids ([`principals`]), access rules ([`access`]), requests with their
//! recipients ([`rows`], [`requests`]) and transitions ([`transitions`]), the outbox
//! ([`outbox`]), sessions ([`sessions`]), the audit trail ([`audit`]),
//! ACME certificates ([`acme`]) and computers' invitations to join
//! ([`invitations`]);
//! [`backend`] knows SQLite and PostgreSQL and their migrations;
//! [`faults`] lets a test make writes fail or stall.
//!
//! Every state change is one statement or one transaction. A request's
//! transition (computed by `doorman_core::authorization`) is persisted with
//! one conditional `UPDATE … WHERE state = 'pending' AND approval_count = N`
//! that also checks the expiry time, so two clicks in the same millisecond,
//! or a click after expiry, can never both win.
//!
//! Operators and computers are their ids ([`OperatorId`], [`ComputerId`]),
//! never their names: what an operator or computer had belongs to its id,
//! so a name removed and added again inherits nothing. Names stay beside the
//! ids where people read them (requests, recordings, the audit trail).

mod access;
pub mod acme;
mod audit;
mod backend;
pub mod faults;
mod invitations;
mod outbox;
mod principals;
pub mod recordings;
mod requests;
mod rows;
mod sessions;
pub mod transitions;

pub use access::{CutSession, GrantRow, Revocation};
pub use audit::AuditEvent;
pub use backend::{Backend, shown_url, sqlite_file};
pub use faults::Faults;
pub use invitations::{JoinedFrom, Redemption};
pub use outbox::OutboxJob;
pub use principals::{AgentKey, ComputerId, OperatorId, OperatorIdentity, Principal};
pub use requests::BlockRow;
pub use rows::{NewRequest, RequestRow};
pub use transitions::Block;

use audit::insert_audit;
use backend::sqlite_url_creating;
use principals::insert_principal_in;
use rows::{REQUEST_COLUMNS, request_from_row};
use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{AnyPool, Executor, Row};

pub use doorman_core::authorization::Millis;

/// A database failure, with the expected cases as their own variants.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{kind} {name:?} already exists")]
    AlreadyExists { kind: &'static str, name: String },
    #[error("no {kind} named {name:?}")]
    NotFound { kind: &'static str, name: String },
    #[error("this request has already started its session")]
    SessionAlreadyStarted,
    #[error("this request is no longer allowed")]
    NoLongerAllowed,
    #[error("unsupported database URL {0:?}: use sqlite://FILE or postgres://…")]
    UnsupportedDatabase(String),
    #[error("database error: {0}")]
    Database(sqlx::Error),
    #[error("database migration failed: {0}")]
    Migration(#[from] sqlx::migrate::MigrateError),
    #[error("request {0} kept changing while it was being updated; try again")]
    Contended(String),
    #[error("database holds an unexpected value: {0}")]
    Corrupt(String),
    #[error(
        "this database's links were made with another server key: give this server the same DATA_DIR/server.key as the others"
    )]
    KeyMismatch,
}

/// Failed database operations in this process, for
/// `doorman_database_errors_total`. A process-wide count, because every
/// query's error passes through one `From` and carries no server with it;
/// a process runs one server outside tests.
static DATABASE_ERRORS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// How many database operations have failed in this process.
pub fn database_errors() -> u64 {
    DATABASE_ERRORS.load(std::sync::atomic::Ordering::Relaxed)
}

impl From<sqlx::Error> for StoreError {
    fn from(error: sqlx::Error) -> Self {
        // A duplicate name is an answer (`AlreadyExists`), not a failure.
        let duplicate = error
            .as_database_error()
            .is_some_and(|e| e.is_unique_violation());
        if !duplicate {
            DATABASE_ERRORS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        StoreError::Database(error)
    }
}

/// A cheap-to-clone handle on the database.
#[derive(Clone, Debug)]
pub struct Store {
    pool: AnyPool,
    backend: Backend,
    /// Off unless a test turns them on ([`Store::faults`]); shared by
    /// every clone.
    faults: std::sync::Arc<Faults>,
}

/// A non-negative count (seconds, approvals) stored as an integer.
fn seconds(row: &AnyRow, column: &str) -> Result<u32, StoreError> {
    u32::try_from(row.try_get::<i64, _>(column)?)
        .map_err(|e| StoreError::Corrupt(format!("{column}: {e}")))
}

fn unique_violation(error: &sqlx::Error) -> bool {
    matches!(error, sqlx::Error::Database(db) if db.is_unique_violation())
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
        Ok(Self {
            pool,
            backend,
            faults: std::sync::Arc::default(),
        })
    }

    /// The switches with which a test makes this store's writes fail or
    /// stall (see [`faults`]); inert unless a test uses them.
    pub fn faults(&self) -> &Faults {
        &self.faults
    }

    /// A transaction that will write. On SQLite it takes the write lock at
    /// once (`BEGIN IMMEDIATE`): a transaction that read first and wrote
    /// after another connection's commit would fail with "database is
    /// locked" (SQLITE_BUSY_SNAPSHOT), which no busy timeout waits out.
    /// A test's injected fault ([`Store::faults`]) fails or stalls it
    /// before it begins.
    async fn begin_write(&self) -> Result<sqlx::Transaction<'static, sqlx::Any>, sqlx::Error> {
        self.faults.before_write().await?;
        match self.backend {
            Backend::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await,
            Backend::Postgres => self.pool.begin().await,
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
        if crate::secrets::constant_time_eq(&known, fingerprint) {
            Ok(())
        } else {
            Err(StoreError::KeyMismatch)
        }
    }
}
