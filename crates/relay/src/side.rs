//! One side of a relay, without blocking: a plain socket, or TLS over one
//! with its rustls state. Plaintext goes in and out; what a TLS side owes
//! its peer (records, alerts, close_notify) is sent as the socket takes it.

use crate::nonblocking::{Got, would_block};
use crate::sealed::Sealed;
use crate::tls_parts::TlsParts;
use doorman_wire::tls::MaybeTls;
use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream as StdStream};
use std::time::Duration;

pub(super) enum Side {
    Plain(StdStream),
    Tls {
        socket: StdStream,
        tls: Box<rustls::Connection>,
        /// `close_notify` is queued; the write half closes once it is out.
        closing: bool,
        /// Ciphertext read from the socket and not yet given to rustls.
        incoming: Incoming,
    },
    /// TLS whose records this process seals and opens (a handed-over
    /// session).
    Sealed(Box<Sealed>),
}

/// One large read from the socket, handed to rustls from memory: rustls
/// reads at most 4 KiB per call into its own buffer, which would cost four
/// or five system calls per 16 KiB record if it read the socket itself.
pub(super) struct Incoming {
    buffer: Vec<u8>,
    start: usize,
    end: usize,
    /// The socket has ended (read returned 0).
    ended: bool,
}

/// Ciphertext read from a TLS side's socket per system call, at most.
const INCOMING: usize = 64 * 1024;

impl Incoming {
    /// Holding `ciphertext`, already read from the socket.
    pub(super) fn new(ciphertext: &[u8]) -> Self {
        let mut buffer = vec![0u8; INCOMING.max(ciphertext.len())];
        buffer[..ciphertext.len()].copy_from_slice(ciphertext);
        Incoming {
            buffer,
            start: 0,
            end: ciphertext.len(),
            ended: false,
        }
    }

    /// Gives rustls what it will take of the ciphertext held, reading the
    /// socket first when nothing is; `Ok(false)` when the socket has
    /// nothing now.
    fn feed(&mut self, socket: &StdStream, tls: &mut rustls::Connection) -> io::Result<bool> {
        if self.start == self.end && !self.ended {
            match (&*socket).read(&mut self.buffer) {
                Ok(0) => self.ended = true,
                Ok(n) => (self.start, self.end) = (0, n),
                Err(e) if would_block(&e) => return Ok(false),
                Err(e) => return Err(e),
            }
        }
        // An empty slice tells rustls the connection ended: only then.
        let n = tls.read_tls(&mut &self.buffer[self.start..self.end])?;
        self.start += n;
        Ok(true)
    }
}

impl Side {
    /// Takes `stream` off the event loop, TLS state and all; the socket
    /// stays non-blocking.
    pub(super) fn of<T: TlsParts>(stream: MaybeTls<T>) -> io::Result<Side> {
        Ok(match stream {
            MaybeTls::Plain(socket) => Side::Plain(socket.into_std()?),
            MaybeTls::Tls(stream) => {
                let (socket, tls) = stream.into_parts();
                Side::Tls {
                    socket: socket.into_std()?,
                    tls: Box::new(tls),
                    closing: false,
                    incoming: Incoming::new(&[]),
                }
            }
        })
    }

    pub(super) fn socket(&self) -> &StdStream {
        match self {
            Side::Plain(socket) | Side::Tls { socket, .. } => socket,
            Side::Sealed(sealed) => &sealed.socket,
        }
    }

    /// Plaintext from this side into `buffer`.
    pub(super) fn read(&mut self, buffer: &mut [u8]) -> io::Result<Got> {
        match self {
            Side::Plain(socket) => match (&*socket).read(buffer) {
                Ok(0) => Ok(Got::End),
                Ok(n) => Ok(Got::Data(n)),
                Err(e) if would_block(&e) => Ok(Got::WouldBlock),
                Err(e) => Err(e),
            },
            Side::Tls {
                socket,
                tls,
                incoming,
                ..
            } => loop {
                match tls.reader().read(buffer) {
                    // Ok(0) only after the peer's close_notify; an end
                    // without one is an error (a truncation).
                    Ok(0) => return Ok(Got::End),
                    Ok(n) => return Ok(Got::Data(n)),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(e) => return Err(e),
                }
                if !incoming.feed(socket, tls)? {
                    return Ok(Got::WouldBlock);
                }
                if let Err(error) = tls.process_new_packets() {
                    // Send the alert rustls queued, if the socket takes it.
                    let _ = tls.write_tls(&mut &*socket);
                    return Err(io::Error::new(io::ErrorKind::InvalidData, error));
                }
            },
            Side::Sealed(sealed) => sealed.read(buffer),
        }
    }

    /// Takes what it can of `data` (plaintext); `None` when it can take
    /// nothing now.
    pub(super) fn write(&mut self, data: &[u8]) -> io::Result<Option<usize>> {
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
            Side::Sealed(sealed) => sealed.write(data),
        }
    }

    /// Sends what rustls has sealed, as far as the socket takes it; closes
    /// the write half once a queued close_notify is out.
    pub(super) fn flush(&mut self) -> io::Result<()> {
        if let Side::Sealed(sealed) = self {
            return sealed.flush();
        }
        if let Side::Tls {
            socket,
            tls,
            closing,
            ..
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

    /// Whether it holds bytes for its socket that the socket did not take.
    pub(super) fn wants_write(&self) -> bool {
        match self {
            Side::Plain(_) => false,
            Side::Tls { tls, closing, .. } => tls.wants_write() || *closing,
            Side::Sealed(sealed) => sealed.wants_write(),
        }
    }

    /// Ends what this side receives: a close_notify (TLS), then FIN.
    pub(super) fn close_write(&mut self) -> io::Result<()> {
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
            Side::Sealed(sealed) => sealed.close_write(),
        }
    }

    /// The peer gets a reset when the socket closes, as from a direct
    /// connection that failed.
    pub(super) fn reset_when_closed(&self) {
        let _ = socket2::SockRef::from(self.socket()).set_linger(Some(Duration::ZERO));
    }

    /// Both directions end now; the peer sees the connection end.
    pub(super) fn shut_down(&self) {
        let _ = self.socket().shutdown(Shutdown::Both);
    }
}
