//! What goes wrong in the store: the expected cases (a name taken, a name
//! unknown, a request no longer allowed) as their own variants.

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
