//! A relay side whose TLS records this process seals and opens itself
//! ([`crate::record`]), for a session the server handed over: records are
//! opened in place where they were read and sealed straight into the
//! outgoing buffer, so the only copies are into and out of the kernel and
//! one between the record and the other side.

use crate::handover::invalid;
use crate::nonblocking::{Got, would_block};
use crate::record::{
    HEADER, MAX_CIPHERTEXT, MAX_PLAINTEXT, OVERHEAD, RecordError, TrafficKeys, content, key_update,
    record_len,
};
use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream as StdStream};
use std::ops::Range;

/// Ciphertext read from the socket per system call, at most.
const READ: usize = 64 * 1024;
/// Sealed bytes held for the socket before this side takes no more.
const HELD: usize = 64 * 1024;

pub(super) struct Sealed {
    pub(super) socket: StdStream,
    rx: TrafficKeys,
    tx: TrafficKeys,
    incoming: Vec<u8>,
    /// Records not yet opened lie in `incoming[start..end]`.
    start: usize,
    end: usize,
    /// Opened plaintext not yet given out, within `incoming`.
    plaintext: Range<usize>,
    /// The peer's close_notify was read.
    peer_closed: bool,
    /// The socket ended.
    socket_ended: bool,
    outgoing: Vec<u8>,
    sent: usize,
    /// close_notify is queued; the write half closes once it is out.
    closing: bool,
    /// close_notify was sealed: nothing more may be.
    write_closed: bool,
}

impl Sealed {
    /// `ciphertext` was read from `socket` already; `peer_closed` when the
    /// peer ended before the handover.
    pub(super) fn new(
        socket: StdStream,
        rx: TrafficKeys,
        tx: TrafficKeys,
        ciphertext: &[u8],
        peer_closed: bool,
    ) -> Self {
        let mut incoming = vec![0u8; (READ + HEADER + MAX_CIPHERTEXT).max(ciphertext.len())];
        incoming[..ciphertext.len()].copy_from_slice(ciphertext);
        Sealed {
            socket,
            rx,
            tx,
            incoming,
            start: 0,
            end: ciphertext.len(),
            plaintext: 0..0,
            peer_closed,
            socket_ended: false,
            outgoing: Vec::with_capacity(HELD + 4 * OVERHEAD),
            sent: 0,
            closing: false,
            write_closed: false,
        }
    }

    /// Plaintext into `buffer`: from as many records as are held whole and
    /// fit, so that the other side gets large writes.
    pub(super) fn read(&mut self, buffer: &mut [u8]) -> io::Result<Got> {
        let mut filled = 0;
        loop {
            if !self.plaintext.is_empty() {
                let n = self.plaintext.len().min(buffer.len() - filled);
                let from = self.plaintext.start;
                buffer[filled..filled + n].copy_from_slice(&self.incoming[from..from + n]);
                self.plaintext.start += n;
                filled += n;
                if filled == buffer.len() {
                    return Ok(Got::Data(filled));
                }
            }
            if self.peer_closed {
                return Ok(if filled > 0 {
                    Got::Data(filled)
                } else {
                    Got::End
                });
            }
            if let Some(len) = self.whole_record()? {
                self.open(len)?;
                continue;
            }
            if filled > 0 {
                return Ok(Got::Data(filled));
            }
            if self.socket_ended {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "TLS ended without close_notify",
                ));
            }
            if self.incoming.len() - self.end < HEADER + MAX_CIPHERTEXT {
                self.incoming.copy_within(self.start..self.end, 0);
                (self.start, self.end) = (0, self.end - self.start);
            }
            let room = (self.incoming.len() - self.end).min(READ);
            match (&self.socket).read(&mut self.incoming[self.end..self.end + room]) {
                Ok(0) => self.socket_ended = true,
                Ok(n) => self.end += n,
                Err(e) if would_block(&e) => return Ok(Got::WouldBlock),
                Err(e) => return Err(e),
            }
        }
    }

    /// The length of the record at `start` once it is held whole.
    fn whole_record(&self) -> io::Result<Option<usize>> {
        let held = &self.incoming[self.start..self.end];
        let Some(len) = record_len(held) else {
            return Ok(None);
        };
        if len - HEADER > MAX_CIPHERTEXT {
            return Err(invalid(RecordError::Overflow(len - HEADER)));
        }
        Ok((held.len() >= len).then_some(len))
    }

    /// Opens the record of `len` bytes at `start`.
    fn open(&mut self, len: usize) -> io::Result<()> {
        let at = self.start;
        self.start += len;
        let (kind, range) = self
            .rx
            .open(&mut self.incoming[at..at + len])
            .map_err(invalid)?;
        let range = at + range.start..at + range.end;
        match kind {
            content::APPLICATION_DATA => self.plaintext = range,
            content::ALERT => match self.incoming[range] {
                [_, 0] => self.peer_closed = true,
                // user_canceled comes before a close_notify.
                [_, 90] => {}
                [_, description] => {
                    return Err(invalid(format!("the peer sent TLS alert {description}")));
                }
                _ => return Err(invalid("a malformed TLS alert")),
            },
            content::HANDSHAKE => self.handshake(range)?,
            other => return Err(invalid(format!("a TLS record of content type {other}"))),
        }
        Ok(())
    }

    /// Post-handshake messages: key updates, and session tickets (ignored).
    fn handshake(&mut self, mut range: Range<usize>) -> io::Result<()> {
        while !range.is_empty() {
            let message = &self.incoming[range.clone()];
            if message.len() < 4 {
                return Err(invalid("a truncated TLS handshake message"));
            }
            let len = u32::from_be_bytes([0, message[1], message[2], message[3]]) as usize;
            let Some(body) = message.get(4..4 + len) else {
                return Err(invalid("a TLS handshake message split across records"));
            };
            match (message[0], body) {
                // KeyUpdate: the peer's next records use its next secret.
                (24, [requested @ (0 | 1)]) => {
                    let requested = *requested == 1;
                    self.rx.update();
                    // After close_notify, nothing more is sealed, not even
                    // the answer.
                    if requested && !self.write_closed {
                        self.update_tx()?;
                    }
                }
                // NewSessionTicket.
                (4, _) => {}
                (kind, _) => {
                    return Err(invalid(format!("a TLS handshake message of type {kind}")));
                }
            }
            range.start += 4 + len;
        }
        Ok(())
    }

    fn update_tx(&mut self) -> io::Result<()> {
        self.tx
            .seal(content::HANDSHAKE, &key_update(false), &mut self.outgoing)
            .map_err(invalid)?;
        self.tx.update();
        Ok(())
    }

    /// Takes what it can of `data`; `None` when it holds too much unsent.
    pub(super) fn write(&mut self, data: &[u8]) -> io::Result<Option<usize>> {
        if self.write_closed {
            return Err(io::ErrorKind::BrokenPipe.into());
        }
        self.flush()?;
        let held = self.outgoing.len() - self.sent;
        if held >= HELD {
            return Ok(None);
        }
        let take = data.len().min(HELD - held);
        for chunk in data[..take].chunks(MAX_PLAINTEXT) {
            if self.tx.is_worn() {
                self.update_tx()?;
            }
            self.tx
                .seal(content::APPLICATION_DATA, chunk, &mut self.outgoing)
                .map_err(invalid)?;
        }
        self.flush()?;
        Ok((take > 0).then_some(take))
    }

    pub(super) fn flush(&mut self) -> io::Result<()> {
        while self.sent < self.outgoing.len() {
            match (&self.socket).write(&self.outgoing[self.sent..]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => self.sent += n,
                Err(e) if would_block(&e) => return Ok(()),
                Err(e) => return Err(e),
            }
        }
        self.outgoing.clear();
        self.sent = 0;
        if self.closing {
            self.closing = false;
            let _ = self.socket.shutdown(Shutdown::Write);
        }
        Ok(())
    }

    pub(super) fn wants_write(&self) -> bool {
        self.sent < self.outgoing.len() || self.closing
    }

    /// The next record numbers: (opening, sealing).
    #[cfg(test)]
    pub(super) fn record_numbers(&self) -> (u64, u64) {
        (self.rx.seq(), self.tx.seq())
    }

    /// Sends close_notify, then FIN.
    pub(super) fn close_write(&mut self) -> io::Result<()> {
        self.tx
            .seal(content::ALERT, &[1, 0], &mut self.outgoing)
            .map_err(invalid)?;
        self.write_closed = true;
        self.closing = true;
        self.flush()
    }
}
