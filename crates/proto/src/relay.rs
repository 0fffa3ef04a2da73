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
/// way.
pub async fn relay<S, T>(
    a: MaybeTls<S>,
    a_early: &[u8],
    b: MaybeTls<T>,
    b_early: &[u8],
) -> io::Result<(u64, u64)>
where
    S: AsyncRead + AsyncWrite + Unpin + TlsParts,
    T: AsyncRead + AsyncWrite + Unpin + TlsParts,
{
    #[cfg(target_os = "linux")]
    let slot = crate::threaded::Slot::take();
    match (a, b) {
        #[cfg(target_os = "linux")]
        (MaybeTls::Plain(a), MaybeTls::Plain(b)) => match slot {
            Some(slot) => crate::threaded::relay(slot, a, a_early, b, b_early).await,
            None => crate::splice::relay(a, a_early, b, b_early).await,
        },
        #[cfg(target_os = "linux")]
        (a, b) if slot.is_some() => {
            use crate::tls_threaded::{Side, relay};
            let slot = slot.ok_or_else(|| io::Error::other("no relay slot"))?;
            relay(slot, Side::of(a)?, a_early, Side::of(b)?, b_early).await
        }
        (mut a, mut b) => {
            let relayed = copy(&mut a, a_early, &mut b, b_early).await;
            if relayed.is_err() {
                a.reset_when_closed();
                b.reset_when_closed();
            }
            relayed
        }
    }
}

/// [`relay`] with buffered copies, for any two streams.
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
    b.write_all(a_early).await?;
    a.write_all(b_early).await?;
    let (up, down) = tokio::io::copy_bidirectional_with_sizes(
        &mut a,
        &mut b,
        crate::RELAY_BUFFER,
        crate::RELAY_BUFFER,
    )
    .await?;
    Ok((up + a_early.len() as u64, down + b_early.len() as u64))
}

/// Carries a local TCP connection through a dialed tunnel (the operator's
/// `-L` side, the agent's target side).
pub async fn relay_dialed(tunnel: Upgraded, local: TcpStream) -> io::Result<(u64, u64)> {
    let mut local = MaybeTls::<tokio_rustls::client::TlsStream<TcpStream>>::Plain(local);
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
