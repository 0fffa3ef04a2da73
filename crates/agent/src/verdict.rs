//! May this session start? The agent's decision on a request it asked
//! authorization for, once the server says how it ended: one pure function
//! of the offer as this computer answered it, the outcome with its passkey
//! assertions, the answer of the person at the computer, and what the agent
//! remembers. Every requirement the computer had when it answered holds for
//! a reused approval (`approval_valid_for`) as for a fresh one: a required
//! local Allow, and passkeys it verified itself. The control loop acts on
//! the verdict: it starts the session, or tells the server and the owner
//! why not. This module knows nothing of that loop: the dependency runs one
//! way, from the control loop to here.

use crate::memory::{AwaitedOffer, Memory};
use doorman_core::passkey::{Assertion, B64};
use doorman_core::{Decision, LocalConsent, Outcome};
use std::fmt;
use std::time::Instant;

/// What the server said of a request this agent asked about.
pub struct Settled<'a> {
    pub request_id: &'a str,
    pub outcome: &'a Outcome,
    /// The passkey assertions of the approvals that allowed it.
    pub assertions: &'a [Assertion],
    /// What the person at the computer answered, if they did.
    pub local_answer: Option<Decision>,
}

/// The agent's verdict.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// The session starts; the passkey signature counters to remember.
    Start { counters: Vec<(B64, u32)> },
    /// Denied, expired or cancelled: no session, and nothing to refuse.
    NoSession,
    /// Allowed by the server, refused by this computer.
    Refuse(Refusal),
}

/// Why this computer refuses an allowed request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// `local_consent = "required"` and nobody at the computer allowed it.
    NoLocalConsent,
    /// Its passkey approvals do not verify here: why.
    Passkey(String),
    /// A reuse of an approval this computer did not offer, or no longer
    /// holds valid (another operator or service, its window over).
    ReuseNotHeld,
    /// A reuse, while the computer requires passkeys, of an approval whose
    /// passkeys it did not verify.
    ReuseWithoutPasskey,
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::NoLocalConsent => {
                f.write_str("nobody at the computer allowed it, and it requires local consent")
            }
            Refusal::Passkey(why) => f.write_str(why),
            Refusal::ReuseNotHeld => {
                f.write_str("it does not hold the reused approval valid for this session")
            }
            Refusal::ReuseWithoutPasskey => f.write_str(
                "the reused approval was not made with a passkey verified here, and it requires passkeys",
            ),
        }
    }
}

/// Whether the session of `settled` may start, for `offer` as this computer
/// answered it, with `memory` as it is at `now`.
pub fn decide(
    offer: &AwaitedOffer,
    settled: &Settled<'_>,
    memory: &Memory,
    now: Instant,
) -> Verdict {
    let Outcome::Allowed { reused_from, .. } = settled.outcome else {
        return Verdict::NoSession;
    };
    let allowed_here = settled.local_answer == Some(Decision::Allow);
    // The person at the computer must have allowed it here, reused or not.
    if offer.local_consent == LocalConsent::Required && !allowed_here {
        return Verdict::Refuse(Refusal::NoLocalConsent);
    }
    let needs_passkey = offer.passkey.is_some();
    match reused_from {
        None => match crate::passkeys::verify(
            offer,
            settled.request_id,
            settled.assertions,
            allowed_here,
            &memory.passkey_counters,
        ) {
            Ok(counters) => Verdict::Start { counters },
            Err(why) => Verdict::Refuse(Refusal::Passkey(why)),
        },
        Some(earlier) => {
            // Its own assertions are the earlier approval's, checked when
            // that one was made: what counts is that this agent offered
            // that very approval, still holds it valid, and verified its
            // passkeys when the computer requires them.
            let unverified = memory
                .approved
                .get(earlier)
                .is_some_and(|approval| !approval.passkey_verified);
            if needs_passkey && unverified {
                return Verdict::Refuse(Refusal::ReuseWithoutPasskey);
            }
            let window = offer.settings.desktop_sharing.approval_valid_for;
            let held = memory.reusable(
                &offer.visitor.operator,
                &offer.service,
                window,
                needs_passkey,
                now,
            );
            if offer.reuse_of.as_ref() != Some(earlier) || held.as_ref() != Some(earlier) {
                return Verdict::Refuse(Refusal::ReuseNotHeld);
            }
            Verdict::Start {
                counters: Vec::new(),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::RememberedApproval;
    use crate::notify::Visitor;
    use doorman_core::passkey::soft::SoftPasskey;
    use doorman_core::passkey::{ChallengeParts, PinnedPasskey};
    use doorman_core::{AgentSettings, CancelCause};
    use doorman_wire::message::{PasskeyRequirement, Service};
    use std::sync::Arc;
    use std::time::Duration;

    const SERVER: &str = "https://doorman.example.com";

    fn settings(local_consent: LocalConsent, require_passkey: bool) -> AgentSettings {
        let mut settings = AgentSettings::parse(&format!(
            "server = \"{SERVER}\"\nname = \"pc\"\nkey = \"dak_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\"\n\n[desktop_sharing]\nrequire_email_authorization = true\nrecipients = [\"it@example.com\"]\napproval_valid_for = 600\n"
        ))
        .expect("settings");
        settings.desktop_sharing.local_consent = local_consent;
        settings.desktop_sharing.require_passkey = require_passkey;
        settings
    }

    fn shell() -> Service {
        Service::Command {
            argv: vec!["true".into()],
        }
    }

    /// The offer as this agent answered it.
    fn offer(
        local_consent: LocalConsent,
        key: Option<&PinnedPasskey>,
        reuse_of: Option<&str>,
    ) -> AwaitedOffer {
        AwaitedOffer {
            visitor: Visitor {
                operator: "alice".into(),
                ..Visitor::default()
            },
            service: shell(),
            reuse_of: reuse_of.map(str::to_string),
            limit: 0,
            local_consent,
            settings: Arc::new(settings(local_consent, key.is_some())),
            passkey: key.map(|key| PasskeyRequirement {
                nonce: B64(vec![7; 16]),
                expires_at: 1_000_000,
                passkeys: vec![key.clone()],
            }),
            hello: None,
        }
    }

    /// The recipient's assertion for request `id` of `offer`.
    fn approve(key: &mut SoftPasskey, id: &str, offer: &AwaitedOffer) -> Assertion {
        let asked = offer.passkey.as_ref().expect("a passkey requirement");
        let service = serde_json::to_string(&offer.service).unwrap();
        key.approve(&ChallengeParts {
            request_id: id,
            computer: "pc",
            operator: "alice",
            service: &service,
            expires_at: asked.expires_at,
            nonce: &asked.nonce.0,
        })
    }

    /// A memory that holds request r0's approval of alice's command, made
    /// `age` ago, its passkeys verified or not.
    fn remembering(age: Duration, passkey_verified: bool, now: Instant) -> Memory {
        let mut memory = Memory::default();
        memory.approved.insert(
            "r0".into(),
            RememberedApproval {
                operator: "alice".into(),
                service: shell(),
                at: now.checked_sub(age).expect("an instant that far back"),
                passkey_verified,
            },
        );
        memory
    }

    fn allowed(reused_from: Option<&str>) -> Outcome {
        Outcome::Allowed {
            by: "it@example.com".into(),
            at: 1,
            reused_from: reused_from.map(str::to_string),
        }
    }

    fn refused(refusal: Refusal) -> Verdict {
        Verdict::Refuse(refusal)
    }

    fn describe(verdict: &Verdict) -> String {
        match verdict {
            Verdict::Start { .. } => "start".into(),
            Verdict::NoSession => "no session".into(),
            Verdict::Refuse(refusal) => refusal.to_string(),
        }
    }

    /// Reuse × local consent × local answer × passkey: every requirement
    /// holds for a reused approval as for a fresh one.
    #[test]
    fn a_session_starts_only_when_every_requirement_holds() {
        use LocalConsent::{Alternative, Off, Required};
        let now = Instant::now() + Duration::from_secs(3600);
        let no_consent = Refusal::NoLocalConsent.to_string();
        let unverified = Refusal::ReuseWithoutPasskey.to_string();
        // (local consent, allowed here, the computer requires passkeys,
        // the earlier approval's passkeys verified here; what a reuse of
        // it gets, what a fresh approval with its assertion gets)
        let cases = [
            (Off, false, false, false, "start", "start"),
            (Alternative, false, false, false, "start", "start"),
            (Required, false, false, false, &*no_consent, &*no_consent),
            (Required, true, false, false, "start", "start"),
            (Off, false, true, true, "start", "start"),
            (Off, false, true, false, &*unverified, "start"),
            (Required, false, true, true, &*no_consent, &*no_consent),
            (Required, true, true, true, "start", "start"),
            (Required, true, true, false, &*unverified, "start"),
        ];
        let mut key = SoftPasskey::new(SERVER);
        let pin = key.pinned("it@example.com");
        for (local, here, needs_passkey, verified_before, reused, fresh) in cases {
            let case = format!(
                "{local:?}, allowed here {here}, passkeys {needs_passkey}/{verified_before}"
            );
            let local_answer = here.then_some(Decision::Allow);
            let memory = remembering(Duration::from_secs(10), verified_before, now);
            let key_pin = needs_passkey.then_some(&pin);

            // A reuse of r0, as this agent offered it.
            let reuse = offer(local, key_pin, Some("r0"));
            let outcome = allowed(Some("r0"));
            let settled = Settled {
                request_id: "r1",
                outcome: &outcome,
                assertions: &[],
                local_answer,
            };
            let verdict = decide(&reuse, &settled, &memory, now);
            assert_eq!(describe(&verdict), reused, "reuse: {case}");

            // A fresh approval, with its own passkey assertion where the
            // computer requires one.
            let asked = offer(local, key_pin, None);
            let assertions: Vec<Assertion> = key_pin
                .map(|_| approve(&mut key, "r2", &asked))
                .into_iter()
                .collect();
            let outcome = allowed(None);
            let settled = Settled {
                request_id: "r2",
                outcome: &outcome,
                assertions: &assertions,
                local_answer,
            };
            let verdict = decide(&asked, &settled, &memory, now);
            assert_eq!(describe(&verdict), fresh, "fresh: {case}");
            if needs_passkey && fresh == "start" {
                let counters = vec![(pin.id.clone(), key.counter)];
                assert_eq!(verdict, Verdict::Start { counters }, "fresh: {case}");
            }

            // The same without its assertion: refused for the passkey,
            // unless the person at the computer allowed it (they count as
            // one approval).
            let bare = Settled {
                request_id: "r2",
                outcome: &outcome,
                assertions: &[],
                local_answer,
            };
            let verdict = decide(&asked, &bare, &memory, now);
            let for_passkey = matches!(verdict, Verdict::Refuse(Refusal::Passkey(_)));
            let consent_missing = local == Required && !here;
            assert_eq!(
                for_passkey,
                needs_passkey && !here && !consent_missing,
                "fresh without an assertion: {case}: {verdict:?}"
            );
        }
    }

    #[test]
    fn a_reuse_the_agent_does_not_hold_is_refused() {
        let now = Instant::now() + Duration::from_secs(3600);
        let outcome = allowed(Some("r0"));
        let settled = Settled {
            request_id: "r1",
            outcome: &outcome,
            assertions: &[],
            local_answer: None,
        };
        // Its window is over.
        let old = remembering(Duration::from_secs(601), false, now);
        let reuse = offer(LocalConsent::Off, None, Some("r0"));
        assert_eq!(
            decide(&reuse, &settled, &old, now),
            refused(Refusal::ReuseNotHeld)
        );
        // Not the approval this agent offered to reuse.
        let memory = remembering(Duration::from_secs(10), false, now);
        let other = offer(LocalConsent::Off, None, None);
        assert_eq!(
            decide(&other, &settled, &memory, now),
            refused(Refusal::ReuseNotHeld)
        );
        // Nothing remembered at all.
        assert_eq!(
            decide(&reuse, &settled, &Memory::default(), now),
            refused(Refusal::ReuseNotHeld)
        );
    }

    #[test]
    fn an_outcome_other_than_allowed_starts_nothing_and_refuses_nothing() {
        let now = Instant::now();
        let offer = offer(LocalConsent::Required, None, None);
        for outcome in [
            Outcome::Denied {
                by: "it@example.com".into(),
                at: 1,
            },
            Outcome::Expired { at: 1 },
            Outcome::Cancelled {
                at: 1,
                cause: CancelCause::Operator,
            },
        ] {
            let settled = Settled {
                request_id: "r1",
                outcome: &outcome,
                assertions: &[],
                local_answer: None,
            };
            assert_eq!(
                decide(&offer, &settled, &Memory::default(), now),
                Verdict::NoSession
            );
        }
    }

    #[test]
    fn a_counter_that_went_back_is_refused() {
        let now = Instant::now();
        let mut key = SoftPasskey::new(SERVER);
        let pin = key.pinned("it@example.com");
        let offer = offer(LocalConsent::Off, Some(&pin), None);
        let assertion = approve(&mut key, "r1", &offer);
        let mut memory = Memory::default();
        memory.passkey_counters.insert(pin.id.clone(), key.counter);
        let outcome = allowed(None);
        let settled = Settled {
            request_id: "r1",
            outcome: &outcome,
            assertions: std::slice::from_ref(&assertion),
            local_answer: None,
        };
        let Verdict::Refuse(Refusal::Passkey(why)) = decide(&offer, &settled, &memory, now) else {
            panic!("not refused");
        };
        assert!(why.contains("counter went back"), "{why}");
    }
}
