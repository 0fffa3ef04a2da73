//! The expiry timers of this server's pending requests, so that a request
//! settled before its deadline stops its timer at once rather than
//! holding it (and, at the deadline, two reads) for the rest of its
//! timeout: at 500 requests a second and 180 s, 90,000 timers.

use super::lock;
use std::collections::HashMap;
use std::sync::Mutex;
use tokio_util::sync::CancellationToken;

/// Each pending request's timer, by request id, with the number of its
/// start (a request picked up again starts another timer, which the
/// first one's end must not take away).
#[derive(Debug, Default)]
pub struct ExpiryTimers {
    timers: Mutex<Timers>,
}

#[derive(Debug, Default)]
struct Timers {
    started: u64,
    running: HashMap<String, (u64, CancellationToken)>,
}

/// A started timer: cancelled when its request settles; its entry goes
/// with [`ExpiryTimers::finished`].
pub(super) struct ExpiryTimer {
    number: u64,
    pub(super) settled: CancellationToken,
}

impl ExpiryTimers {
    /// Registered at once, before its task runs: a request settled in
    /// between still stops it.
    pub(super) fn start(&self, request_id: &str) -> ExpiryTimer {
        let settled = CancellationToken::new();
        let mut timers = lock(&self.timers);
        timers.started += 1;
        let number = timers.started;
        timers
            .running
            .insert(request_id.to_string(), (number, settled.clone()));
        ExpiryTimer { number, settled }
    }

    /// The timer's task ended (expired, settled or stopped): its entry
    /// goes, unless a later timer of the same request took its place.
    pub(super) fn finished(&self, request_id: &str, timer: &ExpiryTimer) {
        let mut timers = lock(&self.timers);
        if timers
            .running
            .get(request_id)
            .is_some_and(|(number, _)| *number == timer.number)
        {
            timers.running.remove(request_id);
        }
    }

    /// The request settled: its timer stops.
    pub(super) fn settled(&self, request_id: &str) {
        if let Some((_, settled)) = lock(&self.timers).running.remove(request_id) {
            settled.cancel();
        }
    }

    /// How many timers run (for tests).
    pub fn running(&self) -> usize {
        lock(&self.timers).running.len()
    }
}
