//! Handing a forwarded connection's TLS session from the server to the
//! agent, so that each byte is sealed once (by `connect`) and opened once
//! (by the agent), as through `ssh -L`, instead of twice each way with the
//! server opening and sealing again in between.
//!
//! The operator's tunnel connection (`connect` ↔ server) is TLS that the
//! server ends. Once both tunnel connections are upgraded:
//!
//! 1. the agent, which asked with [`HANDOVER_HEADER`] on its tunnel request
//!    and saw it echoed on the `101`, sends [`READY`] inside its own TLS
//!    session and then nothing until it has the server's answer;
//! 2. the server answers inside the agent's session with a [`Message`]: the
//!    operator's early bytes and, when it can, the operator session's
//!    traffic secrets and record numbers (its own side of them);
//! 3. from then on the server relays the two sockets byte for byte
//!    (splice(2): ciphertext never enters its memory), and the agent seals
//!    and opens the operator's records itself ([`crate::record`]).
//!
//! `connect` sees nothing of this: its TLS session, with the server's
//! certificate it verified, goes on. The server is trusted as before (it
//! chose the keys' holder and saw the handshake); what changes is who does
//! the work. The server keeps the session when it cannot hand it over (the
//! operator's TLS ended in a proxy, not TLS 1.3, part of a record already
//! read): the message then says so and both relay as before.
//!
//! Secrets travel only inside the agent's TLS session, live in memory only,
//! and are never logged.

mod agent;
mod secrets;
mod server;

pub use agent::{Taken, TakenKeys, take_over};
pub use secrets::{Tracked, TrafficSecrets, accept, keep_secrets};
pub use server::{Handover, ServerSide, hand_over};

use crate::record::{Suite, TrafficKeys};
use std::io::{self, Read};
use zeroize::Zeroizing;

/// Header of an agent's tunnel request that offers to take the session
/// over, echoed on the `101` by a server that will hand it over.
pub const HANDOVER_HEADER: &str = "x-doorman-handover";
/// What the agent sends when it is ready for the server's [`Message`].
pub const READY: u8 = 0x52;
/// The largest early-bytes part a message may carry.
const MAX_EARLY: usize = 1 << 20;
const MAGIC: &[u8; 4] = b"DMHO";

/// A handover (or a handed-over session) that went wrong on the wire.
pub(crate) fn invalid(error: impl ToString) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, error.to_string())
}

/// The suite a rustls session negotiated, if [`crate::record`] knows it.
fn suite_of(session: &rustls::CommonState) -> Option<Suite> {
    let suite = session.negotiated_cipher_suite()?;
    Suite::from_code(suite.suite().into())
}

/// Everything rustls has opened and not yet given out, appended to `into`.
pub(crate) fn drain(mut reader: rustls::Reader<'_>, into: &mut Vec<u8>) -> io::Result<()> {
    let mut chunk = [0u8; 4096];
    loop {
        match reader.read(&mut chunk) {
            // The end (close_notify), or nothing more for now.
            Ok(0) => return Ok(()),
            Ok(n) => into.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
            Err(e) => return Err(e),
        }
    }
}

/// The server's answer to [`READY`].
pub struct Message {
    /// Bytes the operator sent that the server already opened: the agent's
    /// target gets them first.
    pub early: Vec<u8>,
    /// The operator session's keys, from the server's side (the agent's
    /// `rx` opens what `connect` sealed); `None` when the server keeps the
    /// session.
    pub keys: Option<HandedKeys>,
}

/// One direction of a session: its next record number and traffic secret.
pub type Direction = (u64, Zeroizing<Vec<u8>>);

/// A handed-over session's two directions.
pub struct HandedKeys {
    pub suite: Suite,
    pub rx: Direction,
    pub tx: Direction,
    /// The operator had already ended its side (close_notify read by the
    /// server).
    pub closed: bool,
}

impl HandedKeys {
    /// The agent's keys: (opening, sealing).
    pub fn keys(&self) -> Result<(TrafficKeys, TrafficKeys), crate::record::RecordError> {
        Ok((
            TrafficKeys::new(self.suite, &self.rx.1, self.rx.0)?,
            TrafficKeys::new(self.suite, &self.tx.1, self.tx.0)?,
        ))
    }
}

/// Why a handover message does not parse.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum MessageError {
    #[error("not a handover message")]
    Magic,
    #[error("handover message of unknown kind {0}")]
    Kind(u8),
    #[error("handover message with {0} early bytes, over the limit")]
    TooLong(usize),
    #[error("handover message names unknown cipher suite {0:#06x}")]
    Suite(u16),
    #[error("handover message carries a secret of the wrong length")]
    Secret,
}

impl Message {
    pub fn encode(&self) -> Zeroizing<Vec<u8>> {
        let mut out = Zeroizing::new(Vec::with_capacity(self.early.len() + 128));
        out.extend_from_slice(MAGIC);
        out.push(u8::from(self.keys.is_some()));
        out.extend_from_slice(&(self.early.len() as u32).to_be_bytes());
        out.extend_from_slice(&self.early);
        if let Some(keys) = &self.keys {
            out.extend_from_slice(&keys.suite.code().to_be_bytes());
            out.push(u8::from(keys.closed));
            for (seq, secret) in [&keys.rx, &keys.tx] {
                out.extend_from_slice(&seq.to_be_bytes());
                out.push(secret.len() as u8);
                out.extend_from_slice(secret);
            }
        }
        out
    }

    /// The message at the start of `buffer` and its length; `Ok(None)`
    /// while it is incomplete.
    pub fn parse(buffer: &[u8]) -> Result<Option<(Message, usize)>, MessageError> {
        let mut reader = Reader { buffer, at: 0 };
        let Some(magic) = reader.take(4) else {
            return Ok(None);
        };
        if magic != MAGIC {
            return Err(MessageError::Magic);
        }
        let Some(kind) = reader.byte() else {
            return Ok(None);
        };
        if kind > 1 {
            return Err(MessageError::Kind(kind));
        }
        let Some(early_len) = reader.take(4) else {
            return Ok(None);
        };
        let early_len =
            u32::from_be_bytes([early_len[0], early_len[1], early_len[2], early_len[3]]);
        let early_len = early_len as usize;
        if early_len > MAX_EARLY {
            return Err(MessageError::TooLong(early_len));
        }
        let Some(early) = reader.take(early_len) else {
            return Ok(None);
        };
        let early = early.to_vec();
        if kind == 0 {
            return Ok(Some((Message { early, keys: None }, reader.at)));
        }
        let (Some(code), Some(closed)) = (reader.take(2), reader.byte()) else {
            return Ok(None);
        };
        let code = u16::from_be_bytes([code[0], code[1]]);
        let suite = Suite::from_code(code).ok_or(MessageError::Suite(code))?;
        let Some(rx) = reader.direction(suite)? else {
            return Ok(None);
        };
        let Some(tx) = reader.direction(suite)? else {
            return Ok(None);
        };
        let keys = HandedKeys {
            suite,
            rx,
            tx,
            closed: closed != 0,
        };
        let message = Message {
            early,
            keys: Some(keys),
        };
        Ok(Some((message, reader.at)))
    }
}

struct Reader<'a> {
    buffer: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let taken = self.buffer.get(self.at..self.at.checked_add(n)?)?;
        self.at += n;
        Some(taken)
    }

    fn byte(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }

    /// One direction's next record number and traffic secret; `Ok(None)`
    /// while incomplete.
    fn direction(&mut self, suite: Suite) -> Result<Option<Direction>, MessageError> {
        let (Some(seq), Some(len)) = (self.take(8), self.byte()) else {
            return Ok(None);
        };
        if usize::from(len) != suite.secret_len() {
            return Err(MessageError::Secret);
        }
        let Some(secret) = self.take(len.into()) else {
            return Ok(None);
        };
        let mut number = [0u8; 8];
        number.copy_from_slice(seq);
        Ok(Some((
            u64::from_be_bytes(number),
            Zeroizing::new(secret.to_vec()),
        )))
    }
}

#[cfg(test)]
mod tests;
