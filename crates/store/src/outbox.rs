//! The outbox: one row per email, written with its request, and each
//! delivery attempt's result with its audit event.

use super::{
    AuditEvent, Millis, REQUEST_COLUMNS, RequestRow, Store, StoreError, audit_statement,
    request_from_row,
};
use doorman_core::AuditKind;
use sqlx::Row;

/// An email due for delivery.
#[derive(Clone, Debug)]
pub struct OutboxJob {
    pub request: RequestRow,
    pub position: i64,
    pub address: String,
    pub attempts: i64,
}

impl Store {
    /// Emails due now whose request is still pending, and the earliest
    /// time after `now` another queued email falls due (to sleep until
    /// then): one read when any are due, the time coming with them.
    pub async fn due_emails(
        &self,
        now: Millis,
        limit: i64,
    ) -> Result<(Vec<OutboxJob>, Option<Millis>), StoreError> {
        let sql = format!(
            "SELECT {REQUEST_COLUMNS}, o.position, o.attempts, rc.address,
                    (SELECT MIN(next_attempt_at) FROM outbox
                      WHERE state = 'queued' AND next_attempt_at > $1) AS next_due
             FROM outbox o
             JOIN recipients rc ON rc.request_id = o.request_id AND rc.position = o.position
             JOIN requests r ON r.id = o.request_id
             WHERE o.state = 'queued' AND o.next_attempt_at <= $1
               AND r.state = 'pending' AND r.expires_at > $1
             ORDER BY o.next_attempt_at LIMIT $2"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(now)
            .bind(limit)
            .fetch_all(&mut *self.reader().await?)
            .await?;
        let next_due = match rows.first() {
            Some(row) => row.try_get("next_due")?,
            None => self.next_email_due(now).await?,
        };
        let jobs = rows
            .iter()
            .map(|row| {
                Ok(OutboxJob {
                    request: request_from_row(row)?,
                    position: row.try_get("position")?,
                    address: row.try_get("address")?,
                    attempts: row.try_get("attempts")?,
                })
            })
            .collect::<Result<_, StoreError>>()?;
        Ok((jobs, next_due))
    }

    /// How many emails were ever queued, whatever became of them: written
    /// with their request, so a refused or admitted connect that queued
    /// none shows it at once, before any delivery could have happened.
    pub async fn emails_queued(&self) -> Result<i64, StoreError> {
        let row = sqlx::query("SELECT COUNT(*) AS n FROM outbox")
            .fetch_one(&mut *self.reader().await?)
            .await?;
        Ok(row.try_get("n")?)
    }

    /// The earliest time after `after` a queued email is due, to sleep
    /// until then. Emails due by `after` are left out: the worker has them
    /// in hand already (being delivered, or waiting for a free slot).
    async fn next_email_due(&self, after: Millis) -> Result<Option<Millis>, StoreError> {
        let row = sqlx::query(
            "SELECT MIN(next_attempt_at) AS due FROM outbox WHERE state = 'queued' AND next_attempt_at > $1",
        )
        .bind(after)
        .fetch_one(&mut *self.reader().await?)
        .await?;
        Ok(row.try_get("due")?)
    }

    /// Records a delivery attempt's result: `Ok` sent, `Err((error, Some(retry_at)))`
    /// to retry, `Err((error, None))` failed for good.
    pub async fn email_attempted(
        &self,
        job: &OutboxJob,
        result: Result<(), (String, Option<Millis>)>,
        now: Millis,
    ) -> Result<(), StoreError> {
        let (update, event, detail) = match &result {
            Ok(()) => (
                sqlx::query("UPDATE outbox SET state = 'sent', attempts = attempts + 1, sent_at = $1, last_error = NULL WHERE request_id = $2 AND position = $3")
                    .bind(now)
                    .bind(&job.request.id)
                    .bind(job.position),
                AuditKind::EmailSent,
                None,
            ),
            Err((error, Some(retry_at))) => (
                sqlx::query("UPDATE outbox SET attempts = attempts + 1, next_attempt_at = $1, last_error = $2 WHERE request_id = $3 AND position = $4")
                    .bind(*retry_at)
                    .bind(error)
                    .bind(&job.request.id)
                    .bind(job.position),
                AuditKind::EmailRetrying,
                Some(error.clone()),
            ),
            Err((error, None)) => (
                sqlx::query("UPDATE outbox SET state = 'failed', attempts = attempts + 1, last_error = $1 WHERE request_id = $2 AND position = $3")
                    .bind(error)
                    .bind(&job.request.id)
                    .bind(job.position),
                AuditKind::EmailFailed,
                Some(error.clone()),
            ),
        };
        let attempted = AuditEvent {
            detail,
            ..AuditEvent::new(event, now)
                .request(&job.request.id, &job.request.computer)
                .actor(&job.address)
        };
        self.begin_script()
            .await?
            .commit(vec![update, audit_statement(&attempted)])
            .await?;
        Ok(())
    }

    /// When every email of a request failed for good: one of their errors.
    pub async fn all_emails_failed(&self, request_id: &str) -> Result<Option<String>, StoreError> {
        let row = sqlx::query(
            "SELECT COUNT(*) AS total, COUNT(CASE WHEN state = 'failed' THEN 1 END) AS failed, MAX(last_error) AS error
             FROM outbox WHERE request_id = $1",
        )
        .bind(request_id)
        .fetch_one(&mut *self.reader().await?)
        .await?;
        let total: i64 = row.try_get("total")?;
        let failed: Option<i64> = row.try_get("failed")?;
        let error: Option<String> = row.try_get("error")?;
        Ok((total > 0 && failed == Some(total)).then(|| error.unwrap_or_default()))
    }
}
