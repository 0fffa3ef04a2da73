//! The TCP options every connection to or from the server gets.

use socket2::{SockRef, TcpKeepalive};
use std::time::Duration;
use tokio::net::TcpStream;

/// Idle time before the first keepalive probe: shorter than the few minutes
/// after which many NATs and firewalls forget a quiet connection.
const KEEPALIVE_IDLE: Duration = Duration::from_secs(30);
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(10);
const KEEPALIVE_PROBES: u32 = 3;

/// How long sent data may stay unacknowledged before the kernel gives the
/// connection up (`TCP_USER_TIMEOUT`, Linux): as long as the keepalives
/// take to find a quiet peer gone, so that a peer that vanished with data
/// on its way is noticed as soon as one that vanished idle, instead of
/// after the quarter of an hour of retransmissions. (Linux also counts a
/// receive window the peer keeps shut, so a peer that takes nothing for
/// this long is dropped too.)
pub const UNACKNOWLEDGED_LIMIT: Duration =
    KEEPALIVE_IDLE.saturating_add(KEEPALIVE_INTERVAL.saturating_mul(KEEPALIVE_PROBES));

/// No Nagle delay (sessions are interactive; small writes must not wait),
/// TCP keepalives, so that an idle session keeps its NAT mappings and a
/// peer that vanished is noticed within about a minute instead of never,
/// and [`UNACKNOWLEDGED_LIMIT`] for one that vanished while data was on
/// its way.
pub fn tune(stream: &TcpStream) -> std::io::Result<()> {
    stream.set_nodelay(true)?;
    let socket = SockRef::from(stream);
    socket.set_tcp_keepalive(
        &TcpKeepalive::new()
            .with_time(KEEPALIVE_IDLE)
            .with_interval(KEEPALIVE_INTERVAL)
            .with_retries(KEEPALIVE_PROBES),
    )?;
    #[cfg(any(target_os = "linux", target_os = "android"))]
    socket.set_tcp_user_timeout(Some(UNACKNOWLEDGED_LIMIT))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #[tokio::test]
    async fn every_connection_gets_keepalives_and_a_limit_on_unacknowledged_data() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let stream = tokio::net::TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        super::tune(&stream).unwrap();
        let socket = socket2::SockRef::from(&stream);
        assert!(socket.keepalive().unwrap());
        assert!(stream.nodelay().unwrap());
        #[cfg(any(target_os = "linux", target_os = "android"))]
        assert_eq!(
            socket.tcp_user_timeout().unwrap(),
            Some(super::UNACKNOWLEDGED_LIMIT)
        );
    }
}
