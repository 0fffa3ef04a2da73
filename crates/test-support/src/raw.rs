//! A raw operator: dials `/v1/connect` with a token and sends whatever JSON
//! the test writes, without the checks `doorman connect` makes first, so
//! that the server's own checks are what a test exercises.

use doorman_proto::message::ServerToOperator;
use doorman_proto::{CONNECT_PATH, Connection, Dialer};
use hyper::header::{AUTHORIZATION, HeaderValue};
use std::time::Duration;

/// Sends `message` as the first message of an operator connection and
/// returns the server's first answer that is not a ping.
pub async fn first_answer(
    server: &str,
    token: &str,
    message: &serde_json::Value,
) -> ServerToOperator {
    let dialer = Dialer::new(server, None).expect("a server URL");
    let mut auth = HeaderValue::from_str(&format!("Bearer {token}")).expect("a token");
    auth.set_sensitive(true);
    let io = dialer
        .dial(CONNECT_PATH, &[(AUTHORIZATION, auth)])
        .await
        .expect("the server upgrades the connection");
    let mut connection = Connection::new(io);
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
