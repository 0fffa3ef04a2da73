//! Sessions: one per allowed request (the unique `request_id` is the
//! guarantee), with when each started and ended.

use super::{AuditEvent, Millis, Store, StoreError, audit_statement, unique_violation};
use sqlx::Row;

impl Store {
    /// Starts the session of a request (or of an unauthorised connection when
    /// `request_id` is `None`), with its audit event `started` in the same
    /// transaction. A request starts at most one session.
    pub async fn start_session(
        &self,
        request_id: Option<&str>,
        computer: &str,
        operator: &str,
        now: Millis,
        started: Option<&AuditEvent>,
    ) -> Result<i64, StoreError> {
        // A request's session starts only while it is allowed, in the same
        // statement: a refusal or revocation that lands first wins.
        let mut script = self.begin_script().await?;
        let insert = sqlx::query(
            "INSERT INTO sessions (request_id, computer, operator, started_at) SELECT $1, $2, $3, $4 WHERE $5 IS NULL OR EXISTS (SELECT 1 FROM requests WHERE id = $5 AND state = 'allowed') RETURNING id",
        )
        .bind(request_id)
        .bind(computer)
        .bind(operator)
        .bind(now)
        .bind(request_id);
        let inserted = script.first(insert).await.map_err(|e| {
            if unique_violation(&e) {
                StoreError::SessionAlreadyStarted
            } else {
                e.into()
            }
        })?;
        let row = inserted.rows.first().ok_or(StoreError::NoLongerAllowed)?;
        let id = row.try_get("id")?;
        script
            .commit(started.map(audit_statement).into_iter().collect())
            .await?;
        Ok(id)
    }

    /// Whether the session of this request has started (it may have ended).
    pub async fn session_started(&self, request_id: &str) -> Result<bool, StoreError> {
        let row = sqlx::query("SELECT 1 AS started FROM sessions WHERE request_id = $1")
            .bind(request_id)
            .fetch_optional(&mut *self.reader().await?)
            .await?;
        Ok(row.is_some())
    }

    /// Ends session `id` at `now`, with its audit events in the same
    /// transaction.
    pub async fn end_session(
        &self,
        id: i64,
        now: Millis,
        events: &[AuditEvent],
    ) -> Result<(), StoreError> {
        let mut statements = Vec::with_capacity(1 + events.len());
        statements.push(
            sqlx::query("UPDATE sessions SET ended_at = $1 WHERE id = $2 AND ended_at IS NULL")
                .bind(now)
                .bind(id),
        );
        statements.extend(events.iter().map(audit_statement));
        self.begin_script().await?.commit(statements).await?;
        Ok(())
    }
}
