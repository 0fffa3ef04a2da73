//! Write transactions whose statements travel together ([`Script`]).
//!
//! Every write of the server waits for the one writer's turn (issue 32),
//! so a transaction takes as few steps in it as it can. (With sqlx's
//! SQLite connections each query was a hand-off to the connection's
//! thread: a transaction of four statements was six, with its BEGIN and
//! COMMIT; see `crate::lite` for what runs them now.) A script sends its
//! BEGIN with its first statement and its COMMIT with its last ones, each
//! group as one query of several statements: SQLite runs
//! them in order and binds `$N` to the N-th argument of the whole query, so
//! each statement's numbers are shifted past those of the statements
//! before it. On PostgreSQL, whose prepared statements are one each, a
//! script is an ordinary transaction, a statement at a time.
//!
//! A script on SQLite manages its transaction itself (sqlx's own
//! transactions never see it): the writer is marked unfinished before the
//! BEGIN leaves and finished once the COMMIT is back, and a writer found
//! unfinished (a script that failed, or was dropped half-way) is rolled
//! back before anything else runs on it ([`crate::connections`]).

use crate::connections::Writer;
use crate::lite::Conn;
use futures_util::TryStreamExt;
use sqlx::any::{AnyArguments, AnyRow, AnyTransactionManager};
use sqlx::{Either, Execute, Executor};
use sqlx_core::transaction::TransactionManager;

pub(crate) type Statement<'q> = sqlx::query::Query<'q, sqlx::Any, AnyArguments>;

/// A write transaction whose statements travel together; dropped before
/// [`Script::commit`], it writes nothing.
pub(crate) struct Script {
    writer: Writer,
    /// PostgreSQL's transaction is begun; on SQLite, whether the BEGIN has
    /// gone (with the first statement).
    begun: bool,
    committed: bool,
}

/// What the first statement of a script did: the rows it changed, and the
/// rows it returned (`RETURNING`).
pub(crate) struct FirstResult {
    pub(crate) rows_affected: u64,
    pub(crate) rows: Vec<AnyRow>,
}

impl Script {
    /// A script on the writer (this process's turn to write).
    pub(crate) async fn begin(mut writer: Writer) -> Result<Self, sqlx::Error> {
        let begun = match &writer {
            Writer::Sqlite(_) => false,
            Writer::Pooled(_) => {
                if let Some(conn) = writer.pooled() {
                    AnyTransactionManager::begin(conn, None).await?;
                }
                true
            }
        };
        Ok(Script {
            writer,
            begun,
            committed: false,
        })
    }

    /// Runs `statement`, the script's first: what it changed and returned
    /// decides whether the caller goes on to [`Script::commit`].
    pub(crate) async fn first(
        &mut self,
        statement: Statement<'_>,
    ) -> Result<FirstResult, sqlx::Error> {
        let statement = match &mut self.writer {
            Writer::Sqlite(writer) if !self.begun => {
                writer.unfinished = true;
                self.begun = true;
                joined(vec![sqlx::query("BEGIN IMMEDIATE"), statement])?
            }
            _ => statement,
        };
        let conn: &mut Conn = &mut self.writer;
        let mut results = conn.fetch_many(statement);
        // The last statement's own count: SQLite reports, for a BEGIN, the
        // count of whatever statement changed rows before it.
        let mut first = FirstResult {
            rows_affected: 0,
            rows: Vec::new(),
        };
        while let Some(step) = results.try_next().await? {
            match step {
                Either::Left(done) => first.rows_affected = done.rows_affected(),
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
        match &mut self.writer {
            Writer::Sqlite(writer) => {
                let mut all = Vec::with_capacity(statements.len() + 2);
                if !self.begun {
                    writer.unfinished = true;
                    self.begun = true;
                    all.push(sqlx::query("BEGIN IMMEDIATE"));
                }
                all.extend(statements);
                all.push(sqlx::query("COMMIT"));
                let query = joined(all)?;
                writer.conn.execute(query).await?;
                writer.unfinished = false;
            }
            Writer::Pooled(conn) => {
                for statement in statements {
                    conn.execute(statement).await?;
                }
                if let Some(conn) = conn.pooled() {
                    AnyTransactionManager::commit(conn).await?;
                }
            }
        }
        self.committed = true;
        Ok(())
    }
}

impl Drop for Script {
    fn drop(&mut self) {
        if self.committed || !self.begun {
            return;
        }
        self.writer.abandon();
    }
}

/// `statements` as one query of several, their arguments in order and each
/// statement's `$N` shifted past the arguments of those before it.
fn joined(statements: Vec<Statement<'_>>) -> Result<Statement<'static>, sqlx::Error> {
    let mut sql = String::new();
    let mut arguments = AnyArguments::default();
    for mut statement in statements {
        let taken = statement.take_arguments().map_err(sqlx::Error::Encode)?;
        let shift = arguments.values.0.len();
        if !sql.is_empty() {
            sql.push_str(";\n");
        }
        sql.push_str(&shifted(statement.sql().as_str(), shift));
        if let Some(taken) = taken {
            // sqlx keeps a query's encoded arguments in this (public, if
            // undocumented) buffer; moved as they are, they need no
            // encoding again.
            arguments.values.0.extend(taken.values.0);
        }
    }
    Ok(sqlx::query_with(sqlx::AssertSqlSafe(sql), arguments))
}

/// `sql` with every placeholder `$N` outside quotes made `$(N + by)`. The
/// store's statements have no comments, whose quotes this would misread.
fn shifted(sql: &str, by: usize) -> String {
    if by == 0 {
        return sql.to_string();
    }
    let mut out = String::with_capacity(sql.len() + 8);
    let mut quote: Option<char> = None;
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => {}
            None if c == '\'' || c == '"' => quote = Some(c),
            None if c == '$' && chars.peek().is_some_and(char::is_ascii_digit) => {
                let mut number = 0usize;
                while let Some(digit) = chars.peek().and_then(|d| d.to_digit(10)) {
                    number = number * 10 + digit as usize;
                    chars.next();
                }
                out.push('$');
                out.push_str(&(number + by).to_string());
                continue;
            }
            None => {}
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::shifted;
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
        assert_eq!(
            unchanged.rows_affected, 0,
            "a BEGIN's count is not the statement's"
        );
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

    #[test]
    fn placeholders_shift_and_quoted_text_does_not() {
        assert_eq!(shifted("SELECT $1, $2", 0), "SELECT $1, $2");
        assert_eq!(
            shifted(
                "UPDATE t SET a = $1, b = $12 WHERE c = '$3' AND \"$4\" = $2",
                10
            ),
            "UPDATE t SET a = $11, b = $22 WHERE c = '$3' AND \"$4\" = $12"
        );
        assert_eq!(shifted("SELECT '' || $1", 2), "SELECT '' || $3");
    }
}
