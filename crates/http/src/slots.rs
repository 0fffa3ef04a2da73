//! The places connections hold in the limits, per network and overall:
//! taken when a connection is accepted (or its TLS handshake begins), given
//! back when it closes.

use crate::failures::Network;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Places held now, per network and overall: the connections, or the TLS
/// handshakes under way.
pub(crate) struct Slots {
    what: &'static str,
    total: usize,
    per_network: usize,
    held: Mutex<Held>,
    /// `doorman_rate_limited_total{limit="connections"}`.
    refusals: metrics::Counter,
}

#[derive(Default)]
struct Held {
    total: usize,
    per_network: HashMap<Network, usize>,
    refused: u64,
    last_said: Option<Instant>,
}

impl Slots {
    pub(crate) fn new(
        what: &'static str,
        total: usize,
        per_network: usize,
        refusals: metrics::Counter,
    ) -> Arc<Self> {
        Arc::new(Self {
            what,
            total,
            per_network,
            held: Mutex::new(Held::default()),
            refusals,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Held> {
        self.held.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A slot for a connection from `ip`, if the limits leave one.
    pub(crate) fn take(self: &Arc<Self>, ip: IpAddr) -> Option<Slot> {
        let network = Network::of(ip);
        let mut held = self.lock();
        let mine = held.per_network.get(&network).copied().unwrap_or(0);
        if held.total >= self.total || mine >= self.per_network {
            held.refused += 1;
            self.refusals.increment(1);
            // Said at most once a minute, with how many since.
            if held
                .last_said
                .is_none_or(|at| at.elapsed() >= Duration::from_secs(60))
            {
                let over_all = held.total >= self.total;
                tracing::warn!(
                    source = %ip,
                    refused = held.refused,
                    limit = if over_all { self.total } else { self.per_network },
                    "connection refused: {} holds its most {}",
                    if over_all { "the server" } else { "this source" },
                    self.what,
                );
                held.last_said = Some(Instant::now());
                held.refused = 0;
            }
            return None;
        }
        held.total += 1;
        *held.per_network.entry(network).or_insert(0) += 1;
        Some(Slot {
            slots: Arc::clone(self),
            network,
        })
    }
}

/// One connection's place in the limits, given back when it closes.
pub struct Slot {
    slots: Arc<Slots>,
    network: Network,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut held = self.slots.lock();
        held.total = held.total.saturating_sub(1);
        if let Some(count) = held.per_network.get_mut(&self.network) {
            *count -= 1;
            if *count == 0 {
                held.per_network.remove(&self.network);
            }
        }
    }
}
