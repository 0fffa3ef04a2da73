//! A fake server that speaks the agent's side of the protocol and nothing
//! else: it accepts upgraded connections on loopback, says what path each
//! asked for, and lets a test send whatever the real server never would, to
//! pin what the agent enforces by itself.

use doorman_wire::Connection;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A listening fake server.
pub struct FakeServer {
    listener: TcpListener,
    pub url: String,
}

/// One upgraded connection from the agent, and the path it asked for.
pub struct Accepted {
    pub path: String,
    pub connection: Connection<TcpStream>,
}

impl FakeServer {
    /// Starts `doorman_agent::run` with `settings` (written to
    /// `dir/agent.toml`), dialing this server; its control connection,
    /// welcomed as the current server welcomes it (it takes refusals, but
    /// no status).
    pub async fn welcome_agent(
        &self,
        dir: &std::path::Path,
        settings: &str,
    ) -> Connection<TcpStream> {
        let config = dir.join("agent.toml");
        std::fs::write(&config, settings).expect("settings written");
        tokio::spawn(doorman_agent::run(config, std::future::pending()));
        let Accepted {
            path,
            mut connection,
        } = self.accept().await;
        assert_eq!(path, "/v1/agent");
        connection
            .write_message(&doorman_wire::message::ServerToAgent::Welcome {
                heartbeat_ms: None,
                takes_status: false,
                takes_refusals: true,
            })
            .await
            .expect("welcome");
        connection
    }

    pub async fn start() -> FakeServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("address"));
        FakeServer { listener, url }
    }

    /// The next connection the agent opens, upgraded (within 20 s).
    pub async fn accept(&self) -> Accepted {
        let accepted = async {
            let (mut stream, _) = self.listener.accept().await.expect("accept");
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") {
                stream.read_exact(&mut byte).await.expect("request head");
                head.push(byte[0]);
            }
            let head = String::from_utf8_lossy(&head).to_string();
            let path = head
                .split_whitespace()
                .nth(1)
                .expect("a request line")
                .to_string();
            stream
                .write_all(b"HTTP/1.1 101 Switching Protocols\r\nConnection: upgrade\r\nUpgrade: doorman/1\r\n\r\n")
                .await
                .expect("upgrade");
            Accepted {
                path,
                connection: Connection::new(stream),
            }
        };
        tokio::time::timeout(Duration::from_secs(20), accepted)
            .await
            .expect("the agent connects within 20 s")
    }
}

/// The agent's next message that `wanted` picks, skipping others (within
/// 20 s, or the test fails).
pub async fn next_from<T>(
    control: &mut Connection<TcpStream>,
    wanted: impl Fn(doorman_wire::message::AgentToServer) -> Option<T>,
) -> T {
    let found = async {
        loop {
            match control.read_message().await.expect("an agent message") {
                Some(message) => {
                    if let Some(found) = wanted(message) {
                        return found;
                    }
                }
                None => panic!("the agent closed its control connection"),
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(20), found)
        .await
        .expect("the agent's message within 20 s")
}

/// Offers request `id` for `service` from operator alice; the agent's answer.
pub async fn offer(
    control: &mut Connection<TcpStream>,
    id: &str,
    service: doorman_wire::message::Service,
) -> doorman_wire::message::OfferReply {
    use doorman_wire::message::{AgentToServer, ServerToAgent};
    control
        .write_message(&ServerToAgent::Offer {
            request_id: id.into(),
            operator: "alice".into(),
            operator_ip: "127.0.0.1".into(),
            reason: String::new(),
            service,
            e2e: None,
        })
        .await
        .expect("an offer sent");
    next_from(control, |message| match message {
        AgentToServer::OfferReply { request_id, reply } if request_id == id => Some(reply),
        _ => None,
    })
    .await
}
