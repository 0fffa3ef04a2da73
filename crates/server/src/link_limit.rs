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

#[cfg(test)]
mod tests {
    use super::FailureLimiter;
    use std::net::IpAddr;

    const WINDOW: i64 = FailureLimiter::WINDOW_MILLIS;

    fn address(last: u8) -> IpAddr {
        IpAddr::from([192, 0, 2, last])
    }

    fn fail(limiter: &FailureLimiter, ip: IpAddr, times: u32, now: i64) {
        for _ in 0..times {
            limiter.record_failure(ip, now);
        }
    }

    #[test]
    fn the_limit_is_thirty_failures_per_address() {
        let limiter = FailureLimiter::default();
        fail(&limiter, address(1), FailureLimiter::MAX_FAILURES - 1, 0);
        assert!(
            !limiter.is_limited(address(1), 0),
            "29 failures are allowed"
        );
        fail(&limiter, address(1), 1, 0);
        assert!(limiter.is_limited(address(1), 0), "the 30th is the limit");
        assert!(!limiter.is_limited(address(2), 0), "per address");
    }

    #[test]
    fn the_window_is_ten_minutes_from_the_first_failure() {
        assert_eq!(WINDOW, 10 * 60 * 1000);
        let limiter = FailureLimiter::default();
        let start = 1_000_000;
        fail(&limiter, address(1), 1, start);
        // The rest come later in the window: it runs from the first.
        fail(
            &limiter,
            address(1),
            FailureLimiter::MAX_FAILURES - 1,
            start + WINDOW - 10,
        );
        assert!(limiter.is_limited(address(1), start + WINDOW - 1));
        assert!(!limiter.is_limited(address(1), start + WINDOW));
        // A failure after the window starts a new count.
        fail(&limiter, address(1), 1, start + WINDOW);
        assert!(!limiter.is_limited(address(1), start + WINDOW));
        fail(
            &limiter,
            address(1),
            FailureLimiter::MAX_FAILURES - 2,
            start + WINDOW,
        );
        assert!(!limiter.is_limited(address(1), start + WINDOW));
        fail(&limiter, address(1), 1, start + WINDOW);
        assert!(limiter.is_limited(address(1), start + WINDOW));
    }

    #[test]
    fn a_full_table_forgets_only_ended_windows() {
        let limiter = FailureLimiter::default();
        fail(&limiter, address(1), FailureLimiter::MAX_FAILURES, WINDOW);
        for n in 0..FailureLimiter::MAX_ADDRESSES - 1 {
            let n = u32::try_from(n).unwrap();
            limiter.record_failure(IpAddr::from(n.to_be_bytes()), 0);
        }
        // The table is full: the next failure prunes the ended windows
        // (those of time 0), not the live limit.
        limiter.record_failure(address(2), 2 * WINDOW - 1);
        assert!(limiter.is_limited(address(1), 2 * WINDOW - 1));
        assert!(limiter.lock().len() < 10, "{}", limiter.lock().len());
    }
}
