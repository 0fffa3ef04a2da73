//! `connect` against a fake server that speaks the operator's side of the
//! protocol, to pin how a wait ends when the server's word on the expiry
//! comes late or never (issue 26: the deadline, then a grace, then exit
//! status 255). The grace is shortened, so that no test sleeps long.

use super::{
    ConnectError, ConnectRequest, Progress, ProgressStyle, SessionKind, Terminal, connect, exit,
};
use doorman_wire::connection::Connection;
use doorman_wire::message::{OperatorMessage, ServerToOperator};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// How long each fake request has: the shortest the protocol can say.
const EXPIRES_IN: Duration = Duration::from_secs(1);

/// The progress lines `connect` wrote.
#[derive(Clone, Default)]
struct Written(Arc<Mutex<Vec<u8>>>);

impl Written {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().expect("lock")).to_string()
    }
}

impl std::io::Write for Written {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("lock").extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A fake server's listener and the URL to dial it.
async fn listen() -> (TcpListener, String) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("address"));
    (listener, url)
}

/// The next operator connection, upgraded, once it has sent its connect
/// (5 s at most).
async fn accept_operator(listener: &TcpListener) -> Connection<TcpStream> {
    let accepted = async {
        let (mut stream, _) = listener.accept().await.expect("accept");
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            stream.read_exact(&mut byte).await.expect("request head");
            head.push(byte[0]);
        }
        stream
            .write_all(b"HTTP/1.1 101 Switching Protocols\r\nConnection: upgrade\r\nUpgrade: doorman/1\r\n\r\n")
            .await
            .expect("upgrade");
        let mut connection = Connection::new(stream);
        let first = connection
            .read_message::<OperatorMessage>()
            .await
            .expect("a message");
        assert!(
            matches!(first, Some(OperatorMessage::Connect { .. })),
            "{first:?}"
        );
        connection
    };
    tokio::time::timeout(Duration::from_secs(5), accepted)
        .await
        .expect("the client connects within 5 s")
}

/// A request pending for [`EXPIRES_IN`], with pings every `heartbeat_ms`.
fn pending(heartbeat_ms: Option<u64>) -> ServerToOperator {
    ServerToOperator::Pending {
        request_id: "r1".into(),
        expires_in: EXPIRES_IN.as_secs(),
        recipients: vec!["i***@example.com".into()],
        heartbeat_ms,
    }
}

/// Runs `connect` against `url` with this grace (10 s at most): its
/// result, how long it took and its JSON progress.
async fn connect_to(url: &str, grace: Duration) -> (Result<i32, ConnectError>, Duration, String) {
    let request = ConnectRequest {
        server: url.to_string(),
        ca: None,
        token: doorman_core::Secret::new("dop_test"),
        computer: "office-pc".into(),
        reason: String::new(),
        session: SessionKind::Command(vec!["true".into()]),
        expiry_grace: grace,
        // Never read: these servers start no session.
        known_computers: crate::known::KnownComputers::at("/nonexistent/known_computers"),
        end_to_end: true,
    };
    let terminal = Terminal {
        stdin: Box::new(tokio::io::empty()),
        stdout: Box::new(tokio::io::sink()),
        stderr: Box::new(tokio::io::sink()),
        is_tty: false,
    };
    let written = Written::default();
    let mut progress = Progress::new(ProgressStyle::Json, Box::new(written.clone()));
    let started = Instant::now();
    let connected = connect(
        request,
        &mut progress,
        terminal,
        std::future::pending::<()>(),
    );
    let result = tokio::time::timeout(Duration::from_secs(10), connected)
        .await
        .expect("connect ends within 10 s");
    (result, started.elapsed(), written.text())
}

#[tokio::test]
async fn a_server_that_never_confirms_the_expiry_ends_the_wait_with_255() {
    let (listener, url) = listen().await;
    let server = tokio::spawn(async move {
        let mut connection = accept_operator(&listener).await;
        connection
            .write_message(&pending(Some(100)))
            .await
            .expect("pending");
        // Alive (its pings come), but never a word on the expiry: its
        // database cannot record it.
        while connection
            .write_message(&ServerToOperator::Ping)
            .await
            .is_ok()
        {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    let grace = Duration::from_millis(300);
    let (result, took, progress) = connect_to(&url, grace).await;
    server.abort();
    let error = result.expect_err("no session");
    assert_eq!(error, ConnectError::ExpiryUnconfirmed { grace_secs: 1 });
    assert_eq!(error.exit_code(), 255);
    assert_eq!(error.exit_code(), exit::SERVER);
    assert_eq!(
        error.to_string(),
        "the server did not confirm the request's expiry within 1 s of its deadline"
    );
    // Not before the deadline and its grace (how soon after is speed, not
    // behaviour: the test's own deadline bounds it).
    assert!(took >= EXPIRES_IN + grace, "gave up after {took:?}");
    assert!(
        progress.contains(r#""event":"expiry_unconfirmed""#),
        "{progress}"
    );
}

#[tokio::test]
async fn an_expiry_confirmed_within_the_grace_is_241() {
    let (listener, url) = listen().await;
    let server = tokio::spawn(async move {
        let mut connection = accept_operator(&listener).await;
        connection
            .write_message(&pending(None))
            .await
            .expect("pending");
        // Late, as a server whose database failed at the deadline.
        tokio::time::sleep(EXPIRES_IN + Duration::from_millis(500)).await;
        connection
            .write_message(&ServerToOperator::Expired { at: 0 })
            .await
            .expect("expired");
        // Held open until the client has read it.
        let _ = connection.read_message::<OperatorMessage>().await;
    });
    let (result, _, progress) = connect_to(&url, Duration::from_secs(5)).await;
    server.abort();
    let error = result.expect_err("no session");
    assert_eq!(error, ConnectError::Expired);
    assert_eq!(error.exit_code(), 241);
    assert!(progress.contains(r#""event":"expired""#), "{progress}");
    assert!(!progress.contains("expiry_unconfirmed"), "{progress}");
}

#[tokio::test]
async fn a_server_lost_past_the_deadline_ends_the_wait_with_255() {
    let (listener, url) = listen().await;
    let server = tokio::spawn(async move {
        let mut connection = accept_operator(&listener).await;
        connection
            .write_message(&pending(None))
            .await
            .expect("pending");
        drop(connection);
        // Still listening, never answering again: every reconnect hangs
        // or fails.
        std::future::pending::<()>().await;
        drop(listener);
    });
    let grace = Duration::from_millis(300);
    let (result, took, progress) = connect_to(&url, grace).await;
    server.abort();
    let error = result.expect_err("no session");
    assert_eq!(error, ConnectError::ExpiryUnconfirmed { grace_secs: 1 });
    assert_eq!(error.exit_code(), 255);
    assert!(took >= EXPIRES_IN + grace, "gave up after {took:?}");
    assert!(progress.contains(r#""event":"reconnecting""#), "{progress}");
}
