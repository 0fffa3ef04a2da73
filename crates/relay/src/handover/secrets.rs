//! What the server must know of a TLS connection to hand it over: its
//! traffic secrets (rustls gives them to a [`KeyLog`], and to nobody else)
//! and whether rustls holds part of a record it has not opened yet, which
//! [`Tracked`] learns by reading the record headers that pass through it.
//!
//! Each connection has a key log of its own, made by [`accept`] and held
//! by its [`Tracked`] socket, so the secrets die with the connection
//! whatever its ClientHello looked like: nothing is kept process-wide.

use rustls::KeyLog;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;
use zeroize::Zeroizing;

const CLIENT_SECRET: &str = "CLIENT_TRAFFIC_SECRET_0";
const SERVER_SECRET: &str = "SERVER_TRAFFIC_SECRET_0";

/// A connection's first application traffic secrets, wiped when dropped.
#[derive(Default)]
pub struct TrafficSecrets {
    pub client: Zeroizing<Vec<u8>>,
    pub server: Zeroizing<Vec<u8>>,
    /// A secret logged twice: something other than one TLS 1.3 handshake
    /// happened, so neither may be handed over.
    clashed: bool,
}

impl TrafficSecrets {
    /// Both logged, once each.
    fn usable(&self) -> bool {
        !self.clashed && !self.client.is_empty() && !self.server.is_empty()
    }
}

/// The [`KeyLog`] of one connection: keeps the two secrets a handover
/// needs, in this process's memory only, until the connection's
/// [`Tracked`] socket takes or forgets them.
#[derive(Debug)]
struct ConnectionKeyLog {
    secrets: Mutex<Option<TrafficSecrets>>,
}

impl std::fmt::Debug for TrafficSecrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TrafficSecrets(MASKED)")
    }
}

impl ConnectionKeyLog {
    fn lock(&self) -> MutexGuard<'_, Option<TrafficSecrets>> {
        self.secrets.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl KeyLog for ConnectionKeyLog {
    fn will_log(&self, label: &str) -> bool {
        label == CLIENT_SECRET || label == SERVER_SECRET
    }

    fn log(&self, label: &str, _client_random: &[u8], secret: &[u8]) {
        let mut secrets = self.lock();
        // Forgotten already (a control connection): keep nothing.
        let Some(entry) = secrets.as_mut() else {
            return;
        };
        let slot = if label == CLIENT_SECRET {
            &mut entry.client
        } else {
            &mut entry.server
        };
        if slot.is_empty() {
            *slot = Zeroizing::new(secret.to_vec());
        } else {
            entry.clashed = true;
        }
    }
}

/// Makes a server configuration's connections ones that can be handed
/// over: their secrets may be extracted. Accept them with [`accept`],
/// which gives each its own key log.
pub fn keep_secrets(config: &mut rustls::ServerConfig) {
    config.enable_secret_extraction = true;
}

/// Accepts a TLS connection over a [`Tracked`] socket that keeps the
/// connection's secrets (when `config` came through [`keep_secrets`]).
pub async fn accept(
    config: &Arc<rustls::ServerConfig>,
    socket: TcpStream,
) -> io::Result<TlsStream<Tracked>> {
    let tracked = Tracked::new(socket);
    let mut own = rustls::ServerConfig::clone(config);
    if own.enable_secret_extraction {
        own.key_log = Arc::clone(&tracked.log.0) as Arc<dyn KeyLog>;
    }
    tokio_rustls::TlsAcceptor::from(Arc::new(own))
        .accept(tracked)
        .await
}

/// A server's TCP socket that follows the TLS records read through it.
#[derive(Debug)]
pub struct Tracked {
    socket: TcpStream,
    log: Forget,
    /// Bytes of the current record's header read so far.
    header: [u8; 5],
    header_read: usize,
    /// Bytes of the current record's body still to come.
    body_left: usize,
}

impl Tracked {
    pub fn new(socket: TcpStream) -> Self {
        Tracked {
            socket,
            log: Forget(Arc::new(ConnectionKeyLog {
                secrets: Mutex::new(Some(TrafficSecrets::default())),
            })),
            header: [0; 5],
            header_read: 0,
            body_left: 0,
        }
    }

    pub fn get_ref(&self) -> &TcpStream {
        &self.socket
    }

    /// Whether every record read so far was read whole (so rustls holds no
    /// part of one).
    pub fn at_record_boundary(&self) -> bool {
        self.header_read == 0 && self.body_left == 0
    }

    /// Whether the connection's secrets were kept, once each.
    pub fn has_secrets(&self) -> bool {
        self.log
            .0
            .lock()
            .as_ref()
            .is_some_and(TrafficSecrets::usable)
    }

    /// Forgets the connection's secrets: it will not be handed over (an
    /// agent's or operator's control connection, which may live for days).
    pub fn forget_secrets(&mut self) {
        self.log.0.lock().take();
    }

    /// The socket; the connection's secrets if it had any (and only it).
    pub fn into_parts(self) -> (TcpStream, Option<TrafficSecrets>) {
        let Tracked { socket, log, .. } = self;
        let secrets = log.0.lock().take().filter(TrafficSecrets::usable);
        (socket, secrets)
    }

    fn follow(&mut self, mut data: &[u8]) {
        while !data.is_empty() {
            if self.body_left > 0 {
                let skip = self.body_left.min(data.len());
                self.body_left -= skip;
                data = &data[skip..];
                continue;
            }
            self.header[self.header_read] = data[0];
            self.header_read += 1;
            data = &data[1..];
            if self.header_read == self.header.len() {
                self.header_read = 0;
                self.body_left = usize::from(u16::from_be_bytes([self.header[3], self.header[4]]));
            }
        }
    }
}

/// A connection's key log, wiped when the connection's socket goes (the
/// rustls connection may outlive it by a moment and holds the log through
/// its configuration).
#[derive(Debug)]
struct Forget(Arc<ConnectionKeyLog>);

impl Drop for Forget {
    fn drop(&mut self) {
        self.0.lock().take();
    }
}

impl AsyncRead for Tracked {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.socket).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = &polled {
            this.follow(&buf.filled()[before..]);
        }
        polled
    }
}

impl AsyncWrite for Tracked {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().socket).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().socket).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.socket.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().socket).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().socket).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A server socket whose connection logged both secrets.
    async fn logged() -> Tracked {
        let (_peer, socket) = doorman_test_support::streams::tcp_pair().await;
        let tracked = Tracked::new(socket);
        tracked.log.0.log(CLIENT_SECRET, &[0; 32], &[1u8; 32]);
        tracked.log.0.log(SERVER_SECRET, &[0; 32], &[2u8; 32]);
        tracked
    }

    #[tokio::test]
    async fn the_servers_socket_knows_whether_a_record_is_partly_read() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let (mut peer, socket) = doorman_test_support::streams::tcp_pair().await;
        let mut tracked = Tracked::new(socket);
        let record = [23, 3, 3, 0, 4, 1, 2, 3, 4];
        for split in 1..record.len() {
            peer.write_all(&record).await.unwrap();
            let mut first = vec![0u8; split];
            tracked.read_exact(&mut first).await.unwrap();
            assert!(!tracked.at_record_boundary(), "{split} bytes of 9 read");
            let mut rest = vec![0u8; record.len() - split];
            tracked.read_exact(&mut rest).await.unwrap();
            assert!(tracked.at_record_boundary());
        }
        assert!(!tracked.has_secrets(), "no handshake logged any");
        tracked.log.0.log(CLIENT_SECRET, &[9u8; 32], &[1u8; 32]);
        assert!(!tracked.has_secrets(), "one of two");
        tracked.log.0.log(SERVER_SECRET, &[9u8; 32], &[2u8; 32]);
        assert!(tracked.has_secrets());
        let log = Arc::clone(&tracked.log.0);
        let (_, secrets) = tracked.into_parts();
        let secrets = secrets.unwrap();
        assert_eq!(
            (&secrets.client[..], &secrets.server[..]),
            (&[1u8; 32][..], &[2u8; 32][..])
        );
        assert!(log.lock().is_none(), "forgotten once taken");
    }

    #[tokio::test]
    async fn a_secret_logged_twice_hands_nothing_over_and_closing_forgets() {
        let tracked = logged().await;
        assert!(tracked.has_secrets());
        tracked.log.0.log(CLIENT_SECRET, &[0; 32], &[3u8; 32]);
        assert!(!tracked.has_secrets(), "two client secrets");
        let log = Arc::clone(&tracked.log.0);
        drop(tracked);
        assert!(log.lock().is_none(), "forgotten when closed");
    }

    #[tokio::test]
    async fn a_control_connection_forgets_its_secrets_at_once() {
        let mut tracked = logged().await;
        assert!(tracked.has_secrets());
        tracked.forget_secrets();
        assert!(!tracked.has_secrets());
        tracked.log.0.log(CLIENT_SECRET, &[0; 32], &[1u8; 32]);
        assert!(tracked.log.0.lock().is_none(), "nothing kept after");
    }

    #[tokio::test]
    async fn one_connections_secrets_are_not_anothers() {
        let one = logged().await;
        let (_peer, socket) = doorman_test_support::streams::tcp_pair().await;
        let other = Tracked::new(socket);
        assert!(one.has_secrets());
        assert!(!other.has_secrets());
    }
}
