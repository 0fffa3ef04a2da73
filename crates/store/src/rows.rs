//! A request as stored, and how a row becomes one.

use super::{ComputerId, Millis, OperatorId, StoreError, seconds};
use doorman_core::authorization::{Approval, PendingRequest, Reused, SettledRequest};
use doorman_core::{CancelCause, LocalConsent, Outcome, Request, RequestState};
use sqlx::Row;
use sqlx::any::AnyRow;
use std::str::FromStr;

/// A request as stored.
#[derive(Clone, Debug)]
pub struct RequestRow {
    pub id: String,
    /// The computer's name, for people to read; `computer_id` is who it is.
    pub computer: String,
    /// The operator's name, for people to read; `operator_id` is who it is.
    pub operator: String,
    /// Unset on requests of an operator removed before ids were kept.
    pub operator_id: Option<OperatorId>,
    /// Unset on requests to a computer removed before ids were kept.
    pub computer_id: Option<ComputerId>,
    pub operator_ip: String,
    pub reason: String,
    pub service: String,
    pub state: RequestState,
    pub created_at: Millis,
    pub expires_at: Millis,
    pub settled_at: Option<Millis>,
    pub decided_by: Option<String>,
    /// The service asked for, as wire JSON (absent on rows from before it was kept).
    pub service_json: Option<String>,
    pub required_approvals: u32,
    /// Distinct Allows counted; the version each transition checks.
    pub approval_count: i64,
    pub cancel_cause: Option<CancelCause>,
    /// Seconds an Allow of this request covers further sessions.
    pub approval_valid_for: u32,
    /// Until when it does (cleared by a Deny on the computer or a revocation).
    pub reusable_until: Option<Millis>,
    /// The earlier request whose approval let this one in (or, while it
    /// waits for a required local Allow, stands in for the recipients').
    pub reused_from: Option<String>,
    /// Who gave that earlier approval, while this request waits.
    pub reused_by: Option<String>,
    /// The session's time limit in seconds (0: none).
    pub max_session_seconds: u32,
    /// What approvals must be made with, when the computer requires
    /// passkeys.
    pub passkey: Option<doorman_wire::message::PasskeyRequirement>,
    /// The computer's identity fingerprint when the request was made.
    pub computer_identity: Option<String>,
    /// The operator asked for the session sealed end to end.
    pub sealed: bool,
    pub local_consent: LocalConsent,
    /// The local Allow, once given.
    pub local_approval: Option<Approval>,
}

impl RequestRow {
    /// The outcome of a settled request.
    pub fn outcome(&self) -> Option<Outcome> {
        let at = self.settled_at.unwrap_or(self.expires_at);
        let by = self.decided_by.clone().unwrap_or_default();
        match self.state {
            RequestState::Pending => None,
            RequestState::Allowed => Some(Outcome::Allowed {
                by,
                at,
                reused_from: self.reused_from.clone(),
            }),
            RequestState::Denied => Some(Outcome::Denied { by, at }),
            RequestState::Expired => Some(Outcome::Expired { at }),
            RequestState::Cancelled => Some(Outcome::Cancelled {
                at,
                cause: self.cancel_cause.clone().unwrap_or_default(),
            }),
        }
    }

    /// The request as the state machine sees it, with its counted Allows.
    pub fn machine(&self, approvals: Vec<Approval>) -> Request {
        let pending = PendingRequest {
            created_at: self.created_at,
            expires_at: self.expires_at,
            required_approvals: self.required_approvals.max(1),
            approvals,
            local_consent: self.local_consent,
            local_approval: self.local_approval.clone(),
            reused: self
                .reused_from
                .clone()
                .zip(self.reused_by.clone())
                .map(|(request_id, by)| Reused { request_id, by }),
        };
        match self.outcome() {
            None => Request::Pending(pending),
            Some(outcome) => Request::Settled(SettledRequest::stored(pending, outcome)),
        }
    }
}

/// A new request, its recipients with their token hashes.
#[derive(Clone, Debug)]
pub struct NewRequest {
    pub id: String,
    pub computer: String,
    pub operator: String,
    /// Who the operator and the computer are: the request is theirs.
    pub operator_id: OperatorId,
    pub computer_id: ComputerId,
    pub operator_ip: String,
    pub reason: String,
    pub service: String,
    pub service_json: String,
    pub created_at: Millis,
    pub expires_at: Millis,
    pub required_approvals: u32,
    pub approval_valid_for: u32,
    pub max_session_seconds: u32,
    pub local_consent: LocalConsent,
    pub recipients: Vec<(String, [u8; 32])>,
    /// The computer's passkey requirement, as JSON.
    pub passkey: Option<String>,
    /// The computer's identity fingerprint, as its agent said it.
    pub computer_identity: Option<String>,
    /// The operator asked for the session sealed end to end.
    pub sealed: bool,
}

/// The columns of `requests r`, in the order `request_from_row` reads them by name.
pub(super) const REQUEST_COLUMNS: &str = "r.id, r.computer, r.operator, r.operator_id, r.computer_id, r.operator_ip, r.reason, r.service, r.state, r.created_at, r.expires_at, r.settled_at, r.decided_by, r.service_json, r.required_approvals, r.approval_count, r.cancel_cause, r.approval_valid_for, r.reusable_until, r.reused_from, r.reused_by, r.max_session_seconds, r.local_consent, r.local_approved_by, r.local_approved_at, r.passkey, r.computer_identity, r.sealed";

pub(super) fn request_from_row(row: &AnyRow) -> Result<RequestRow, StoreError> {
    let state: String = row.try_get("state")?;
    Ok(RequestRow {
        id: row.try_get("id")?,
        computer: row.try_get("computer")?,
        operator: row.try_get("operator")?,
        operator_id: row
            .try_get::<Option<i64>, _>("operator_id")?
            .map(OperatorId),
        computer_id: row
            .try_get::<Option<i64>, _>("computer_id")?
            .map(ComputerId),
        operator_ip: row.try_get("operator_ip")?,
        reason: row.try_get("reason")?,
        service: row.try_get("service")?,
        state: RequestState::from_str(&state).map_err(StoreError::Corrupt)?,
        created_at: row.try_get("created_at")?,
        expires_at: row.try_get("expires_at")?,
        settled_at: row.try_get("settled_at")?,
        decided_by: row.try_get("decided_by")?,
        service_json: row.try_get("service_json")?,
        required_approvals: seconds(row, "required_approvals")?,
        approval_count: row.try_get("approval_count")?,
        approval_valid_for: seconds(row, "approval_valid_for")?,
        reusable_until: row.try_get("reusable_until")?,
        reused_from: row.try_get("reused_from")?,
        reused_by: row.try_get("reused_by")?,
        max_session_seconds: seconds(row, "max_session_seconds")?,
        local_consent: row
            .try_get::<String, _>("local_consent")?
            .parse()
            .map_err(StoreError::Corrupt)?,
        local_approval: match (
            row.try_get::<Option<String>, _>("local_approved_by")?,
            row.try_get::<Option<i64>, _>("local_approved_at")?,
        ) {
            (Some(by), Some(at)) => Some(Approval { by, at }),
            _ => None,
        },
        cancel_cause: row
            .try_get::<Option<String>, _>("cancel_cause")?
            .map(|json| serde_json::from_str(&json))
            .transpose()
            .map_err(|e| StoreError::Corrupt(format!("cancel_cause: {e}")))?,
        passkey: row
            .try_get::<Option<String>, _>("passkey")?
            .map(|json| serde_json::from_str(&json))
            .transpose()
            .map_err(|e| StoreError::Corrupt(format!("passkey: {e}")))?,
        computer_identity: row.try_get("computer_identity")?,
        sealed: row.try_get::<i64, _>("sealed")? != 0,
    })
}
