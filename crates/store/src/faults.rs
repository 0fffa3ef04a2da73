//! Faults a test injects into the store: its writes fail (as on a full
//! disk) or stall (as behind a lock held elsewhere) until the test says
//! otherwise, so that tests can pin what the server does when its database
//! does, without a full file system or a second process.
//!
//! Always compiled and inert by default: every write (each transaction
//! begun by `Store::begin_write`: requests created, every transition, the
//! outbox's, principals', grants' and recordings' changes) checks two
//! atomic flags that nothing but [`Store::faults`](super::Store::faults)
//! sets. Reads are never affected. Nothing in the server or the binary
//! turns it on.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use tokio::sync::watch;

/// The store's fault switches; see the module's documentation.
#[derive(Debug)]
pub struct Faults {
    /// Writes fail with an I/O error ("no space left on device").
    fail: AtomicBool,
    /// Writes wait until the stall is lifted; mirrors `stalled` so that
    /// the check a write makes is one atomic load.
    stalling: AtomicBool,
    /// `true` while writes stall; a stalled write waits for `false`.
    stalled: watch::Sender<bool>,
    /// Writes refused by `fail` so far.
    refused: AtomicU64,
}

impl Default for Faults {
    fn default() -> Self {
        Self {
            fail: AtomicBool::new(false),
            stalling: AtomicBool::new(false),
            stalled: watch::Sender::new(false),
            refused: AtomicU64::new(0),
        }
    }
}

impl Faults {
    /// From now on every write fails (`true`), or none does (`false`).
    pub fn fail_writes(&self, fail: bool) {
        self.fail.store(fail, Ordering::SeqCst);
    }

    /// From now on every write waits before it begins (`true`), until
    /// this is called with `false`, which lets the waiting ones go on.
    pub fn stall_writes(&self, stall: bool) {
        self.stalled.send_replace(stall);
        self.stalling.store(stall, Ordering::SeqCst);
    }

    /// How many writes [`Faults::fail_writes`] has made fail.
    pub fn writes_refused(&self) -> u64 {
        self.refused.load(Ordering::SeqCst)
    }

    /// Checked by each write before it begins: waits out a stall, then
    /// fails if writes fail.
    pub(super) async fn before_write(&self) -> Result<(), sqlx::Error> {
        if self.stalling.load(Ordering::SeqCst) {
            let mut stalled = self.stalled.subscribe();
            // The sender lives as long as `self`: this cannot fail.
            let _ = stalled.wait_for(|on| !*on).await;
        }
        if self.fail.load(Ordering::SeqCst) {
            self.refused.fetch_add(1, Ordering::SeqCst);
            return Err(sqlx::Error::Io(std::io::Error::new(
                std::io::ErrorKind::StorageFull,
                "writes fail: a fault injected by a test (Store::faults)",
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::Faults;
    use std::sync::Arc;
    use std::time::Duration;

    #[tokio::test]
    async fn faults_are_off_until_a_test_turns_them_on() {
        let faults = Faults::default();
        assert!(faults.before_write().await.is_ok());
        faults.fail_writes(true);
        assert!(faults.before_write().await.is_err());
        assert!(faults.before_write().await.is_err());
        assert_eq!(faults.writes_refused(), 2);
        faults.fail_writes(false);
        assert!(faults.before_write().await.is_ok());
    }

    #[tokio::test]
    async fn a_stalled_write_goes_on_once_the_stall_is_lifted() {
        let faults = Arc::new(Faults::default());
        faults.stall_writes(true);
        let mut write = tokio::spawn({
            let faults = Arc::clone(&faults);
            async move { faults.before_write().await.is_ok() }
        });
        let early = tokio::time::timeout(Duration::from_millis(50), &mut write).await;
        assert!(early.is_err(), "the write waits while stalled");
        faults.stall_writes(false);
        let done = tokio::time::timeout(Duration::from_secs(5), write)
            .await
            .expect("the write goes on within 5 s")
            .expect("the write's task");
        assert!(done);
    }
}
