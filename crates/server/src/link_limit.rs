//! The bad-link limit: invalid link tokens counted per client address, so
//! that guessing links is slow.

/// Counts invalid link tokens per client address, so that guessing links
/// is slow: at most [`FailureLimiter::MAX_FAILURES`] per window.
#[derive(Debug, Default)]
pub struct FailureLimiter {
    failures: std::sync::Mutex<std::collections::HashMap<std::net::IpAddr, (i64, u32)>>,
}

impl FailureLimiter {
    pub const MAX_FAILURES: u32 = 30;
    const WINDOW_MILLIS: i64 = 10 * 60 * 1000;
    const MAX_ADDRESSES: usize = 100_000;

    fn lock(
        &self,
    ) -> std::sync::MutexGuard<'_, std::collections::HashMap<std::net::IpAddr, (i64, u32)>> {
        self.failures
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Whether this address has failed too often lately.
    pub fn is_limited(&self, ip: std::net::IpAddr, now: i64) -> bool {
        self.lock().get(&ip).is_some_and(|(since, count)| {
            now - since < Self::WINDOW_MILLIS && *count >= Self::MAX_FAILURES
        })
    }

    pub fn record_failure(&self, ip: std::net::IpAddr, now: i64) {
        let mut failures = self.lock();
        if failures.len() >= Self::MAX_ADDRESSES {
            failures.retain(|_, (since, _)| now - *since < Self::WINDOW_MILLIS);
        }
        let entry = failures.entry(ip).or_insert((now, 0));
        if now - entry.0 >= Self::WINDOW_MILLIS {
            *entry = (now, 0);
        }
        entry.1 = entry.1.saturating_add(1);
    }
}
