//! Relaying when one side or both are TLS, on one thread of its own that owns
//! both sides' TLS state: poll(2) on the two sockets, rustls in between. As
//! with [`crate::threaded`] for plain hops, a message crossing the relay costs
//! one thread wake-up, not a pass through the event loop. One thread rather
//! than one per direction, because a TLS connection's records must leave in
//! the order they were sealed: a single owner keeps that trivially true.

use crate::threaded::Slot;
use crate::tls::{MaybeTls, TlsParts};
use rustix::event::{EventfdFlags, PollFd, PollFlags, eventfd, poll};
use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream as StdStream};
use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpStream;
use tokio::sync::oneshot;

/// Plaintext moved per read, and held per direction at most.
const BUFFER: usize = 64 * 1024;
/// A relay thread's stack: rustls' record processing wants some room.
const STACK: usize = 256 * 1024;

/// One side of a relay: a plain socket, or TLS over one.
pub enum Side {
    Plain(StdStream),
    Tls {
        socket: StdStream,
        tls: Box<rustls::Connection>,
        /// `close_notify` is queued; the write half closes once it is out.
        closing: bool,
    },
}

fn nonblocking(socket: TcpStream) -> io::Result<StdStream> {
    // `into_std` leaves the socket non-blocking, as poll(2) wants it.
    socket.into_std()
}

impl Side {
    /// Takes `stream` off the event loop, TLS state and all.
    pub fn of<T: TlsParts>(stream: MaybeTls<T>) -> io::Result<Side> {
        Ok(match stream {
            MaybeTls::Plain(socket) => Side::Plain(nonblocking(socket)?),
            MaybeTls::Tls(stream) => {
                let (socket, tls) = stream.into_parts();
                Side::Tls {
                    socket: nonblocking(socket)?,
                    tls: Box::new(tls),
                    closing: false,
                }
            }
        })
    }
}

/// What a read found.
enum Got {
    Data(usize),
    End,
    WouldBlock,
}

fn would_block(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
    )
}

impl Side {
    fn socket(&self) -> &StdStream {
        match self {
            Side::Plain(socket) | Side::Tls { socket, .. } => socket,
        }
    }

    /// Plaintext from this side into `buffer`.
    fn read(&mut self, buffer: &mut [u8]) -> io::Result<Got> {
        match self {
            Side::Plain(socket) => match (&*socket).read(buffer) {
                Ok(0) => Ok(Got::End),
                Ok(n) => Ok(Got::Data(n)),
                Err(e) if would_block(&e) => Ok(Got::WouldBlock),
                Err(e) => Err(e),
            },
            Side::Tls { socket, tls, .. } => loop {
                match tls.reader().read(buffer) {
                    // Ok(0) only after the peer's close_notify; an end
                    // without one is an error (a truncation).
                    Ok(0) => return Ok(Got::End),
                    Ok(n) => return Ok(Got::Data(n)),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(e) => return Err(e),
                }
                match tls.read_tls(&mut &*socket) {
                    Ok(_) => {
                        if let Err(error) = tls.process_new_packets() {
                            // Send the alert rustls queued, if the socket takes it.
                            let _ = tls.write_tls(&mut &*socket);
                            return Err(io::Error::new(io::ErrorKind::InvalidData, error));
                        }
                    }
                    Err(e) if would_block(&e) => return Ok(Got::WouldBlock),
                    Err(e) => return Err(e),
                }
            },
        }
    }

    /// Takes what it can of `data` (plaintext); `None` when it can take
    /// nothing now.
    fn write(&mut self, data: &[u8]) -> io::Result<Option<usize>> {
        match self {
            Side::Plain(socket) => match (&*socket).write(data) {
                Ok(0) => Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => Ok(Some(n)),
                Err(e) if would_block(&e) => Ok(None),
                Err(e) => Err(e),
            },
            Side::Tls { tls, .. } => {
                // rustls seals into its own bounded buffer; `flush` sends.
                let n = tls.writer().write(data)?;
                self.flush()?;
                Ok((n > 0).then_some(n))
            }
        }
    }

    /// Sends what rustls has sealed, as far as the socket takes it; closes
    /// the write half once a queued close_notify is out.
    fn flush(&mut self) -> io::Result<()> {
        if let Side::Tls {
            socket,
            tls,
            closing,
        } = self
        {
            while tls.wants_write() {
                match tls.write_tls(&mut &*socket) {
                    Ok(_) => {}
                    Err(e) if would_block(&e) => return Ok(()),
                    Err(e) => return Err(e),
                }
            }
            if *closing {
                *closing = false;
                let _ = socket.shutdown(Shutdown::Write);
            }
        }
        Ok(())
    }

    fn wants_write(&self) -> bool {
        match self {
            Side::Plain(_) => false,
            Side::Tls { tls, closing, .. } => tls.wants_write() || *closing,
        }
    }

    /// Ends what this side receives: a close_notify (TLS), then FIN.
    fn close_write(&mut self) -> io::Result<()> {
        match self {
            Side::Plain(socket) => {
                let _ = socket.shutdown(Shutdown::Write);
                Ok(())
            }
            Side::Tls { tls, closing, .. } => {
                tls.send_close_notify();
                *closing = true;
                self.flush()
            }
        }
    }

    fn reset_when_closed(&self) {
        let _ = socket2::SockRef::from(self.socket()).set_linger(Some(Duration::ZERO));
    }
}

/// Plaintext read from one side and not yet taken by the other.
struct Direction {
    buffer: Vec<u8>,
    start: usize,
    end: usize,
    /// The source has ended.
    ended: bool,
    /// The destination has been told.
    closed: bool,
    /// The source may have something to read: false from a read that found
    /// nothing (rustls' buffer and the socket both empty) until poll(2)
    /// says otherwise, which saves a read per message.
    readable: bool,
    moved: u64,
}

impl Direction {
    fn new() -> Self {
        Direction {
            buffer: vec![0u8; BUFFER],
            start: 0,
            end: 0,
            ended: false,
            closed: false,
            readable: true,
            moved: 0,
        }
    }

    fn is_empty(&self) -> bool {
        self.start == self.end
    }

    fn wants_input(&self) -> bool {
        self.is_empty() && !self.ended
    }

    /// Moves what it can from `from` to `to` without blocking; whether
    /// anything happened.
    fn step(&mut self, from: &mut Side, to: &mut Side) -> io::Result<bool> {
        let mut progress = false;
        if self.wants_input() && self.readable {
            match from.read(&mut self.buffer)? {
                Got::Data(n) => {
                    (self.start, self.end) = (0, n);
                    self.moved += n as u64;
                    progress = true;
                }
                Got::End => {
                    self.ended = true;
                    progress = true;
                }
                Got::WouldBlock => self.readable = false,
            }
        }
        while !self.is_empty() {
            match to.write(&self.buffer[self.start..self.end])? {
                Some(n) => {
                    self.start += n;
                    progress = true;
                }
                None => break,
            }
        }
        if self.ended && self.is_empty() && !self.closed {
            self.closed = true;
            to.close_write()?;
            progress = true;
        }
        Ok(progress)
    }
}

fn interest(reads: bool, writes: bool) -> PollFlags {
    let mut flags = PollFlags::empty();
    if reads {
        flags |= PollFlags::IN;
    }
    if writes {
        flags |= PollFlags::OUT;
    }
    flags
}

/// The relay's loop: returns the plaintext bytes moved each way, or why it
/// stopped (an error on either side, or `stop` becoming readable).
fn run(
    a: &mut Side,
    b: &mut Side,
    forward: &mut Direction,
    backward: &mut Direction,
    stop: &OwnedFd,
) -> io::Result<()> {
    loop {
        let mut progress = forward.step(a, b)?;
        progress |= backward.step(b, a)?;
        // Records rustls produced while reading (alerts, key updates).
        a.flush()?;
        b.flush()?;
        if forward.closed && backward.closed && !a.wants_write() && !b.wants_write() {
            return Ok(());
        }
        if progress {
            continue;
        }
        let a_interest = interest(
            forward.wants_input(),
            !backward.is_empty() || a.wants_write(),
        );
        let b_interest = interest(
            backward.wants_input(),
            !forward.is_empty() || b.wants_write(),
        );
        // A socket with nothing to wait for stays out: a closed one would
        // report POLLHUP at once, again and again.
        let mut fds = vec![PollFd::new(stop, PollFlags::IN)];
        let mut polled = [None, None];
        for (i, (side, flags)) in [(&*a, a_interest), (&*b, b_interest)]
            .into_iter()
            .enumerate()
        {
            if !flags.is_empty() {
                polled[i] = Some(fds.len());
                fds.push(PollFd::new(side.socket(), flags));
            }
        }
        match poll(&mut fds, None) {
            Ok(_) => {}
            Err(rustix::io::Errno::INTR) => continue,
            Err(errno) => return Err(errno.into()),
        }
        if !fds[0].revents().is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::Interrupted,
                "the relay was closed",
            ));
        }
        let woke = |slot: Option<usize>| {
            slot.is_some_and(|i| {
                fds[i]
                    .revents()
                    .intersects(PollFlags::IN | PollFlags::HUP | PollFlags::ERR)
            })
        };
        forward.readable |= woke(polled[0]);
        backward.readable |= woke(polled[1]);
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

/// Relays `a` ↔ `b` (plaintext on both sides, whatever their TLS) until both
/// directions end, on a thread that holds `slot`. Returns the plaintext bytes
/// moved each way; an error either way resets both connections, and a TLS
/// side that ends without close_notify is an error.
pub async fn relay(slot: Slot, a: Side, b: Side) -> io::Result<(u64, u64)> {
    let stop = Arc::new(eventfd(0, EventfdFlags::CLOEXEC | EventfdFlags::NONBLOCK)?);
    let mut forward = Direction::new();
    let mut backward = Direction::new();
    let (done, finished) = oneshot::channel();
    let mut guard = StopOnDrop(Some(stop.clone()));
    std::thread::Builder::new()
        .name("doorman-relay".into())
        .stack_size(STACK)
        .spawn(move || {
            let _slot = slot;
            let (mut a, mut b) = (a, b);
            let result = run(&mut a, &mut b, &mut forward, &mut backward, &stop);
            match &result {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {
                    // Nobody awaits the relay any more: both peers see the end.
                    let _ = a.socket().shutdown(Shutdown::Both);
                    let _ = b.socket().shutdown(Shutdown::Both);
                }
                Err(_) => {
                    a.reset_when_closed();
                    b.reset_when_closed();
                }
                Ok(()) => {}
            }
            let _ = done.send(result.map(|()| (forward.moved, backward.moved)));
        })?;
    let result = finished
        .await
        .map_err(|_| io::Error::other("the relay thread panicked"))?;
    guard.0 = None;
    result
}
