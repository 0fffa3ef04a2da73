//! A request's transitions in the database: loading the request as the
//! state machine (`doorman_core::authorization`) sees it, and persisting
//! each step it computes with one conditional write, with its audit event,
//! its approval row, the block of a report and the end of reuse windows.
//! The conditional write itself, one UPDATE per kind of step, is
//! `conditional`'s.

mod conditional;

use super::{
    AuditEvent, ComputerId, Millis, OperatorId, REQUEST_COLUMNS, RequestRow, Store, StoreError,
    audit_statement, insert_audit, request_from_row,
};
use crate::lite::Conn;
use crate::script::Statement;
use doorman_core::authorization::{Approval, Event, SettledRequest, Step};
use doorman_core::{AuditKind, CancelCause, Outcome, Request};
use sqlx::Row;

/// "I did not expect this": keeps the operator from asking the computer
/// until `until`; written with the Deny that settles the request. It
/// belongs to their ids, and goes when either is removed.
#[derive(Clone, Debug)]
pub struct Block {
    pub operator: OperatorId,
    pub computer: ComputerId,
    pub until: Millis,
    pub reported_by: String,
}

impl Store {
    /// A request with its counted Allows, as the state machine sees it.
    pub async fn load(&self, id: &str) -> Result<Option<(RequestRow, Request)>, StoreError> {
        // The row and its approvals are two reads; a transition committed
        // between them shows as more approvals than the row counts. Read
        // again until they agree.
        for _ in 0..64 {
            let Some(row) = self.request(id).await? else {
                return Ok(None);
            };
            // None counted: none to read (they are written with the count).
            let approvals = if row.approval_count == 0 {
                Vec::new()
            } else {
                self.approvals_of(id).await?
            };
            if i64::try_from(approvals.len()).ok() == Some(row.approval_count) {
                let machine = row.machine(approvals);
                return Ok(Some((row, machine)));
            }
        }
        Err(StoreError::Contended(id.to_string()))
    }

    /// The passkey assertions of a request's approvals (JSON), in the order
    /// they came.
    pub async fn approval_assertions(&self, id: &str) -> Result<Vec<String>, StoreError> {
        let rows = sqlx::query(
            "SELECT assertion FROM approvals WHERE request_id = $1 AND assertion IS NOT NULL ORDER BY at, address",
        )
        .bind(id)
        .fetch_all(&mut *self.reader().await?)
        .await?;
        rows.iter()
            .map(|row| Ok(row.try_get("assertion")?))
            .collect()
    }

    /// The counted Allows of a request, in the order they came.
    pub async fn approvals_of(&self, id: &str) -> Result<Vec<Approval>, StoreError> {
        let mut conn = self.reader().await?;
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
        assertion: Option<&str>,
    ) -> Result<bool, StoreError> {
        let written = conditional::step_update(row, step, at)?;
        let Some(update) = written.update else {
            return Ok(false);
        };
        // The UPDATE goes with the BEGIN, the rest with the COMMIT: two
        // hand-offs on SQLite (see `script`).
        let mut script = self.begin_script().await?;
        if script.first(update).await?.rows_affected != 1 {
            return Ok(false);
        }
        let after = after_step(row, step, written.counted, at, audit, block, assertion);
        script.commit(after).await?;
        Ok(true)
    }

    /// Persists the computer's refusal of the allowed request `row`
    /// (`refused`, from `SettledRequest::refused_by_computer`), with its
    /// audit event: the request ends cancelled and its approval can no
    /// longer be reused. Returns false, writing nothing, when the request
    /// is no longer allowed (refused already) or its session started.
    pub async fn persist_refusal(
        &self,
        row: &RequestRow,
        refused: &SettledRequest,
        audit: &AuditEvent,
    ) -> Result<bool, StoreError> {
        let Outcome::Cancelled { at, cause } = refused.outcome() else {
            return Ok(false);
        };
        let cause = serde_json::to_string(cause).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let mut tx = self.begin_write().await?;
        let result = sqlx::query(
            "UPDATE requests SET state = 'cancelled', settled_at = $2, cancel_cause = $3, reusable_until = NULL
             WHERE id = $1 AND state = 'allowed'
               AND NOT EXISTS (SELECT 1 FROM sessions s WHERE s.request_id = $4)",
        )
        .bind(&row.id)
        .bind(*at)
        .bind(cause)
        .bind(&row.id)
        .execute(&mut *tx)
        .await?;
        if result.rows_affected() != 1 {
            return Ok(false);
        }
        insert_audit(&mut tx, audit).await?;
        tx.commit().await?;
        Ok(true)
    }
}

async fn approvals_in(conn: &mut Conn, id: &str) -> Result<Vec<Approval>, StoreError> {
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
/// (`operator_id` or `computer_id`) is `id`.
pub(super) async fn end_reuse_in(
    conn: &mut Conn,
    column: &'static str,
    id: i64,
) -> Result<(), StoreError> {
    end_reuse(column, id).execute(conn).await?;
    Ok(())
}

fn end_reuse(column: &'static str, id: i64) -> Statement<'static> {
    let sql = format!(
        "UPDATE requests SET reusable_until = NULL WHERE {column} = $1 AND reusable_until IS NOT NULL"
    );
    sqlx::query(sqlx::AssertSqlSafe(sql)).bind(id)
}

/// The audit event of a transition (its kind, request and computer, and
/// what a reader needs to know); `None` when nothing changed. Callers add
/// who did it and from where.
pub fn transition_audit(row: &RequestRow, step: &Step, at: Millis) -> Option<AuditEvent> {
    let event = |kind| AuditEvent::new(kind, at).request(&row.id, &row.computer);
    match step {
        Step::Unchanged(..) => None,
        Step::Approved(pending) if row.reused_from.is_none() && pending.reused.is_some() => {
            let reused = pending.reused.as_ref()?;
            Some(event(AuditKind::Reused).detail(format!(
                "the approval of request {} by {} was reused; the person at the computer must allow too",
                reused.request_id, reused.by
            )))
        }
        Step::Approved(pending) => Some(event(AuditKind::Approved).detail(format!(
            "{} of {} approvals",
            pending.approvals.len(),
            pending.required_approvals
        ))),
        Step::Settled(settled) => Some(match settled.outcome() {
            // Reused at once; one reused while the local Allow was awaited
            // was audited as a reuse then, and is allowed now.
            Outcome::Allowed {
                reused_from: Some(earlier),
                by,
                ..
            } if row.reused_from.is_none() => event(AuditKind::Reused).detail(format!(
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
    tx: &mut Conn,
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
            if persist_in(tx, &row, &step, now, &audit, None, None).await? {
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
/// cancels many requests in the one that revokes): the conditional write,
/// then, only if it won, what goes with it.
pub(super) async fn persist_in(
    tx: &mut Conn,
    row: &RequestRow,
    step: &Step,
    at: Millis,
    audit: &AuditEvent,
    block: Option<&Block>,
    assertion: Option<&str>,
) -> Result<bool, StoreError> {
    let written = conditional::step_update(row, step, at)?;
    let Some(update) = written.update else {
        return Ok(false);
    };
    if update.execute(&mut *tx).await?.rows_affected() != 1 {
        return Ok(false);
    }
    let after = after_step(row, step, written.counted, at, audit, block, assertion);
    for statement in after {
        statement.execute(&mut *tx).await?;
    }
    Ok(true)
}

/// What a step writes once its UPDATE won: the Allow it counted, the
/// emails a settled request no longer needs, the reuse windows a Deny
/// ends, a report's block, and its audit event.
fn after_step<'q>(
    row: &'q RequestRow,
    step: &'q Step,
    counted: Option<&'q Approval>,
    at: Millis,
    audit: &'q AuditEvent,
    block: Option<&'q Block>,
    assertion: Option<&'q str>,
) -> Vec<Statement<'q>> {
    let mut statements = Vec::with_capacity(5);
    if let Some(approval) = counted {
        statements.push(
            sqlx::query(
                "INSERT INTO approvals (request_id, address, at, assertion) VALUES ($1, $2, $3, $4)",
            )
            .bind(&row.id)
            .bind(&approval.by)
            .bind(approval.at)
            .bind(assertion),
        );
    }
    if let Step::Settled(settled) = step {
        // Emails not yet sent are pointless now.
        statements.push(
            sqlx::query(
                "UPDATE outbox SET state = 'dropped' WHERE request_id = $1 AND state = 'queued'",
            )
            .bind(&row.id),
        );
        // A Deny (or "I did not expect this") on a computer ends every
        // earlier approval's reuse window there.
        if let (Outcome::Denied { .. }, Some(computer)) = (settled.outcome(), row.computer_id) {
            statements.push(end_reuse("computer_id", computer.0));
        }
    }
    if let Some(block) = block {
        statements.push(upsert_block(block, at));
    }
    statements.push(audit_statement(audit));
    statements
}

/// Writes a report's block, or lengthens the one already there.
fn upsert_block(block: &Block, at: Millis) -> Statement<'_> {
    sqlx::query(
        "INSERT INTO blocks (operator_id, computer_id, until, reported_by, created_at) VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT (operator_id, computer_id) DO UPDATE SET until = CASE WHEN excluded.until > blocks.until THEN excluded.until ELSE blocks.until END,
             reported_by = excluded.reported_by, created_at = excluded.created_at",
    )
    .bind(block.operator.0)
    .bind(block.computer.0)
    .bind(block.until)
    .bind(&block.reported_by)
    .bind(at)
}
