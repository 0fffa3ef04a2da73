//! The two ends of a relayed stream: [`relay`] and [`copy`] join them both
//! ways until both directions end, whatever each is (plain TCP or TLS), and
//! [`relay_taken_over_tls`] a TLS session the server handed over.

#[cfg(unix)]
use crate::drive::{self, Slot};
#[cfg(unix)]
use crate::engine::Engine;
#[cfg(unix)]
use crate::handover::{TakenKeys, take_over};
#[cfg(unix)]
use crate::sealed::Sealed;
#[cfg(unix)]
use crate::side::{Incoming, Side};
use crate::tls_parts::TlsParts;
use doorman_wire::dial::Upgraded;
use doorman_wire::tls::MaybeTls;
use hyper_util::rt::TokioIo;
use std::io;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

/// A dialed connection's stream, under hyper's upgrade wrapper.
pub(crate) type DialedStream = MaybeTls<tokio_rustls::client::TlsStream<TcpStream>>;

/// Buffer size of each direction of [`copy`].
const COPY_BUFFER: usize = 64 * 1024;

/// A relay that failed, and the bytes it had moved each way by then (what a
/// meter of relayed bytes should count all the same).
#[derive(Debug, thiserror::Error)]
#[error("{source}")]
pub struct RelayError {
    pub source: io::Error,
    pub moved: (u64, u64),
}

impl RelayError {
    /// A relay that failed before it moved anything.
    pub fn before_any(source: io::Error) -> Self {
        RelayError {
            source,
            moved: (0, 0),
        }
    }

    /// Adds the early bytes, which were sent before the failure.
    fn plus(mut self, up: usize, down: usize) -> Self {
        self.moved.0 += up as u64;
        self.moved.1 += down as u64;
        self
    }
}

impl From<RelayError> for io::Error {
    fn from(error: RelayError) -> Self {
        error.source
    }
}

#[cfg(unix)]
/// Relays `a` ↔ `b`. `a_early` are bytes already read from `a` that belong
/// to `b` (sent first), and likewise `b_early`. Returns the bytes moved each
/// way; an error either way resets both connections, and a TLS side that
/// ends without close_notify is an error.
pub async fn relay<S, T>(
    mut a: MaybeTls<S>,
    a_early: &[u8],
    mut b: MaybeTls<T>,
    b_early: &[u8],
) -> Result<(u64, u64), RelayError>
where
    S: AsyncRead + AsyncWrite + Unpin + TlsParts,
    T: AsyncRead + AsyncWrite + Unpin + TlsParts,
{
    send_early(&mut a, a_early, &mut b, b_early)
        .await
        .map_err(RelayError::before_any)?;
    let sides = Side::of(a).and_then(|a| Ok((a, Side::of(b)?)));
    let (a, b) = sides.map_err(RelayError::before_any)?;
    let (up, down) = relay_sides(a, b)
        .await
        .map_err(|e| e.plus(a_early.len(), b_early.len()))?;
    Ok((up + a_early.len() as u64, down + b_early.len() as u64))
}

/// [`relay`] where the engine's system calls are missing: tokio's copies.
#[cfg(not(unix))]
pub async fn relay<S, T>(
    mut a: MaybeTls<S>,
    a_early: &[u8],
    mut b: MaybeTls<T>,
    b_early: &[u8],
) -> Result<(u64, u64), RelayError>
where
    S: AsyncRead + AsyncWrite + Unpin + TlsParts,
    T: AsyncRead + AsyncWrite + Unpin + TlsParts,
{
    let relayed = copy(&mut a, a_early, &mut b, b_early).await;
    if relayed.is_err() {
        // As the engine does: an error either way resets both.
        a.reset_when_closed();
        b.reset_when_closed();
    }
    relayed
}

#[cfg(unix)]
pub(crate) async fn relay_sides(a: Side, b: Side) -> Result<(u64, u64), RelayError> {
    let engine = Engine::new(a, b);
    match Slot::take() {
        Some(slot) => drive::on_thread(slot, engine).await,
        None => drive::on_event_loop(engine).await,
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

/// [`relay`] with tokio's buffered copies, for streams that cannot give up
/// their socket.
pub async fn copy<A, B>(
    mut a: A,
    a_early: &[u8],
    mut b: B,
    b_early: &[u8],
) -> Result<(u64, u64), RelayError>
where
    A: AsyncRead + AsyncWrite + Unpin,
    B: AsyncRead + AsyncWrite + Unpin,
{
    send_early(&mut a, a_early, &mut b, b_early)
        .await
        .map_err(RelayError::before_any)?;
    // tokio's copies tell nothing of what they moved before an error.
    let (up, down) =
        tokio::io::copy_bidirectional_with_sizes(&mut a, &mut b, COPY_BUFFER, COPY_BUFFER)
            .await
            .map_err(|e| RelayError::before_any(e).plus(a_early.len(), b_early.len()))?;
    Ok((up + a_early.len() as u64, down + b_early.len() as u64))
}

/// Carries a local TCP connection through a dialed tunnel (the operator's
/// `-L` side, the agent's target side).
pub async fn relay_dialed(tunnel: Upgraded, local: TcpStream) -> io::Result<(u64, u64)> {
    let mut local = DialedStream::Plain(local);
    match tunnel.into_inner().downcast::<TokioIo<DialedStream>>() {
        Ok(parts) => Ok(relay(local, &[], parts.io.into_inner(), &parts.read_buf).await?),
        Err(upgraded) => {
            let relayed = copy(&mut local, &[], TokioIo::new(upgraded), &[]).await;
            if relayed.is_err() {
                local.reset_when_closed();
            }
            Ok(relayed?)
        }
    }
}

#[cfg(unix)]
/// [`relay_dialed`] for a tunnel whose server answered the agent's
/// [`crate::handover::HANDOVER_HEADER`]: takes the operator's TLS session
/// over when the server hands it, else goes on with its own.
pub async fn relay_taken_over(tunnel: Upgraded, local: TcpStream) -> io::Result<(u64, u64)> {
    let parts = tunnel
        .into_inner()
        .downcast::<TokioIo<DialedStream>>()
        .map_err(|_| io::Error::other("a handed-over tunnel must be a dialed connection"))?;
    let MaybeTls::Tls(stream) = parts.io.into_inner() else {
        return Err(io::Error::other("a handed-over tunnel must be TLS"));
    };
    relay_taken_over_tls(*stream, &parts.read_buf, local).await
}

/// Where the engine is missing the agent asks for no handover (see
/// `doorman_relay::handover`), so no tunnel is handed over to it.
#[cfg(not(unix))]
pub async fn relay_taken_over(_tunnel: Upgraded, _local: TcpStream) -> io::Result<(u64, u64)> {
    Err(io::Error::other(
        "a tunnel was handed over, which this platform's relay does not take",
    ))
}

#[cfg(unix)]
/// [`relay_taken_over`] on the tunnel's TLS stream; `buffered` is what was
/// read past its upgrade.
pub async fn relay_taken_over_tls(
    tunnel: tokio_rustls::client::TlsStream<TcpStream>,
    buffered: &[u8],
    mut local: TcpStream,
) -> io::Result<(u64, u64)> {
    let (socket, tls) = tunnel.into_parts();
    let taken = take_over(socket, tls, buffered).await?;
    local.write_all(&taken.early).await?;
    let socket = taken.socket.into_std()?;
    let tunnel = match taken.keys {
        TakenKeys::Handed { rx, tx } => Side::Sealed(Box::new(Sealed::new(
            socket,
            rx,
            tx,
            &taken.ciphertext,
            taken.closed,
        ))),
        TakenKeys::Kept(tls) => Side::Tls {
            socket,
            tls: Box::new(tls),
            closing: false,
            incoming: Incoming::new(&taken.ciphertext),
        },
    };
    let (up, down) = relay_sides(Side::Plain(local.into_std()?), tunnel).await?;
    Ok((up, down + taken.early.len() as u64))
}
