//! Requests: creating one with its recipients and emails, and reading
//! them back (by id, by link, pending, reusable, counted for the limits).

use super::{
    ComputerId, Millis, NewRequest, OperatorId, REQUEST_COLUMNS, RequestRow, Store, StoreError,
    audit_statement, insert_audit, request_from_row,
};
use crate::AuditEvent;
use doorman_core::AuditKind;
use sqlx::Row;

/// A block in force: "I did not expect this" keeps `operator` from asking
/// `computer` until `until` (by their names now; the block is their ids').
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BlockRow {
    pub operator: String,
    pub computer: String,
    pub until: Millis,
    pub reported_by: String,
}

/// What the limits on asking count (see [`Store::admission_counts`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AdmissionCounts {
    /// Until when the operator may not ask the computer, if blocked.
    pub blocked_until: Option<Millis>,
    /// The operator's requests still pending.
    pub pending: i64,
    /// The operator's requests to the computer in the window.
    pub recent: i64,
}

impl Store {
    /// The blocks in force at `now`.
    pub async fn blocks(&self, now: Millis) -> Result<Vec<BlockRow>, StoreError> {
        let rows = sqlx::query(
            "SELECT o.name AS operator, a.name AS computer, b.until AS until, b.reported_by AS reported_by
             FROM blocks b JOIN operators o ON o.id = b.operator_id JOIN agents a ON a.id = b.computer_id
             WHERE b.until > $1 ORDER BY o.name, a.name",
        )
        .bind(now)
        .fetch_all(&mut *self.reader().await?)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(BlockRow {
                    operator: row.try_get("operator")?,
                    computer: row.try_get("computer")?,
                    until: row.try_get("until")?,
                    reported_by: row.try_get("reported_by")?,
                })
            })
            .collect()
    }

    /// Lets the operator named `operator` ask the computer named `computer`
    /// again; a block not in force is [`StoreError::NotFound`].
    pub async fn lift_block(
        &self,
        operator: &str,
        computer: &str,
        now: Millis,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        let lifted = sqlx::query(
            "DELETE FROM blocks WHERE operator_id = (SELECT id FROM operators WHERE name = $1)
             AND computer_id = (SELECT id FROM agents WHERE name = $2) AND until > $3",
        )
        .bind(operator)
        .bind(computer)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        if lifted.rows_affected() == 0 {
            return Err(StoreError::NotFound {
                kind: "block of operator",
                name: format!("{operator} on {computer}"),
            });
        }
        let event = AuditEvent::new(AuditKind::BlockLifted, now)
            .actor(operator)
            .computer(computer);
        insert_audit(&mut tx, &event).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Writes a request, its recipients, their queued emails and the audit
    /// events, all or nothing.
    pub async fn create_request(&self, request: &NewRequest) -> Result<(), StoreError> {
        let mut statements = Vec::with_capacity(5);
        statements.push(sqlx::query(
            "INSERT INTO requests (id, computer, operator, operator_ip, reason, service, service_json, state, created_at, expires_at, required_approvals, approval_valid_for, max_session_seconds, local_consent, passkey, operator_id, computer_id, computer_identity, sealed)
             VALUES ($1, $2, $3, $4, $5, $6, $7, 'pending', $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18)",
        )
        .bind(&request.id)
        .bind(&request.computer)
        .bind(&request.operator)
        .bind(&request.operator_ip)
        .bind(&request.reason)
        .bind(&request.service)
        .bind(&request.service_json)
        .bind(request.created_at)
        .bind(request.expires_at)
        .bind(i64::from(request.required_approvals))
        .bind(i64::from(request.approval_valid_for))
        .bind(i64::from(request.max_session_seconds))
        .bind(request.local_consent.as_str())
        .bind(request.passkey.as_deref())
        .bind(request.operator_id.0)
        .bind(request.computer_id.0)
        .bind(request.computer_identity.as_deref())
        .bind(i64::from(request.sealed)));
        let requested = AuditEvent::new(AuditKind::Requested, request.created_at)
            .request(&request.id, &request.computer)
            .actor(&request.operator)
            .address(&request.operator_ip)
            .detail(&request.service);
        statements.push(audit_statement(&requested));
        // The recipients in one statement, then their emails and those
        // emails' audit events from them: three statements however many
        // recipients; all of them sent with the BEGIN and COMMIT at once on
        // SQLite (see `script`).
        if !request.recipients.is_empty() {
            let rows: Vec<String> = (0..request.recipients.len())
                .map(|i| {
                    let n = 4 * i;
                    format!("(${}, ${}, ${}, ${})", n + 1, n + 2, n + 3, n + 4)
                })
                .collect();
            let sql = format!(
                "INSERT INTO recipients (request_id, position, address, token_hash) VALUES {}",
                rows.join(", ")
            );
            let mut insert = sqlx::query(sqlx::AssertSqlSafe(sql));
            for (position, (address, token_hash)) in request.recipients.iter().enumerate() {
                let position =
                    i64::try_from(position).map_err(|e| StoreError::Corrupt(e.to_string()))?;
                insert = insert
                    .bind(&request.id)
                    .bind(position)
                    .bind(address)
                    .bind(&token_hash[..]);
            }
            statements.push(insert);
        }
        statements.push(
            sqlx::query(
                "INSERT INTO outbox (request_id, position, state, next_attempt_at)
             SELECT request_id, position, 'queued', $2 FROM recipients WHERE request_id = $1",
            )
            .bind(&request.id)
            .bind(request.created_at),
        );
        statements.push(
            sqlx::query(
                "INSERT INTO audit_events (at, event, request_id, computer, actor)
             SELECT $1, $2, request_id, $3, address FROM recipients WHERE request_id = $4
             ORDER BY position",
            )
            .bind(request.created_at)
            .bind(AuditKind::EmailQueued.as_str())
            .bind(&request.computer)
            .bind(&request.id),
        );
        self.begin_script().await?.commit(statements).await?;
        Ok(())
    }

    pub async fn request(&self, id: &str) -> Result<Option<RequestRow>, StoreError> {
        let sql = format!("SELECT {REQUEST_COLUMNS} FROM requests r WHERE r.id = $1");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(id)
            .fetch_optional(&mut *self.reader().await?)
            .await?;
        row.as_ref().map(request_from_row).transpose()
    }

    /// The request and recipient address a link token's hash belongs to.
    pub async fn request_by_link(
        &self,
        token_hash: &[u8],
    ) -> Result<Option<(RequestRow, String)>, StoreError> {
        // One query on the approval page's path: the recipient and its request.
        let sql = format!(
            "SELECT {REQUEST_COLUMNS}, rc.address FROM recipients rc
             JOIN requests r ON r.id = rc.request_id WHERE rc.token_hash = $1"
        );
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(token_hash)
            .fetch_optional(&mut *self.reader().await?)
            .await?;
        row.map(|row| Ok((request_from_row(&row)?, row.try_get("address")?)))
            .transpose()
    }

    pub async fn pending_requests(&self) -> Result<Vec<RequestRow>, StoreError> {
        let sql = format!("SELECT {REQUEST_COLUMNS} FROM requests r WHERE r.state = 'pending'");
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .fetch_all(&mut *self.reader().await?)
            .await?;
        rows.iter().map(request_from_row).collect()
    }

    /// Requests to this computer allowed since `since` whose session has not
    /// started: an agent that reconnects may still be waiting to hear of them.
    pub async fn allowed_without_session(
        &self,
        computer: ComputerId,
        since: Millis,
    ) -> Result<Vec<RequestRow>, StoreError> {
        let sql = format!(
            "SELECT {REQUEST_COLUMNS} FROM requests r WHERE r.computer_id = $1 AND r.state = 'allowed' AND r.settled_at > $2
             AND NOT EXISTS (SELECT 1 FROM sessions s WHERE s.request_id = r.id)"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(computer.0)
            .bind(since)
            .fetch_all(&mut *self.reader().await?)
            .await?;
        rows.iter().map(request_from_row).collect()
    }

    /// The recipient addresses of a request, in order.
    pub async fn recipients_of(&self, request_id: &str) -> Result<Vec<String>, StoreError> {
        let rows =
            sqlx::query("SELECT address FROM recipients WHERE request_id = $1 ORDER BY position")
                .bind(request_id)
                .fetch_all(&mut *self.reader().await?)
                .await?;
        rows.iter().map(|row| Ok(row.try_get("address")?)).collect()
    }

    /// Until when `operator` may not ask `computer`, if blocked at `now`.
    pub async fn blocked_until(
        &self,
        operator: OperatorId,
        computer: ComputerId,
        now: Millis,
    ) -> Result<Option<Millis>, StoreError> {
        let row = sqlx::query(
            "SELECT until FROM blocks WHERE operator_id = $1 AND computer_id = $2 AND until > $3",
        )
        .bind(operator.0)
        .bind(computer.0)
        .bind(now)
        .fetch_optional(&mut *self.reader().await?)
        .await?;
        Ok(row.map(|row| row.try_get("until")).transpose()?)
    }

    /// Pending requests to a computer.
    pub async fn pending_for_computer(
        &self,
        computer: ComputerId,
    ) -> Result<Vec<RequestRow>, StoreError> {
        let sql = format!(
            "SELECT {REQUEST_COLUMNS} FROM requests r WHERE r.computer_id = $1 AND r.state = 'pending'"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(computer.0)
            .fetch_all(&mut *self.reader().await?)
            .await?;
        rows.iter().map(request_from_row).collect()
    }
    /// The allowed request `id` if it still lets `operator` into
    /// `computer` at `now` without new approvals.
    pub async fn reusable_approval(
        &self,
        id: &str,
        operator: OperatorId,
        computer: ComputerId,
        now: Millis,
    ) -> Result<Option<RequestRow>, StoreError> {
        let sql = format!(
            "SELECT {REQUEST_COLUMNS} FROM requests r WHERE r.id = $1 AND r.operator_id = $2 AND r.computer_id = $3
             AND r.state = 'allowed' AND r.reusable_until > $4"
        );
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(id)
            .bind(operator.0)
            .bind(computer.0)
            .bind(now)
            .fetch_optional(&mut *self.reader().await?)
            .await?;
        row.as_ref().map(request_from_row).transpose()
    }

    /// What the limits on asking count for `operator` asking `computer`
    /// at `now`, in one read: until when it is blocked, how many of its
    /// requests are pending, how many it made to the computer since
    /// `since`.
    pub async fn admission_counts(
        &self,
        operator: OperatorId,
        computer: ComputerId,
        now: Millis,
        since: Millis,
    ) -> Result<AdmissionCounts, StoreError> {
        let row = sqlx::query(
            "SELECT
               (SELECT MAX(until) FROM blocks
                 WHERE operator_id = $1 AND computer_id = $2 AND until > $3) AS blocked_until,
               (SELECT COUNT(*) FROM requests
                 WHERE operator_id = $1 AND state = 'pending' AND expires_at > $3) AS pending,
               (SELECT COUNT(*) FROM requests
                 WHERE operator_id = $1 AND computer_id = $2 AND created_at > $4) AS recent",
        )
        .bind(operator.0)
        .bind(computer.0)
        .bind(now)
        .bind(since)
        .fetch_one(&mut *self.reader().await?)
        .await?;
        Ok(AdmissionCounts {
            blocked_until: row.try_get("blocked_until")?,
            pending: row.try_get("pending")?,
            recent: row.try_get("recent")?,
        })
    }
}
