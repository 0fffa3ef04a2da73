//! The life of one authorization request: the one place its rules live.
//!
//! `pending → allowed | denied | expired | cancelled`, and a settled request
//! never changes again. A [`PendingRequest`] counts distinct approvals until
//! its policy's `required_approvals` is reached; one Deny vetoes. The types
//! carry the rules: only a pending request can take an [`Event`], applying
//! one consumes it, and a [`SettledRequest`] has no method that changes it.
//!
//! This is the code that runs: every part of the server that settles a
//! request (a recipient's click, the expiry timer, the operator's Ctrl-C, an
//! offline computer, undeliverable emails, a revocation) loads the pending
//! request, applies its event here, and has the store persist the [`Step`]
//! with one conditional write that fails if anything changed meanwhile.

use serde::{Deserialize, Serialize};
use std::fmt;
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

    /// Recipients' Allows still needed.
    pub fn approvals_missing(&self) -> u32 {
        let have = u32::try_from(self.approvals.len()).unwrap_or(u32::MAX);
        self.required_approvals.saturating_sub(have)
    }

    /// Whether the local Allow is still needed.
    pub fn local_approval_missing(&self) -> bool {
        self.local_consent == LocalConsent::Required && self.local_approval.is_none()
    }

    /// Settles as allowed if nothing is missing any more, else counts the
    /// step as an approval.
    fn allow_if_complete(self, at: Millis) -> Step {
        if self.approvals_missing() > 0 || self.local_approval_missing() {
            return Step::Approved(self);
        }
        let by = self
            .approvals
            .iter()
            .chain(&self.local_approval)
            .map(|a| a.by.as_str())
            .collect::<Vec<_>>()
            .join(", ");
        let allowed = Outcome::Allowed {
            by,
            at,
            reused_from: None,
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
            Event::Reuse { request_id, by, at } => Step::Settled(SettledRequest::new(
                self,
                Outcome::Allowed {
                    by,
                    at,
                    reused_from: Some(request_id),
                },
                false,
            )),
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
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn decide(decision: Decision, by: &str, at: Millis) -> Event {
        Event::Decide {
            decision,
            by: by.into(),
            at,
        }
    }

    fn allow(by: &str, at: Millis) -> Event {
        decide(Decision::Allow, by, at)
    }

    fn settled(step: Step) -> SettledRequest {
        match step {
            Step::Settled(settled) => settled,
            other => panic!("not settled: {other:?}"),
        }
    }

    fn pending(step: Step) -> PendingRequest {
        match step {
            Step::Approved(pending) | Step::Unchanged(pending, _) => pending,
            other => panic!("settled: {other:?}"),
        }
    }

    #[test]
    fn one_approval_settles_by_default() {
        let done = settled(PendingRequest::new(0, 180, 1).apply(allow("it@example.com", 1_000)));
        assert_eq!(
            done.outcome(),
            &Outcome::Allowed {
                by: "it@example.com".into(),
                at: 1_000,
                reused_from: None,
            }
        );
    }

    #[test]
    fn quorum_needs_distinct_recipients_and_a_repeat_click_counts_once() {
        let request = PendingRequest::new(0, 180, 2);
        let step = request.apply(allow("a@example.com", 1_000));
        assert!(matches!(step, Step::Approved(_)));
        let step = pending(step).apply(allow("a@example.com", 1_500));
        assert!(matches!(
            step,
            Step::Unchanged(_, Unchanged::AlreadyApproved)
        ));
        let request = pending(step);
        assert_eq!(request.approvals_missing(), 1);
        let done = settled(request.apply(allow("b@example.com", 2_000)));
        assert_eq!(
            done.outcome(),
            &Outcome::Allowed {
                by: "a@example.com, b@example.com".into(),
                at: 2_000,
                reused_from: None,
            }
        );
        assert_eq!(done.request().approvals.len(), 2);
    }

    #[test]
    fn one_deny_vetoes_after_approvals() {
        let request = pending(PendingRequest::new(0, 180, 3).apply(allow("a@x.example", 10)));
        let request = pending(request.apply(allow("b@x.example", 20)));
        let done = settled(request.apply(decide(Decision::Deny, "c@x.example", 30)));
        assert_eq!(
            done.outcome(),
            &Outcome::Denied {
                by: "c@x.example".into(),
                at: 30
            }
        );
        assert!(!done.reported());
    }

    #[test]
    fn a_report_denies_and_asks_for_a_block() {
        let done = settled(PendingRequest::new(0, 180, 1).apply(decide(
            Decision::Report,
            "a@x.example",
            5,
        )));
        assert_eq!(done.outcome().state(), RequestState::Denied);
        assert!(done.reported());
    }

    #[test]
    fn click_at_or_after_expiry_expires_instead_of_allowing() {
        let request = PendingRequest::new(0, 5, 1);
        let done = settled(request.clone().apply(allow("it@example.com", 5_000)));
        assert_eq!(done.outcome(), &Outcome::Expired { at: 5_000 });
        let done = settled(request.apply(allow("it@example.com", 4_999)));
        assert_eq!(done.outcome().state(), RequestState::Allowed);
    }

    #[test]
    fn early_timer_does_not_shorten_the_request() {
        let step = PendingRequest::new(0, 5, 1).apply(Event::Expire { at: 10 });
        assert!(matches!(step, Step::Unchanged(_, Unchanged::NotYetExpired)));
        let done = settled(pending(step).apply(Event::Expire { at: 5_000 }));
        assert_eq!(done.outcome(), &Outcome::Expired { at: 5_000 });
    }

    #[test]
    fn cancel_between_approvals_keeps_its_cause() {
        let request = pending(PendingRequest::new(0, 60, 2).apply(allow("a@x.example", 1)));
        let cause = CancelCause::Undeliverable {
            error: "550 no such user".into(),
        };
        let done = settled(request.apply(Event::Cancel {
            cause: cause.clone(),
            at: 2,
        }));
        assert_eq!(done.outcome(), &Outcome::Cancelled { at: 2, cause });
    }

    #[test]
    fn a_reused_approval_allows_at_once_but_never_after_expiry() {
        let reuse = |at| Event::Reuse {
            request_id: "r0".into(),
            by: "it@example.com".into(),
            at,
        };
        let done = settled(PendingRequest::new(0, 10, 2).apply(reuse(5)));
        assert_eq!(
            done.outcome(),
            &Outcome::Allowed {
                by: "it@example.com".into(),
                at: 5,
                reused_from: Some("r0".into())
            }
        );
        let late = settled(PendingRequest::new(0, 10, 1).apply(reuse(10_000)));
        assert_eq!(late.outcome(), &Outcome::Expired { at: 10_000 });
    }

    fn local(decision: Decision, at: Millis) -> Event {
        Event::LocalDecide {
            decision,
            by: "jane (at office-pc)".into(),
            at,
        }
    }

    #[test]
    fn a_local_answer_counts_only_where_the_computer_takes_one() {
        let off = PendingRequest::new(0, 60, 1);
        assert!(matches!(
            off.apply(local(Decision::Allow, 1)),
            Step::Unchanged(_, Unchanged::LocalConsentOff)
        ));
        let alternative =
            PendingRequest::new(0, 60, 2).with_local_consent(LocalConsent::Alternative);
        let done = settled(alternative.apply(local(Decision::Allow, 1)));
        assert_eq!(done.outcome().decided_by(), Some("jane (at office-pc)"));
    }

    #[test]
    fn a_required_local_allow_comes_on_top_of_the_approvals_in_any_order() {
        let required = PendingRequest::new(0, 60, 1).with_local_consent(LocalConsent::Required);
        // Recipients first: still pending until the person at the computer allows.
        let waiting = pending(required.clone().apply(allow("it@example.com", 1)));
        assert!(waiting.local_approval_missing());
        assert!(matches!(
            waiting.clone().apply(allow("owner@example.com", 2)),
            Step::Unchanged(_, Unchanged::AlreadyApproved)
        ));
        let done = settled(waiting.apply(local(Decision::Allow, 3)));
        assert_eq!(
            done.outcome().decided_by(),
            Some("it@example.com, jane (at office-pc)")
        );
        // The person at the computer first.
        let waiting = pending(required.clone().apply(local(Decision::Allow, 1)));
        let done = settled(waiting.apply(allow("it@example.com", 2)));
        assert_eq!(done.outcome().state(), RequestState::Allowed);
        // A local Deny vetoes.
        let done = settled(required.apply(local(Decision::Deny, 1)));
        assert_eq!(done.outcome().state(), RequestState::Denied);
    }

    #[test]
    fn seconds_left_rounds_up_and_stops_at_zero() {
        let pending = PendingRequest::new(0, 180, 1);
        assert_eq!(pending.seconds_left(0), 180);
        assert_eq!(pending.seconds_left(179_001), 1);
        assert_eq!(pending.seconds_left(180_000), 0);
        assert_eq!(pending.seconds_left(999_999), 0);
        assert_eq!(
            seconds_left(i64::MAX, i64::MIN),
            u64::try_from(i64::MAX / 1000 + 1).unwrap()
        );
        assert_eq!(seconds_left(0, 1), 0);
    }

    #[test]
    fn states_round_trip_through_their_names() {
        for state in RequestState::ALL {
            assert_eq!(state.as_str().parse::<RequestState>(), Ok(state));
        }
        assert!("settled".parse::<RequestState>().is_err());
        assert_eq!("allow".parse::<Decision>(), Ok(Decision::Allow));
        assert_eq!("Allow".parse::<Decision>(), Err(UnknownDecision));
    }

    #[test]
    fn outcomes_keep_their_wire_form_and_cause() {
        let json = serde_json::to_string(&Outcome::Cancelled {
            at: 7,
            cause: CancelCause::Undeliverable { error: "x".into() },
        })
        .unwrap();
        assert_eq!(
            json,
            r#"{"state":"cancelled","at":7,"cause":{"kind":"undeliverable","error":"x"}}"#
        );
        // An outcome from a peer that sends no cause is the operator's.
        let old: Outcome = serde_json::from_str(r#"{"state":"cancelled","at":7}"#).unwrap();
        assert_eq!(
            old,
            Outcome::Cancelled {
                at: 7,
                cause: CancelCause::Operator
            }
        );
    }

    const RECIPIENTS: u8 = 3;

    fn event() -> impl Strategy<Value = Event> {
        let at = 0i64..20_000;
        prop_oneof![
            4 => (0u8..3, 0u8..RECIPIENTS, at.clone()).prop_map(|(kind, who, at)| Event::Decide {
                decision: [Decision::Allow, Decision::Deny, Decision::Report][usize::from(kind % 3)],
                by: format!("r{who}@example.com"),
                at,
            }),
            // Mostly Allows, so that quorums are reached.
            4 => (0u8..RECIPIENTS, at.clone()).prop_map(|(who, at)| Event::Decide {
                decision: Decision::Allow,
                by: format!("r{who}@example.com"),
                at,
            }),
            1 => at.clone().prop_map(|at| Event::Expire { at }),
            1 => at.clone().prop_map(|at| Event::Cancel { cause: CancelCause::Operator, at }),
            2 => (any::<bool>(), at.clone()).prop_map(|(allow, at)| Event::LocalDecide {
                decision: if allow { Decision::Allow } else { Decision::Deny },
                by: "local".into(),
                at,
            }),
            1 => at.prop_map(|at| Event::Reuse { request_id: "r0".into(), by: "r0@example.com".into(), at }),
        ]
    }

    /// The rules, written the other way round: from the whole history of
    /// events, what the outcome must be.
    fn expected_outcome(required: u32, local: LocalConsent, events: &[Event]) -> Option<Outcome> {
        let expires_at = 10_000;
        let mut approvers: Vec<&str> = Vec::new();
        let mut local_allow: Option<&str> = None;
        let allowed = |approvers: &[&str], local_allow: Option<&str>, at: Millis| {
            let quorum = approvers.len() == required as usize;
            let local_ok = local != LocalConsent::Required || local_allow.is_some();
            (quorum && local_ok).then(|| Outcome::Allowed {
                by: approvers
                    .iter()
                    .copied()
                    .chain(local_allow)
                    .collect::<Vec<_>>()
                    .join(", "),
                at,
                reused_from: None,
            })
        };
        for event in events {
            match event {
                Event::LocalDecide { at, .. } if *at >= expires_at => {
                    return Some(Outcome::Expired { at: expires_at });
                }
                Event::LocalDecide { .. } if local == LocalConsent::Off => {}
                Event::LocalDecide {
                    decision: Decision::Allow,
                    by,
                    at,
                } => {
                    if local == LocalConsent::Alternative {
                        return Some(Outcome::Allowed {
                            by: by.clone(),
                            at: *at,
                            reused_from: None,
                        });
                    }
                    if local_allow.is_none() {
                        local_allow = Some(by);
                        if let Some(outcome) = allowed(&approvers, local_allow, *at) {
                            return Some(outcome);
                        }
                    }
                }
                Event::LocalDecide { by, at, .. } => {
                    return Some(Outcome::Denied {
                        by: by.clone(),
                        at: *at,
                    });
                }
                Event::Expire { at } if *at < expires_at => {}
                Event::Expire { .. } => return Some(Outcome::Expired { at: expires_at }),
                Event::Decide { at, .. } | Event::Cancel { at, .. } | Event::Reuse { at, .. }
                    if *at >= expires_at =>
                {
                    return Some(Outcome::Expired { at: expires_at });
                }
                Event::Reuse { request_id, by, at } => {
                    return Some(Outcome::Allowed {
                        by: by.clone(),
                        at: *at,
                        reused_from: Some(request_id.clone()),
                    });
                }
                Event::Cancel { cause, at } => {
                    return Some(Outcome::Cancelled {
                        at: *at,
                        cause: cause.clone(),
                    });
                }
                Event::Decide {
                    decision: Decision::Allow,
                    by,
                    at,
                } => {
                    if !approvers.contains(&by.as_str()) && approvers.len() < required as usize {
                        approvers.push(by);
                        if let Some(outcome) = allowed(&approvers, local_allow, *at) {
                            return Some(outcome);
                        }
                    }
                }
                Event::Decide { by, at, .. } => {
                    return Some(Outcome::Denied {
                        by: by.clone(),
                        at: *at,
                    });
                }
            }
        }
        None
    }

    proptest! {
        /// Any interleaving of approvals, vetoes, expiry and cancellation:
        /// the machine settles exactly once, as the rules say, and nothing
        /// after that changes it; an allow always has N distinct approvers
        /// and never comes at or after the expiry instant.
        #[test]
        fn any_interleaving_settles_once_as_the_rules_say(
            required in 1u32..=u32::from(RECIPIENTS),
            local in prop_oneof![
                Just(LocalConsent::Off),
                Just(LocalConsent::Alternative),
                Just(LocalConsent::Required)
            ],
            events in proptest::collection::vec(event(), 1..16),
        ) {
            let start = PendingRequest::new(0, 10, required).with_local_consent(local);
            let mut request = Request::Pending(start);
            let mut settles = 0;
            for event in &events {
                request = match request {
                    Request::Pending(pending) => match pending.apply(event.clone()) {
                        Step::Approved(pending) | Step::Unchanged(pending, _) => {
                            prop_assert!(
                                pending.approvals_missing() > 0 || pending.local_approval_missing()
                            );
                            Request::Pending(pending)
                        }
                        Step::Settled(done) => {
                            settles += 1;
                            Request::Settled(done)
                        }
                    },
                    settled @ Request::Settled(_) => settled,
                };
            }
            let expected = expected_outcome(required, local, &events);
            prop_assert_eq!(request.outcome(), expected.as_ref());
            prop_assert_eq!(settles, usize::from(expected.is_some()));
            if let Request::Settled(done) = &request
                && let Outcome::Allowed { at, .. } = done.outcome()
            {
                prop_assert!(*at < 10_000);
                let local_alone = local == LocalConsent::Alternative
                    && done.outcome().decided_by() == Some("local");
                let reused = matches!(done.outcome(), Outcome::Allowed { reused_from: Some(_), .. });
                if !reused && !local_alone {
                    prop_assert_eq!(done.request().approvals.len(), required as usize);
                }
            }
        }
    }
}
