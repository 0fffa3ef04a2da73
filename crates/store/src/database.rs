//! The handle on the database: opening it (SQLite made private first,
//! migrations applied), write transactions, and the server key's claim.

use crate::backend::{Backend, sqlite_url_creating};
use crate::{Faults, StoreError};
use sqlx::any::AnyPoolOptions;
use sqlx::{AnyPool, Executor, Row};

/// A cheap-to-clone handle on the database.
#[derive(Clone, Debug)]
pub struct Store {
    pub(crate) pool: AnyPool,
    pub(crate) backend: Backend,
    /// Off unless a test turns them on ([`Store::faults`]); shared by
    /// every clone.
    pub(crate) faults: std::sync::Arc<Faults>,
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
    pub(crate) async fn begin_write(
        &self,
    ) -> Result<sqlx::Transaction<'static, sqlx::Any>, sqlx::Error> {
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
        if doorman_core::secret::constant_time_eq(&known, fingerprint) {
            Ok(())
        } else {
            Err(StoreError::KeyMismatch)
        }
    }
}
