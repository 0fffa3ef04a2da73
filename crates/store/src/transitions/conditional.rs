//! The one conditional UPDATE a step of the state machine makes: written
//! only if the request is still as it was read (its version: the Allows
//! counted, the local Allow, the reuse), one function per kind of step.

use crate::script::Statement as AnyQuery;
use crate::{Millis, RequestRow, StoreError};
use doorman_core::Outcome;
use doorman_core::authorization::{Approval, PendingRequest, SettledRequest, Step};

/// The conditional write of a step: the UPDATE (none for a step that
/// changes nothing), which wins if it changes one row.
pub(super) struct Written<'q> {
    pub(super) update: Option<AnyQuery<'q>>,
    /// The recipient's Allow it counts, whose row is still to insert.
    pub(super) counted: Option<&'q Approval>,
}

impl<'q> Written<'q> {
    fn of(update: AnyQuery<'q>, counted: Option<&'q Approval>) -> Self {
        Self {
            update: Some(update),
            counted,
        }
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

/// The one conditional UPDATE of the request that `step` makes, which
/// writes only if the request is still as `row` was read: it won if it
/// changed one row.
pub(super) fn step_update<'q>(
    row: &'q RequestRow,
    step: &'q Step,
    at: Millis,
) -> Result<Written<'q>, StoreError> {
    let version = version_of(row);
    let written = match step {
        Step::Unchanged(..) => Written {
            update: None,
            counted: None,
        },
        // An earlier approval reused, the local Allow still to come.
        Step::Approved(pending) if row.reused_from.is_none() && pending.reused.is_some() => {
            Written::of(record_reuse(row, pending, &version, at), None)
        }
        Step::Approved(pending)
            if row.local_approval.is_none() && pending.local_approval.is_some() =>
        {
            Written::of(record_local_allow(row, pending, &version, at), None)
        }
        Step::Approved(pending) => {
            Written::of(count_allow(row, &version, at), pending.approvals.last())
        }
        Step::Settled(settled) => match settled.outcome() {
            Outcome::Expired { .. } => Written::of(expire(row, &version, at), None),
            _ => settle(row, settled, &version, at)?,
        },
    };
    Ok(written)
}

/// Records the earlier approval a pending request reuses.
fn record_reuse<'q>(
    row: &'q RequestRow,
    pending: &'q PendingRequest,
    version: &str,
    at: Millis,
) -> AnyQuery<'q> {
    let reused = pending.reused.as_ref();
    let set = "reused_from = $4, reused_by = $5";
    while_pending(row, version, at, set)
        .bind(reused.map(|r| r.request_id.as_str()))
        .bind(reused.map(|r| r.by.as_str()))
}

/// Records the local Allow of a request that still needs more.
fn record_local_allow<'q>(
    row: &'q RequestRow,
    pending: &'q PendingRequest,
    version: &str,
    at: Millis,
) -> AnyQuery<'q> {
    let local = pending.local_approval.as_ref();
    let set = "local_approved_by = $4, local_approved_at = $5";
    while_pending(row, version, at, set)
        .bind(local.map(|a| a.by.as_str()))
        .bind(local.map(|a| a.at))
}

/// Counts one more recipient's Allow of a request that needs more.
fn count_allow<'q>(row: &'q RequestRow, version: &str, at: Millis) -> AnyQuery<'q> {
    while_pending(row, version, at, "approval_count = approval_count + 1")
}

/// `UPDATE requests SET {set}` while the request is pending, as it was read
/// (`version`) and before its deadline; the caller binds `set`'s own
/// values, from `$4` on.
fn while_pending<'q>(row: &'q RequestRow, version: &str, at: Millis, set: &str) -> AnyQuery<'q> {
    let sql = format!(
        "UPDATE requests SET {set}
         WHERE id = $1 AND state = 'pending' AND {version} AND expires_at > $3"
    );
    sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(&row.id)
        .bind(row.approval_count)
        .bind(at)
}

/// Expires a request whose deadline has passed.
fn expire<'q>(row: &'q RequestRow, version: &str, at: Millis) -> AnyQuery<'q> {
    let sql = format!(
        "UPDATE requests SET state = 'expired', settled_at = expires_at
         WHERE id = $1 AND state = 'pending' AND {version} AND expires_at <= $3"
    );
    sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(&row.id)
        .bind(row.approval_count)
        .bind(at)
}

/// Settles a request before its deadline (allowed, denied or cancelled):
/// its outcome, the Allows counted, the local Allow, and the reuse window.
fn settle<'q>(
    row: &'q RequestRow,
    settled: &'q SettledRequest,
    version: &str,
    at: Millis,
) -> Result<Written<'q>, StoreError> {
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
    let update = sqlx::query(sqlx::AssertSqlSafe(sql))
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
        .bind(at);
    let counted = (count > row.approval_count)
        .then(|| request.approvals.last())
        .flatten();
    Ok(Written::of(update, counted))
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
