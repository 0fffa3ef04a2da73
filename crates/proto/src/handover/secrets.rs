//! What the server must know of a TLS connection to hand it over: its
//! traffic secrets (rustls gives them to a [`KeyLog`], keyed by the
//! ClientHello's random, and to nobody else) and whether rustls holds part
//! of a record it has not opened yet, which [`Tracked`] learns by reading
//! the record headers that pass through it.

use rustls::KeyLog;
use std::collections::HashMap;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, LazyLock, Mutex, MutexGuard};
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use zeroize::Zeroizing;

const CLIENT_SECRET: &str = "CLIENT_TRAFFIC_SECRET_0";
const SERVER_SECRET: &str = "SERVER_TRAFFIC_SECRET_0";

/// A connection's first application traffic secrets, wiped when dropped.
#[derive(Default)]
pub struct TrafficSecrets {
    pub client: Zeroizing<Vec<u8>>,
    pub server: Zeroizing<Vec<u8>>,
    /// A second handshake logged under the same random (a client that
    /// copied another's ClientHello): neither may be handed over.
    clashed: bool,
}

impl TrafficSecrets {
    /// Both logged, by one handshake only.
    fn usable(&self) -> bool {
        !self.clashed && !self.client.is_empty() && !self.server.is_empty()
    }
}

type Random = [u8; 32];

/// Secrets of the live server connections, by client random. An entry
/// lives as long as its connection's [`Tracked`] socket.
static SECRETS: LazyLock<Mutex<HashMap<Random, TrafficSecrets>>> = LazyLock::new(Default::default);

fn secrets() -> MutexGuard<'static, HashMap<Random, TrafficSecrets>> {
    SECRETS.lock().unwrap_or_else(|e| e.into_inner())
}

/// The [`KeyLog`] that keeps the two secrets a handover needs, in this
/// process's memory only.
#[derive(Debug)]
struct KeepTrafficSecrets;

impl KeyLog for KeepTrafficSecrets {
    fn will_log(&self, label: &str) -> bool {
        label == CLIENT_SECRET || label == SERVER_SECRET
    }

    fn log(&self, label: &str, client_random: &[u8], secret: &[u8]) {
        let Ok(random) = Random::try_from(client_random) else {
            return;
        };
        let mut secrets = secrets();
        let entry = secrets.entry(random).or_default();
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
/// over: their secrets are kept (see [`KeepTrafficSecrets`]) and may be
/// extracted. Its connections must run over [`Tracked`] sockets, which
/// forget the secrets when they close.
pub fn keep_secrets(config: &mut rustls::ServerConfig) {
    config.key_log = Arc::new(KeepTrafficSecrets);
    config.enable_secret_extraction = true;
}

/// A server's TCP socket that follows the TLS records read through it.
#[derive(Debug)]
pub struct Tracked {
    socket: TcpStream,
    /// The first bytes read, until the ClientHello's random is among them
    /// (`None` after).
    hello: Option<Vec<u8>>,
    random: Forget,
    /// Bytes of the current record's header read so far.
    header: [u8; 5],
    header_read: usize,
    /// Bytes of the current record's body still to come.
    body_left: usize,
}

/// Where the random lies in the first record: record header (5),
/// handshake header (4), legacy version (2).
const RANDOM_AT: usize = 11;

impl Tracked {
    pub fn new(socket: TcpStream) -> Self {
        Tracked {
            socket,
            hello: Some(Vec::with_capacity(RANDOM_AT + 32)),
            random: Forget::default(),
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

    /// Whether the connection's secrets were kept (and no other handshake
    /// claimed its random).
    pub fn has_secrets(&self) -> bool {
        self.random
            .0
            .is_some_and(|random| secrets().get(&random).is_some_and(TrafficSecrets::usable))
    }

    /// Forgets the connection's secrets: it will not be handed over (an
    /// agent's or operator's control connection, which may live for days).
    pub fn forget_secrets(&mut self) {
        if let Some(random) = self.random.0.take() {
            secrets().remove(&random);
        }
    }

    /// The socket; the connection's secrets if it had any (and only it).
    pub fn into_parts(self) -> (TcpStream, Option<TrafficSecrets>) {
        let Tracked {
            socket, mut random, ..
        } = self;
        let secrets = random
            .0
            .take()
            .and_then(|random| secrets().remove(&random))
            .filter(TrafficSecrets::usable);
        (socket, secrets)
    }

    fn follow(&mut self, mut data: &[u8]) {
        if let Some(hello) = &mut self.hello {
            let want = (RANDOM_AT + 32 - hello.len()).min(data.len());
            hello.extend_from_slice(&data[..want]);
            if hello.len() == RANDOM_AT + 32 {
                // A handshake record holding a ClientHello.
                if hello[0] == 22 && hello[5] == 1 {
                    self.random.0 = hello[RANDOM_AT..].try_into().ok();
                }
                self.hello = None;
            }
        }
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
                self.body_left = u16::from_be_bytes([self.header[3], self.header[4]]) as usize;
            }
        }
    }
}

/// The client random of a connection whose secrets may be kept; forgets
/// them when dropped, with the connection.
#[derive(Debug, Default)]
struct Forget(Option<Random>);

impl Drop for Forget {
    fn drop(&mut self) {
        if let Some(random) = self.0 {
            secrets().remove(&random);
        }
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

    /// The start of a ClientHello record (55 bytes long) whose random is
    /// `[byte; 32]`.
    fn hello(byte: u8) -> Vec<u8> {
        let mut hello = vec![22, 3, 1, 0, 55, 1, 0, 0, 51, 3, 3];
        hello.extend_from_slice(&[byte; 32]);
        hello
    }

    /// A server socket that has read a ClientHello with random
    /// `[byte; 32]`, and both its secrets logged.
    async fn logged(byte: u8) -> Tracked {
        let (_peer, socket) = doorman_test_support::streams::tcp_pair().await;
        let mut tracked = Tracked::new(socket);
        tracked.follow(&hello(byte));
        let log = KeepTrafficSecrets;
        log.log(CLIENT_SECRET, &[byte; 32], &[1u8; 32]);
        log.log(SERVER_SECRET, &[byte; 32], &[2u8; 32]);
        tracked
    }

    #[tokio::test]
    async fn the_servers_socket_knows_whether_a_record_is_partly_read() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let (mut peer, socket) = doorman_test_support::streams::tcp_pair().await;
        let mut tracked = Tracked::new(socket);
        let mut hello = hello(9);
        hello.extend_from_slice(&[0u8; 17]);
        let record = [23, 3, 3, 0, 4, 1, 2, 3, 4];
        peer.write_all(&hello).await.unwrap();
        let mut buffer = vec![0u8; hello.len()];
        tracked.read_exact(&mut buffer).await.unwrap();
        assert!(tracked.at_record_boundary(), "the ClientHello read whole");
        assert!(!tracked.has_secrets(), "no handshake logged any");
        for split in 1..record.len() {
            peer.write_all(&record).await.unwrap();
            let mut first = vec![0u8; split];
            tracked.read_exact(&mut first).await.unwrap();
            assert!(!tracked.at_record_boundary(), "{split} bytes of 9 read");
            let mut rest = vec![0u8; record.len() - split];
            tracked.read_exact(&mut rest).await.unwrap();
            assert!(tracked.at_record_boundary());
        }
        // The secrets logged under its random are its own, until it goes.
        let log = KeepTrafficSecrets;
        log.log(CLIENT_SECRET, &[9u8; 32], &[1u8; 32]);
        assert!(!tracked.has_secrets(), "one of two");
        log.log(SERVER_SECRET, &[9u8; 32], &[2u8; 32]);
        assert!(tracked.has_secrets());
        let (_, secrets) = tracked.into_parts();
        let secrets = secrets.unwrap();
        assert_eq!(
            (&secrets.client[..], &secrets.server[..]),
            (&[1u8; 32][..], &[2u8; 32][..])
        );
        assert!(
            !super::secrets().contains_key(&[9u8; 32]),
            "forgotten once taken"
        );
    }

    #[tokio::test]
    async fn a_copied_random_hands_nothing_over_and_closing_forgets() {
        let tracked = logged(8).await;
        assert!(tracked.has_secrets());
        // A second handshake under the same random.
        let log = KeepTrafficSecrets;
        log.log(CLIENT_SECRET, &[8u8; 32], &[3u8; 32]);
        assert!(!tracked.has_secrets(), "two handshakes under one random");
        drop(tracked);
        assert!(
            !super::secrets().contains_key(&[8u8; 32]),
            "forgotten when closed"
        );
    }

    #[tokio::test]
    async fn a_control_connection_forgets_its_secrets_at_once() {
        let mut tracked = logged(7).await;
        assert!(tracked.has_secrets());
        tracked.forget_secrets();
        assert!(!tracked.has_secrets());
        assert!(!super::secrets().contains_key(&[7u8; 32]));
    }
}
