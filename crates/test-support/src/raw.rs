//! A raw operator: dials `/v1/connect` with a token and sends whatever JSON
//! the test writes, without the checks `doorman connect` makes first, so
//! that the server's own checks are what a test exercises. And a raw agent:
//! dials `/v1/agent` with a computer's name and key, and then reads and
//! writes only what the test does (so that it can stop reading).

use doorman_wire::dial::Upgraded;
use doorman_wire::message::ServerToOperator;
use doorman_wire::{AGENT_NAME_HEADER, AGENT_PATH, CONNECT_PATH, Connection, Dialer};
use hyper::header::{AUTHORIZATION, HeaderName, HeaderValue};
use std::time::Duration;

fn bearer(secret: &str) -> HeaderValue {
    let mut auth = HeaderValue::from_str(&format!("Bearer {secret}")).expect("a secret");
    auth.set_sensitive(true);
    auth
}

/// An operator connection with `token`, upgraded and nothing sent yet.
pub async fn operator(server: &str, token: &str) -> Connection<Upgraded> {
    let dialer = Dialer::new(server, None).expect("a server URL");
    let io = dialer
        .dial(CONNECT_PATH, &[(AUTHORIZATION, bearer(token))])
        .await
        .expect("the server upgrades the connection");
    Connection::new(io)
}

/// An agent's control connection as computer `name` with `key`, upgraded;
/// the server's welcome is the first thing to read.
pub async fn agent(server: &str, name: &str, key: &str) -> Connection<Upgraded> {
    let dialer = Dialer::new(server, None).expect("a server URL");
    let headers = [
        (
            HeaderName::from_static(AGENT_NAME_HEADER),
            HeaderValue::from_str(name).expect("a computer name"),
        ),
        (AUTHORIZATION, bearer(key)),
    ];
    let io = dialer
        .dial(AGENT_PATH, &headers)
        .await
        .expect("the server takes the agent");
    Connection::new(io)
}

/// Sends `message` as the first message of an operator connection and
/// returns the server's first answer that is not a ping.
pub async fn first_answer(
    server: &str,
    token: &str,
    message: &serde_json::Value,
) -> ServerToOperator {
    let mut connection = operator(server, token).await;
    connection
        .write_message(message)
        .await
        .expect("the message is sent");
    let answer = async {
        loop {
            match connection.read_message::<ServerToOperator>().await {
                Ok(Some(ServerToOperator::Ping)) => continue,
                Ok(Some(answer)) => return answer,
                other => panic!("no answer from the server: {other:?}"),
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(20), answer)
        .await
        .expect("the server answers within 20 s")
}

/// A `connect` message for the world's computer with this reason and service.
pub fn connect(computer: &str, reason: &str, service: serde_json::Value) -> serde_json::Value {
    serde_json::json!({
        "type": "connect",
        "computer": computer,
        "reason": reason,
        "service": service,
    })
}
