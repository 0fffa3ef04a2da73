//! The agent's side of a handover: says [`READY`] inside its own TLS
//! session, then opens the server's records one at a time (so that rustls
//! reads none of the operator's records that follow) until the
//! [`Message`] is whole.

use super::{Message, READY, drain, invalid};
use crate::record::{TrafficKeys, record_len};
use std::io::{self, Write};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use zeroize::Zeroizing;

/// How long the server has to answer [`READY`].
const ANSWER_TIMEOUT: Duration = Duration::from_secs(30);

/// A tunnel after the handover.
pub struct Taken {
    pub socket: TcpStream,
    pub keys: TakenKeys,
    /// Ciphertext read past the message: the first records of what follows.
    pub ciphertext: Vec<u8>,
    /// Bytes for the target, first.
    pub early: Vec<u8>,
    /// The operator has already ended its side.
    pub closed: bool,
}

pub enum TakenKeys {
    /// The operator's session: this side opens with `rx`, seals with `tx`.
    Handed { rx: TrafficKeys, tx: TrafficKeys },
    /// The server kept it: the agent's own session goes on.
    Kept(rustls::Connection),
}

/// Runs the agent's side on its upgraded tunnel connection: `socket` and
/// `tls` its parts, `buffered` what the HTTP layer read past the `101`.
pub async fn take_over(
    mut socket: TcpStream,
    mut tls: rustls::Connection,
    buffered: &[u8],
) -> io::Result<Taken> {
    if !buffered.is_empty() {
        return Err(invalid("the server sent bytes before the handover"));
    }
    tls.writer().write_all(&[READY])?;
    let mut sealed = Vec::new();
    while tls.wants_write() {
        tls.write_tls(&mut sealed)?;
    }
    socket.write_all(&sealed).await?;
    tokio::time::timeout(ANSWER_TIMEOUT, answer(socket, tls))
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "the server never handed over"))?
}

async fn answer(mut socket: TcpStream, mut tls: rustls::Connection) -> io::Result<Taken> {
    let mut incoming: Vec<u8> = Vec::with_capacity(32 * 1024);
    let mut opened = 0;
    // It holds the message, secrets and all.
    let mut plaintext = Zeroizing::new(Vec::new());
    loop {
        while let Some(len) = record_len(&incoming[opened..]) {
            if incoming.len() - opened < len {
                break;
            }
            let mut record = &incoming[opened..opened + len];
            while !record.is_empty() {
                tls.read_tls(&mut record)?;
            }
            opened += len;
            tls.process_new_packets().map_err(invalid)?;
            drain(tls.reader(), &mut plaintext)?;
            let parsed = Message::parse(&plaintext).map_err(invalid)?;
            if let Some((message, used)) = parsed {
                return taken(
                    socket,
                    tls,
                    message,
                    &plaintext[used..],
                    &incoming[opened..],
                );
            }
        }
        let read = socket.read_buf(&mut incoming).await?;
        if read == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the server ended the tunnel before handing it over",
            ));
        }
    }
}

fn taken(
    socket: TcpStream,
    tls: rustls::Connection,
    message: Message,
    plaintext_after: &[u8],
    ciphertext: &[u8],
) -> io::Result<Taken> {
    let mut early = message.early;
    let (keys, closed) = match message.keys {
        Some(handed) => {
            if !plaintext_after.is_empty() {
                return Err(invalid("the server sent bytes after handing over"));
            }
            let (rx, tx) = handed.keys().map_err(invalid)?;
            (TakenKeys::Handed { rx, tx }, handed.closed)
        }
        None => {
            early.extend_from_slice(plaintext_after);
            (TakenKeys::Kept(tls), false)
        }
    };
    Ok(Taken {
        socket,
        keys,
        ciphertext: ciphertext.to_vec(),
        early,
        closed,
    })
}
