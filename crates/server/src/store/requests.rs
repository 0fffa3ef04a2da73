//! Requests: creating one with its recipients and emails, reading them,
//! and persisting each transition the state machine
//! (`doorman_core::authorization`) computes, with one conditional write.

use super::{
    AuditEvent, Millis, NewRequest, REQUEST_COLUMNS, RequestRow, Store, StoreError, insert_audit,
    request_from_row,
};
use doorman_core::authorization::{Approval, Event, Step};
use doorman_core::{AuditKind, CancelCause, Outcome, Request};
use sqlx::{AnyConnection, Row};

/// "I did not expect this": keeps `operator` from asking `computer` until
/// `until`; written with the Deny that settles the request.
#[derive(Clone, Debug)]
pub struct Block {
    pub operator: String,
    pub computer: String,
    pub until: Millis,
    pub reported_by: String,
}

impl Store {
    /// Writes a request, its recipients, their queued emails and the audit
    /// events, all or nothing.
    pub async fn create_request(&self, request: &NewRequest) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO requests (id, computer, operator, operator_ip, reason, service, service_json, state, created_at, expires_at, required_approvals, approval_valid_for, max_session_seconds, local_consent)
             VALUES ($1, $2, $3, $4, $5, $6, $7, 'pending', $8, $9, $10, $11, $12, $13)",
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
        .execute(&mut *tx)
        .await?;
        insert_audit(
            &mut tx,
            &AuditEvent::new(AuditKind::Requested, request.created_at)
                .request(&request.id, &request.computer)
                .actor(&request.operator)
                .address(&request.operator_ip)
                .detail(&request.service),
        )
        .await?;
        for (position, (address, token_hash)) in request.recipients.iter().enumerate() {
            let position =
                i64::try_from(position).map_err(|e| StoreError::Corrupt(e.to_string()))?;
            sqlx::query("INSERT INTO recipients (request_id, position, address, token_hash) VALUES ($1, $2, $3, $4)")
                .bind(&request.id)
                .bind(position)
                .bind(address)
                .bind(&token_hash[..])
                .execute(&mut *tx)
                .await?;
            sqlx::query("INSERT INTO outbox (request_id, position, state, next_attempt_at) VALUES ($1, $2, 'queued', $3)")
                .bind(&request.id)
                .bind(position)
                .bind(request.created_at)
                .execute(&mut *tx)
                .await?;
            insert_audit(
                &mut tx,
                &AuditEvent::new(AuditKind::EmailQueued, request.created_at)
                    .request(&request.id, &request.computer)
                    .actor(address),
            )
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    pub async fn request(&self, id: &str) -> Result<Option<RequestRow>, StoreError> {
        let sql = format!("SELECT {REQUEST_COLUMNS} FROM requests r WHERE r.id = $1");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(id)
            .fetch_optional(&self.pool)
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
            .fetch_optional(&self.pool)
            .await?;
        row.map(|row| Ok((request_from_row(&row)?, row.try_get("address")?)))
            .transpose()
    }

    pub async fn pending_requests(&self) -> Result<Vec<RequestRow>, StoreError> {
        let sql = format!("SELECT {REQUEST_COLUMNS} FROM requests r WHERE r.state = 'pending'");
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(request_from_row).collect()
    }

    /// Requests to this computer allowed since `since` whose session has not
    /// started: an agent that reconnects may still be waiting to hear of them.
    pub async fn allowed_without_session(
        &self,
        computer: &str,
        since: Millis,
    ) -> Result<Vec<RequestRow>, StoreError> {
        let sql = format!(
            "SELECT {REQUEST_COLUMNS} FROM requests r WHERE r.computer = $1 AND r.state = 'allowed' AND r.settled_at > $2
             AND NOT EXISTS (SELECT 1 FROM sessions s WHERE s.request_id = r.id)"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(computer)
            .bind(since)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(request_from_row).collect()
    }

    /// The recipient addresses of a request, in order.
    pub async fn recipients_of(&self, request_id: &str) -> Result<Vec<String>, StoreError> {
        let rows =
            sqlx::query("SELECT address FROM recipients WHERE request_id = $1 ORDER BY position")
                .bind(request_id)
                .fetch_all(&self.pool)
                .await?;
        rows.iter().map(|row| Ok(row.try_get("address")?)).collect()
    }

    /// A `COUNT(*) AS n` query with a name and a time bound.
    /// Until when `operator` may not ask `computer`, if blocked at `now`.
    pub async fn blocked_until(
        &self,
        operator: &str,
        computer: &str,
        now: Millis,
    ) -> Result<Option<Millis>, StoreError> {
        let row = sqlx::query(
            "SELECT until FROM blocks WHERE operator = $1 AND computer = $2 AND until > $3",
        )
        .bind(operator)
        .bind(computer)
        .bind(now)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(|row| row.try_get("until")).transpose()?)
    }

    /// Pending requests to a computer.
    pub async fn pending_for_computer(
        &self,
        computer: &str,
    ) -> Result<Vec<RequestRow>, StoreError> {
        let sql = format!(
            "SELECT {REQUEST_COLUMNS} FROM requests r WHERE r.computer = $1 AND r.state = 'pending'"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(computer)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(request_from_row).collect()
    }
    /// A request with its counted Allows, as the state machine sees it.
    pub async fn load(&self, id: &str) -> Result<Option<(RequestRow, Request)>, StoreError> {
        // The row and its approvals are two reads; a transition committed
        // between them shows as more approvals than the row counts. Read
        // again until they agree.
        for _ in 0..64 {
            let Some(row) = self.request(id).await? else {
                return Ok(None);
            };
            let approvals = self.approvals_of(id).await?;
            if i64::try_from(approvals.len()).ok() == Some(row.approval_count) {
                let machine = row.machine(approvals);
                return Ok(Some((row, machine)));
            }
        }
        Err(StoreError::Contended(id.to_string()))
    }

    /// The counted Allows of a request, in the order they came.
    pub async fn approvals_of(&self, id: &str) -> Result<Vec<Approval>, StoreError> {
        let mut conn = self.pool.acquire().await?;
        approvals_in(&mut conn, id).await
    }

    /// Persists one transition of the request `row` (read with
    /// `approval_count = row.approval_count`), with its audit event and, for
    /// a report, the block. Returns false, writing nothing, when the request
    /// changed since it was read: the caller reads it again and reapplies.
    pub async fn persist(
        &self,
        row: &RequestRow,
        step: &Step,
        at: Millis,
        audit: &AuditEvent,
        block: Option<&Block>,
    ) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin().await?;
        let won = persist_in(&mut tx, row, step, at, audit, block).await?;
        tx.commit().await?;
        Ok(won)
    }

    /// The allowed request `id` if it still lets `operator` into
    /// `computer` at `now` without new approvals.
    pub async fn reusable_approval(
        &self,
        id: &str,
        operator: &str,
        computer: &str,
        now: Millis,
    ) -> Result<Option<RequestRow>, StoreError> {
        let sql = format!(
            "SELECT {REQUEST_COLUMNS} FROM requests r WHERE r.id = $1 AND r.operator = $2 AND r.computer = $3
             AND r.state = 'allowed' AND r.reusable_until > $4"
        );
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(id)
            .bind(operator)
            .bind(computer)
            .bind(now)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(request_from_row).transpose()
    }

    /// Requests `operator` made to `computer` since `since`.
    pub async fn requests_by_operator_since(
        &self,
        operator: &str,
        computer: &str,
        since: Millis,
    ) -> Result<i64, StoreError> {
        let row = sqlx::query(
            "SELECT COUNT(*) AS n FROM requests WHERE operator = $1 AND computer = $2 AND created_at > $3",
        )
        .bind(operator)
        .bind(computer)
        .bind(since)
        .fetch_one(&self.pool)
        .await?;
        Ok(row.try_get("n")?)
    }

    /// Requests of this operator still pending at `now`.
    pub async fn pending_of_operator(
        &self,
        operator: &str,
        now: Millis,
    ) -> Result<i64, StoreError> {
        let row = sqlx::query(
            "SELECT COUNT(*) AS n FROM requests WHERE operator = $1 AND state = 'pending' AND expires_at > $2",
        )
        .bind(operator)
        .bind(now)
        .fetch_one(&self.pool)
        .await?;
        Ok(row.try_get("n")?)
    }
}

async fn approvals_in(conn: &mut AnyConnection, id: &str) -> Result<Vec<Approval>, StoreError> {
    let rows =
        sqlx::query("SELECT address, at FROM approvals WHERE request_id = $1 ORDER BY at, address")
            .bind(id)
            .fetch_all(conn)
            .await?;
    rows.iter()
        .map(|row| {
            Ok(Approval {
                by: row.try_get("address")?,
                at: row.try_get("at")?,
            })
        })
        .collect()
}

/// Ends the reuse windows of the allowed requests whose `column`
/// (`operator` or `computer`) is `name`.
pub(super) async fn end_reuse_in(
    conn: &mut AnyConnection,
    column: &'static str,
    name: &str,
) -> Result<(), StoreError> {
    let sql = format!(
        "UPDATE requests SET reusable_until = NULL WHERE {column} = $1 AND reusable_until IS NOT NULL"
    );
    sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(name)
        .execute(conn)
        .await?;
    Ok(())
}

/// The audit event of a transition (its kind, request and computer, and
/// what a reader needs to know); `None` when nothing changed. Callers add
/// who did it and from where.
pub fn transition_audit(row: &RequestRow, step: &Step, at: Millis) -> Option<AuditEvent> {
    let event = |kind| AuditEvent::new(kind, at).request(&row.id, &row.computer);
    match step {
        Step::Unchanged(..) => None,
        Step::Approved(pending) => Some(event(AuditKind::Approved).detail(format!(
            "{} of {} approvals",
            pending.approvals.len(),
            pending.required_approvals
        ))),
        Step::Settled(settled) => Some(match settled.outcome() {
            Outcome::Allowed {
                reused_from: Some(earlier),
                by,
                ..
            } => event(AuditKind::Reused).detail(format!(
                "the approval of request {earlier} by {by} was reused"
            )),
            Outcome::Allowed { .. } => event(AuditKind::Allowed),
            Outcome::Denied { .. } if settled.reported() => event(AuditKind::Reported),
            Outcome::Denied { .. } => event(AuditKind::Denied),
            Outcome::Expired { at } => {
                AuditEvent::new(AuditKind::Expired, *at).request(&row.id, &row.computer)
            }
            Outcome::Cancelled { cause, .. } => {
                event(AuditKind::Cancelled).detail(cause.describe())
            }
        }),
    }
}

/// Cancels these pending requests for `cause`, inside the caller's
/// transaction; returns how many it cancelled.
pub(super) async fn cancel_in(
    tx: &mut AnyConnection,
    rows: Vec<RequestRow>,
    cause: CancelCause,
    now: Millis,
) -> Result<u64, StoreError> {
    let mut cancelled = 0;
    for mut row in rows {
        // A click racing the revocation (on PostgreSQL) changes the row's
        // version: read it again.
        for _ in 0..5 {
            let approvals = approvals_in(tx, &row.id).await?;
            let Request::Pending(pending) = row.machine(approvals) else {
                break;
            };
            let step = pending.apply(Event::Cancel {
                cause: cause.clone(),
                at: now,
            });
            let Some(audit) = transition_audit(&row, &step, now) else {
                break;
            };
            if persist_in(tx, &row, &step, now, &audit, None).await? {
                cancelled += 1;
                break;
            }
            let sql = format!("SELECT {REQUEST_COLUMNS} FROM requests r WHERE r.id = $1");
            match sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(&row.id)
                .fetch_optional(&mut *tx)
                .await?
            {
                Some(fresh) => row = request_from_row(&fresh)?,
                None => break,
            }
        }
    }
    Ok(cancelled)
}

/// [`Store::persist`] inside a transaction the caller owns (a revocation
/// cancels many requests in the one that revokes).
pub(super) async fn persist_in(
    tx: &mut AnyConnection,
    row: &RequestRow,
    step: &Step,
    at: Millis,
    audit: &AuditEvent,
    block: Option<&Block>,
) -> Result<bool, StoreError> {
    let seen = row.approval_count;
    // The version a transition checks: the recipients' Allows counted, and
    // whether the local Allow was given.
    let version = if row.local_approval.is_some() {
        "approval_count = $2 AND local_approved_by IS NOT NULL"
    } else {
        "approval_count = $2 AND local_approved_by IS NULL"
    };
    let (result, approval) = match step {
        Step::Unchanged(..) => return Ok(false),
        Step::Approved(pending)
            if row.local_approval.is_none() && pending.local_approval.is_some() =>
        {
            let local = pending.local_approval.as_ref();
            let sql = format!(
                "UPDATE requests SET local_approved_by = $3, local_approved_at = $4
                 WHERE id = $1 AND state = 'pending' AND {version} AND expires_at > $5"
            );
            let result = sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(&row.id)
                .bind(seen)
                .bind(local.map(|a| a.by.as_str()))
                .bind(local.map(|a| a.at))
                .bind(at)
                .execute(&mut *tx)
                .await?;
            (result, None)
        }
        Step::Approved(pending) => {
            let sql = format!(
                "UPDATE requests SET approval_count = approval_count + 1
                 WHERE id = $1 AND state = 'pending' AND {version} AND expires_at > $3"
            );
            let result = sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(&row.id)
                .bind(seen)
                .bind(at)
                .execute(&mut *tx)
                .await?;
            (result, pending.approvals.last())
        }
        Step::Settled(settled) => match settled.outcome() {
            Outcome::Expired { .. } => {
                let sql = format!(
                    "UPDATE requests SET state = 'expired', settled_at = expires_at
                     WHERE id = $1 AND state = 'pending' AND {version} AND expires_at <= $3"
                );
                let result = sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(&row.id)
                    .bind(seen)
                    .bind(at)
                    .execute(&mut *tx)
                    .await?;
                (result, None)
            }
            outcome => {
                let cause = match outcome {
                    Outcome::Cancelled { cause, .. } => Some(
                        serde_json::to_string(cause)
                            .map_err(|e| StoreError::Corrupt(e.to_string()))?,
                    ),
                    _ => None,
                };
                let request = settled.request();
                let count = i64::try_from(request.approvals.len())
                    .map_err(|e| StoreError::Corrupt(e.to_string()))?;
                // A fresh Allow opens the reuse window; a reused one does not
                // stretch the window it came from.
                let (reused_from, reusable_until) = match outcome {
                    Outcome::Allowed {
                        reused_from: None, ..
                    } if row.approval_valid_for > 0 => {
                        (None, Some(at + i64::from(row.approval_valid_for) * 1000))
                    }
                    Outcome::Allowed { reused_from, .. } => (reused_from.clone(), None),
                    _ => (None, None),
                };
                let local = request.local_approval.as_ref();
                let sql = format!(
                    "UPDATE requests SET state = $3, settled_at = $4, decided_by = $5, cancel_cause = $6, approval_count = $7,
                         reused_from = $8, reusable_until = $9, local_approved_by = $10, local_approved_at = $11
                     WHERE id = $1 AND state = 'pending' AND {version} AND expires_at > $12"
                );
                let result = sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(&row.id)
                    .bind(seen)
                    .bind(outcome.state().as_str())
                    .bind(outcome.at())
                    .bind(outcome.decided_by())
                    .bind(cause)
                    .bind(count)
                    .bind(reused_from)
                    .bind(reusable_until)
                    .bind(local.map(|a| a.by.as_str()))
                    .bind(local.map(|a| a.at))
                    .bind(at)
                    .execute(&mut *tx)
                    .await?;
                let last = (count > seen).then(|| request.approvals.last()).flatten();
                (result, last)
            }
        },
    };
    if result.rows_affected() != 1 {
        return Ok(false);
    }
    if let Some(approval) = approval {
        sqlx::query("INSERT INTO approvals (request_id, address, at) VALUES ($1, $2, $3)")
            .bind(&row.id)
            .bind(&approval.by)
            .bind(approval.at)
            .execute(&mut *tx)
            .await?;
    }
    if matches!(step, Step::Settled(_)) {
        // Emails not yet sent are pointless now.
        sqlx::query(
            "UPDATE outbox SET state = 'dropped' WHERE request_id = $1 AND state = 'queued'",
        )
        .bind(&row.id)
        .execute(&mut *tx)
        .await?;
    }
    if let Step::Settled(settled) = step
        && let Outcome::Denied { .. } = settled.outcome()
    {
        // A Deny (or "I did not expect this") on a computer ends every
        // earlier approval's reuse window there.
        end_reuse_in(tx, "computer", &row.computer).await?;
    }
    if let Some(block) = block {
        sqlx::query(
            "INSERT INTO blocks (operator, computer, until, reported_by, created_at) VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (operator, computer) DO UPDATE SET until = CASE WHEN excluded.until > blocks.until THEN excluded.until ELSE blocks.until END,
                 reported_by = excluded.reported_by, created_at = excluded.created_at",
        )
        .bind(&block.operator)
        .bind(&block.computer)
        .bind(block.until)
        .bind(&block.reported_by)
        .bind(at)
        .execute(&mut *tx)
        .await?;
    }
    insert_audit(tx, audit).await?;
    Ok(true)
}
