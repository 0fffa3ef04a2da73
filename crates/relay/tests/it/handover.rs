//! A forwarded connection's TLS session handed from the server to the
//! agent (`proto::handover`), with real rustls sessions on loopback: the
//! operator's rustls client goes on as if nothing happened while the
//! server relays sockets and the agent seals and opens the records.

use doorman_relay::handover::{ServerSide, hand_over};
use doorman_relay::{relay, relay_taken_over_tls};
use doorman_test_support::streams::{exchange, tcp_pair};
use doorman_wire::tls::MaybeTls;
use std::path::Path;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::{client, rustls};

type ClientTls = client::TlsStream<TcpStream>;

/// A TLS connection whose server end runs over a `Tracked` socket with
/// the server's configuration: (client end, server end).
async fn tls_pair(dir: &Path) -> (ClientTls, ServerSide) {
    tls_pair_with(dir, |_| {}).await
}

/// [`tls_pair`] with the client's configuration changed by `client`.
async fn tls_pair_with(
    dir: &Path,
    client: impl FnOnce(&mut rustls::ClientConfig),
) -> (ClientTls, ServerSide) {
    let (client, server) =
        doorman_test_support::tls::loopback_pair_with(dir, client, |config, socket| async move {
            doorman_relay::handover::accept(&config, socket).await
        })
        .await;
    (client, MaybeTls::Tls(Box::new(server)))
}

/// A tunnel's connections before the handover, but the server's end of the
/// operator's: the operator's end, the agent's TLS connection (each end),
/// and the agent's to its target.
struct Tunnel {
    operator: ClientTls,
    agent: ClientTls,
    agent_at_server: ServerSide,
    local: TcpStream,
    target: TcpStream,
}

/// A [`Tunnel`], and the server's end of the operator's connection.
async fn tunnel() -> (Tunnel, ServerSide) {
    tunnel_with(|_| {}).await
}

/// A [`Tunnel`] whose operator's client configuration `operator` changed.
async fn tunnel_with(operator: impl FnOnce(&mut rustls::ClientConfig)) -> (Tunnel, ServerSide) {
    let dir = tempfile::tempdir().unwrap();
    let (operator, operator_at_server) = tls_pair_with(&dir.path().join("o"), operator).await;
    let (agent, agent_at_server) = tls_pair(&dir.path().join("a")).await;
    let (local, target) = tcp_pair().await;
    let tunnel = Tunnel {
        operator,
        agent,
        agent_at_server,
        local,
        target,
    };
    (tunnel, operator_at_server)
}

type Running = (
    tokio::task::JoinHandle<bool>,
    tokio::task::JoinHandle<(u64, u64)>,
);

impl Tunnel {
    /// Starts the server's part (hand over, reporting whether it did, then
    /// relay) with the operator's connection `operator_at_server`, and the
    /// agent's part towards the target.
    fn run(
        self,
        operator_at_server: ServerSide,
        operator_early: impl AsRef<[u8]> + Send + 'static,
    ) -> (ClientTls, TcpStream, Running) {
        let (agent, agent_at_server, local) = (self.agent, self.agent_at_server, self.local);
        let server = tokio::spawn(async move {
            let early = operator_early.as_ref();
            let handover = hand_over(operator_at_server, early, agent_at_server, b"")
                .await
                .unwrap();
            let sockets = matches!(
                (&handover.operator, &handover.agent),
                (MaybeTls::Plain(_), MaybeTls::Plain(_))
            );
            assert_eq!(sockets, handover.handed);
            relay(handover.operator, &[], handover.agent, &[])
                .await
                .unwrap();
            handover.handed
        });
        let agent =
            tokio::spawn(async move { relay_taken_over_tls(agent, &[], local).await.unwrap() });
        (self.operator, self.target, (server, agent))
    }
}

fn bulk(len: u32) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_takes_the_operators_session_and_it_goes_on() {
    let (mut tunnel, at_server) = tunnel().await;
    // Sent before the handover: the server opens these itself.
    tunnel.operator.write_all(b"early").await.unwrap();
    tunnel.operator.flush().await.unwrap();
    let (operator, mut target, (server, agent)) = tunnel.run(at_server, b"(read by http) ");
    let mut early = [0u8; 20];
    target.read_exact(&mut early).await.unwrap();
    assert_eq!(&early, b"(read by http) early");
    let big = bulk(3_000_000);
    let got = exchange(operator, target, big.clone()).await;
    assert!(got == big, "bulk arrives whole and in order");
    assert!(server.await.unwrap(), "the server relayed sockets, not TLS");
    let (_, to_target) = agent.await.unwrap();
    assert_eq!(to_target, 20 + 50 * 64 + big.len() as u64);
}

/// Issue 25: a ClientHello split over small records once made the server
/// look for the client random at the wrong place, so the session was not
/// handed over and its secrets stayed in memory for good.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_hello_split_over_records_is_handed_over_all_the_same() {
    let (tunnel, at_server) = tunnel_with(|client| client.max_fragment_size = Some(32)).await;
    let (operator, target, (server, _agent)) = tunnel.run(at_server, b"");
    let message = bulk(10_000);
    let got = exchange(operator, target, message.clone()).await;
    assert!(got == message);
    assert!(server.await.unwrap(), "handed over");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_update_from_the_operator_is_followed() {
    let (tunnel, at_server) = tunnel().await;
    let (mut operator, mut target, (server, agent)) = tunnel.run(at_server, b"");
    for round in 0..3u8 {
        // rustls updates its keys and asks the peer to update its own.
        operator.get_mut().1.refresh_traffic_keys().unwrap();
        let message = [round; 1000];
        operator.write_all(&message).await.unwrap();
        operator.flush().await.unwrap();
        let mut got = [0u8; 1000];
        target.read_exact(&mut got).await.unwrap();
        assert_eq!(got, message);
        target.write_all(&got).await.unwrap();
        operator.read_exact(&mut got).await.unwrap();
        assert_eq!(
            got, message,
            "round {round}: the answer under the agent's new key"
        );
    }
    operator.shutdown().await.unwrap();
    assert_eq!(target.read_to_end(&mut Vec::new()).await.unwrap(), 0);
    target.shutdown().await.unwrap();
    assert_eq!(
        operator.read_to_end(&mut Vec::new()).await.unwrap(),
        0,
        "close_notify, then the end"
    );
    assert!(server.await.unwrap());
    agent.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_that_ended_before_the_handover_ends_at_the_target() {
    let (mut tunnel, at_server) = tunnel().await;
    tunnel.operator.write_all(b"last words").await.unwrap();
    tunnel.operator.shutdown().await.unwrap();
    // The server's rustls reads the close_notify before it hands over (the
    // bytes before it play the HTTP layer's read-ahead here).
    let MaybeTls::Tls(mut at_server) = at_server else {
        unreachable!()
    };
    let mut read = Vec::new();
    at_server.read_to_end(&mut read).await.unwrap();
    let (mut operator, mut target, (server, agent)) = tunnel.run(MaybeTls::Tls(at_server), read);
    let mut got = Vec::new();
    target.read_to_end(&mut got).await.unwrap();
    assert_eq!(got, b"last words", "the early bytes, then the end");
    target.write_all(b"reply").await.unwrap();
    target.shutdown().await.unwrap();
    let mut reply = Vec::new();
    operator.read_to_end(&mut reply).await.unwrap();
    assert_eq!(reply, b"reply", "the other way stays open");
    assert!(server.await.unwrap());
    agent.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_cannot_hand_over_keeps_the_session() {
    // The operator's connection reached the server in plain TCP (its TLS
    // ended in a proxy): nothing to hand over.
    let (operator, operator_at_server) = tcp_pair().await;
    let (_, target, (server, agent)) = tunnel()
        .await
        .0
        .run(MaybeTls::Plain(operator_at_server), b"");
    let big = bulk(1_000_000);
    let got = exchange(operator, target, big.clone()).await;
    assert!(got == big);
    assert!(
        !server.await.unwrap(),
        "kept: the agent's own session carries it"
    );
    agent.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_forged_after_the_handover_resets_the_target() {
    let (
        Tunnel {
            agent,
            agent_at_server,
            local,
            mut target,
            ..
        },
        operator_at_server,
    ) = tunnel().await;
    let agent = tokio::spawn(async move { relay_taken_over_tls(agent, &[], local).await });
    let handover = hand_over(operator_at_server, b"", agent_at_server, b"")
        .await
        .unwrap();
    let MaybeTls::Plain(mut agent_socket) = handover.agent else {
        panic!("handed over")
    };
    // Someone on the path writes a record of their own.
    let mut forged = vec![23, 3, 3, 0, 40];
    forged.extend_from_slice(&[0x55; 40]);
    agent_socket.write_all(&forged).await.unwrap();
    let error = agent.await.unwrap().unwrap_err();
    assert!(error.to_string().contains("bad_record_mac"), "{error}");
    let reset = target.read_to_end(&mut Vec::new()).await.unwrap_err();
    assert_eq!(reset.kind(), std::io::ErrorKind::ConnectionReset);
}
