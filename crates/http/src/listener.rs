//! The server's one listening socket, plain or TLS. The accept loop
//! (`serve`) takes each connection's place in the limits first; the TLS
//! handshake then runs in the connection's own task (`Opening`), within
//! a cap on handshakes under way and a deadline, so a client that never
//! sends its ClientHello holds one place until then and no more.

use crate::slots::{Slot, Slots};
use doorman_certificates::acme::served::ACME_TLS_ALPN;
use doorman_wire::accept::AcceptBackoff;
use doorman_wire::tls::MaybeTls;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};

/// A connection as accepted; TLS over a socket that follows its records,
/// so that a forwarded connection's session can be handed to the agent
/// (`doorman_relay::handover`).
pub type ServerStream = doorman_relay::handover::ServerSide;

/// Accepts connections, plain or TLS.
pub struct DoormanListener {
    socket: TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
}

impl DoormanListener {
    pub fn new(socket: TcpListener, tls: Option<Arc<rustls::ServerConfig>>) -> Self {
        Self { socket, tls }
    }

    /// The next TCP connection, tuned; waits out a shortage of
    /// descriptors.
    pub async fn accept(&self) -> (TcpStream, SocketAddr) {
        let mut backoff = AcceptBackoff::new("the server's port");
        loop {
            match self.socket.accept().await {
                Ok((stream, peer)) => {
                    backoff.succeeded();
                    let _ = doorman_wire::socket::tune(&stream);
                    return (stream, peer);
                }
                Err(error) => backoff.failed(&error).await,
            }
        }
    }

    /// What turns this listener's accepted sockets into connections,
    /// with at most `handshakes` TLS handshakes under way, each given
    /// `deadline`.
    pub(crate) fn opening(&self, handshakes: Arc<Slots>, deadline: Duration) -> Opening {
        Opening {
            tls: self.tls.clone(),
            handshakes,
            deadline,
        }
    }
}

/// Opens accepted sockets: plain ones as they are, TLS ones after their
/// handshake.
#[derive(Clone)]
pub(crate) struct Opening {
    tls: Option<Arc<rustls::ServerConfig>>,
    handshakes: Arc<Slots>,
    deadline: Duration,
}

impl Opening {
    /// A place for a connection from `peer` among the TLS handshakes under
    /// way, if there is one (a plain connection needs none). Taken in the
    /// accept loop, so that places go in the order connections came.
    pub(crate) fn admit(&self, peer: SocketAddr) -> Option<Admitted> {
        match &self.tls {
            None => Some(Admitted { _handshake: None }),
            Some(_) => self.handshakes.take(peer.ip()).map(|slot| Admitted {
                _handshake: Some(slot),
            }),
        }
    }

    /// The connection, or none if its handshake failed, missed its
    /// deadline or was an ACME validation (done once complete). Its place
    /// among the handshakes is given back when the handshake ends.
    pub(crate) async fn open(
        &self,
        socket: TcpStream,
        peer: SocketAddr,
        admitted: Admitted,
    ) -> Option<ServerStream> {
        let Some(config) = &self.tls else {
            return Some(MaybeTls::Plain(socket));
        };
        let handshake = async {
            let mut tls = doorman_relay::handover::accept(config, socket).await?;
            // An ACME validation handshake has done its work once it
            // completes (RFC 8737 §3).
            if tls.get_ref().1.alpn_protocol() == Some(ACME_TLS_ALPN) {
                let _ = tokio::io::AsyncWriteExt::shutdown(&mut tls).await;
                return Ok(None);
            }
            Ok::<_, std::io::Error>(Some(MaybeTls::Tls(Box::new(tls))))
        };
        let handshake = tokio::time::timeout(self.deadline, handshake).await;
        drop(admitted);
        match handshake {
            Ok(Ok(opened)) => opened,
            Ok(Err(error)) => {
                tracing::debug!(%peer, %error, "TLS handshake failed");
                None
            }
            Err(_) => {
                tracing::debug!(%peer, "TLS handshake timed out");
                None
            }
        }
    }
}

/// A connection's place among the TLS handshakes under way (none for a
/// plain one).
pub(crate) struct Admitted {
    _handshake: Option<Slot>,
}
