//! The request state machine's tests: examples of each rule, and a
//! property test against the rules written the other way round.
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
    let done =
        settled(PendingRequest::new(0, 180, 1).apply(decide(Decision::Report, "a@x.example", 5)));
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

#[test]
fn a_reused_approval_still_waits_for_a_required_local_allow() {
    let reuse = |at| Event::Reuse {
        request_id: "r0".into(),
        by: "it@example.com".into(),
        at,
    };
    let required = PendingRequest::new(0, 60, 2).with_local_consent(LocalConsent::Required);
    // The reuse stands in for the recipients only.
    let waiting = pending(required.clone().apply(reuse(1)));
    assert_eq!(waiting.approvals_missing(), 0);
    assert!(waiting.local_approval_missing());
    assert!(matches!(
        waiting.clone().apply(reuse(2)),
        Step::Unchanged(_, Unchanged::AlreadyApproved)
    ));
    assert!(matches!(
        waiting.clone().apply(allow("owner@example.com", 2)),
        Step::Unchanged(_, Unchanged::AlreadyApproved)
    ));
    let done = settled(waiting.clone().apply(local(Decision::Allow, 3)));
    assert_eq!(
        done.outcome(),
        &Outcome::Allowed {
            by: "it@example.com, jane (at office-pc)".into(),
            at: 3,
            reused_from: Some("r0".into()),
        }
    );
    // A local Deny still vetoes; a late local Allow expires.
    let denied = settled(waiting.clone().apply(local(Decision::Deny, 3)));
    assert_eq!(denied.outcome().state(), RequestState::Denied);
    let late = settled(waiting.apply(local(Decision::Allow, 60_000)));
    assert_eq!(late.outcome(), &Outcome::Expired { at: 60_000 });
    // The person at the computer first: the reuse then settles it.
    let allowed_here = pending(required.apply(local(Decision::Allow, 1)));
    let done = settled(allowed_here.apply(reuse(2)));
    assert_eq!(
        done.outcome().decided_by(),
        Some("it@example.com, jane (at office-pc)")
    );
}

#[test]
fn only_an_allowed_request_can_be_refused_by_the_computer() {
    let allowed = settled(PendingRequest::new(0, 60, 1).apply(allow("it@example.com", 1)));
    let refused = allowed
        .refused_by_computer("the signature counter went back".into(), 2)
        .expect("an allowed request is refused");
    let cause = CancelCause::RefusedByComputer {
        reason: "the signature counter went back".into(),
    };
    assert_eq!(
        refused.outcome(),
        &Outcome::Cancelled {
            at: 2,
            cause: cause.clone()
        }
    );
    assert_eq!(
        cause.describe(),
        "refused by the computer: the signature counter went back"
    );
    // Refused already, denied or expired: nothing changes.
    let again = refused.refused_by_computer("again".into(), 3).unwrap_err();
    assert_eq!(again.outcome().state(), RequestState::Cancelled);
    let denied =
        settled(PendingRequest::new(0, 60, 1).apply(decide(Decision::Deny, "it@example.com", 1)));
    assert!(denied.refused_by_computer("x".into(), 2).is_err());
    let expired = settled(PendingRequest::new(0, 5, 1).apply(Event::Expire { at: 5_000 }));
    assert!(expired.refused_by_computer("x".into(), 6_000).is_err());
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
    let alternative = PendingRequest::new(0, 60, 2).with_local_consent(LocalConsent::Alternative);
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
    // An earlier approval reused while the local Allow is still needed.
    let mut reused: Option<(&str, &str)> = None;
    let allowed = |approvers: &[&str],
                   reused: Option<(&str, &str)>,
                   local_allow: Option<&str>,
                   at: Millis| {
        let quorum = reused.is_some() || approvers.len() == required as usize;
        let local_ok = local != LocalConsent::Required || local_allow.is_some();
        let recipients: Vec<&str> = match reused {
            Some((_, by)) => vec![by],
            None => approvers.to_vec(),
        };
        (quorum && local_ok).then(|| Outcome::Allowed {
            by: recipients
                .into_iter()
                .chain(local_allow)
                .collect::<Vec<_>>()
                .join(", "),
            at,
            reused_from: reused.map(|(id, _)| id.to_string()),
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
                    if let Some(outcome) = allowed(&approvers, reused, local_allow, *at) {
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
            // A reuse stands in for the recipients, never for the person at
            // the computer.
            Event::Reuse { request_id, by, at } => {
                if reused.is_none() {
                    reused = Some((request_id.as_str(), by.as_str()));
                    if let Some(outcome) = allowed(&approvers, reused, local_allow, *at) {
                        return Some(outcome);
                    }
                }
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
                if reused.is_none()
                    && !approvers.contains(&by.as_str())
                    && approvers.len() < required as usize
                {
                    approvers.push(by);
                    if let Some(outcome) = allowed(&approvers, reused, local_allow, *at) {
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
