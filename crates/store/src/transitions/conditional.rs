//! The one conditional UPDATE a step of the state machine makes: written
//! only if the request is still as it was read (its version: the Allows
//! counted, the local Allow, the reuse), one function per kind of step.

use crate::{Millis, RequestRow, StoreError};
use doorman_core::Outcome;
use doorman_core::authorization::{Approval, PendingRequest, SettledRequest, Step};
use sqlx::AnyConnection;

/// What the conditional write of a step did.
pub(super) struct Written<'s> {
    /// The request was as read, and changed: one row updated.
    pub(super) won: bool,
    /// The recipient's Allow it counted, whose row is still to insert.
    pub(super) counted: Option<&'s Approval>,
}

impl<'s> Written<'s> {
    fn of(won: bool, counted: Option<&'s Approval>) -> Self {
        Self { won, counted }
    }
}

/// The version a transition checks, as SQL conditions: the recipients'
/// Allows counted (`$2`), whether the local Allow was given, and whether
/// an earlier approval was reused.
fn version_of(row: &RequestRow) -> String {
    let set = |given: bool| if given { "IS NOT NULL" } else { "IS NULL" };
    format!(
        "approval_count = $2 AND local_approved_by {} AND reused_from {}",
        set(row.local_approval.is_some()),
        set(row.reused_from.is_some())
    )
}

/// The one conditional UPDATE of the request that `step` makes, written
/// only if the request is still as `row` was read. Each UPDATE below says
/// whether it won.
pub(super) async fn write_step<'s>(
    tx: &mut AnyConnection,
    row: &RequestRow,
    step: &'s Step,
    at: Millis,
) -> Result<Written<'s>, StoreError> {
    let version = version_of(row);
    let written = match step {
        Step::Unchanged(..) => Written::of(false, None),
        // An earlier approval reused, the local Allow still to come.
        Step::Approved(pending) if row.reused_from.is_none() && pending.reused.is_some() => {
            Written::of(record_reuse(tx, row, pending, &version, at).await?, None)
        }
        Step::Approved(pending)
            if row.local_approval.is_none() && pending.local_approval.is_some() =>
        {
            Written::of(
                record_local_allow(tx, row, pending, &version, at).await?,
                None,
            )
        }
        Step::Approved(pending) => Written::of(
            count_allow(tx, row, &version, at).await?,
            pending.approvals.last(),
        ),
        Step::Settled(settled) => match settled.outcome() {
            Outcome::Expired { .. } => Written::of(expire(tx, row, &version, at).await?, None),
            _ => settle(tx, row, settled, &version, at).await?,
        },
    };
    Ok(written)
}

/// Records the earlier approval a pending request reuses.
async fn record_reuse(
    tx: &mut AnyConnection,
    row: &RequestRow,
    pending: &PendingRequest,
    version: &str,
    at: Millis,
) -> Result<bool, StoreError> {
    let reused = pending.reused.as_ref();
    let set = "reused_from = $4, reused_by = $5";
    while_pending(tx, row, version, at, set, |query| {
        query
            .bind(reused.map(|r| r.request_id.as_str()))
            .bind(reused.map(|r| r.by.as_str()))
    })
    .await
}

/// Records the local Allow of a request that still needs more.
async fn record_local_allow(
    tx: &mut AnyConnection,
    row: &RequestRow,
    pending: &PendingRequest,
    version: &str,
    at: Millis,
) -> Result<bool, StoreError> {
    let local = pending.local_approval.as_ref();
    let set = "local_approved_by = $4, local_approved_at = $5";
    while_pending(tx, row, version, at, set, |query| {
        query
            .bind(local.map(|a| a.by.as_str()))
            .bind(local.map(|a| a.at))
    })
    .await
}

/// Counts one more recipient's Allow of a request that needs more.
async fn count_allow(
    tx: &mut AnyConnection,
    row: &RequestRow,
    version: &str,
    at: Millis,
) -> Result<bool, StoreError> {
    let set = "approval_count = approval_count + 1";
    while_pending(tx, row, version, at, set, |query| query).await
}

/// `UPDATE requests SET {set}` while the request is pending, as it was read
/// (`version`) and before its deadline; `bind` binds `set`'s own values,
/// from `$4` on. Whether it won.
async fn while_pending<'q>(
    tx: &mut AnyConnection,
    row: &'q RequestRow,
    version: &str,
    at: Millis,
    set: &str,
    bind: impl FnOnce(AnyQuery<'q>) -> AnyQuery<'q>,
) -> Result<bool, StoreError> {
    let sql = format!(
        "UPDATE requests SET {set}
         WHERE id = $1 AND state = 'pending' AND {version} AND expires_at > $3"
    );
    let query = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(&row.id)
        .bind(row.approval_count)
        .bind(at);
    let result = bind(query).execute(&mut *tx).await?;
    Ok(result.rows_affected() == 1)
}

/// A query on the `Any` driver, as [`while_pending`] binds it.
type AnyQuery<'q> = sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments>;

/// Expires a request whose deadline has passed.
async fn expire(
    tx: &mut AnyConnection,
    row: &RequestRow,
    version: &str,
    at: Millis,
) -> Result<bool, StoreError> {
    let sql = format!(
        "UPDATE requests SET state = 'expired', settled_at = expires_at
         WHERE id = $1 AND state = 'pending' AND {version} AND expires_at <= $3"
    );
    let result = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(&row.id)
        .bind(row.approval_count)
        .bind(at)
        .execute(&mut *tx)
        .await?;
    Ok(result.rows_affected() == 1)
}

/// Settles a request before its deadline (allowed, denied or cancelled):
/// its outcome, the Allows counted, the local Allow, and the reuse window.
async fn settle<'s>(
    tx: &mut AnyConnection,
    row: &RequestRow,
    settled: &'s SettledRequest,
    version: &str,
    at: Millis,
) -> Result<Written<'s>, StoreError> {
    let outcome = settled.outcome();
    let cause = match outcome {
        Outcome::Cancelled { cause, .. } => {
            Some(serde_json::to_string(cause).map_err(|e| StoreError::Corrupt(e.to_string()))?)
        }
        _ => None,
    };
    let request = settled.request();
    let count =
        i64::try_from(request.approvals.len()).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    let (reused_from, reusable_until) = reuse_of(row, outcome, at);
    let local = request.local_approval.as_ref();
    let sql = format!(
        "UPDATE requests SET state = $3, settled_at = $4, decided_by = $5, cancel_cause = $6, approval_count = $7,
             reused_from = $8, reusable_until = $9, local_approved_by = $10, local_approved_at = $11
         WHERE id = $1 AND state = 'pending' AND {version} AND expires_at > $12"
    );
    let result = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(&row.id)
        .bind(row.approval_count)
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
    let counted = (count > row.approval_count)
        .then(|| request.approvals.last())
        .flatten();
    Ok(Written::of(result.rows_affected() == 1, counted))
}

/// A settled request's `reused_from` and `reusable_until`: a fresh Allow
/// opens the reuse window; a reused one does not stretch the window it
/// came from.
fn reuse_of(row: &RequestRow, outcome: &Outcome, at: Millis) -> (Option<String>, Option<Millis>) {
    match outcome {
        Outcome::Allowed {
            reused_from: None, ..
        } if row.approval_valid_for > 0 => {
            (None, Some(at + i64::from(row.approval_valid_for) * 1000))
        }
        Outcome::Allowed { reused_from, .. } => (reused_from.clone(), None),
        _ => (None, None),
    }
}
