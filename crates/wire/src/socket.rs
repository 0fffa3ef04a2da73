//! The TCP options every connection to or from the server gets.

use socket2::{SockRef, TcpKeepalive};
use std::time::Duration;
use tokio::net::TcpStream;

/// Idle time before the first keepalive probe: shorter than the few minutes
/// after which many NATs and firewalls forget a quiet connection.
const KEEPALIVE_IDLE: Duration = Duration::from_secs(30);
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(10);
const KEEPALIVE_PROBES: u32 = 3;

/// No Nagle delay (sessions are interactive; small writes must not wait),
/// and TCP keepalives, so that an idle session keeps its NAT mappings and a
/// peer that vanished is noticed within about a minute instead of never.
///
/// No `TCP_USER_TIMEOUT`: Linux counts a receive window the peer keeps shut
/// against it, so it would end a session whose reader pauses (`less` on a
/// long output) as ssh does not. A control connection's peer that vanished
/// with data on its way is found by the heartbeats instead (its pongs stop),
/// and one that stops reading by the write deadlines.
pub fn tune(stream: &TcpStream) -> std::io::Result<()> {
    stream.set_nodelay(true)?;
    let socket = SockRef::from(stream);
    let keepalive = TcpKeepalive::new()
        .with_time(KEEPALIVE_IDLE)
        .with_interval(KEEPALIVE_INTERVAL);
    let counted = keepalive.clone().with_retries(KEEPALIVE_PROBES);
    match socket.set_tcp_keepalive(&counted) {
        Ok(()) => Ok(()),
        // Windows takes a probe count since 10 (1703), Wine not at all: a
        // system that refuses it keeps its own count (Windows: 10 probes).
        Err(_) if cfg!(windows) => socket.set_tcp_keepalive(&keepalive),
        Err(error) => Err(error),
    }
}

#[cfg(test)]
mod tests {
    #[tokio::test]
    async fn every_connection_gets_keepalives_and_no_nagle_delay() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let stream = tokio::net::TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        super::tune(&stream).unwrap();
        let socket = socket2::SockRef::from(&stream);
        assert!(socket.keepalive().unwrap());
        assert!(stream.nodelay().unwrap());
    }
}
