//! The server's one listening socket, plain or TLS. TLS handshakes run in
//! their own tasks so a slow client cannot hold up the accept loop.

use crate::acme::served::ACME_TLS_ALPN;
use doorman_proto::handover::Tracked;
use doorman_proto::tls::MaybeTls;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::mpsc;

/// How long a client has to finish the TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// A connection as accepted; TLS over a socket that follows its records,
/// so that a forwarded connection's session can be handed to the agent
/// (`doorman_proto::handover`).
pub type ServerStream = doorman_proto::handover::ServerSide;

/// Accepts plain or TLS connections.
pub enum DoormanListener {
    Plain(TcpListener),
    Tls {
        local: SocketAddr,
        accepted: mpsc::Receiver<(ServerStream, SocketAddr)>,
        acceptor: tokio::task::JoinHandle<()>,
    },
}

impl DoormanListener {
    pub fn new(
        listener: TcpListener,
        tls: Option<Arc<rustls::ServerConfig>>,
    ) -> std::io::Result<Self> {
        let Some(config) = tls else {
            return Ok(Self::Plain(listener));
        };
        let local = listener.local_addr()?;
        let (sender, accepted) = mpsc::channel(64);
        let acceptor = tokio_rustls::TlsAcceptor::from(config);
        let acceptor = tokio::spawn(async move {
            let mut backoff = AcceptBackoff::default();
            loop {
                let (stream, peer) = match listener.accept().await {
                    Ok(accepted) => {
                        backoff.succeeded();
                        accepted
                    }
                    Err(error) => {
                        backoff.failed(&error).await;
                        continue;
                    }
                };
                let _ = doorman_proto::socket::tune(&stream);
                let acceptor = acceptor.clone();
                let sender = sender.clone();
                tokio::spawn(async move {
                    match tokio::time::timeout(
                        HANDSHAKE_TIMEOUT,
                        acceptor.accept(Tracked::new(stream)),
                    )
                    .await
                    {
                        Ok(Ok(mut tls)) => {
                            // An ACME validation handshake has done its
                            // work once it completes (RFC 8737 §3).
                            if tls.get_ref().1.alpn_protocol() == Some(ACME_TLS_ALPN) {
                                let _ = tokio::io::AsyncWriteExt::shutdown(&mut tls).await;
                                return;
                            }
                            let _ = sender.send((MaybeTls::Tls(Box::new(tls)), peer)).await;
                        }
                        Ok(Err(error)) => tracing::debug!(%peer, %error, "TLS handshake failed"),
                        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                    }
                });
            }
        });
        Ok(Self::Tls {
            local,
            accepted,
            acceptor,
        })
    }
}

/// Waits after a failed accept (out of descriptors, most often), longer
/// each time up to a second, and says so once per run of failures rather
/// than once per attempt.
#[derive(Default)]
pub struct AcceptBackoff {
    failures: u32,
}

impl AcceptBackoff {
    pub async fn failed(&mut self, error: &std::io::Error) {
        if self.failures == 0 {
            tracing::warn!(%error, "cannot accept connections; waiting for descriptors to free up");
        }
        self.failures = self.failures.saturating_add(1);
        let wait = 50u64.saturating_mul(1 << self.failures.min(5)).min(1000);
        tokio::time::sleep(Duration::from_millis(wait)).await;
    }

    pub fn succeeded(&mut self) {
        if self.failures > 0 {
            tracing::info!(failed = self.failures, "accepting connections again");
            self.failures = 0;
        }
    }
}

impl Drop for DoormanListener {
    fn drop(&mut self) {
        if let DoormanListener::Tls { acceptor, .. } = self {
            acceptor.abort();
        }
    }
}

impl axum::serve::Listener for DoormanListener {
    type Io = ServerStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self {
            DoormanListener::Plain(listener) => {
                let mut backoff = AcceptBackoff::default();
                loop {
                    match TcpListener::accept(listener).await {
                        Ok((stream, peer)) => {
                            backoff.succeeded();
                            let _ = doorman_proto::socket::tune(&stream);
                            return (MaybeTls::Plain(stream), peer);
                        }
                        Err(error) => backoff.failed(&error).await,
                    }
                }
            }
            DoormanListener::Tls { accepted, .. } => match accepted.recv().await {
                Some(connection) => connection,
                None => std::future::pending().await,
            },
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        match self {
            DoormanListener::Plain(listener) => listener.local_addr(),
            DoormanListener::Tls { local, .. } => Ok(*local),
        }
    }
}
