//! What the agent remembers across connections to the server: the requests
//! it asked authorization for (only those may start a session) and the
//! approvals it saw, which `approval_valid_for` may let it reuse.

use crate::notify::Visitor;
use doorman_core::{AgentSettings, LocalConsent};
use doorman_proto::message::Service;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Most offers remembered at once; older ones are forgotten first.
pub const MAX_REMEMBERED_OFFERS: usize = 1024;

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
    pub passkey: Option<doorman_proto::message::PasskeyRequirement>,
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

/// What the agent remembers across connections: the requests it asked
/// authorization for, and the approvals it may reuse.
#[derive(Default)]
pub struct Memory {
    pub awaited: HashMap<String, AwaitedOffer>,
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
}
