//! The relay (`proto::relay`) with TLS sides, on a relay thread, with real
//! rustls connections on loopback: early bytes,
//! small messages, bulk, half-close by close_notify, TLS on both sides (the
//! server's hop), and an end without close_notify, which is a truncation and
//! resets the other side.

use doorman_relay::relay;
use doorman_test_support::streams::{exchange, tcp_pair};
use doorman_wire::tls::MaybeTls;
use std::io::ErrorKind;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::{client, server};

type ClientTls = client::TlsStream<TcpStream>;
type ServerTls = server::TlsStream<TcpStream>;

/// A TLS connection on loopback: (client end, server end).
async fn tls_pair(dir: &std::path::Path) -> (ClientTls, ServerTls) {
    doorman_test_support::tls::loopback_pair(dir, |config, socket| {
        tokio_rustls::TlsAcceptor::from(config).accept(socket)
    })
    .await
}

/// Relays `a` ↔ `b` with `proto::relay` (on a relay thread: this test has
/// places to spare), as a task.
fn relaying(
    a: MaybeTls<ServerTls>,
    a_early: &'static [u8],
    b: MaybeTls<ClientTls>,
    b_early: &'static [u8],
) -> tokio::task::JoinHandle<std::io::Result<(u64, u64)>> {
    tokio::spawn(async move { Ok(relay(a, a_early, b, b_early).await?) })
}

fn tls<T>(stream: T) -> MaybeTls<T> {
    MaybeTls::Tls(Box::new(stream))
}

fn plain(socket: TcpStream) -> MaybeTls<ClientTls> {
    MaybeTls::Plain(socket)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_to_plain_carries_messages_bulk_and_half_close() {
    let dir = tempfile::tempdir().unwrap();
    let (left, relay_left) = tls_pair(dir.path()).await;
    let (relay_right, right) = tcp_pair().await;
    let relaying = relaying(tls(relay_left), b"", plain(relay_right), b"early ");
    let big: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
    let mut early = [0u8; 6];
    let mut left = left;
    left.read_exact(&mut early).await.unwrap();
    assert_eq!(&early, b"early ");
    let got = exchange(left, right, big.clone()).await;
    assert!(got == big, "bulk arrives whole and in order");
    let (forward, backward) = relaying.await.unwrap().unwrap();
    assert_eq!(forward, 50 * 64 + big.len() as u64);
    assert_eq!(backward, 6 + 50 * 64 + 23);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_on_both_sides_is_relayed_as_plaintext() {
    let dir = tempfile::tempdir().unwrap();
    let (left, relay_left) = tls_pair(&dir.path().join("a")).await;
    let (relay_right, right) = tls_pair(&dir.path().join("b")).await;
    let relaying = relaying(tls(relay_left), b"", tls(relay_right), b"");
    let big: Vec<u8> = (0..1_000_000u32).map(|i| (i % 241) as u8).collect();
    let got = exchange(left, right, big.clone()).await;
    assert!(got == big);
    assert!(relaying.await.unwrap().is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_end_without_close_notify_resets_the_other_side() {
    let dir = tempfile::tempdir().unwrap();
    let (left, relay_left) = tls_pair(dir.path()).await;
    let (relay_right, mut right) = tcp_pair().await;
    let relaying = relaying(tls(relay_left), b"", plain(relay_right), b"");
    let mut left = left;
    left.write_all(b"partial").await.unwrap();
    left.flush().await.unwrap();
    let mut got = [0u8; 7];
    right.read_exact(&mut got).await.unwrap();
    // The TCP connection ends under TLS: a truncation, not an end.
    let (socket, _) = left.into_inner();
    drop(socket);
    assert!(relaying.await.unwrap().is_err());
    let error = right.read_to_end(&mut Vec::new()).await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::ConnectionReset);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_relay_ends_both_connections() {
    let dir = tempfile::tempdir().unwrap();
    let (mut left, relay_left) = tls_pair(dir.path()).await;
    let (relay_right, mut right) = tcp_pair().await;
    let relaying = relaying(tls(relay_left), b"", plain(relay_right), b"");
    left.write_all(b"ping").await.unwrap();
    left.flush().await.unwrap();
    let mut got = [0u8; 4];
    right.read_exact(&mut got).await.unwrap();
    relaying.abort();
    let mut rest = Vec::new();
    right.read_to_end(&mut rest).await.unwrap();
    assert!(rest.is_empty());
    // The TLS side sees its connection end too (without close_notify).
    assert!(left.read_to_end(&mut Vec::new()).await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_the_thread_budget_tls_is_relayed_on_the_event_loop_alike() {
    // Every relay thread's place held here, including those this binary's
    // other tests hold for a moment (they give them back as they end).
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(20);
    let mut taken = Vec::new();
    while taken.len() < doorman_relay::MAX_THREADED {
        match doorman_relay::Slot::take() {
            Some(slot) => taken.push(slot),
            None => {
                assert!(tokio::time::Instant::now() < deadline, "places come back");
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            }
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let (left, relay_left) = tls_pair(&dir.path().join("a")).await;
    let (relay_right, right) = tls_pair(&dir.path().join("b")).await;
    let relaying = relaying(tls(relay_left), b"", tls(relay_right), b"");
    let big: Vec<u8> = (0..2_000_000u32).map(|i| (i % 239) as u8).collect();
    let got = exchange(left, right, big.clone()).await;
    assert!(got == big, "bulk arrives whole and in order");
    let (forward, _) = relaying.await.unwrap().unwrap();
    assert_eq!(forward, 50 * 64 + big.len() as u64);
}
