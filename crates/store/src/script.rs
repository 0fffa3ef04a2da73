//! Write transactions of a statement that decides and the statements that
//! follow it ([`Script`]): a transaction of the writer's
//! ([`crate::Store::begin_write`]) whose first statement's count and rows
//! tell the caller whether to go on (a conditional UPDATE, an INSERT …
//! RETURNING).
//!
//! (With sqlx's SQLite connections each statement was a hand-off to the
//! connection's thread, and a script sent its statements joined into one
//! query; the store's own connections (`crate::lite`) run each where its
//! task runs, so statements go one at a time on both databases.)

use crate::database::WriteTransaction;
use futures_util::TryStreamExt;
use sqlx::any::{AnyArguments, AnyRow};
use sqlx::{Either, Executor};

pub(crate) type Statement<'q> = sqlx::query::Query<'q, sqlx::Any, AnyArguments>;

/// A write transaction; dropped before [`Script::commit`], it writes
/// nothing.
pub(crate) struct Script {
    tx: WriteTransaction,
}

/// What the first statement of a script did: the rows it changed, and the
/// rows it returned (`RETURNING`).
pub(crate) struct FirstResult {
    pub(crate) rows_affected: u64,
    pub(crate) rows: Vec<AnyRow>,
}

impl Script {
    pub(crate) fn new(tx: WriteTransaction) -> Self {
        Script { tx }
    }

    /// Runs `statement`: what it changed and returned decides whether the
    /// caller goes on to [`Script::commit`].
    pub(crate) async fn first(
        &mut self,
        statement: Statement<'_>,
    ) -> Result<FirstResult, sqlx::Error> {
        let mut first = FirstResult {
            rows_affected: 0,
            rows: Vec::new(),
        };
        let mut results = (&mut *self.tx).fetch_many(statement);
        while let Some(step) = results.try_next().await? {
            match step {
                Either::Left(done) => first.rows_affected += done.rows_affected(),
                Either::Right(row) => first.rows.push(row),
            }
        }
        Ok(first)
    }

    /// Runs `statements` and commits, all or nothing.
    pub(crate) async fn commit(
        mut self,
        statements: Vec<Statement<'_>>,
    ) -> Result<(), sqlx::Error> {
        for statement in statements {
            (&mut *self.tx).execute(statement).await?;
        }
        self.tx.commit().await
    }
}

#[cfg(test)]
mod tests {
    use crate::Store;

    #[tokio::test]
    async fn a_script_failed_or_dropped_half_way_writes_nothing_and_the_next_one_writes() {
        let dir = tempfile::tempdir().expect("temp dir");
        let url = format!("sqlite://{}", dir.path().join("doorman.db").display());
        let store = Store::open(&url).await.expect("store");
        let failed = store
            .begin_script()
            .await
            .expect("a script")
            .commit(vec![
                sqlx::query("INSERT INTO server_identity (id, key_fingerprint) VALUES (1, $1)")
                    .bind("half"),
                sqlx::query("INSERT INTO no_such_table VALUES ($1)").bind(1),
            ])
            .await;
        assert!(failed.is_err());
        store
            .claim_key("whole")
            .await
            .expect("no key from the failed script, and the writer free");

        let mut dropped = store.begin_script().await.expect("a script");
        let changed = dropped
            .first(sqlx::query("UPDATE server_identity SET key_fingerprint = $1").bind("dropped"))
            .await
            .expect("the first statement");
        assert_eq!(changed.rows_affected, 1);
        drop(dropped);
        store
            .claim_key("whole")
            .await
            .expect("the key as committed");

        // Two statements numbered from $1 each, bound in order.
        let mut script = store.begin_script().await.expect("a script");
        let unchanged = script
            .first(
                sqlx::query("UPDATE server_identity SET public_url = $1 WHERE id = $2")
                    .bind("x")
                    .bind(2),
            )
            .await
            .expect("the first statement");
        assert_eq!(unchanged.rows_affected, 0, "the statement's own count");
        script
            .commit(vec![
                sqlx::query("UPDATE server_identity SET public_url = $1 WHERE id = $2")
                    .bind("https://a.example")
                    .bind(1),
                sqlx::query("UPDATE server_identity SET ca_sha256 = $2 WHERE id = $1")
                    .bind(1)
                    .bind("ab"),
            ])
            .await
            .expect("commit");
        let reopened = Store::open(&url).await.expect("store");
        reopened.claim_key("whole").await.expect("the key");
        let row = sqlx::query("SELECT public_url, ca_sha256 FROM server_identity")
            .fetch_one(&mut *reopened.reader().await.expect("reader"))
            .await
            .expect("row");
        use sqlx::Row;
        assert_eq!(
            row.try_get::<String, _>("public_url").expect("url"),
            "https://a.example"
        );
        assert_eq!(row.try_get::<String, _>("ca_sha256").expect("sha"), "ab");
    }
}
