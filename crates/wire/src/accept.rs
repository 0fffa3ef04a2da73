//! Waiting out failed accepts on a listening socket: the server's one port
//! and the agent's consent socket alike. A listener out of descriptors
//! (EMFILE, ENFILE) fails every accept at once until one frees up; without
//! a pause its loop would spin on the error, taking a core and filling the
//! log.

use std::time::Duration;

/// The pause after the first failure of a run.
const FIRST_WAIT: Duration = Duration::from_millis(100);
/// The longest pause.
const LONGEST_WAIT: Duration = Duration::from_secs(1);

/// Waits after a failed accept, longer each time up to a second (100 ms,
/// 200, 400, 800, then 1 s), and says so once per run of failures rather
/// than once per attempt.
#[derive(Debug)]
pub struct AcceptBackoff {
    /// What listens, as the log names it.
    listener: &'static str,
    /// Failures in a row.
    failures: u32,
}

impl AcceptBackoff {
    /// A backoff for `listener` (as the log names it), with no failure yet.
    pub fn new(listener: &'static str) -> Self {
        Self {
            listener,
            failures: 0,
        }
    }

    /// An accept failed with `error`: waits before the next one.
    pub async fn failed(&mut self, error: &std::io::Error) {
        if self.failures == 0 {
            tracing::warn!(listener = self.listener, %error, "cannot accept connections; waiting for descriptors to free up");
        }
        let wait = self.next_wait();
        tokio::time::sleep(wait).await;
    }

    /// An accept succeeded: the next failure starts over at the shortest
    /// wait.
    pub fn succeeded(&mut self) {
        if self.failures > 0 {
            tracing::info!(
                listener = self.listener,
                failed = self.failures,
                "accepting connections again"
            );
            self.failures = 0;
        }
    }

    /// Counts a failure; the wait it calls for.
    fn next_wait(&mut self) -> Duration {
        use backon::BackoffBuilder;
        self.failures = self.failures.saturating_add(1);
        backon::ExponentialBuilder::default()
            .with_min_delay(FIRST_WAIT)
            .with_max_delay(LONGEST_WAIT)
            .without_max_times()
            .build()
            .nth(usize::try_from(self.failures - 1).unwrap_or(usize::MAX))
            .unwrap_or(LONGEST_WAIT)
    }
}

#[cfg(test)]
mod tests {
    use super::AcceptBackoff;
    use std::time::Duration;

    #[test]
    fn failed_accepts_wait_longer_each_time_up_to_a_second() {
        let mut backoff = AcceptBackoff::new("test");
        let waits: Vec<u64> = (0..8)
            .map(|_| u64::try_from(backoff.next_wait().as_millis()).unwrap())
            .collect();
        assert_eq!(waits, [100, 200, 400, 800, 1000, 1000, 1000, 1000]);
    }

    #[test]
    fn an_accepted_connection_starts_the_waits_over() {
        let mut backoff = AcceptBackoff::new("test");
        for _ in 0..10 {
            backoff.next_wait();
        }
        backoff.succeeded();
        assert_eq!(backoff.next_wait(), Duration::from_millis(100));
    }

    #[tokio::test]
    async fn a_failed_accept_pauses_before_the_next() {
        let mut backoff = AcceptBackoff::new("test");
        let error = std::io::Error::from_raw_os_error(24); // EMFILE
        let started = std::time::Instant::now();
        backoff.failed(&error).await;
        assert!(
            started.elapsed() >= Duration::from_millis(100),
            "{:?}",
            started.elapsed()
        );
    }
}
