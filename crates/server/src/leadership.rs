//! Which of several servers sharing one PostgreSQL database serves: the one
//! holding a session-level advisory lock on it. The others are standbys:
//! they do not listen until the lock is theirs, which happens the moment the
//! active server's database session ends (it stopped, crashed, or lost the
//! database). One server at a time is what keeps the broker's in-process
//! state (agents' connections, waiting operators, the admission check, the
//! outbox worker) the whole truth.
//!
//! A server that loses its lock's connection must stop serving at once:
//! a standby may already have taken over.

use doorman_store::{Backend, StoreError};
use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions, Connection, PgConnection};
use std::time::Duration;

/// The advisory lock's key: "doorman" in ASCII.
const LOCK_KEY: i64 = 0x0064_6f6f_726d_616e;
/// How often the active server checks that its lock's connection lives.
const CHECK_EVERY: Duration = Duration::from_secs(2);
/// How long a check may take before the connection counts as lost.
const CHECK_TIMEOUT: Duration = Duration::from_secs(5);
/// Pause before a standby whose own connection failed tries again.
const RETRY_AFTER: Duration = Duration::from_secs(1);

/// The lock's connection: waiting in `pg_advisory_lock` is what a standby
/// does, not a slow statement to warn about.
fn lock_connection_options(database_url: &str) -> Result<PgConnectOptions, StoreError> {
    let options: PgConnectOptions = database_url.parse()?;
    Ok(options.disable_statement_logging())
}

/// The lock, held on a connection of its own for as long as this lives.
#[derive(Debug)]
pub struct Leadership {
    connection: PgConnection,
}

impl Leadership {
    /// For a PostgreSQL URL, waits until this server holds the lock; calls
    /// `standby` once if another server holds it first. SQLite has one
    /// server per file: nothing to wait for, `None`.
    pub async fn acquire(
        database_url: &str,
        standby: impl FnOnce(),
    ) -> Result<Option<Leadership>, StoreError> {
        if Backend::of(database_url)? == Backend::Sqlite {
            return Ok(None);
        }
        let options = lock_connection_options(database_url)?;
        let mut connection = PgConnection::connect_with(&options).await?;
        let free: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
            .bind(LOCK_KEY)
            .fetch_one(&mut connection)
            .await?;
        if free {
            return Ok(Some(Leadership { connection }));
        }
        standby();
        let mut connection = Some(connection);
        loop {
            // Blocks in the database until the lock is free.
            let attempt = async {
                let mut conn = match connection.take() {
                    Some(conn) => conn,
                    None => PgConnection::connect_with(&options).await?,
                };
                sqlx::query("SELECT pg_advisory_lock($1)")
                    .bind(LOCK_KEY)
                    .execute(&mut conn)
                    .await?;
                Ok::<_, sqlx::Error>(conn)
            };
            match attempt.await {
                Ok(connection) => return Ok(Some(Leadership { connection })),
                Err(error) => {
                    tracing::warn!(%error, "standby lost the database; trying again");
                    tokio::time::sleep(RETRY_AFTER).await;
                }
            }
        }
    }

    /// Completes when the lock's connection fails or stops answering: the
    /// lock may be someone else's by now.
    pub async fn lost(&mut self) -> String {
        loop {
            tokio::time::sleep(CHECK_EVERY).await;
            let check = sqlx::query("SELECT 1").execute(&mut self.connection);
            match tokio::time::timeout(CHECK_TIMEOUT, check).await {
                Ok(Ok(_)) => {}
                Ok(Err(error)) => return error.to_string(),
                Err(_) => return "the database did not answer".into(),
            }
        }
    }
}
