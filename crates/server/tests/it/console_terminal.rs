//! The console's terminal socket over real HTTP: it opens only for a
//! session from the console's own pages on the public origin (port
//! included), waits for the email, then runs the shell; cancelling in the
//! console cancels the request; and the desktop carries the VNC server's
//! bytes both ways, or is refused where there is none.

use crate::console::{session_cookie, sign_in};
use doorman_test_support::World;

pub(crate) type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Opens the console's terminal socket as a page of `origin` would.
async fn open_socket(
    world: &World,
    cookie: &str,
    origin: &str,
    query: &str,
) -> Result<Socket, tokio_tungstenite::tungstenite::Error> {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let url = format!(
        "{}/console/socket?{query}",
        world.url.replace("http://", "ws://")
    );
    let mut request = url.into_client_request().unwrap();
    request
        .headers_mut()
        .insert("Cookie", cookie.parse().unwrap());
    request
        .headers_mut()
        .insert("Origin", origin.parse().unwrap());
    tokio_tungstenite::connect_async(request)
        .await
        .map(|(socket, _)| socket)
}

/// Signs in and opens the terminal socket from the console's own page.
pub(crate) async fn console_socket(world: &World, query: &str) -> Socket {
    let cookie = session_cookie(&sign_in(world, &world.operator_token).await);
    open_socket(world, &cookie, &world.url, query)
        .await
        .expect("the socket opens")
}

/// The next text message of the given type, skipping others (pings,
/// deliveries); terminal output read meanwhile is appended to `output`.
async fn next_message(socket: &mut Socket, kind: &str, output: &mut String) -> serde_json::Value {
    use futures_util::StreamExt;
    use tokio_tungstenite::tungstenite::Message;
    let wait = async {
        loop {
            match socket.next().await {
                Some(Ok(Message::Text(text))) => {
                    let value: serde_json::Value = serde_json::from_str(&text).unwrap();
                    if value["type"] == kind {
                        return value;
                    }
                }
                Some(Ok(Message::Binary(bytes))) => {
                    output.push_str(&String::from_utf8_lossy(&bytes))
                }
                Some(Ok(_)) => {}
                other => panic!(
                    "the socket ended waiting for {kind}: {other:?}; output so far: {output}"
                ),
            }
        }
    };
    tokio::time::timeout(std::time::Duration::from_secs(10), wait)
        .await
        .unwrap_or_else(|_| panic!("no {kind} within 10 s; output so far: {output}"))
}

/// Reads terminal output until it contains `wanted`.
async fn read_until(socket: &mut Socket, wanted: &str, output: &mut String) {
    use futures_util::StreamExt;
    use tokio_tungstenite::tungstenite::Message;
    let wait = async {
        while !output.contains(wanted) {
            match socket.next().await {
                Some(Ok(Message::Binary(bytes))) => {
                    output.push_str(&String::from_utf8_lossy(&bytes))
                }
                Some(Ok(_)) => {}
                other => panic!("the socket ended before {wanted:?}: {other:?}; output: {output}"),
            }
        }
    };
    tokio::time::timeout(std::time::Duration::from_secs(10), wait)
        .await
        .unwrap_or_else(|_| panic!("no {wanted:?} within 10 s; output: {output}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_terminal_in_the_console_waits_for_the_email_then_runs_the_shell() {
    use futures_util::SinkExt;
    use tokio_tungstenite::tungstenite::Message;
    let world = World::builder()
        .recipients(&["it@example.com"])
        .start()
        .await;
    let mut socket = console_socket(
        &world,
        "computer=office-pc&reason=printer%20ticket&rows=30&cols=100",
    )
    .await;
    let mut output = String::new();
    let pending = next_message(&mut socket, "pending", &mut output).await;
    assert_eq!(pending["recipients"][0], "i***@example.com", "{pending}");
    assert!(pending["expires_in"].as_u64().unwrap() > 0);
    let mails = world.smtp.wait_for(1).await;
    assert!(mails[0].text().contains("printer ticket"));
    world.click(&mails[0].link(), "allow").await;
    next_message(&mut socket, "allowed", &mut output).await;
    next_message(&mut socket, "session_started", &mut output).await;

    socket
        .send(Message::Binary("stty size; echo console-$((6*7))\n".into()))
        .await
        .unwrap();
    read_until(&mut socket, "console-42", &mut output).await;
    assert!(output.contains("30 100"), "the terminal's size: {output}");
    socket
        .send(Message::Text(
            r#"{"type":"resize","rows":40,"cols":120}"#.into(),
        ))
        .await
        .unwrap();
    socket
        .send(Message::Binary("stty size\n".into()))
        .await
        .unwrap();
    read_until(&mut socket, "40 120", &mut output).await;
    socket
        .send(Message::Binary("exit 3\n".into()))
        .await
        .unwrap();
    let exit = next_message(&mut socket, "exit", &mut output).await;
    assert_eq!(exit["code"], 3, "{exit}");

    let events = world.audit_events().await;
    let started = events
        .iter()
        .find(|e| e.event == "session_started")
        .expect("the session is audited");
    assert_eq!(started.user_agent.as_deref(), Some("via console"));
    assert_eq!(started.actor.as_deref(), Some("alice"));
}

/// The status of a socket the server refused to open.
fn refused(result: Result<Socket, tokio_tungstenite::tungstenite::Error>) -> u16 {
    match result {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => response.status().as_u16(),
        other => panic!("expected a refusal, got {:?}", other.map(|_| "a socket")),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_socket_opens_only_for_a_session_from_our_own_pages() {
    let world = World::start().await;
    let cookie = session_cookie(&sign_in(&world, &world.operator_token).await);
    let query = "computer=office-pc&rows=24&cols=80";
    let other_site = open_socket(&world, &cookie, "http://evil.example", query).await;
    assert_eq!(refused(other_site), 403);
    let signed_out = open_socket(&world, "doorman_console=dcs_nope", &world.url, query).await;
    assert_eq!(refused(signed_out), 401);
    assert_eq!(world.emails_queued().await, 0, "no request was made");
}

/// Cookies are bound to neither ports nor names of this host: a page that
/// anyone serves on another port of 127.0.0.1 gets the operator's cookie
/// with its requests, and must not open a terminal with it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_socket_opens_only_from_the_public_origin_port_included() {
    let world = World::start().await;
    let cookie = session_cookie(&sign_in(&world, &world.operator_token).await);
    let query = "computer=office-pc&rows=24&cols=80";
    let port = world.address.port();
    let other_port = port.checked_add(1).unwrap_or(port - 1);
    for origin in [
        format!("http://127.0.0.1:{other_port}"),
        format!("http://localhost:{port}"),
        format!("https://127.0.0.1:{port}"),
        "http://127.0.0.1".to_string(),
    ] {
        let opened = open_socket(&world, &cookie, &origin, query).await;
        assert_eq!(refused(opened), 403, "{origin}");
    }
    assert_eq!(world.emails_queued().await, 0, "no request was made");
    let mut socket = open_socket(&world, &cookie, &world.url, query)
        .await
        .expect("the public origin opens the socket");
    next_message(&mut socket, "pending", &mut String::new()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelling_in_the_console_cancels_the_request() {
    use futures_util::SinkExt;
    use tokio_tungstenite::tungstenite::Message;
    let world = World::builder()
        .recipients(&["it@example.com"])
        .start()
        .await;
    let mut socket = console_socket(&world, "computer=office-pc&rows=24&cols=80").await;
    let mut output = String::new();
    let pending = next_message(&mut socket, "pending", &mut output).await;
    socket
        .send(Message::Text(r#"{"type":"cancel"}"#.into()))
        .await
        .unwrap();
    next_message(&mut socket, "cancelled", &mut output).await;
    let id = pending["request_id"].as_str().unwrap();
    assert_eq!(
        world.state_of(id).await,
        doorman_core::RequestState::Cancelled
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_desktop_carries_the_vnc_servers_bytes_both_ways() {
    use futures_util::SinkExt;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio_tungstenite::tungstenite::Message;
    // Stands for a VNC server: greets, then echoes.
    let vnc = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let target = vnc.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        let (mut stream, _) = vnc.accept().await.unwrap();
        stream.write_all(b"RFB 003.008\n").await.unwrap();
        let mut buffer = [0u8; 1024];
        while let Ok(n) = stream.read(&mut buffer).await {
            if n == 0 || stream.write_all(&buffer[..n]).await.is_err() {
                break;
            }
        }
    });
    let world = World::builder()
        .recipients(&["it@example.com"])
        .desktop(&target)
        .start()
        .await;
    let mut socket = console_socket(&world, "computer=office-pc&kind=desktop").await;
    let mut output = String::new();
    next_message(&mut socket, "pending", &mut output).await;
    let mails = world.smtp.wait_for(1).await;
    assert!(
        mails[0].text().contains("view and control the desktop"),
        "{}",
        mails[0].text()
    );
    world.click(&mails[0].link(), "allow").await;
    next_message(&mut socket, "session_started", &mut output).await;
    read_until(&mut socket, "RFB 003.008\n", &mut output).await;
    socket
        .send(Message::Binary("RFB 003.008\n".into()))
        .await
        .unwrap();
    read_until(&mut socket, "RFB 003.008\nRFB 003.008\n", &mut output).await;
    drop(socket);
    let ended = world.wait_for_audit("session_ended").await;
    assert_eq!(ended.user_agent.as_deref(), Some("via console"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_computer_without_a_desktop_refuses_it() {
    let world = World::builder().without_email_authorization().start().await;
    let mut socket = console_socket(&world, "computer=office-pc&kind=desktop").await;
    let mut output = String::new();
    let refused = next_message(&mut socket, "refused", &mut output).await;
    assert_eq!(
        refused["message"], "the desktop is not offered on this computer",
        "{refused}"
    );
}
