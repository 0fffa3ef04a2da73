//! The kinds of event the audit trail records, by their stored names.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

macro_rules! audit_kinds {
    ($($(#[$doc:meta])* $variant:ident = $name:literal,)*) => {
        /// What happened, as `doorman admin audit` names it.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
        #[serde(rename_all = "snake_case")]
        pub enum AuditKind {
            $($(#[$doc])* $variant,)*
        }

        impl AuditKind {
            pub const ALL: &'static [AuditKind] = &[$(AuditKind::$variant,)*];

            pub fn as_str(self) -> &'static str {
                match self {
                    $(AuditKind::$variant => $name,)*
                }
            }
        }
    };
}

audit_kinds! {
    /// An operator asked for a session that needs approval.
    Requested = "requested",
    EmailQueued = "email_queued",
    EmailSent = "email_sent",
    EmailRetrying = "email_retrying",
    EmailFailed = "email_failed",
    /// A recipient opened the approval page.
    PageViewed = "page_viewed",
    /// A recipient's Allow was counted; more are needed.
    Approved = "approved",
    Allowed = "allowed",
    /// An earlier approval let the request in (`approval_valid_for`).
    Reused = "reused",
    Denied = "denied",
    /// Denied through "I did not expect this"; the operator is blocked.
    Reported = "reported",
    Expired = "expired",
    Cancelled = "cancelled",
    /// The computer refused the request (service not offered, no reason,
    /// …), or the session of an allowed one that its own checks do not
    /// accept (a passkey, the local consent, a reuse): that request ends
    /// cancelled, refused by the computer.
    Refused = "refused",
    /// A limit refused the request before it was made.
    RefusedLimit = "refused_limit",
    /// The operator has no grant for that computer and service.
    RefusedAccess = "refused_access",
    /// Email authorization is off on the computer: no approval needed.
    Admitted = "admitted",
    SessionStarted = "session_started",
    SessionEnded = "session_ended",
    /// A file a copy moved whole: its direction, path on the computer,
    /// size and SHA-256.
    FileCopied = "file_copied",
    /// A shell session's recording ended: its id, size, duration, SHA-256.
    SessionRecorded = "session_recorded",
    /// The oldest recordings were deleted to keep all of them within
    /// `--recordings-max-total-bytes`: which, whose, how large.
    RecordingsPruned = "recordings_pruned",
    OperatorAdded = "operator_added",
    OperatorReplaced = "operator_replaced",
    OperatorRemoved = "operator_removed",
    OperatorEmailSet = "operator_email_set",
    AgentAdded = "agent_added",
    AgentReplaced = "agent_replaced",
    AgentRemoved = "agent_removed",
    AccessGranted = "access_granted",
    AccessRevoked = "access_revoked",
    /// An administrator lifted an "I did not expect this" block.
    BlockLifted = "block_lifted",
    /// Wrong operator tokens or agent keys from one address, counted per
    /// minute.
    AuthFailed = "auth_failed",
    /// An administrator pruned the audit trail (or the server did, past
    /// its retention).
    AuditPruned = "audit_pruned",
    /// A computer had a passkey enrolment link emailed to one of its
    /// recipients (`doorman settings approvers enroll`).
    EnrolmentStarted = "enrolment_started",
    /// A computer's enrolment was refused: not one of the recipients its
    /// agent announced, or over the enrolment limits.
    EnrolmentRefused = "enrolment_refused",
    /// `doorman admin agent invite`: a computer may join under this name
    /// with the invitation's code until it expires.
    InvitationCreated = "invitation_created",
    /// A computer joined with its invitation (`doorman agent join`) and was
    /// added with a key of its own.
    InvitationRedeemed = "invitation_redeemed",
    /// An invitation code was refused: unknown, used already, expired, or
    /// its name taken since.
    InvitationRefused = "invitation_refused",
}

impl AuditKind {
    /// Whether repeats of this event (same kind, actor, computer and
    /// address within one minute) are kept as one row with a count, so a
    /// flood of refusals cannot grow the trail without bound.
    pub fn collapses(self) -> bool {
        matches!(
            self,
            AuditKind::RefusedLimit
                | AuditKind::RefusedAccess
                | AuditKind::AuthFailed
                | AuditKind::EnrolmentRefused
                | AuditKind::InvitationRefused
        )
    }
}

impl fmt::Display for AuditKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Compares with a stored name (`kind == "allowed"`).
impl PartialEq<&str> for AuditKind {
    fn eq(&self, name: &&str) -> bool {
        self.as_str() == *name
    }
}

impl FromStr for AuditKind {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        AuditKind::ALL
            .iter()
            .copied()
            .find(|kind| kind.as_str() == s)
            .ok_or_else(|| format!("unknown audit event kind {s:?}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_round_trip_through_their_names_and_json() {
        for kind in AuditKind::ALL {
            assert_eq!(kind.as_str().parse::<AuditKind>(), Ok(*kind));
            assert_eq!(
                serde_json::to_string(kind).unwrap(),
                format!("\"{}\"", kind.as_str())
            );
        }
        assert!("Allowed".parse::<AuditKind>().is_err());
    }
}
