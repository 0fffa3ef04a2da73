//! The relay engine: two [`Side`]s and a [`Direction`] each way, moved
//! forward without blocking by [`Engine::step`], whoever waits for the
//! sockets (a relay thread's poll(2), or the event loop). It holds the one
//! policy for how a relay ends:
//!
//! - a side's clean end (FIN; close_notify over TLS) half-closes the other
//!   side once everything read before it is through;
//! - an error either way (a reset, a TLS end without close_notify, a bad
//!   record) resets both sockets, so each peer learns as from a direct
//!   connection;
//! - an engine dropped before both directions ended (nobody awaits the
//!   relay any more) shuts both sockets down: both peers see the end.

use super::sys::{Pipe, tcp_closed};
use crate::nonblocking::Got;
use crate::side::Side;
use std::io;

/// Plaintext moved per read, and held per direction at most.
const BUFFER: usize = 64 * 1024;
/// A read of at least this much between two plain sockets means bulk: the
/// direction switches to splice(2)...
const BULK: usize = 16 * 1024;
/// ...and back to copies after a splice shorter than this (a small message:
/// through a pipe it would cost a few µs more). Lower than [`BULK`] so that
/// a bulk transfer whose reads run a little short now and then stays in the
/// kernel.
const SMALL: usize = 4 * 1024;

/// Bytes read from one side and not yet taken by the other.
pub(super) struct Direction {
    buffer: Vec<u8>,
    start: usize,
    end: usize,
    /// Spliced bytes waiting in `pipe` (plain to plain only).
    pipe: Option<Pipe>,
    in_pipe: usize,
    /// Both sides are plain sockets on Linux: bulk may go through `pipe`.
    can_splice: bool,
    bulk: bool,
    /// The source has ended.
    ended: bool,
    /// The destination has been told.
    pub(super) closed: bool,
    /// The source may have something to read: false from a read that found
    /// nothing until the waiter says otherwise, which saves a read per
    /// message.
    pub(super) readable: bool,
    pub(super) moved: u64,
}

impl Direction {
    fn new(can_splice: bool) -> Self {
        Direction {
            buffer: vec![0u8; BUFFER],
            start: 0,
            end: 0,
            pipe: None,
            in_pipe: 0,
            can_splice,
            bulk: false,
            ended: false,
            closed: false,
            readable: true,
            moved: 0,
        }
    }

    pub(super) fn is_empty(&self) -> bool {
        self.start == self.end && self.in_pipe == 0
    }

    pub(super) fn wants_input(&self) -> bool {
        self.is_empty() && !self.ended
    }

    /// Moves what it can from `from` to `to` without blocking; whether
    /// anything happened. `from_closed` says this relay has half-closed
    /// `from`'s socket already.
    fn step(&mut self, from: &mut Side, to: &mut Side, from_closed: bool) -> io::Result<bool> {
        let mut progress = false;
        if self.wants_input() && self.readable {
            let got = match &*from {
                Side::Plain(source) if self.bulk => {
                    let pipe = match &self.pipe {
                        Some(pipe) => pipe,
                        None => self.pipe.insert(Pipe::new()?),
                    };
                    match pipe.fill(source) {
                        Ok(0) => Got::End,
                        Ok(n) => {
                            self.in_pipe = n;
                            self.bulk = n >= SMALL;
                            Got::Data(n)
                        }
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => Got::WouldBlock,
                        Err(e) => return Err(e),
                    }
                }
                _ => {
                    let got = from.read(&mut self.buffer)?;
                    if let Got::Data(n) = got {
                        (self.start, self.end) = (0, n);
                        self.bulk = self.can_splice && n >= BULK;
                    }
                    got
                }
            };
            match got {
                Got::Data(n) => {
                    self.moved += n as u64;
                    progress = true;
                }
                Got::End => {
                    // A reset can look like an end to this read when a write
                    // the other way took the reset's error first; the
                    // socket's state tells them apart.
                    if let Side::Plain(socket) = &*from
                        && !from_closed
                        && tcp_closed(socket)
                    {
                        return Err(io::ErrorKind::ConnectionReset.into());
                    }
                    self.ended = true;
                    progress = true;
                }
                Got::WouldBlock => self.readable = false,
            }
        }
        while self.start < self.end {
            match to.write(&self.buffer[self.start..self.end])? {
                Some(n) => {
                    self.start += n;
                    progress = true;
                }
                None => break,
            }
        }
        if self.in_pipe > 0
            && let (Some(pipe), Side::Plain(target)) = (&self.pipe, &*to)
        {
            while self.in_pipe > 0 {
                match pipe.drain(target, self.in_pipe) {
                    Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                    Ok(n) => {
                        self.in_pipe -= n;
                        progress = true;
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) => return Err(e),
                }
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

/// Two sides and the bytes between them.
pub(super) struct Engine {
    pub(super) sides: [Side; 2],
    /// `[0]` carries side 0 to side 1; `[1]` the other way.
    pub(super) directions: [Direction; 2],
    finished: bool,
}

impl Engine {
    pub(super) fn new(a: Side, b: Side) -> Self {
        let can_splice =
            cfg!(target_os = "linux") && matches!((&a, &b), (Side::Plain(_), Side::Plain(_)));
        Engine {
            sides: [a, b],
            directions: [Direction::new(can_splice), Direction::new(can_splice)],
            finished: false,
        }
    }

    /// Moves what can move now; whether anything did. An error has reset
    /// both sockets already.
    pub(super) fn step(&mut self) -> io::Result<bool> {
        let stepped = self.try_step();
        if stepped.is_err() {
            self.finished = true;
            for side in &self.sides {
                side.reset_when_closed();
            }
        }
        stepped
    }

    fn try_step(&mut self) -> io::Result<bool> {
        let [a, b] = &mut self.sides;
        let [forward, backward] = &mut self.directions;
        // Side 0's socket was half-closed by this relay once `backward`
        // closed; likewise side 1's once `forward` did.
        let mut progress = forward.step(a, b, backward.closed)?;
        progress |= backward.step(b, a, forward.closed)?;
        // Records rustls produced while reading (alerts, key updates).
        a.flush()?;
        b.flush()?;
        if self.is_done() {
            self.finished = true;
        }
        Ok(progress)
    }

    /// Both directions ended and everything owed was sent.
    pub(super) fn is_done(&self) -> bool {
        self.directions.iter().all(|d| d.closed) && !self.sides.iter().any(Side::wants_write)
    }

    /// What side `i` waits for: (readable, writable).
    pub(super) fn interest(&self, i: usize) -> (bool, bool) {
        let incoming = &self.directions[i];
        let outgoing = &self.directions[1 - i];
        (
            incoming.wants_input(),
            !outgoing.is_empty() || self.sides[i].wants_write(),
        )
    }

    /// The bytes moved each way.
    pub(super) fn moved(&self) -> (u64, u64) {
        (self.directions[0].moved, self.directions[1].moved)
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        if !self.finished {
            for side in &self.sides {
                side.shut_down();
            }
        }
    }
}
