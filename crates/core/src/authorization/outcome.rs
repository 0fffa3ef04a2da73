//! What a request can be and how it ended: the recipients' decisions, the
//! stored states, the outcomes with their causes.

use super::Millis;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// What a recipient chose on the approval page.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Decision {
    Allow,
    Deny,
    /// "I did not expect this": deny, and block the operator from this
    /// computer for a while.
    Report,
}

impl FromStr for Decision {
    type Err = UnknownDecision;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "allow" => Ok(Decision::Allow),
            "deny" => Ok(Decision::Deny),
            "report" => Ok(Decision::Report),
            _ => Err(UnknownDecision),
        }
    }
}

/// A decision value other than `allow`, `deny` or `report`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("decision must be \"allow\", \"deny\" or \"report\"")]
pub struct UnknownDecision;

/// The state of a request as stored and reported.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RequestState {
    Pending,
    Allowed,
    Denied,
    Expired,
    Cancelled,
}

impl RequestState {
    pub const ALL: [RequestState; 5] = [
        RequestState::Pending,
        RequestState::Allowed,
        RequestState::Denied,
        RequestState::Expired,
        RequestState::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RequestState::Pending => "pending",
            RequestState::Allowed => "allowed",
            RequestState::Denied => "denied",
            RequestState::Expired => "expired",
            RequestState::Cancelled => "cancelled",
        }
    }

    pub fn is_settled(self) -> bool {
        self != RequestState::Pending
    }
}

impl fmt::Display for RequestState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for RequestState {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        RequestState::ALL
            .into_iter()
            .find(|state| state.as_str() == s)
            .ok_or_else(|| format!("unknown request state {s:?}"))
    }
}

/// Why a request was cancelled.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum CancelCause {
    /// The operator gave up (Ctrl-C, or its connection went away).
    #[default]
    Operator,
    /// The computer went offline while the request was pending.
    ComputerGone,
    /// No authorization email could be delivered; the last server reply.
    Undeliverable { error: String },
    /// The operator's token, the computer's key or the operator's access
    /// to the computer was taken away.
    Revoked { what: Revoked },
    /// The request was allowed, and the computer refused its session: the
    /// approval did not meet the computer's own requirements (a passkey
    /// that does not verify there, a missing local Allow, a reuse it does
    /// not hold). Its words.
    RefusedByComputer { reason: String },
}

/// What a revocation took away.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Revoked {
    /// `doorman admin operator rotate|remove`.
    OperatorToken,
    /// `doorman admin agent rotate|remove`.
    Computer,
    /// `doorman admin access revoke`.
    Access,
}

impl CancelCause {
    /// One line for the audit trail and the approval page.
    pub fn describe(&self) -> String {
        match self {
            CancelCause::Operator => "cancelled by the operator".into(),
            CancelCause::ComputerGone => "the computer went offline".into(),
            CancelCause::Undeliverable { error } => {
                format!("no authorization email could be delivered: {error}")
            }
            CancelCause::Revoked {
                what: Revoked::OperatorToken,
            } => "the operator's token was replaced or removed".into(),
            CancelCause::Revoked {
                what: Revoked::Computer,
            } => "the computer's key was replaced or removed".into(),
            CancelCause::Revoked {
                what: Revoked::Access,
            } => "the operator's access to this computer was revoked".into(),
            CancelCause::RefusedByComputer { reason } => {
                format!("refused by the computer: {reason}")
            }
        }
    }
}

/// How a request ended, with what the approval page and the operator are told.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "lowercase")]
pub enum Outcome {
    /// `by` names every approver, in the order they approved; a request
    /// let in by an earlier approval (the computer's `approval_valid_for`)
    /// names that request in `reused_from` and its approvers in `by`.
    Allowed {
        by: String,
        at: Millis,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reused_from: Option<String>,
    },
    Denied {
        by: String,
        at: Millis,
    },
    Expired {
        at: Millis,
    },
    Cancelled {
        at: Millis,
        #[serde(default)]
        cause: CancelCause,
    },
}

impl Outcome {
    pub fn state(&self) -> RequestState {
        match self {
            Outcome::Allowed { .. } => RequestState::Allowed,
            Outcome::Denied { .. } => RequestState::Denied,
            Outcome::Expired { .. } => RequestState::Expired,
            Outcome::Cancelled { .. } => RequestState::Cancelled,
        }
    }

    pub fn at(&self) -> Millis {
        match self {
            Outcome::Allowed { at, .. }
            | Outcome::Denied { at, .. }
            | Outcome::Expired { at }
            | Outcome::Cancelled { at, .. } => *at,
        }
    }

    /// Who decided, for `allowed` and `denied`.
    pub fn decided_by(&self) -> Option<&str> {
        match self {
            Outcome::Allowed { by, .. } | Outcome::Denied { by, .. } => Some(by),
            Outcome::Expired { .. } | Outcome::Cancelled { .. } => None,
        }
    }
}
