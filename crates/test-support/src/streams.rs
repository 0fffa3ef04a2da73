//! One exchange through a relay of byte streams, as the relay tests need it
//! whatever the streams are (plain TCP, TLS): round trips of small
//! messages, then a bulk transfer one way with a half-close and an answer
//! after it.

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Round trips of 64 bytes in [`exchange`].
pub const ROUNDS: usize = 50;
/// What `right` answers after `left` half-closed.
pub const ANSWER: &[u8] = b"answer after half-close";

/// [`ROUNDS`] round trips `left` → `right` → `left`, then `big` from `left`
/// with a half-close and [`ANSWER`] back; returns what `right` received
/// after the round trips.
pub async fn exchange(
    mut left: impl AsyncRead + AsyncWrite + Unpin + Send + 'static,
    mut right: impl AsyncRead + AsyncWrite + Unpin,
    big: Vec<u8>,
) -> Vec<u8> {
    for round in 0..ROUNDS {
        let message = [u8::try_from(round).unwrap_or(0); 64];
        left.write_all(&message).await.unwrap();
        left.flush().await.unwrap();
        let mut got = [0u8; 64];
        right.read_exact(&mut got).await.unwrap();
        assert_eq!(got, message);
        right.write_all(&got).await.unwrap();
        right.flush().await.unwrap();
        left.read_exact(&mut got).await.unwrap();
        assert_eq!(got, message);
    }
    let writer = tokio::spawn(async move {
        left.write_all(&big).await.unwrap();
        // For TLS: close_notify, then FIN.
        left.shutdown().await.unwrap();
        let mut back = Vec::new();
        left.read_to_end(&mut back).await.unwrap();
        back
    });
    let mut got = Vec::new();
    right.read_to_end(&mut got).await.unwrap();
    right.write_all(ANSWER).await.unwrap();
    right.shutdown().await.unwrap();
    assert_eq!(writer.await.unwrap(), ANSWER);
    got
}

/// Both ends of one TCP connection on loopback: (client, server).
pub async fn tcp_pair() -> (tokio::net::TcpStream, tokio::net::TcpStream) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let client = tokio::net::TcpStream::connect(listener.local_addr().expect("address"))
        .await
        .expect("connect");
    let (server, _) = listener.accept().await.expect("accept");
    (client, server)
}
