//! The life of one authorization request: the one place its rules live.
//!
//! `pending → allowed | denied | expired | cancelled`, and a settled request
//! never changes again, with one exception that only the computer can make:
//! an `allowed` request whose session the computer refuses (its passkey
//! check, its local consent, its reuse window) ends `cancelled`, refused by
//! the computer ([`SettledRequest::refused_by_computer`]). A
//! [`PendingRequest`] counts distinct approvals until its policy's
//! `required_approvals` is reached; one Deny vetoes. An earlier approval
//! reused (`approval_valid_for`) stands in for the recipients' approvals,
//! never for the person at the computer: with `local_consent = "required"`
//! the reuse still waits for the local Allow. The types carry the rules:
//! only a pending request can take an [`Event`], applying one consumes it,
//! and a [`SettledRequest`] has no method that changes it but the
//! computer's refusal of an Allow, which consumes it.
//!
//! This is the code that runs: every part of the server that settles a
//! request (a recipient's click, the expiry timer, the operator's Ctrl-C, an
//! offline computer, undeliverable emails, a revocation) loads the pending
//! request, applies its event here, and has the store persist the [`Step`]
//! with one conditional write that fails if anything changed meanwhile.

mod outcome;

pub use outcome::{CancelCause, Decision, Outcome, RequestState, Revoked, UnknownDecision};
use serde::{Deserialize, Serialize};
use std::str::FromStr;

/// Milliseconds since the Unix epoch. The caller supplies the clock.
pub type Millis = i64;

/// Whole seconds left until `expires_at` at `now`, rounded up so that the
/// last second shows as 1, not 0; 0 once it has passed. Every countdown
/// (the operator's, the approval page's) is this number.
pub fn seconds_left(expires_at: Millis, now: Millis) -> u64 {
    let left = expires_at.saturating_sub(now);
    u64::try_from(left).unwrap_or(0).div_ceil(1000)
}

/// Something that may change a pending request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// A recipient clicked Allow Session, Deny or "I did not expect this".
    Decide {
        decision: Decision,
        by: String,
        at: Millis,
    },
    /// The expiry timer fired.
    Expire { at: Millis },
    /// The request can no longer lead to a session, for `cause`.
    Cancel { cause: CancelCause, at: Millis },
    /// A person at the computer answered (`doorman consent`); `by` names
    /// them, e.g. `jane (at office-pc)`.
    LocalDecide {
        decision: Decision,
        by: String,
        at: Millis,
    },
    /// An earlier allowed request of the same operator, for the same
    /// service, still inside the computer's `approval_valid_for` window,
    /// lets this one in without new approvals.
    Reuse {
        request_id: String,
        by: String,
        at: Millis,
    },
}

impl Event {
    /// When it happened.
    pub fn at(&self) -> Millis {
        match self {
            Event::Decide { at, .. }
            | Event::LocalDecide { at, .. }
            | Event::Expire { at }
            | Event::Cancel { at, .. }
            | Event::Reuse { at, .. } => *at,
        }
    }
}

/// Whether a person at the computer answers too (`local_consent`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LocalConsent {
    /// Only the recipients decide.
    #[default]
    Off,
    /// A local answer settles the request like a recipient's.
    Alternative,
    /// A session needs the local Allow as well as the recipients' approvals.
    Required,
}

impl LocalConsent {
    pub fn as_str(self) -> &'static str {
        match self {
            LocalConsent::Off => "off",
            LocalConsent::Alternative => "alternative",
            LocalConsent::Required => "required",
        }
    }
}

impl FromStr for LocalConsent {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        [
            LocalConsent::Off,
            LocalConsent::Alternative,
            LocalConsent::Required,
        ]
        .into_iter()
        .find(|mode| mode.as_str() == s)
        .ok_or_else(|| {
            format!("unknown local consent {s:?}: expected off, alternative or required")
        })
    }
}

/// One recipient's counted Allow.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Approval {
    pub by: String,
    pub at: Millis,
}

/// An earlier allowed request whose approval stands in for the
/// recipients' (`approval_valid_for`), and who gave it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reused {
    pub request_id: String,
    pub by: String,
}

/// A request that nobody has settled yet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PendingRequest {
    pub created_at: Millis,
    pub expires_at: Millis,
    /// Distinct Allows that settle it (at least 1).
    pub required_approvals: u32,
    /// The Allows counted so far, fewer than `required_approvals` (or
    /// all of them, waiting for the local Allow).
    pub approvals: Vec<Approval>,
    pub local_consent: LocalConsent,
    /// The local Allow, once given (`local_consent = "required"`).
    pub local_approval: Option<Approval>,
    /// The earlier approval that stands in for the recipients', once
    /// reused; with `local_consent = "required"` the request still waits
    /// for the local Allow.
    pub reused: Option<Reused>,
}

/// Why an event changed nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unchanged {
    /// This recipient's Allow was counted already.
    AlreadyApproved,
    /// A local answer on a computer that does not take them.
    LocalConsentOff,
    /// An expiry timer fired before the expiry instant (clock skew between
    /// replicas, a timer a hair early): the request keeps its full time.
    NotYetExpired,
}

/// What applying an event to a pending request did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// One more distinct Allow counted; more are needed.
    Approved(PendingRequest),
    /// Nothing changed.
    Unchanged(PendingRequest, Unchanged),
    /// The request is settled for good.
    Settled(SettledRequest),
}

impl PendingRequest {
    /// Starts a request that expires `timeout_secs` after `now` and needs
    /// `required_approvals` distinct Allows (0 counts as 1).
    pub fn new(now: Millis, timeout_secs: u32, required_approvals: u32) -> Self {
        Self {
            created_at: now,
            expires_at: now + i64::from(timeout_secs) * 1000,
            required_approvals: required_approvals.max(1),
            approvals: Vec::new(),
            local_consent: LocalConsent::Off,
            local_approval: None,
            reused: None,
        }
    }

    /// The same request, with a person at the computer answering too.
    pub fn with_local_consent(mut self, local_consent: LocalConsent) -> Self {
        self.local_consent = local_consent;
        self
    }

    /// Seconds left at `now`; see [`seconds_left`].
    pub fn seconds_left(&self, now: Millis) -> u64 {
        seconds_left(self.expires_at, now)
    }

    /// Recipients' Allows still needed (none once an earlier approval is
    /// reused).
    pub fn approvals_missing(&self) -> u32 {
        if self.reused.is_some() {
            return 0;
        }
        let have = u32::try_from(self.approvals.len()).unwrap_or(u32::MAX);
        self.required_approvals.saturating_sub(have)
    }

    /// Whether the local Allow is still needed.
    pub fn local_approval_missing(&self) -> bool {
        self.local_consent == LocalConsent::Required && self.local_approval.is_none()
    }

    /// Settles as allowed if nothing is missing any more, else counts the
    /// step as an approval. `by` names the approvers (the reused
    /// approval's, or the recipients who allowed), then the person at the
    /// computer.
    fn allow_if_complete(self, at: Millis) -> Step {
        if self.approvals_missing() > 0 || self.local_approval_missing() {
            return Step::Approved(self);
        }
        let recipients: Vec<&str> = match &self.reused {
            Some(reused) => vec![reused.by.as_str()],
            None => self.approvals.iter().map(|a| a.by.as_str()).collect(),
        };
        let by = recipients
            .into_iter()
            .chain(self.local_approval.iter().map(|a| a.by.as_str()))
            .collect::<Vec<_>>()
            .join(", ");
        let allowed = Outcome::Allowed {
            by,
            at,
            reused_from: self.reused.as_ref().map(|r| r.request_id.clone()),
        };
        Step::Settled(SettledRequest::new(self, allowed, false))
    }

    /// Applies an event. Whatever happens at or after the expiry instant is
    /// an expiry: a late click can never allow, deny or cancel.
    pub fn apply(mut self, event: Event) -> Step {
        let expired = |request: PendingRequest| {
            let at = request.expires_at;
            Step::Settled(SettledRequest::new(request, Outcome::Expired { at }, false))
        };
        match event {
            Event::Expire { at } if at < self.expires_at => {
                Step::Unchanged(self, Unchanged::NotYetExpired)
            }
            Event::Expire { .. } => expired(self),
            Event::Decide { at, .. }
            | Event::LocalDecide { at, .. }
            | Event::Cancel { at, .. }
            | Event::Reuse { at, .. }
                if at >= self.expires_at =>
            {
                expired(self)
            }
            Event::LocalDecide { .. } if self.local_consent == LocalConsent::Off => {
                Step::Unchanged(self, Unchanged::LocalConsentOff)
            }
            Event::LocalDecide {
                decision: decision @ (Decision::Deny | Decision::Report),
                by,
                at,
            } => {
                let reported = decision == Decision::Report;
                Step::Settled(SettledRequest::new(
                    self,
                    Outcome::Denied { by, at },
                    reported,
                ))
            }
            Event::LocalDecide {
                decision: Decision::Allow,
                by,
                at,
            } => {
                if self.local_consent == LocalConsent::Alternative {
                    let allowed = Outcome::Allowed {
                        by,
                        at,
                        reused_from: None,
                    };
                    return Step::Settled(SettledRequest::new(self, allowed, false));
                }
                if self.local_approval.is_some() {
                    return Step::Unchanged(self, Unchanged::AlreadyApproved);
                }
                self.local_approval = Some(Approval { by, at });
                self.allow_if_complete(at)
            }
            // The reused approval stands in for the recipients' only: a
            // required local Allow is still needed.
            Event::Reuse { .. } if self.reused.is_some() => {
                Step::Unchanged(self, Unchanged::AlreadyApproved)
            }
            Event::Reuse { request_id, by, at } => {
                self.reused = Some(Reused { request_id, by });
                self.allow_if_complete(at)
            }
            Event::Cancel { cause, at } => Step::Settled(SettledRequest::new(
                self,
                Outcome::Cancelled { at, cause },
                false,
            )),
            Event::Decide {
                decision: decision @ (Decision::Deny | Decision::Report),
                by,
                at,
            } => {
                let reported = decision == Decision::Report;
                Step::Settled(SettledRequest::new(
                    self,
                    Outcome::Denied { by, at },
                    reported,
                ))
            }
            Event::Decide {
                decision: Decision::Allow,
                by,
                at,
            } => {
                if self.approvals.iter().any(|a| a.by == by) || self.approvals_missing() == 0 {
                    return Step::Unchanged(self, Unchanged::AlreadyApproved);
                }
                self.approvals.push(Approval { by, at });
                self.allow_if_complete(at)
            }
        }
    }
}

/// A request with its final outcome. Nothing can change it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SettledRequest {
    request: PendingRequest,
    outcome: Outcome,
    reported: bool,
}

impl SettledRequest {
    fn new(request: PendingRequest, outcome: Outcome, reported: bool) -> Self {
        Self {
            request,
            outcome,
            reported,
        }
    }

    /// A request read back from storage in its settled state.
    pub fn stored(request: PendingRequest, outcome: Outcome) -> Self {
        Self::new(request, outcome, false)
    }

    pub fn outcome(&self) -> &Outcome {
        &self.outcome
    }

    /// The request as it was when it settled, with every counted Allow.
    pub fn request(&self) -> &PendingRequest {
        &self.request
    }

    /// Denied through "I did not expect this": the operator is to be
    /// blocked from the computer, in the same write that settles it.
    pub fn reported(&self) -> bool {
        self.reported
    }

    /// The computer refused the session this allowed request would start
    /// (an approval its own checks do not accept: a passkey that does not
    /// verify there, a missing local Allow, a reuse it does not hold): the
    /// request ends cancelled, refused by the computer, for `reason`. The
    /// computer enforces its own settings, so its word on its own sessions
    /// is the last. Anything but an allowed request is given back
    /// unchanged.
    pub fn refused_by_computer(self, reason: String, at: Millis) -> Result<Self, Box<Self>> {
        if !matches!(self.outcome, Outcome::Allowed { .. }) {
            return Err(Box::new(self));
        }
        let refused = Outcome::Cancelled {
            at,
            cause: CancelCause::RefusedByComputer { reason },
        };
        Ok(Self::new(self.request, refused, false))
    }
}

/// Either side of a request's life, for code that holds one of unknown state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Request {
    Pending(PendingRequest),
    Settled(SettledRequest),
}

impl Request {
    pub fn state(&self) -> RequestState {
        match self {
            Request::Pending(_) => RequestState::Pending,
            Request::Settled(settled) => settled.outcome.state(),
        }
    }

    pub fn outcome(&self) -> Option<&Outcome> {
        match self {
            Request::Pending(_) => None,
            Request::Settled(settled) => Some(settled.outcome()),
        }
    }
}

#[cfg(test)]
mod tests;
