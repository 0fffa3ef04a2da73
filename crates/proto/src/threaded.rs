//! Relaying two plain TCP sockets on two threads of their own, one per
//! direction, in blocking system calls: a message crossing a relay costs one
//! thread wake-up, not a pass through the event loop, which takes about a
//! fifth off a round trip through the three hops of a `-L` tunnel (see
//! docs/BENCHMARKS.md). Each direction copies small messages through a
//! 16 KiB buffer; a read that fills it switches the direction to splice(2)
//! through a pipe, so bulk bytes stay in the kernel, until a short splice
//! switches back. A process runs at most [`MAX_THREADED`] such relays at
//! once (two threads each); `proto::relay` puts the rest on the event loop.

use crate::splice::{CHUNK, Pipe, splice, tcp_closed};
use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream as StdStream};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;
use tokio::net::TcpStream;
use tokio::sync::oneshot;

/// Most relays a process runs on threads at once.
pub const MAX_THREADED: usize = 128;
/// The copy buffer of each direction; a read that fills it means bulk.
const BUFFER: usize = 16 * 1024;
/// A relay thread's stack: the loop below needs little.
const STACK: usize = 128 * 1024;
/// How long a blocked write waits before it looks whether the relay was torn
/// down (a blocked write, unlike a blocked read, is not woken by shutdown).
const WRITE_PATIENCE: Duration = Duration::from_millis(500);

static THREADED: AtomicUsize = AtomicUsize::new(0);

/// One of the [`MAX_THREADED`] places; given back when the relay's threads
/// are gone.
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

/// What both directions' threads and the awaiting task share.
struct Relay {
    sockets: [StdStream; 2],
    /// Whether this relay has half-closed each socket.
    write_closed: [AtomicBool; 2],
    torn_down: AtomicBool,
    _slot: Slot,
}

impl Relay {
    /// Ends both directions after an error on one: the peer still there
    /// gets a reset when the socket closes, as from a direct connection.
    fn reset(&self) {
        self.torn_down.store(true, Ordering::Release);
        for socket in &self.sockets {
            let _ = socket2::SockRef::from(socket).set_linger(Some(Duration::ZERO));
            // Wakes the other direction's thread if it waits in a read.
            let _ = socket.shutdown(Shutdown::Read);
        }
    }

    /// Ends both directions because nobody awaits the relay any more (its
    /// session ended, the server stops): both peers see the connection end.
    fn close(&self) {
        self.torn_down.store(true, Ordering::Release);
        for socket in &self.sockets {
            let _ = socket.shutdown(Shutdown::Both);
        }
    }

    /// Moves bytes from socket `from` to socket `to` until `from` ends, then
    /// half-closes `to`.
    fn pump(&self, from: usize, to: usize) -> io::Result<u64> {
        let (from_index, to_index) = (from, to);
        let (from, to) = (&self.sockets[from], &self.sockets[to]);
        let mut buffer = vec![0u8; BUFFER];
        let mut pipe = None;
        let mut bulk = false;
        let mut total = 0u64;
        loop {
            let n = if bulk {
                let pipe = match &pipe {
                    Some(pipe) => pipe,
                    None => pipe.insert(Pipe::new(false)?),
                };
                let n = interruptible(|| {
                    splice(from.as_raw_fd(), pipe.write.as_raw_fd(), CHUNK, false)
                })?;
                let mut left = n;
                while left > 0 {
                    left -=
                        self.write(|| splice(pipe.read.as_raw_fd(), to.as_raw_fd(), left, false))?;
                }
                bulk = n >= BUFFER;
                n
            } else {
                let n = interruptible(|| (&*from).read(&mut buffer))?;
                let mut sent = 0;
                while sent < n {
                    sent += self.write(|| (&*to).write(&buffer[sent..n]))?;
                }
                bulk = n == BUFFER;
                n
            };
            if n == 0 {
                if self.torn_down.load(Ordering::Acquire) {
                    // Woken by `reset` or `close`, which deal with `to`.
                    return Ok(total);
                }
                // A reset looks like the end to this read when the other
                // direction's write took the reset's error first; the
                // socket's state tells them apart.
                if tcp_closed(from.as_raw_fd())
                    && !self.write_closed[from_index].load(Ordering::SeqCst)
                {
                    return Err(io::ErrorKind::ConnectionReset.into());
                }
                self.write_closed[to_index].store(true, Ordering::SeqCst);
                let _ = to.shutdown(Shutdown::Write);
                return Ok(total);
            }
            total += n as u64;
        }
    }

    /// One write (or splice) to a socket, waiting as long as the relay
    /// stands.
    fn write(&self, mut write: impl FnMut() -> io::Result<usize>) -> io::Result<usize> {
        loop {
            match write() {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => return Ok(n),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                // The send timeout expired: a slow reader, or a torn-down relay.
                Err(e)
                    if e.kind() == io::ErrorKind::WouldBlock
                        && !self.torn_down.load(Ordering::Acquire) => {}
                Err(e) => return Err(e),
            }
        }
    }
}

fn interruptible(mut call: impl FnMut() -> io::Result<usize>) -> io::Result<usize> {
    loop {
        match call() {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            result => return result,
        }
    }
}

/// Closes the relay if the task awaiting it is dropped first.
struct CloseOnDrop(Option<Arc<Relay>>);

impl Drop for CloseOnDrop {
    fn drop(&mut self) {
        if let Some(relay) = self.0.take() {
            relay.close();
        }
    }
}

fn blocking(socket: TcpStream) -> io::Result<StdStream> {
    let socket = socket.into_std()?;
    socket.set_nonblocking(false)?;
    socket.set_write_timeout(Some(WRITE_PATIENCE))?;
    Ok(socket)
}

fn spawn(relay: Arc<Relay>, forward: bool) -> io::Result<oneshot::Receiver<io::Result<u64>>> {
    let (done, finished) = oneshot::channel();
    std::thread::Builder::new()
        .name("doorman-relay".into())
        .stack_size(STACK)
        .spawn(move || {
            let result = if forward {
                relay.pump(0, 1)
            } else {
                relay.pump(1, 0)
            };
            if result.is_err() {
                relay.reset();
            }
            let _ = done.send(result);
        })?;
    Ok(finished)
}

/// Relays `a` ↔ `b` until both directions end, on two threads that hold
/// `slot`. Returns the bytes moved each way; an error either way resets both
/// connections.
pub async fn relay(slot: Slot, a: TcpStream, b: TcpStream) -> io::Result<(u64, u64)> {
    let relay = Arc::new(Relay {
        sockets: [blocking(a)?, blocking(b)?],
        write_closed: [AtomicBool::new(false), AtomicBool::new(false)],
        torn_down: AtomicBool::new(false),
        _slot: slot,
    });
    let mut guard = CloseOnDrop(Some(relay.clone()));
    let forward = spawn(relay.clone(), true)?;
    let backward = spawn(relay, false)?;
    let (forward, backward) = (forward.await, backward.await);
    // Both threads are done: nothing is left to close.
    guard.0 = None;
    let panicked = |_| io::Error::other("a relay thread panicked");
    Ok((forward.map_err(panicked)??, backward.map_err(panicked)??))
}

#[cfg(test)]
mod tests {
    use super::{MAX_THREADED, Slot};
    use crate::tls::MaybeTls;
    use doorman_test_support::streams;
    use std::io::{self, ErrorKind};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};
    use tokio::task::JoinHandle;

    /// The tests share the process's slots; one at a time.
    static SLOTS: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

    async fn pair() -> (TcpStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (server, _) = listener.accept().await.unwrap();
        (client, server)
    }

    /// `left` ↔ relay ↔ `right`, the relay (`proto::relay`) running as a
    /// task: on threads, or with `threads` false on the event loop, as when
    /// no place is left.
    async fn relayed(threads: bool, a_early: &'static [u8], b_early: &'static [u8]) -> Relayed {
        let (left, left_inner) = pair().await;
        let (right_inner, right) = pair().await;
        let taken = if threads { Vec::new() } else { take_all() };
        let relaying = tokio::spawn(crate::relay::relay(
            MaybeTls::<tokio_rustls::client::TlsStream<TcpStream>>::Plain(left_inner),
            a_early,
            MaybeTls::<tokio_rustls::client::TlsStream<TcpStream>>::Plain(right_inner),
            b_early,
        ));
        (left, right, relaying, taken)
    }

    /// The two outer ends, the relay, and the places held so that the relay
    /// runs on the event loop.
    type Relayed = (
        TcpStream,
        TcpStream,
        JoinHandle<io::Result<(u64, u64)>>,
        Vec<Slot>,
    );

    fn take_all() -> Vec<Slot> {
        std::iter::from_fn(Slot::take).collect()
    }

    /// Early bytes, round trips of small messages, a bulk transfer and a
    /// half-close, through a relay made by [`relayed`].
    async fn small_messages_bulk_and_half_close(threads: bool) {
        let (mut left, mut right, relaying, _taken) =
            relayed(threads, b"early-left ", b"early-right ").await;
        let mut early = [0u8; 11];
        right.read_exact(&mut early).await.unwrap();
        assert_eq!(&early, b"early-left ");
        let mut early = [0u8; 12];
        left.read_exact(&mut early).await.unwrap();
        assert_eq!(&early, b"early-right ");
        let big: Vec<u8> = (0..5_000_000u32).map(|i| (i % 251) as u8).collect();
        let got = streams::exchange(left, right, big.clone()).await;
        assert!(got == big, "bulk bytes arrive whole and in order");
        let (forward, backward) = relaying.await.unwrap().unwrap();
        let rounds = (streams::ROUNDS * 64) as u64;
        assert_eq!(forward, 11 + rounds + big.len() as u64);
        assert_eq!(backward, 12 + rounds + streams::ANSWER.len() as u64);
    }

    #[tokio::test]
    async fn small_messages_bulk_and_half_close_cross_both_ways() {
        let _slots = SLOTS.lock().await;
        small_messages_bulk_and_half_close(true).await;
    }

    #[tokio::test]
    async fn relays_beyond_the_thread_budget_run_on_the_event_loop() {
        let _slots = SLOTS.lock().await;
        small_messages_bulk_and_half_close(false).await;
        assert_eq!(take_all().len(), MAX_THREADED, "places come back");
    }

    #[tokio::test]
    async fn a_reset_on_one_side_resets_the_other() {
        let _slots = SLOTS.lock().await;
        for threads in [true, false] {
            let (mut left, right, relaying, _taken) = relayed(threads, b"", b"").await;
            left.write_all(b"hello").await.unwrap();
            right.set_zero_linger().unwrap();
            drop(right);
            assert!(relaying.await.unwrap().is_err());
            let error = left.read_to_end(&mut Vec::new()).await.unwrap_err();
            assert_eq!(
                error.kind(),
                ErrorKind::ConnectionReset,
                "threads: {threads}"
            );
        }
    }

    #[tokio::test]
    async fn dropping_the_relay_closes_both_connections() {
        let _slots = SLOTS.lock().await;
        let (mut left, mut right, relaying, _) = relayed(true, b"", b"").await;
        left.write_all(b"ping").await.unwrap();
        let mut got = [0u8; 4];
        right.read_exact(&mut got).await.unwrap();
        relaying.abort();
        let (mut a, mut b) = (Vec::new(), Vec::new());
        left.read_to_end(&mut a).await.unwrap();
        right.read_to_end(&mut b).await.unwrap();
        assert!(a.is_empty() && b.is_empty());
    }
}
