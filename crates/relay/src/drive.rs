//! Who waits for a relay's sockets: a thread of its own in poll(2) (a
//! message crossing the relay costs one thread wake-up, not a pass through
//! the event loop, and none when it comes within [`SPIN`] of the last),
//! or, past the process's budget of relay threads, the event loop's
//! readiness. Either way the [`Engine`] does the moving.

use super::RelayError;
use super::engine::Engine;
use super::sys::readiness;
use rustix::event::{EventfdFlags, PollFd, PollFlags, Timespec, eventfd, poll};
use std::io;
use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

/// Most relays a process runs on threads at once.
pub const MAX_THREADED: usize = 128;
/// A relay thread's stack: rustls' record processing wants some room.
const STACK: usize = 256 * 1024;

static THREADED: AtomicUsize = AtomicUsize::new(0);

/// One of the [`MAX_THREADED`] places; given back when its thread is gone.
pub struct Slot(());

impl Slot {
    /// A free place, if there is one.
    pub fn take() -> Option<Slot> {
        THREADED
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < MAX_THREADED).then_some(n + 1)
            })
            .ok()
            .map(|_| Slot(()))
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        THREADED.fetch_sub(1, Ordering::AcqRel);
    }
}

fn flags(reads: bool, writes: bool) -> PollFlags {
    let mut flags = PollFlags::empty();
    if reads {
        flags |= PollFlags::IN;
    }
    if writes {
        flags |= PollFlags::OUT;
    }
    flags
}

/// How long a relay thread that has just moved data looks for more
/// before it sleeps. A sleeping thread's wake-up is what a message's
/// crossing costs (on a VM whose idle CPU halts, about 20 µs a hop); an
/// answer that comes within this window finds the thread awake.
const SPIN: Duration = Duration::from_micros(60);

/// The thread's loop, until both directions end, an error, or `stop`.
fn run(engine: &mut Engine, stop: &OwnedFd) -> io::Result<()> {
    let mut moved = false;
    loop {
        if engine.step()? {
            moved = true;
            continue;
        }
        if engine.is_done() {
            return Ok(());
        }
        // A socket with nothing to wait for stays out: a closed one would
        // report POLLHUP at once, again and again.
        let [a, b] = &engine.sides;
        let stop_fd = PollFd::new(stop, PollFlags::IN);
        let mut fds = [stop_fd.clone(), stop_fd.clone(), stop_fd];
        let mut count = 1;
        let mut polled = [None, None];
        for (i, side) in [a, b].into_iter().enumerate() {
            let (reads, writes) = engine.interest(i);
            if reads || writes {
                polled[i] = Some(count);
                fds[count] = PollFd::new(side.socket(), flags(reads, writes));
                count += 1;
            }
        }
        let fds = &mut fds[..count];
        // Only after data moved, and not while a side's socket is full (a
        // bulk transfer waiting for its peer to read).
        let writing = (0..2).any(|i| engine.interest(i).1);
        let spun = std::mem::take(&mut moved) && !writing && spin(fds)?;
        if !spun {
            match poll(fds, None) {
                Ok(_) => {}
                Err(rustix::io::Errno::INTR) => continue,
                Err(errno) => return Err(errno.into()),
            }
        }
        if !fds[0].revents().is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::Interrupted,
                "nobody awaits the relay any more",
            ));
        }
        for (i, slot) in polled.into_iter().enumerate() {
            if slot.is_some_and(|at| {
                fds[at]
                    .revents()
                    .intersects(PollFlags::IN | PollFlags::HUP | PollFlags::ERR)
            }) {
                engine.directions[i].readable = true;
            }
        }
    }
}

/// Polls `fds` without sleeping for up to [`SPIN`], giving the CPU to
/// others between polls; whether one became ready.
fn spin(fds: &mut [PollFd<'_>]) -> io::Result<bool> {
    let at_once = Timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    let until = Instant::now() + SPIN;
    loop {
        match poll(fds, Some(&at_once)) {
            Ok(0) => {}
            Ok(_) => return Ok(true),
            Err(rustix::io::Errno::INTR) => {}
            Err(errno) => return Err(errno.into()),
        }
        if Instant::now() >= until {
            return Ok(false);
        }
        std::thread::yield_now();
    }
}

/// Wakes the relay's thread to stop it if the task awaiting it is dropped.
struct StopOnDrop(Option<Arc<OwnedFd>>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        if let Some(stop) = self.0.take() {
            let _ = rustix::io::write(&*stop, &1u64.to_ne_bytes());
        }
    }
}

/// Runs `engine` on a thread that holds `slot`.
pub(super) async fn on_thread(slot: Slot, engine: Engine) -> Result<(u64, u64), RelayError> {
    let stop = eventfd(0, EventfdFlags::CLOEXEC | EventfdFlags::NONBLOCK)
        .map_err(|e| RelayError::before_any(e.into()))?;
    let stop = Arc::new(stop);
    let (done, finished) = oneshot::channel();
    let mut guard = StopOnDrop(Some(stop.clone()));
    std::thread::Builder::new()
        .name("doorman-relay".into())
        .stack_size(STACK)
        .spawn(move || {
            let _slot = slot;
            let mut engine = engine;
            // Stopped, the engine is dropped unfinished: both peers see the end.
            let result = run(&mut engine, &stop);
            let _ = done.send((result, engine.moved()));
        })
        .map_err(RelayError::before_any)?;
    let (result, moved) = finished.await.map_err(|_| RelayError {
        source: io::Error::other("the relay thread panicked"),
        moved: (0, 0),
    })?;
    guard.0 = None;
    result
        .map(|()| moved)
        .map_err(|source| RelayError { source, moved })
}

/// Runs `engine` on the event loop; dropping the future drops the engine.
pub(super) async fn on_event_loop(mut engine: Engine) -> Result<(u64, u64), RelayError> {
    let waited = wait_on_event_loop(&mut engine).await;
    let moved = engine.moved();
    waited
        .map(|()| moved)
        .map_err(|source| RelayError { source, moved })
}

async fn wait_on_event_loop(engine: &mut Engine) -> io::Result<()> {
    let fds = [
        readiness(engine.sides[0].socket())?,
        readiness(engine.sides[1].socket())?,
    ];
    loop {
        if engine.step()? {
            // A long transfer still lets the loop's other tasks run.
            tokio::task::consume_budget().await;
            continue;
        }
        if engine.is_done() {
            return Ok(());
        }
        let (a_reads, a_writes) = engine.interest(0);
        let (b_reads, b_writes) = engine.interest(1);
        // Readiness is cleared before the engine tries again, so that what
        // arrives meanwhile wakes the next wait.
        tokio::select! {
            ready = fds[0].readable(), if a_reads => {
                ready?.clear_ready();
                engine.directions[0].readable = true;
            }
            ready = fds[1].readable(), if b_reads => {
                ready?.clear_ready();
                engine.directions[1].readable = true;
            }
            ready = fds[0].writable(), if a_writes => ready?.clear_ready(),
            ready = fds[1].writable(), if b_writes => ready?.clear_ready(),
            else => return Err(io::Error::other("the relay waits for nothing")),
        }
    }
}
