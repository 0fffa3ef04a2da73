//! Acting on a settled request: only a request this agent asked for can
//! start a session, and only if [`crate::verdict::decide`] says it may;
//! the owner is told the outcome, and the memory keeps what it implies
//! for reuse.

use super::Acting;
use crate::memory::{AwaitedOffer, Memory, RememberedApproval};
use crate::notify::{self, Event};
use crate::session::Allowed;
use crate::verdict::{Refusal, Settled, Verdict};
use doorman_core::Outcome;
use doorman_core::passkey::Assertion;
use doorman_wire::message::{AgentToServer, SessionEnd};
use std::time::Instant;

impl Acting<'_> {
    /// A request ended: starts its session if [`crate::verdict::decide`]
    /// says it may, tells the owner, and returns what the server must hear
    /// (this computer's refusal of an allowed request). Only a request this
    /// agent asked for can start a session, whatever the server says.
    pub(super) fn settled(
        &self,
        memory: &mut Memory,
        request_id: String,
        outcome: Outcome,
        assertions: &[Assertion],
    ) -> Option<AgentToServer> {
        let now = Instant::now();
        let Some(offer) = memory.awaited.take(&request_id, now) else {
            tracing::warn!(request = %request_id, "ignoring an outcome for a request this agent did not ask for, or no longer awaits");
            return None;
        };
        let settled = Settled {
            request_id: &request_id,
            outcome: &outcome,
            assertions,
            local_answer: self.board.settle(&request_id),
        };
        let counters = match crate::verdict::decide(&offer, &settled, memory, now) {
            Verdict::Refuse(refusal) => return Some(self.refuse(&offer, request_id, &refusal)),
            Verdict::NoSession => None,
            Verdict::Start { counters } => Some(counters),
        };
        let command = offer.settings.notify_command.as_deref();
        notify::show(command, &offer.visitor, &event_of(&outcome));
        // Verified here only if a passkey assertion was: an approval the
        // local Allow alone met is not one a computer requiring passkeys
        // may reuse.
        let passkey_verified = offer.passkey.is_some()
            && counters
                .as_ref()
                .is_some_and(|counters| !counters.is_empty());
        remember_outcome(memory, &request_id, &outcome, &offer, passkey_verified, now);
        if let Some(counters) = counters {
            memory.passkey_counters.extend(counters);
            self.start(
                offer.settings,
                Allowed {
                    request_id,
                    visitor: offer.visitor,
                    service: offer.service,
                    limit: offer.limit,
                    hello: offer.hello,
                },
            );
        }
        None
    }

    /// This computer refuses an allowed request: tells the owner, and
    /// returns what tells the server.
    fn refuse(&self, offer: &AwaitedOffer, request_id: String, refusal: &Refusal) -> AgentToServer {
        tracing::warn!(request = %request_id, %refusal, "refusing an allowed request that this computer's own checks do not accept");
        let message = format!("this computer refused the approval: {refusal}");
        notify::show(
            offer.settings.notify_command.as_deref(),
            &offer.visitor,
            &Event::Refused {
                message: message.clone(),
            },
        );
        if self.takes_refusals {
            AgentToServer::Refused {
                request_id,
                reason: refusal.to_string(),
            }
        } else {
            // An older server hears of it as a session that failed before
            // it began, which its waiting operator reads.
            AgentToServer::SessionEnded {
                session_id: request_id,
                end: SessionEnd::Failed { message },
            }
        }
    }
}

/// What the owner is shown of an outcome.
fn event_of(outcome: &Outcome) -> Event {
    match outcome {
        Outcome::Allowed { by, .. } => Event::Allowed { by: by.clone() },
        Outcome::Denied { by, .. } => Event::Denied { by: by.clone() },
        Outcome::Expired { .. } => Event::Expired,
        Outcome::Cancelled { .. } => Event::Cancelled,
    }
}

/// What an outcome leaves for reuse: a Deny on this computer ends every
/// reuse window; an Allow of its own (not a reuse) opens one.
fn remember_outcome(
    memory: &mut Memory,
    request_id: &str,
    outcome: &Outcome,
    offer: &AwaitedOffer,
    passkey_verified: bool,
    now: Instant,
) {
    match outcome {
        Outcome::Denied { .. } => memory.approved.clear(),
        Outcome::Allowed {
            reused_from: None, ..
        } => {
            let approval = RememberedApproval {
                operator: offer.visitor.operator.clone(),
                service: offer.service.clone(),
                at: now,
                passkey_verified,
            };
            let window = offer.settings.desktop_sharing.approval_valid_for;
            memory.remember_approval(request_id.to_string(), approval, window);
        }
        _ => {}
    }
}
