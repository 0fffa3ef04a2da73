//! The accept loop. Each connection takes its place in the limits the
//! moment it is accepted (simultaneous connections are capped per source
//! network and overall, TLS handshakes under way too); its TLS handshake
//! gets the deadline of a request head; it is then served as HTTP/1.1 with
//! that deadline for every request head (the first and an idle keep-alive
//! wait alike), so a client that never finishes one is closed; and a stop
//! lets every connection finish its request.

use crate::listener::{DoormanListener, ServerStream};
use crate::slots::{Slot, Slots};
use axum::extract::ConnectInfo;
use doorman_runtime::lifecycle::Lifecycle;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tower::ServiceExt;

/// How many connections the server holds, and how long a request head may
/// take.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// All connections at once: agents, waiting operators, sessions, pages.
    pub max_connections: usize,
    /// From one source network (an IPv4 address, an IPv6 /64): an office
    /// behind one NAT holds one per computer.
    pub max_per_address: usize,
    /// TLS handshakes under way at once, overall and from one source
    /// network: a handshake costs the server work, and a client that never
    /// sends its ClientHello holds one until its deadline.
    pub max_handshakes: usize,
    pub max_handshakes_per_address: usize,
    /// From accepting a connection (or finishing a response) to the end of
    /// the next request head; a TLS handshake gets as long.
    pub header_timeout: Duration,
}

impl Default for ConnectionLimits {
    /// Room for 10,000 computers with a session each, a tenth of that from
    /// one network.
    fn default() -> Self {
        Self {
            max_connections: 30_000,
            max_per_address: 3_000,
            max_handshakes: 1_024,
            max_handshakes_per_address: 128,
            header_timeout: Duration::from_secs(10),
        }
    }
}

impl ConnectionLimits {
    /// These limits within `open_files` descriptors: some are kept for the
    /// database, the outbox and the log; when that lowers the overall
    /// limit, one network gets at most a tenth of it.
    pub fn within(self, open_files: u64) -> Self {
        let usable = usize::try_from(open_files.saturating_sub(64))
            .unwrap_or(usize::MAX)
            .max(8);
        let fitted = if usable >= self.max_connections {
            Self {
                max_per_address: self.max_per_address.min(self.max_connections),
                ..self
            }
        } else {
            Self {
                max_connections: usable,
                max_per_address: self.max_per_address.min((usable / 10).max(4)),
                ..self
            }
        };
        let max_handshakes = fitted.max_handshakes.min(fitted.max_connections);
        Self {
            max_handshakes,
            max_handshakes_per_address: fitted
                .max_handshakes_per_address
                .min(fitted.max_per_address)
                .min(max_handshakes),
            ..fitted
        }
    }
}

/// Raises this process's soft open-file limit to its hard limit; the soft
/// limit after that.
pub fn raise_open_file_limit() -> u64 {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let limit = getrlimit(Resource::Nofile);
    if limit.current != limit.maximum {
        let raised = rustix::process::Rlimit {
            current: limit.maximum,
            maximum: limit.maximum,
        };
        if setrlimit(Resource::Nofile, raised).is_ok() {
            return limit.maximum.unwrap_or(u64::MAX);
        }
    }
    limit.current.unwrap_or(u64::MAX)
}

/// An accepted connection with its slot: the slot goes with the stream
/// when the connection is upgraded (an agent's stays held as long as the
/// agent is connected).
pub struct Counted {
    pub stream: ServerStream,
    pub slot: Slot,
}

impl AsyncRead for Counted {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Counted {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}

/// Serves `router` on `listener` until `stopping` completes, then waits
/// for every connection's request to finish.
pub async fn serve(
    listener: DoormanListener,
    router: axum::Router,
    limits: ConnectionLimits,
    lifecycle: Lifecycle,
    refusals: metrics::Counter,
) {
    let slots = Slots::new(
        "connections",
        limits.max_connections,
        limits.max_per_address,
        refusals.clone(),
    );
    let handshakes = Slots::new(
        "TLS handshakes",
        limits.max_handshakes,
        limits.max_handshakes_per_address,
        refusals,
    );
    let opening = listener.opening(handshakes, limits.header_timeout);
    let connections = tokio_util::task::TaskTracker::new();
    loop {
        let (socket, peer) = tokio::select! {
            accepted = listener.accept() => accepted,
            () = lifecycle.stopping() => break,
        };
        let Some(slot) = slots.take(peer.ip()) else {
            drop(socket);
            continue;
        };
        let Some(admitted) = opening.admit(peer) else {
            drop(socket);
            continue;
        };
        let service = router
            .clone()
            .map_request(move |mut request: axum::extract::Request<_>| {
                request
                    .extensions_mut()
                    .insert(ConnectInfo::<SocketAddr>(peer));
                request
            });
        let lifecycle = lifecycle.clone();
        let opening = opening.clone();
        connections.spawn(async move {
            let stream = tokio::select! {
                opened = opening.open(socket, peer, admitted) => opened,
                () = lifecycle.stopping() => None,
            };
            let Some(stream) = stream else {
                return;
            };
            let mut http = hyper::server::conn::http1::Builder::new();
            http.timer(TokioTimer::new())
                .header_read_timeout(limits.header_timeout);
            let connection = http
                .serve_connection(
                    TokioIo::new(Counted { stream, slot }),
                    hyper_util::service::TowerToHyperService::new(service),
                )
                .with_upgrades();
            tokio::pin!(connection);
            tokio::select! {
                _ = connection.as_mut() => {}
                () = lifecycle.stopping() => {
                    connection.as_mut().graceful_shutdown();
                    let _ = connection.await;
                }
            }
        });
    }
    connections.close();
    connections.wait().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_shrink_to_fit_the_open_file_limit() {
        let wanted = ConnectionLimits::default();
        assert_eq!(wanted.within(1_048_576), wanted);
        let fitted = wanted.within(1024);
        assert_eq!(fitted.max_connections, 960);
        assert_eq!(fitted.max_per_address, 96);
        assert_eq!(
            (fitted.max_handshakes, fitted.max_handshakes_per_address),
            (960, 96)
        );
        let tiny = wanted.within(20);
        assert_eq!((tiny.max_connections, tiny.max_per_address), (8, 4));
        assert_eq!(
            (tiny.max_handshakes, tiny.max_handshakes_per_address),
            (8, 4)
        );
        let own = ConnectionLimits {
            max_connections: 6,
            max_per_address: 100,
            ..wanted
        };
        assert_eq!(own.within(1_048_576).max_per_address, 6);
    }
}
