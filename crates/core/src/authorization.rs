//! The life of one authorization request.
//!
//! `pending → allowed | denied | expired | cancelled`, and a settled request
//! never changes again. The types carry that rule: only a [`PendingRequest`]
//! can be settled, settling consumes it, and a [`SettledRequest`] has no method
//! that changes it. The server's database applies the same rule with one
//! conditional update (see `doorman-server`'s store); this module is the
//! specification both follow, and its tests are the proof.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// Milliseconds since the Unix epoch. The caller supplies the clock.
pub type Millis = i64;

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

/// A decision value other than `allow` or `deny`.
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

/// How a request ended, with what the approval page and the operator are told.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "lowercase")]
pub enum Outcome {
    Allowed { by: String, at: Millis },
    Denied { by: String, at: Millis },
    Expired { at: Millis },
    Cancelled { at: Millis },
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
            | Outcome::Cancelled { at } => *at,
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

/// Something that may settle a pending request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// A recipient clicked Allow Session or Deny.
    Decide {
        decision: Decision,
        by: String,
        at: Millis,
    },
    /// The expiry timer fired.
    Expire { at: Millis },
    /// The operator gave up.
    Cancel { at: Millis },
}

/// A request that nobody has settled yet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PendingRequest {
    pub created_at: Millis,
    pub expires_at: Millis,
}

impl PendingRequest {
    /// Starts a request that expires `timeout_secs` after `now`.
    pub fn new(now: Millis, timeout_secs: u32) -> Self {
        Self {
            created_at: now,
            expires_at: now + i64::from(timeout_secs) * 1000,
        }
    }

    /// Seconds left at `now`, rounded up so the last second shows as 1, not 0.
    pub fn seconds_left(&self, now: Millis) -> u64 {
        let left = (self.expires_at - now).max(0);
        u64::try_from((left + 999) / 1000).unwrap_or(0)
    }

    /// Settles the request. Whatever happens at or after the expiry instant
    /// is an expiry: a late click can never allow.
    pub fn settle(self, event: Event) -> SettledRequest {
        let outcome = match event {
            Event::Decide { at, .. } | Event::Cancel { at } if at >= self.expires_at => {
                Outcome::Expired {
                    at: self.expires_at,
                }
            }
            Event::Expire { at } if at < self.expires_at => {
                // A timer that fires early (clock skew between replicas) must
                // not cut the request short; it is treated as the expiry instant.
                Outcome::Expired {
                    at: self.expires_at,
                }
            }
            Event::Decide {
                decision: Decision::Allow,
                by,
                at,
            } => Outcome::Allowed { by, at },
            Event::Decide {
                decision: Decision::Deny | Decision::Report,
                by,
                at,
            } => Outcome::Denied { by, at },
            Event::Expire { .. } => Outcome::Expired {
                at: self.expires_at,
            },
            Event::Cancel { at } => Outcome::Cancelled { at },
        };
        SettledRequest {
            request: self,
            outcome,
        }
    }
}

/// A request with its final outcome. Nothing can change it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SettledRequest {
    request: PendingRequest,
    outcome: Outcome,
}

impl SettledRequest {
    pub fn outcome(&self) -> &Outcome {
        &self.outcome
    }

    pub fn created_at(&self) -> Millis {
        self.request.created_at
    }
}

/// Either side of a request's life, for code that holds one of unknown state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Request {
    Pending(PendingRequest),
    Settled(SettledRequest),
}

impl Request {
    /// Applies an event: a pending request settles; a settled one ignores it
    /// and says so.
    pub fn apply(self, event: Event) -> (Request, Applied) {
        match self {
            Request::Pending(pending) => {
                (Request::Settled(pending.settle(event)), Applied::Settled)
            }
            settled @ Request::Settled(_) => (settled, Applied::AlreadySettled),
        }
    }

    pub fn state(&self) -> RequestState {
        match self {
            Request::Pending(_) => RequestState::Pending,
            Request::Settled(settled) => settled.outcome.state(),
        }
    }
}

/// Whether [`Request::apply`] changed anything.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Applied {
    Settled,
    AlreadySettled,
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn allow(by: &str, at: Millis) -> Event {
        Event::Decide {
            decision: Decision::Allow,
            by: by.into(),
            at,
        }
    }

    #[test]
    fn first_decision_wins_and_later_ones_change_nothing() {
        let request = Request::Pending(PendingRequest::new(0, 180));
        let (request, applied) = request.apply(allow("it@example.com", 1_000));
        assert_eq!(applied, Applied::Settled);
        let (request, applied) = request.apply(Event::Decide {
            decision: Decision::Deny,
            by: "owner@example.com".into(),
            at: 1_001,
        });
        assert_eq!(applied, Applied::AlreadySettled);
        let Request::Settled(settled) = request else {
            panic!("still pending")
        };
        assert_eq!(
            settled.outcome(),
            &Outcome::Allowed {
                by: "it@example.com".into(),
                at: 1_000
            }
        );
    }

    #[test]
    fn click_at_or_after_expiry_expires_instead_of_allowing() {
        let pending = PendingRequest::new(0, 5);
        let settled = pending.clone().settle(allow("it@example.com", 5_000));
        assert_eq!(settled.outcome(), &Outcome::Expired { at: 5_000 });
        let settled = pending.settle(allow("it@example.com", 4_999));
        assert_eq!(settled.outcome().state(), RequestState::Allowed);
    }

    #[test]
    fn early_timer_does_not_shorten_the_request() {
        let settled = PendingRequest::new(0, 5).settle(Event::Expire { at: 10 });
        assert_eq!(settled.outcome(), &Outcome::Expired { at: 5_000 });
    }

    #[test]
    fn seconds_left_rounds_up_and_stops_at_zero() {
        let pending = PendingRequest::new(0, 180);
        assert_eq!(pending.seconds_left(0), 180);
        assert_eq!(pending.seconds_left(179_001), 1);
        assert_eq!(pending.seconds_left(180_000), 0);
        assert_eq!(pending.seconds_left(999_999), 0);
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

    fn event() -> impl Strategy<Value = Event> {
        let at = 0i64..20_000;
        prop_oneof![
            (any::<bool>(), 0u8..3, at.clone()).prop_map(|(allow, who, at)| Event::Decide {
                decision: if allow {
                    Decision::Allow
                } else {
                    Decision::Deny
                },
                by: format!("r{who}@example.com"),
                at,
            }),
            at.clone().prop_map(|at| Event::Expire { at }),
            at.prop_map(|at| Event::Cancel { at }),
        ]
    }

    proptest! {
        /// Any interleaving of decisions, expiry and cancellation yields exactly
        /// one terminal state, fixed by the first event, and never changes after.
        #[test]
        fn any_interleaving_settles_once(events in proptest::collection::vec(event(), 1..12)) {
            let pending = PendingRequest::new(0, 10);
            let expected = pending.clone().settle(events[0].clone()).outcome().clone();
            let mut request = Request::Pending(pending);
            let mut settled_count = 0;
            for event in events {
                let (next, applied) = request.apply(event);
                request = next;
                if applied == Applied::Settled {
                    settled_count += 1;
                }
                prop_assert!(request.state().is_settled());
            }
            prop_assert_eq!(settled_count, 1);
            let Request::Settled(settled) = request else { unreachable!() };
            prop_assert_eq!(settled.outcome(), &expected);
            // Nothing after the expiry instant is ever an allow or deny.
            if let Some(_by) = expected.decided_by() {
                prop_assert!(expected.at() < 10_000);
            }
        }
    }
}
