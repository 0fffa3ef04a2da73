//! Relaying two upgraded connections byte for byte: with splice(2), so the
//! bytes never enter user space, when both are plain TCP; with a buffered
//! copy otherwise (TLS).

use crate::listener::ServerStream;
use bytes::Bytes;
use doorman_proto::dial::Upgraded;
use doorman_proto::tls::MaybeTls;
use hyper_util::rt::TokioIo;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};

/// An upgraded connection, unwrapped down to its socket where possible.
enum Stream {
    Direct(ServerStream),
    Wrapped(Upgraded),
}

/// The socket under an upgraded connection and the bytes hyper had already
/// read from it.
fn unwrap(io: Upgraded) -> (Stream, Bytes) {
    // axum serves through hyper-util's auto builder, which wraps the socket;
    // its own downcast sees through that.
    match hyper_util::server::conn::auto::upgrade::downcast::<TokioIo<ServerStream>>(
        io.into_inner(),
    ) {
        Ok(parts) => (Stream::Direct(parts.io.into_inner()), parts.read_buf),
        Err(upgraded) => (Stream::Wrapped(TokioIo::new(upgraded)), Bytes::new()),
    }
}

/// Relays `a` ↔ `b` until both directions end; `a_early` are bytes already
/// read from `a` that belong to `b`. Returns the bytes moved each way.
pub async fn relay(a: Upgraded, a_early: &[u8], b: Upgraded) -> io::Result<(u64, u64)> {
    let (a, a_buffered) = unwrap(a);
    let (b, b_buffered) = unwrap(b);
    let mut a_first = a_early.to_vec();
    a_first.extend_from_slice(&a_buffered);
    match (a, b) {
        #[cfg(target_os = "linux")]
        (Stream::Direct(MaybeTls::Plain(a)), Stream::Direct(MaybeTls::Plain(b))) => {
            doorman_proto::splice::relay(a, &a_first, b, &b_buffered).await
        }
        (mut a, mut b) => {
            b.write_all(&a_first).await?;
            a.write_all(&b_buffered).await?;
            let (up, down) = tokio::io::copy_bidirectional_with_sizes(
                &mut a,
                &mut b,
                doorman_proto::RELAY_BUFFER,
                doorman_proto::RELAY_BUFFER,
            )
            .await?;
            Ok((up + a_first.len() as u64, down + b_buffered.len() as u64))
        }
    }
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Direct(stream) => Pin::new(stream).poll_read(cx, buf),
            Stream::Wrapped(stream) => Pin::new(stream).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Direct(stream) => Pin::new(stream).poll_write(cx, buf),
            Stream::Wrapped(stream) => Pin::new(stream).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Direct(stream) => Pin::new(stream).poll_flush(cx),
            Stream::Wrapped(stream) => Pin::new(stream).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Direct(stream) => Pin::new(stream).poll_shutdown(cx),
            Stream::Wrapped(stream) => Pin::new(stream).poll_shutdown(cx),
        }
    }
}
