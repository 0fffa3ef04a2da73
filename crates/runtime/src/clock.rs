//! The server's clock: one [`Clock`] per server, from which every time it
//! stores, compares and sleeps towards is read, in milliseconds since the
//! Unix epoch as the database and the state machine count time.
//!
//! The clock reads the system's wall clock once, when it starts, and from
//! then on advances with the monotonic clock. A wall-clock step (a
//! correction by NTP or by hand, either way) moves none of its times: a
//! request's deadline, a reuse window, a block or a rate limit's window
//! lasts the time it says, and no pending request is left waiting or
//! expired early. The price is that the times people read (the audit
//! trail, the approval page) lag or lead the wall clock by any step made
//! while the server runs, until it restarts; the server logs when they are
//! off by more than [`DRIFT_WARNING`]. A restart anchors the clock again, so
//! a step made while the server was stopped moves the deadlines of the
//! requests it stored.
//!
//! Tests move the clock forward instead of sleeping ([`Clock::advance`]):
//! its sleepers ([`Clock::sleep_until`]) wake at once when it passes their
//! time. Like the store's faults, this is always compiled and costs
//! nothing until a test uses it.

use doorman_core::authorization::Millis;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::watch;
use tokio::time::Instant;

/// How far the times the server shows may drift from the wall clock (a
/// step while it runs) before it logs a warning.
pub const DRIFT_WARNING: Duration = Duration::from_secs(60);

/// The server's notion of now: anchored to the wall clock when it starts,
/// advancing monotonically. Cheap to clone; clones are one clock.
#[derive(Clone)]
pub struct Clock {
    inner: Arc<Inner>,
}

struct Inner {
    /// The wall clock's reading when the clock started.
    anchor: Millis,
    /// The monotonic instant of that reading.
    started: Instant,
    /// How far tests moved the clock forward, in milliseconds; its
    /// sleepers watch it.
    moved: watch::Sender<Millis>,
}

impl std::fmt::Debug for Clock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Clock")
            .field(
                "anchor",
                &doorman_core::display::format_time(self.inner.anchor),
            )
            .field("moved_ms", &*self.inner.moved.borrow())
            .finish()
    }
}

impl Default for Clock {
    fn default() -> Self {
        Self::system()
    }
}

impl Clock {
    /// A clock anchored to the system's wall clock now.
    pub fn system() -> Self {
        Self::anchored_at(system_millis())
    }

    /// A clock that reads `wall` now, whatever the system's wall clock
    /// says, and advances monotonically from there.
    pub fn anchored_at(wall: Millis) -> Self {
        Self {
            inner: Arc::new(Inner {
                anchor: wall,
                started: Instant::now(),
                moved: watch::Sender::new(0),
            }),
        }
    }

    /// Now, in milliseconds since the Unix epoch; never goes back.
    pub fn now_millis(&self) -> Millis {
        let elapsed = millis_of(self.inner.started.elapsed());
        let moved = *self.inner.moved.borrow();
        self.inner
            .anchor
            .saturating_add(elapsed)
            .saturating_add(moved)
    }

    /// Completes once [`Clock::now_millis`] has reached `at`: when that
    /// much monotonic time has passed, or at once when a test moves the
    /// clock past it. A wall-clock step changes neither.
    pub async fn sleep_until(&self, at: Millis) {
        let mut moved = self.inner.moved.subscribe();
        loop {
            let left = at.saturating_sub(self.now_millis());
            let Ok(left @ 1..) = u64::try_from(left) else {
                return;
            };
            tokio::select! {
                () = tokio::time::sleep(Duration::from_millis(left)) => {}
                // Moved forward: the time left is computed again.
                _ = moved.changed() => {}
            }
        }
    }

    /// Completes `duration` from now by this clock (sooner when a test
    /// moves it).
    pub async fn sleep(&self, duration: Duration) {
        let at = self.now_millis().saturating_add(millis_of(duration));
        self.sleep_until(at).await;
    }

    /// Ticks every `period` by this clock, the first a period from now.
    /// A test that moves the clock a period on fires every ticker made
    /// before the move, whether or not its task has polled it yet.
    pub fn ticks(&self, period: Duration) -> Ticks {
        Ticks {
            clock: self.clone(),
            period: millis_of(period).max(1),
            next: self.now_millis().saturating_add(millis_of(period).max(1)),
        }
    }

    /// For tests: moves the clock forward by `by`, as if that much time
    /// had passed at once; every sleeper whose time that passes wakes.
    /// Nothing else moves the clock but time.
    pub fn advance(&self, by: Duration) {
        let by = millis_of(by);
        self.inner
            .moved
            .send_modify(|moved| *moved = moved.saturating_add(by));
    }

    /// For tests: moves the clock forward until it reads at least `at`
    /// (e.g. a request's `expires_at`); nothing if it is there already.
    pub fn advance_to(&self, at: Millis) {
        let ahead = at.saturating_sub(self.now_millis());
        if let Ok(ahead @ 1..) = u64::try_from(ahead) {
            self.advance(Duration::from_millis(ahead));
        }
    }

    /// How far the system's wall clock is ahead of this clock (behind when
    /// negative): the steps made since it started, plus how far tests
    /// moved it.
    pub fn drift_millis(&self) -> Millis {
        system_millis().saturating_sub(self.now_millis())
    }

    /// Logs a warning when the times this clock gives people are off the
    /// wall clock by more than [`DRIFT_WARNING`].
    pub fn warn_of_drift(&self) {
        let drift = self.drift_millis();
        if drift.unsigned_abs() > u64::try_from(DRIFT_WARNING.as_millis()).unwrap_or(u64::MAX) {
            tracing::warn!(
                drift_ms = drift,
                "the system clock moved {} s against the server's since it started; deadlines are kept by the server's clock, and the times it shows are off by that until it restarts",
                drift / 1000
            );
        }
    }
}

/// A heartbeat on a [`Clock`] ([`Clock::ticks`]): each tick comes a
/// period after the last one was taken (a late tick delays the next one
/// rather than bunching up), and at once when a test moves the clock past
/// it.
#[derive(Debug)]
pub struct Ticks {
    clock: Clock,
    period: Millis,
    next: Millis,
}

impl Ticks {
    /// Completes at the next tick. Cancel-safe: dropped before it
    /// completes, it leaves the tick due for the next call.
    pub async fn tick(&mut self) {
        self.clock.sleep_until(self.next).await;
        self.next = self.clock.now_millis().saturating_add(self.period);
    }
}

/// The system's wall clock now, in milliseconds since the Unix epoch: what
/// a [`Clock`] is anchored to, and the time of a process that keeps no
/// deadlines (`doorman admin`'s changes).
pub fn system_millis() -> Millis {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// A duration in whole milliseconds, saturating.
fn millis_of(duration: Duration) -> Millis {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use doorman_core::Outcome;
    use doorman_core::authorization::{Event, PendingRequest, Step, Unchanged};

    const HOUR: Millis = 3_600_000;

    #[test]
    fn it_reads_its_anchor_not_the_system_clock() {
        // As if the wall clock had stepped an hour since the server
        // started, either way.
        for step in [HOUR, -HOUR] {
            let anchor = system_millis() - step;
            let clock = Clock::anchored_at(anchor);
            let now = clock.now_millis();
            assert!((anchor..anchor + 1_000).contains(&now), "{now} vs {anchor}");
            assert!((clock.drift_millis() - step).abs() < 1_000);
        }
    }

    #[test]
    fn it_never_goes_back_and_moves_forward_when_told() {
        let clock = Clock::anchored_at(1_000_000);
        let mut last = clock.now_millis();
        for _ in 0..1_000 {
            let now = clock.now_millis();
            assert!(now >= last);
            last = now;
        }
        clock.advance(Duration::from_secs(5));
        assert!(clock.now_millis() >= last + 5_000);
        let moved = clock.clone();
        moved.advance_to(last + 60_000);
        assert!(clock.now_millis() >= last + 60_000, "clones are one clock");
        clock.advance_to(0);
        assert!(clock.now_millis() >= last + 60_000, "never back");
    }

    #[tokio::test]
    async fn a_sleeper_wakes_when_the_clock_is_moved_past_its_time() {
        let clock = Clock::anchored_at(1_000_000);
        let at = clock.now_millis() + HOUR;
        let sleeper = tokio::spawn({
            let clock = clock.clone();
            async move { clock.sleep_until(at).await }
        });
        clock.advance(Duration::from_secs(1_800));
        // The sleeper (on this thread) runs, sees the move, sleeps on.
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
        assert!(!sleeper.is_finished(), "half way there");
        clock.advance(Duration::from_secs(1_800));
        tokio::time::timeout(Duration::from_secs(5), sleeper)
            .await
            .expect("woken by the move")
            .expect("the sleeper");
        assert!(clock.now_millis() >= at);
    }

    #[tokio::test]
    async fn a_ticker_made_before_the_clock_moves_ticks_once_for_the_move() {
        let clock = Clock::anchored_at(1_000_000);
        let mut ticks = clock.ticks(Duration::from_secs(3_600));
        clock.advance(Duration::from_secs(3_600));
        tokio::time::timeout(Duration::from_secs(5), ticks.tick())
            .await
            .expect("due after the move, though first polled after it");
        let next = ticks.tick();
        tokio::pin!(next);
        for _ in 0..10 {
            tokio::task::yield_now().await;
            let early = futures_util::FutureExt::now_or_never(next.as_mut());
            assert!(early.is_none(), "one tick a move");
        }
        clock.advance(Duration::from_secs(3_600));
        tokio::time::timeout(Duration::from_secs(5), next)
            .await
            .expect("the next move ticks again");
    }

    /// Issue 26: a request made on a server whose wall clock has stepped
    /// (an hour ahead of its anchor, or behind) neither expires early nor
    /// stays pending past its time: the state machine is given the
    /// server's clock, which the step does not move.
    #[tokio::test]
    async fn a_wall_clock_step_neither_expires_a_request_early_nor_keeps_it_pending() {
        const TIMEOUT: Millis = 100;
        for step in [HOUR, -HOUR] {
            let clock = Clock::anchored_at(system_millis() - step);
            let mut request = PendingRequest::new(clock.now_millis(), 0, 1);
            request.expires_at += TIMEOUT;
            let expires_at = request.expires_at;
            let started = std::time::Instant::now();
            let early = request.apply(Event::Expire {
                at: clock.now_millis(),
            });
            let request = match early {
                Step::Unchanged(request, Unchanged::NotYetExpired) => request,
                other => panic!("expired early after a step of {step} ms: {other:?}"),
            };
            tokio::time::timeout(Duration::from_secs(5), clock.sleep_until(expires_at))
                .await
                .expect("the deadline came after its 100 ms, not after the step");
            assert!(started.elapsed() >= Duration::from_millis(95));
            let late = request.apply(Event::Expire {
                at: clock.now_millis(),
            });
            let settled = match late {
                Step::Settled(settled) => settled,
                other => panic!("still pending after a step of {step} ms: {other:?}"),
            };
            assert_eq!(settled.outcome(), &Outcome::Expired { at: expires_at });
        }
    }
}
