//! Connections an attacker holds open: a request head never finished (over
//! plain TCP and over TLS, first or after a keep-alive response) is closed
//! at its deadline, and simultaneous connections and TLS handshakes are
//! capped per source address and overall from the moment they are
//! accepted, so that one source cannot take every descriptor.

use doorman_http::serve::ConnectionLimits;
use doorman_test_support::World;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

const PARTIAL: &[u8] = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n";

fn limits(
    max_connections: usize,
    max_per_address: usize,
    header_timeout: Duration,
) -> ConnectionLimits {
    ConnectionLimits {
        max_connections,
        max_per_address,
        header_timeout,
        ..ConnectionLimits::default()
    }
}

/// A TCP connection to `server` from the loopback address `127.0.0.N`.
async fn from(n: u8, server: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::from(([127, 0, 0, n], 0))).unwrap();
    socket.connect(server).await.unwrap()
}

/// Reads until the server closes the connection (within 20 s); what it
/// sent before.
async fn closed_by_server(stream: &mut (impl AsyncRead + Unpin)) -> Vec<u8> {
    let mut seen = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(20), async {
        let mut buffer = [0u8; 4096];
        loop {
            match stream.read(&mut buffer).await {
                Ok(0) | Err(_) => break,
                Ok(n) => seen.extend_from_slice(&buffer[..n]),
            }
        }
    })
    .await;
    assert!(read.is_ok(), "the server kept the connection open");
    seen
}

/// Sends the rest of the request; whether an HTTP response came back (the
/// connection was being served) or the connection was closed (refused).
async fn finish_request(stream: &mut (impl AsyncRead + AsyncWrite + Unpin)) -> bool {
    let _ = stream.write_all(b"Connection: close\r\n\r\n").await;
    let answer = closed_by_server(stream).await;
    answer.starts_with(b"HTTP/1.1 ")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_head_never_finished_is_closed_at_its_deadline() {
    let world = World::builder()
        .connections(limits(1000, 1000, Duration::from_millis(300)))
        .start()
        .await;
    let mut slow = Vec::new();
    for _ in 0..50 {
        let mut stream = from(1, world.address).await;
        stream.write_all(PARTIAL).await.unwrap();
        slow.push(stream);
    }
    for stream in &mut slow {
        let said = closed_by_server(stream).await;
        // hyper answers a timed-out head with 408 or nothing at all.
        assert!(
            said.is_empty() || said.starts_with(b"HTTP/1.1 408"),
            "{said:?}"
        );
    }
    // A keep-alive connection left idle after its response is closed too.
    let mut idle = from(1, world.address).await;
    idle.write_all(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .await
        .unwrap();
    let said = closed_by_server(&mut idle).await;
    assert!(
        said.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&said)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_tls_a_head_never_finished_after_the_handshake_is_closed_too() {
    let world = World::builder()
        .tls()
        .connections(limits(1000, 1000, Duration::from_millis(300)))
        .start()
        .await;
    let config = doorman_wire::tls::client_config(world.ca.as_deref()).unwrap();
    let tcp = from(1, world.address).await;
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
    let mut tls = tokio_rustls::TlsConnector::from(config)
        .connect(name, tcp)
        .await
        .unwrap();
    tls.write_all(PARTIAL).await.unwrap();
    tls.flush().await.unwrap();
    closed_by_server(&mut tls).await;
}

/// Makes a TLS session over `tcp` and sends a whole request: whether an
/// HTTP response came back.
async fn tls_request(world: &World, tcp: TcpStream) -> bool {
    let config = doorman_wire::tls::client_config(world.ca.as_deref()).unwrap();
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
    let Ok(mut tls) = tokio_rustls::TlsConnector::from(config)
        .connect(name, tcp)
        .await
    else {
        return false;
    };
    let _ = tls.write_all(PARTIAL).await;
    finish_request(&mut tls).await
}

/// Issue 25: 20,000 connections that never sent a ClientHello took every
/// descriptor of a server whose per-address cap was far lower, because a
/// connection took its place only after its handshake.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_source_that_never_says_hello_holds_no_more_than_its_share() {
    let world = World::builder()
        .tls()
        .connections(limits(1000, 3, Duration::from_secs(120)))
        .start()
        .await;
    let mut silent = Vec::new();
    for _ in 0..3 {
        silent.push(from(9, world.address).await);
    }
    // The fourth from that address is closed at once, long before any
    // handshake deadline.
    let mut fourth = from(9, world.address).await;
    assert!(closed_by_server(&mut fourth).await.is_empty());
    // Another address is served meanwhile.
    assert!(tls_request(&world, from(10, world.address).await).await);
    // The three silent ones were waited for all along.
    for tcp in silent {
        assert!(tls_request(&world, tcp).await);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_handshakes_under_way_are_capped_per_source_and_overall() {
    let world = World::builder()
        .tls()
        .connections(ConnectionLimits {
            max_handshakes: 3,
            max_handshakes_per_address: 2,
            ..limits(1000, 100, Duration::from_secs(120))
        })
        .start()
        .await;
    let first = from(11, world.address).await;
    let _second = from(11, world.address).await;
    // Two handshakes from .11 are under way: a third from there is closed.
    let mut third = from(11, world.address).await;
    assert!(closed_by_server(&mut third).await.is_empty());
    let _other = from(12, world.address).await;
    // Three overall: one from yet another address is closed too.
    let mut fourth = from(13, world.address).await;
    assert!(closed_by_server(&mut fourth).await.is_empty());
    // A handshake that completes gives its place back.
    assert!(tls_request(&world, first).await);
    assert!(tls_request(&world, from(13, world.address).await).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_source_cannot_hold_more_than_its_share_of_connections() {
    let world = World::builder()
        .connections(limits(1000, 5, Duration::from_secs(60)))
        .start()
        .await;
    let mut held = Vec::new();
    for _ in 0..5 {
        let mut stream = from(9, world.address).await;
        stream.write_all(PARTIAL).await.unwrap();
        held.push(stream);
    }
    // The sixth from that address is closed without a word.
    let mut sixth = from(9, world.address).await;
    let _ = sixth.write_all(PARTIAL).await;
    assert!(closed_by_server(&mut sixth).await.is_empty());
    // Another address is served meanwhile.
    let mut other = from(10, world.address).await;
    other.write_all(PARTIAL).await.unwrap();
    assert!(finish_request(&mut other).await);
    // The five held ones were being served all along.
    for stream in &mut held {
        assert!(finish_request(stream).await);
    }
    // With them gone, the address may connect again.
    let mut again = from(9, world.address).await;
    again.write_all(PARTIAL).await.unwrap();
    assert!(finish_request(&mut again).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_holds_at_most_its_limit_of_connections() {
    // The agent's connection is one of the eight.
    let world = World::builder()
        .connections(limits(8, 100, Duration::from_secs(60)))
        .start()
        .await;
    let mut streams = Vec::new();
    for n in 0..12u8 {
        let mut stream = from(20 + n, world.address).await;
        let _ = stream.write_all(PARTIAL).await;
        streams.push(stream);
    }
    // Accepted in order: the first seven are held, the rest closed at once.
    for stream in &mut streams[7..] {
        assert!(closed_by_server(stream).await.is_empty());
    }
    for stream in &mut streams[..7] {
        assert!(finish_request(stream).await);
    }
    // Freed again, the server serves.
    let mut later = from(40, world.address).await;
    later.write_all(PARTIAL).await.unwrap();
    assert!(finish_request(&mut later).await);
}

/// What the server answers a dial of `path` with this bearer credential
/// (and agent name): the refusal's status, or 101.
async fn dial_status(world: &World, path: &str, credential: &str, agent: Option<&str>) -> u16 {
    use hyper::header::{AUTHORIZATION, HeaderName, HeaderValue};
    let dialer = doorman_wire::Dialer::new(&world.url, None).unwrap();
    let mut headers = vec![(
        AUTHORIZATION,
        HeaderValue::from_str(&format!("Bearer {credential}")).unwrap(),
    )];
    if let Some(name) = agent {
        headers.push((
            HeaderName::from_static(doorman_wire::AGENT_NAME_HEADER),
            HeaderValue::from_str(name).unwrap(),
        ));
    }
    match dialer.dial(path, &headers).await {
        Ok(_) => 101,
        Err(doorman_wire::DialError::Refused { status, .. }) => status.as_u16(),
        Err(other) => panic!("{other}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_tokens_and_keys_are_limited_and_audited_per_minute_and_right_ones_pass() {
    let world = World::builder().without_email_authorization().start().await;
    let wrong = format!("dop_{}", "A".repeat(43));
    let mut statuses = Vec::new();
    for _ in 0..30 {
        statuses.push(dial_status(&world, doorman_wire::CONNECT_PATH, &wrong, None).await);
    }
    assert!(statuses[..20].iter().all(|s| *s == 401), "{statuses:?}");
    assert!(statuses[20..].iter().all(|s| *s == 429), "{statuses:?}");
    let key = format!("dak_{}", "B".repeat(43));
    assert_eq!(
        dial_status(&world, doorman_wire::AGENT_PATH, &key, Some("pc")).await,
        429
    );
    // The right token from the same address still gets in.
    assert_eq!(world.connect(&["true"], "").finish().await, Ok(0));
    // One row per address and minute, with the count.
    let failed: Vec<_> = world
        .audit_events()
        .await
        .into_iter()
        .filter(|e| e.event == doorman_core::AuditKind::AuthFailed)
        .collect();
    let tokens: i64 = failed
        .iter()
        .filter(|e| e.actor.as_deref() == Some("operator token"))
        .map(|e| e.count)
        .sum();
    assert_eq!(tokens, 30, "{failed:?}");
    assert!(failed.len() <= 4, "{failed:?}");
    assert!(
        failed
            .iter()
            .all(|e| e.address.as_deref() == Some("127.0.0.1"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_refusals_and_page_views_do_not_grow_the_trail() {
    let world = World::builder()
        .recipients(&["it@example.com"])
        .limits(doorman_server::Limits {
            max_pending_per_operator: 1,
            ..doorman_server::Limits::default()
        })
        .start()
        .await;
    let pending = world.connect(&["true"], "");
    pending.event("pending").await;
    let before = world.audit_events().await.len();
    for _ in 0..50 {
        let refused = world.connect(&["true"], "").finish().await;
        assert!(
            matches!(refused, Err(doorman_client::ConnectError::Limited(_))),
            "{refused:?}"
        );
    }
    let link = world.smtp.wait_for(1).await[0].link();
    for _ in 0..20 {
        world.page(&link).await;
    }
    let events = world.audit_events().await;
    let limited: Vec<_> = events
        .iter()
        .filter(|e| e.event == doorman_core::AuditKind::RefusedLimit)
        .collect();
    assert_eq!(limited.iter().map(|e| e.count).sum::<i64>(), 50);
    assert!(limited.len() <= 2, "one row a minute: {limited:?}");
    let viewed = events
        .iter()
        .filter(|e| e.event == doorman_core::AuditKind::PageViewed)
        .count();
    assert_eq!(viewed, 1);
    assert!(
        events.len() - before <= 6,
        "{} new rows",
        events.len() - before
    );
    drop(pending);
}
