//! What the agent remembers across connections to the server: the requests
//! it asked authorization for (only those may start a session) and the
//! approvals it saw, which `approval_valid_for` may let it reuse.
//!
//! Both are bounded, and neither is ever wiped in bulk. An awaited request
//! is remembered until its deadline (and a grace for an outcome that
//! arrives late); one the server refused after the agent answered, and so
//! never settles, is forgotten then. A memory full of requests still
//! awaited takes no new one: the agent refuses that offer rather than
//! forget a request whose recipients may be about to allow it.

use crate::notify::Visitor;
use doorman_core::{AgentSettings, LocalConsent};
use doorman_wire::message::Service;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Most requests awaited at once.
pub const MAX_AWAITED: usize = 1024;
/// Most approvals remembered for reuse at once.
pub const MAX_APPROVALS: usize = 1024;
/// How long after its deadline an awaited request is still remembered:
/// an outcome may arrive late, as the server replays the requests allowed
/// in the last 10 minutes to an agent that reconnects
/// (`allowed_without_session`).
pub const LATE_OUTCOME_GRACE: Duration = Duration::from_secs(10 * 60);

/// An offer this agent asked email authorization for.
pub struct AwaitedOffer {
    pub visitor: Visitor,
    pub service: Service,
    /// The earlier approval this agent offered to reuse for it.
    pub reuse_of: Option<String>,
    /// The session's time limit in seconds (0: none).
    pub limit: u32,
    /// Whether a person at the computer answers too.
    pub local_consent: LocalConsent,
    /// The settings the offer was answered from.
    pub settings: Arc<AgentSettings>,
    /// What approvals must be made with, when the computer requires
    /// passkeys: its nonce and deadline are part of the challenge.
    pub passkey: Option<doorman_wire::message::PasskeyRequirement>,
    /// The operator's end-to-end hello, answered when the session opens.
    pub hello: Option<doorman_e2e::OperatorHello>,
}

/// An allowed request whose approval may let the same operator in again
/// (`approval_valid_for`), as this agent saw it.
pub struct RememberedApproval {
    pub operator: String,
    pub service: Service,
    pub at: Instant,
    /// Whether the approval met this computer's `require_passkey` when it
    /// was made (its passkey assertions verified here): only such an
    /// approval is reused while the computer requires passkeys.
    pub passkey_verified: bool,
}

/// The memory is full of requests still awaited: the new one is not
/// remembered (and must be refused).
#[derive(Debug, PartialEq, Eq)]
pub struct Full;

/// Requests awaited, each until its own deadline: a bounded map that
/// forgets an entry once its deadline has passed, and, full of live ones,
/// refuses a new one rather than forget a live one.
pub struct Awaited<T = AwaitedOffer> {
    entries: HashMap<String, (T, Instant)>,
    capacity: usize,
}

impl<T> Default for Awaited<T> {
    fn default() -> Self {
        Self::with_capacity(MAX_AWAITED)
    }
}

impl<T> Awaited<T> {
    /// An empty memory that holds at most `capacity` requests.
    pub fn with_capacity(capacity: usize) -> Self {
        Self {
            entries: HashMap::new(),
            capacity,
        }
    }

    /// Forgets the requests whose time is up at `now`; whether one more
    /// can then be remembered.
    pub fn make_room(&mut self, now: Instant) -> bool {
        self.entries.retain(|_, (_, until)| now < *until);
        self.entries.len() < self.capacity
    }

    /// Remembers request `id` until `until` (its deadline and the grace
    /// for a late outcome), once the expired ones are forgotten; [`Full`]
    /// when every one remembered is still awaited. The same `id` again
    /// replaces its entry.
    pub fn remember(
        &mut self,
        id: String,
        value: T,
        until: Instant,
        now: Instant,
    ) -> Result<(), Full> {
        if !self.entries.contains_key(&id) && !self.make_room(now) {
            return Err(Full);
        }
        self.entries.insert(id, (value, until));
        Ok(())
    }

    /// The request `id`, forgotten now that it has ended; none if it was
    /// never asked about here, or its time is up at `now`.
    pub fn take(&mut self, id: &str, now: Instant) -> Option<T> {
        let (value, until) = self.entries.remove(id)?;
        (now < until).then_some(value)
    }

    /// Forgets request `id`: it was refused, or its answer never reached
    /// the server.
    pub fn forget(&mut self, id: &str) {
        self.entries.remove(id);
    }
}

/// Until when a request asked at `now` with a `timeout_secs` deadline is
/// remembered: its deadline and [`LATE_OUTCOME_GRACE`]. (The settings
/// allow at most an hour; even `u32::MAX` seconds cannot overflow.)
pub fn remember_until(now: Instant, timeout_secs: u32) -> Instant {
    now + Duration::from_secs(u64::from(timeout_secs)) + LATE_OUTCOME_GRACE
}

/// What the agent remembers across connections: the requests it asked
/// authorization for, and the approvals it may reuse.
#[derive(Default)]
pub struct Memory {
    pub awaited: Awaited,
    pub approved: HashMap<String, RememberedApproval>,
    /// The last signature counter seen from each pinned passkey.
    pub passkey_counters: HashMap<doorman_core::passkey::B64, u32>,
}

impl Memory {
    /// The latest approval that covers `service` for `operator` within
    /// `window` at `now`; with `needs_passkey` (the computer requires
    /// passkeys), only one whose passkeys were verified here.
    pub fn reusable(
        &self,
        operator: &str,
        service: &Service,
        window: u32,
        needs_passkey: bool,
        now: Instant,
    ) -> Option<String> {
        let window = Duration::from_secs(u64::from(window));
        self.approved
            .iter()
            .filter(|(_, approval)| {
                approval.operator == operator
                    && now.saturating_duration_since(approval.at) < window
                    && service.covered_by(&approval.service)
                    && (approval.passkey_verified || !needs_passkey)
            })
            .max_by_key(|(_, approval)| approval.at)
            .map(|(id, _)| id.clone())
    }

    /// Remembers the approval of request `id`, made at `approval.at`,
    /// once those whose `window` (seconds, `approval_valid_for`) is over
    /// are forgotten; when still full, the oldest goes (forgetting an
    /// approval only means asking the recipients again).
    pub fn remember_approval(&mut self, id: String, approval: RememberedApproval, window: u32) {
        let window = Duration::from_secs(u64::from(window));
        let now = approval.at;
        self.approved
            .retain(|_, earlier| now.saturating_duration_since(earlier.at) < window);
        while self.approved.len() >= MAX_APPROVALS {
            let Some(oldest) = self
                .approved
                .iter()
                .min_by_key(|(_, earlier)| earlier.at)
                .map(|(id, _)| id.clone())
            else {
                break;
            };
            self.approved.remove(&oldest);
        }
        self.approved.insert(id, approval);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: Duration = Duration::from_secs(1);

    /// Issue 26: requests the server refused after the agent answered are
    /// never settled; they must not push out one still awaited, as the
    /// bulk `clear()` at 1,024 entries did.
    #[test]
    fn two_thousand_refused_requests_never_push_out_one_still_awaited() {
        let start = Instant::now();
        let mut awaited = Awaited::default();
        awaited
            .remember("awaited".into(), 0, start + 3600 * SECOND, start)
            .unwrap();
        // One a second, each awaited for a minute and never settled.
        for i in 1..=2000u32 {
            let now = start + i * SECOND;
            awaited
                .remember(format!("refused-{i}"), i, now + 60 * SECOND, now)
                .expect("room: the requests whose time is up are forgotten");
            assert!(awaited.entries.len() <= MAX_AWAITED);
        }
        let now = start + 2001 * SECOND;
        assert_eq!(awaited.take("awaited", now), Some(0));
        // The ones still within their minute are remembered too.
        assert_eq!(awaited.take("refused-1990", now), Some(1990));
        assert_eq!(awaited.take("refused-1000", now), None);
    }

    #[test]
    fn the_expired_go_first_and_a_memory_full_of_live_ones_takes_no_more() {
        let start = Instant::now();
        let mut awaited = Awaited::with_capacity(3);
        awaited
            .remember("a".into(), 'a', start + 10 * SECOND, start)
            .unwrap();
        awaited
            .remember("b".into(), 'b', start + 100 * SECOND, start)
            .unwrap();
        awaited
            .remember("c".into(), 'c', start + 100 * SECOND, start)
            .unwrap();
        // Full, and every one still awaited: the new one is refused.
        let soon = start + 5 * SECOND;
        assert_eq!(
            awaited.remember("d".into(), 'd', soon + 100 * SECOND, soon),
            Err(Full)
        );
        // Once a's time is up, it goes, and only it.
        let later = start + 20 * SECOND;
        awaited
            .remember("d".into(), 'd', later + 100 * SECOND, later)
            .unwrap();
        assert_eq!(awaited.entries.len(), 3);
        for id in ['b', 'c', 'd'] {
            assert_eq!(awaited.take(&id.to_string(), later), Some(id));
        }
        assert_eq!(awaited.take("a", later), None);
    }

    #[test]
    fn a_request_is_taken_once_and_not_after_its_time() {
        let start = Instant::now();
        let mut awaited = Awaited::with_capacity(2);
        awaited
            .remember("r1".into(), 1, start + 10 * SECOND, start)
            .unwrap();
        awaited
            .remember("r2".into(), 2, start + 10 * SECOND, start)
            .unwrap();
        assert_eq!(awaited.take("r1", start + SECOND), Some(1));
        assert_eq!(awaited.take("r1", start + SECOND), None);
        assert_eq!(awaited.take("r2", start + 10 * SECOND), None);
        assert!(awaited.entries.is_empty());
        // A forgotten one makes room at once.
        let mut full = Awaited::with_capacity(1);
        full.remember("r3".into(), 3, start + 10 * SECOND, start)
            .unwrap();
        full.forget("r3");
        full.remember("r4".into(), 4, start + 10 * SECOND, start)
            .unwrap();
        assert_eq!(full.take("r4", start), Some(4));
    }

    #[test]
    fn a_request_is_remembered_for_its_timeout_and_the_grace() {
        let now = Instant::now();
        assert_eq!(
            remember_until(now, 180),
            now + 180 * SECOND + LATE_OUTCOME_GRACE
        );
    }

    fn approval(operator: &str, at: Instant) -> RememberedApproval {
        RememberedApproval {
            operator: operator.into(),
            service: Service::Command {
                argv: vec!["true".into()],
            },
            at,
            passkey_verified: false,
        }
    }

    #[test]
    fn approvals_whose_window_is_over_go_first_then_the_oldest() {
        let start = Instant::now();
        let mut memory = Memory::default();
        for i in 0..MAX_APPROVALS {
            let at = start + u32::try_from(i).unwrap() * SECOND;
            memory.remember_approval(format!("r{i}"), approval("alice", at), 3600);
        }
        assert_eq!(memory.approved.len(), MAX_APPROVALS);
        // Full, all within the window: the oldest goes, no other.
        let now = start + 2000 * SECOND;
        memory.remember_approval("new".into(), approval("bob", now), 3600);
        assert_eq!(memory.approved.len(), MAX_APPROVALS);
        assert!(!memory.approved.contains_key("r0"));
        assert!(memory.approved.contains_key("r1"));
        assert!(memory.approved.contains_key("new"));
        // Those whose window is over go, however few they would crowd.
        let now = start + 2500 * SECOND;
        memory.remember_approval("newer".into(), approval("bob", now), 600);
        let mut left: Vec<&str> = memory.approved.keys().map(String::as_str).collect();
        left.sort_unstable();
        assert_eq!(left, ["new", "newer"]);
    }
}
