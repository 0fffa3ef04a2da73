//! The relay as its users see it: early bytes, small messages, bulk,
//! half-close, resets and teardown, on a relay thread and on the event loop.

use super::{MAX_THREADED, Slot};
use doorman_test_support::streams;
use doorman_wire::tls::MaybeTls;
use std::io::ErrorKind;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;

/// The tests share the process's slots; one at a time.
static SLOTS: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// `left` ↔ relay ↔ `right`, the relay (`proto::relay`) running as a
/// task: on threads, or with `threads` false on the event loop, as when
/// no place is left.
async fn relayed(threads: bool, a_early: &'static [u8], b_early: &'static [u8]) -> Relayed {
    let (left, left_inner) = streams::tcp_pair().await;
    let (right_inner, right) = streams::tcp_pair().await;
    let taken = if threads { Vec::new() } else { take_all() };
    let relaying = tokio::spawn(crate::relay(
        MaybeTls::<tokio_rustls::client::TlsStream<TcpStream>>::Plain(left_inner),
        a_early,
        MaybeTls::<tokio_rustls::client::TlsStream<TcpStream>>::Plain(right_inner),
        b_early,
    ));
    (left, right, relaying, taken)
}

/// The two outer ends, the relay, and the places held so that the relay
/// runs on the event loop.
type Relayed = (
    TcpStream,
    TcpStream,
    JoinHandle<Result<(u64, u64), crate::RelayError>>,
    Vec<Slot>,
);

fn take_all() -> Vec<Slot> {
    std::iter::from_fn(Slot::take).collect()
}

/// Early bytes, round trips of small messages, a bulk transfer and a
/// half-close, through a relay made by [`relayed`].
async fn small_messages_bulk_and_half_close(threads: bool) {
    let (mut left, mut right, relaying, _taken) =
        relayed(threads, b"early-left ", b"early-right ").await;
    let mut early = [0u8; 11];
    right.read_exact(&mut early).await.unwrap();
    assert_eq!(&early, b"early-left ");
    let mut early = [0u8; 12];
    left.read_exact(&mut early).await.unwrap();
    assert_eq!(&early, b"early-right ");
    let big: Vec<u8> = (0..5_000_000u32).map(|i| (i % 251) as u8).collect();
    let got = streams::exchange(left, right, big.clone()).await;
    assert!(got == big, "bulk bytes arrive whole and in order");
    let (forward, backward) = relaying.await.unwrap().unwrap();
    let rounds = (streams::ROUNDS * 64) as u64;
    assert_eq!(forward, 11 + rounds + big.len() as u64);
    assert_eq!(backward, 12 + rounds + streams::ANSWER.len() as u64);
}

#[tokio::test]
async fn small_messages_bulk_and_half_close_cross_both_ways() {
    let _slots = SLOTS.lock().await;
    small_messages_bulk_and_half_close(true).await;
}

#[tokio::test]
async fn relays_beyond_the_thread_budget_run_on_the_event_loop() {
    let _slots = SLOTS.lock().await;
    small_messages_bulk_and_half_close(false).await;
    assert_eq!(take_all().len(), MAX_THREADED, "places come back");
}

#[tokio::test]
async fn a_reset_on_one_side_resets_the_other() {
    let _slots = SLOTS.lock().await;
    for threads in [true, false] {
        let (mut left, mut right, relaying, _taken) = relayed(threads, b"early", b"").await;
        right.read_exact(&mut [0u8; 5]).await.unwrap();
        left.write_all(b"hello").await.unwrap();
        right.set_zero_linger().unwrap();
        drop(right);
        let failed = relaying.await.unwrap().unwrap_err();
        assert!(
            failed.moved.0 >= 5,
            "what moved before the reset is told: {:?}",
            failed.moved
        );
        let error = left.read_to_end(&mut Vec::new()).await.unwrap_err();
        assert_eq!(
            error.kind(),
            ErrorKind::ConnectionReset,
            "threads: {threads}"
        );
    }
}

#[tokio::test]
async fn dropping_the_relay_closes_both_connections() {
    let _slots = SLOTS.lock().await;
    let (mut left, mut right, relaying, _) = relayed(true, b"", b"").await;
    left.write_all(b"ping").await.unwrap();
    let mut got = [0u8; 4];
    right.read_exact(&mut got).await.unwrap();
    relaying.abort();
    let (mut a, mut b) = (Vec::new(), Vec::new());
    left.read_to_end(&mut a).await.unwrap();
    right.read_to_end(&mut b).await.unwrap();
    assert!(a.is_empty() && b.is_empty());
}

#[test]
fn a_worn_sealing_key_is_updated_and_the_peer_follows() {
    use super::sealed::Sealed;
    use crate::nonblocking::Got;
    use crate::record::{Suite, TrafficKeys};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let a_socket = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let (b_socket, _) = listener.accept().unwrap();
    let keys = |secret: u8, seq: u64| {
        TrafficKeys::new(Suite::Aes128GcmSha256, &[secret; 32], seq).unwrap()
    };
    let last = (1 << 23) - 1;
    let mut a = Sealed::new(a_socket, keys(1, 0), keys(2, last), &[], false);
    let mut b = Sealed::new(b_socket, keys(2, last), keys(1, 0), &[], false);
    // The first write wears the key out; the second goes under the next
    // one, after a KeyUpdate.
    assert_eq!(a.write(b"one ").unwrap(), Some(4));
    assert_eq!(a.write(b"two").unwrap(), Some(3));
    a.close_write().unwrap();
    let mut got = Vec::new();
    let mut buffer = [0u8; 64];
    loop {
        match b.read(&mut buffer).unwrap() {
            Got::Data(n) => got.extend_from_slice(&buffer[..n]),
            Got::End => break,
            Got::WouldBlock => unreachable!("a blocking socket"),
        }
    }
    assert_eq!(got, b"one two");
    // Both moved to the next key: "two" and close_notify are its records
    // 0 and 1.
    assert_eq!(a.record_numbers().1, 2);
    assert_eq!(b.record_numbers().0, 2);
}
