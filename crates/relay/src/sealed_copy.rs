//! A sealed tunnel's records where the relay engine is missing (Windows):
//! tokio copies the bytes, sealing what goes into the tunnel and opening
//! what comes out of it, with the engine's policy: a close_notify ends a
//! direction, a socket that ends without one (or a record that does not
//! open) is an error, and an error resets both.

use crate::record::{MAX_PLAINTEXT, RecordError, TrafficKeys, content, key_update, record_len};
use std::io;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

fn broken(error: RecordError) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, error.to_string())
}

/// Relays `local` through the sealed `tunnel`; the bytes moved each way.
pub(crate) async fn relay(
    tunnel: TcpStream,
    rx: TrafficKeys,
    tx: TrafficKeys,
    local: TcpStream,
) -> io::Result<(u64, u64)> {
    let (tunnel_in, tunnel_out) = tunnel.into_split();
    let (local_in, local_out) = local.into_split();
    let relayed = tokio::try_join!(
        seal(local_in, tx, tunnel_out),
        open(tunnel_in, rx, local_out)
    );
    relayed
}

/// `from`'s bytes sealed into `to`, then close_notify and FIN.
async fn seal(
    mut from: impl AsyncRead + Unpin,
    mut tx: TrafficKeys,
    mut to: impl AsyncWrite + Unpin,
) -> io::Result<u64> {
    let mut plain = vec![0u8; MAX_PLAINTEXT];
    let mut sealed = Vec::with_capacity(MAX_PLAINTEXT + 64);
    let mut moved = 0;
    loop {
        let n = from.read(&mut plain).await?;
        sealed.clear();
        if n == 0 {
            tx.seal(content::ALERT, &[1, 0], &mut sealed)
                .map_err(broken)?;
            to.write_all(&sealed).await?;
            to.shutdown().await?;
            return Ok(moved);
        }
        // A worn key is updated as the engine does: the update is sealed
        // with the old key, what follows with the next one.
        if tx.is_worn() {
            tx.seal(content::HANDSHAKE, &key_update(false), &mut sealed)
                .map_err(broken)?;
            tx.update();
        }
        tx.seal(content::APPLICATION_DATA, &plain[..n], &mut sealed)
            .map_err(broken)?;
        to.write_all(&sealed).await?;
        moved += n as u64;
    }
}

/// `from`'s records opened into `to`, until close_notify.
async fn open(
    mut from: impl AsyncRead + Unpin,
    mut rx: TrafficKeys,
    mut to: impl AsyncWrite + Unpin,
) -> io::Result<u64> {
    let mut incoming: Vec<u8> = Vec::with_capacity(64 * 1024);
    let mut moved = 0;
    loop {
        while let Some(len) = record_len(&incoming) {
            if incoming.len() < len {
                break;
            }
            let (kind, range) = rx.open(&mut incoming[..len]).map_err(broken)?;
            match kind {
                content::APPLICATION_DATA => {
                    to.write_all(&incoming[range.clone()]).await?;
                    moved += range.len() as u64;
                }
                content::ALERT if incoming[range.clone()] == [1, 0] => {
                    to.shutdown().await?;
                    return Ok(moved);
                }
                content::ALERT => {}
                // The other end's key update: its next records use its next
                // key. (The engine never asks for one in return.)
                content::HANDSHAKE if matches!(incoming[range.clone()], [24, 0, 0, 1, 0 | 1]) => {
                    rx.update();
                }
                other => {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!(
                            "a sealed tunnel sent a record of type {other}, which this side does not take"
                        ),
                    ));
                }
            }
            incoming.drain(..len);
        }
        if from.read_buf(&mut incoming).await? == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the tunnel ended without close_notify",
            ));
        }
    }
}
