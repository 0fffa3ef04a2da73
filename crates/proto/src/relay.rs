//! Relaying two byte streams both ways until both directions end: on
//! threads of their own ([`crate::threaded`] when both are plain TCP,
//! [`crate::tls_threaded`] when either is TLS); once too many relays run on
//! threads, on the event loop (splice(2) for plain TCP, buffered copies for
//! TLS); buffered copies too for a stream hyper keeps wrapped.

use crate::dial::Upgraded;
use crate::tls::{MaybeTls, TlsParts};
use hyper_util::rt::TokioIo;
use std::io;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

/// A dialed connection's stream, under hyper's upgrade wrapper.
type DialedStream = MaybeTls<tokio_rustls::client::TlsStream<TcpStream>>;

/// Relays `a` ↔ `b`. `a_early` are bytes already read from `a` that belong
/// to `b` (sent first), and likewise `b_early`. Returns the bytes moved each
/// way; an error either way resets both connections.
pub async fn relay<S, T>(
    mut a: MaybeTls<S>,
    a_early: &[u8],
    mut b: MaybeTls<T>,
    b_early: &[u8],
) -> io::Result<(u64, u64)>
where
    S: AsyncRead + AsyncWrite + Unpin + TlsParts,
    T: AsyncRead + AsyncWrite + Unpin + TlsParts,
{
    send_early(&mut a, a_early, &mut b, b_early).await?;
    let (up, down) = relay_streams(a, b).await?;
    Ok((up + a_early.len() as u64, down + b_early.len() as u64))
}

/// The relay proper: on threads while there are places, else on the event
/// loop.
async fn relay_streams<S, T>(a: MaybeTls<S>, b: MaybeTls<T>) -> io::Result<(u64, u64)>
where
    S: AsyncRead + AsyncWrite + Unpin + TlsParts,
    T: AsyncRead + AsyncWrite + Unpin + TlsParts,
{
    #[cfg(target_os = "linux")]
    if let Some(slot) = crate::threaded::Slot::take() {
        use crate::tls_threaded::Side;
        return match (a, b) {
            (MaybeTls::Plain(a), MaybeTls::Plain(b)) => crate::threaded::relay(slot, a, b).await,
            (a, b) => crate::tls_threaded::relay(slot, Side::of(a)?, Side::of(b)?).await,
        };
    }
    match (a, b) {
        #[cfg(target_os = "linux")]
        (MaybeTls::Plain(a), MaybeTls::Plain(b)) => crate::splice::relay(a, b).await,
        (mut a, mut b) => {
            let relayed = copy_bidirectional(&mut a, &mut b).await;
            if relayed.is_err() {
                a.reset_when_closed();
                b.reset_when_closed();
            }
            relayed
        }
    }
}

/// Writes the bytes each side had already sent, flushed (a TLS stream would
/// hold them back otherwise).
async fn send_early<A, B>(a: &mut A, a_early: &[u8], b: &mut B, b_early: &[u8]) -> io::Result<()>
where
    A: AsyncWrite + Unpin,
    B: AsyncWrite + Unpin,
{
    b.write_all(a_early).await?;
    b.flush().await?;
    a.write_all(b_early).await?;
    a.flush().await
}

async fn copy_bidirectional<A, B>(a: &mut A, b: &mut B) -> io::Result<(u64, u64)>
where
    A: AsyncRead + AsyncWrite + Unpin,
    B: AsyncRead + AsyncWrite + Unpin,
{
    tokio::io::copy_bidirectional_with_sizes(a, b, crate::RELAY_BUFFER, crate::RELAY_BUFFER).await
}

/// [`relay`] with buffered copies on the event loop, for any two streams.
pub async fn copy<A, B>(
    mut a: A,
    a_early: &[u8],
    mut b: B,
    b_early: &[u8],
) -> io::Result<(u64, u64)>
where
    A: AsyncRead + AsyncWrite + Unpin,
    B: AsyncRead + AsyncWrite + Unpin,
{
    send_early(&mut a, a_early, &mut b, b_early).await?;
    let (up, down) = copy_bidirectional(&mut a, &mut b).await?;
    Ok((up + a_early.len() as u64, down + b_early.len() as u64))
}

/// Carries a local TCP connection through a dialed tunnel (the operator's
/// `-L` side, the agent's target side).
pub async fn relay_dialed(tunnel: Upgraded, local: TcpStream) -> io::Result<(u64, u64)> {
    let mut local = DialedStream::Plain(local);
    match tunnel.into_inner().downcast::<TokioIo<DialedStream>>() {
        Ok(parts) => relay(local, &[], parts.io.into_inner(), &parts.read_buf).await,
        Err(upgraded) => {
            let relayed = copy(&mut local, &[], TokioIo::new(upgraded), &[]).await;
            if relayed.is_err() {
                local.reset_when_closed();
            }
            relayed
        }
    }
}
