//! What runs after approval: an interactive shell in a pseudo-terminal, and
//! port forwarding with one tunnel per connection; and the allowlist that
//! refuses anything else before any email goes out.

use doorman_client::{ConnectError, ForwardSpec, SessionKind};
use doorman_test_support::World;
use std::net::SocketAddr;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A TCP service on the "remote" side: echoes everything, and answers a
/// half-closed connection with the byte count it read.
async fn echo_service() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buffer = vec![0u8; 64 * 1024];
                let mut total = 0u64;
                loop {
                    match stream.read(&mut buffer).await {
                        Ok(0) => break,
                        Ok(n) => {
                            total += n as u64;
                            if stream.write_all(&buffer[..n]).await.is_err() {
                                return;
                            }
                        }
                        Err(_) => return,
                    }
                }
                let _ = stream
                    .write_all(format!("read {total} bytes").as_bytes())
                    .await;
                let _ = stream.shutdown().await;
            });
        }
    });
    address
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shell_session_runs_in_a_pseudo_terminal() {
    let world = World::builder().without_email_authorization().start().await;
    let input: &[u8] = b"echo $((6*7)); tty; exit 3\n";
    let session = SessionKind::Shell {
        term: "xterm-256color".into(),
        rows: 40,
        cols: 120,
    };
    let connecting = world.connect_with(
        "office-pc",
        &world.operator_token,
        session,
        "",
        Box::new(input),
    );
    let stdout = connecting.stdout.clone();
    assert_eq!(
        connecting.finish().await,
        Ok(3),
        "the shell's exit status is connect's"
    );
    let screen = stdout.text();
    assert!(screen.contains("42"), "{screen}");
    assert!(
        screen.contains("/dev/pts/"),
        "runs on a pseudo-terminal: {screen}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarding_carries_many_connections_after_one_approval() {
    let service = echo_service().await;
    let target = service.to_string();
    let world = World::builder().forward(&[&target]).start().await;
    let spec: ForwardSpec = format!("0:{target}").parse().unwrap();
    let mut connecting = world.connect_for(SessionKind::Forward(vec![spec]), "vnc");
    connecting.event("pending").await;
    let mails = world.smtp.wait_for(2).await;
    world.click(&mails[0].link(), "allow").await;
    let local = connecting.forwarding_address().await;

    // Many connections at once, each a tunnel of its own, each half-closed.
    let mut clients = Vec::new();
    for i in 0..12usize {
        clients.push(tokio::spawn(async move {
            let mut stream = TcpStream::connect(local).await.unwrap();
            let payload = vec![u8::try_from(i).unwrap(); 1000 + i];
            stream.write_all(&payload).await.unwrap();
            stream.shutdown().await.unwrap();
            let mut answer = Vec::new();
            stream.read_to_end(&mut answer).await.unwrap();
            let (echo, tail) = answer.split_at(payload.len());
            assert_eq!(echo, &payload[..]);
            assert_eq!(tail, format!("read {} bytes", payload.len()).as_bytes());
        }));
    }
    for client in clients {
        client.await.unwrap();
    }

    // A large transfer arrives whole.
    let mut stream = TcpStream::connect(local).await.unwrap();
    let (mut read, mut write) = stream.split();
    let size = 16 * 1024 * 1024;
    let writer = async {
        let chunk: Vec<u8> = (0..64 * 1024).map(|i| (i % 251) as u8).collect();
        for _ in 0..size / chunk.len() {
            write.write_all(&chunk).await.unwrap();
        }
        write.shutdown().await.unwrap();
    };
    let reader = async {
        let mut received = Vec::with_capacity(size + 64);
        read.read_to_end(&mut received).await.unwrap();
        received
    };
    let ((), received) = tokio::join!(writer, reader);
    assert_eq!(received.len(), size + format!("read {size} bytes").len());
    assert!(
        received[..size]
            .iter()
            .enumerate()
            .all(|(i, b)| *b == ((i % (64 * 1024)) % 251) as u8)
    );
    drop(stream);

    connecting.interrupt();
    assert_eq!(
        connecting.finish().await,
        Ok(0),
        "Ctrl-C ends a forward session normally"
    );
    assert_eq!(
        world.emails_queued().await,
        2,
        "one approval for all connections"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reset_by_the_target_reaches_the_operator_as_a_reset() {
    a_reset_by_the_target_reaches_the_operator(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reset_by_the_target_reaches_the_operator_as_a_reset_over_tls() {
    a_reset_by_the_target_reaches_the_operator(true).await;
}

async fn a_reset_by_the_target_reaches_the_operator(tls: bool) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let target = listener.local_addr().unwrap().to_string();
    let (reset, reset_now) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.unwrap();
        stream.write_all(b"bye").await.unwrap();
        let _ = reset_now.await;
        stream.set_zero_linger().unwrap();
    });
    let mut builder = World::builder()
        .without_email_authorization()
        .forward(&[&target]);
    if tls {
        builder = builder.tls();
    }
    let world = builder.start().await;
    let spec: ForwardSpec = format!("0:{target}").parse().unwrap();
    let mut connecting = world.connect_for(SessionKind::Forward(vec![spec]), "");
    let local = connecting.forwarding_address().await;

    let mut stream = TcpStream::connect(local).await.unwrap();
    let mut bye = [0u8; 3];
    stream.read_exact(&mut bye).await.unwrap();
    assert_eq!(&bye, b"bye");
    reset.send(()).unwrap();
    // As on a direct connection: not a clean end, which would pass a
    // truncated answer off as whole.
    let error = stream.read_to_end(&mut Vec::new()).await.unwrap_err();
    assert_eq!(error.kind(), std::io::ErrorKind::ConnectionReset);

    connecting.interrupt();
    assert_eq!(connecting.finish().await, Ok(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn targets_outside_the_allowlist_are_refused_before_any_email() {
    let world = World::builder().forward(&["127.0.0.1:5900"]).start().await;
    let spec: ForwardSpec = "0:127.0.0.1:22".parse().unwrap();
    let result = world
        .connect_for(SessionKind::Forward(vec![spec]), "")
        .finish()
        .await;
    let Err(ConnectError::NotOffered(message)) = result else {
        panic!("expected a refusal, got {result:?}")
    };
    assert!(
        message.contains("forwarding to 127.0.0.1:22 is not offered"),
        "{message}"
    );
    assert_eq!(world.emails_queued().await, 0);

    let world = World::builder().without_shell().start().await;
    let shell = SessionKind::Shell {
        term: "xterm".into(),
        rows: 24,
        cols: 80,
    };
    let result = world.connect_for(shell, "").finish().await;
    assert!(
        matches!(result, Err(ConnectError::NotOffered(_))),
        "{result:?}"
    );
    assert_eq!(world.emails_queued().await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_local_port_fails_before_anyone_is_asked() {
    let world = World::builder().forward(&["127.0.0.1:5900"]).start().await;
    let taken = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let spec: ForwardSpec = format!("{}:127.0.0.1:5900", taken.local_addr().unwrap().port())
        .parse()
        .unwrap();
    let result = world
        .connect_for(SessionKind::Forward(vec![spec]), "")
        .finish()
        .await;
    let Err(error) = result else {
        panic!("expected an error")
    };
    assert_eq!(error.exit_code(), 2);
    assert!(error.to_string().contains("cannot listen on"), "{error}");
    assert_eq!(world.emails_queued().await, 0);
}

/// How each session ended, as the audit trail says, plain and over TLS.
async fn the_audit_trail_says_how_sessions_ended(tls: bool) {
    let mut builder = World::builder()
        .without_email_authorization()
        .forward(&["127.0.0.1:9"]);
    if tls {
        builder = builder.tls();
    }
    let world = builder.start().await;
    let five = world.connect(&["sh", "-c", "exit 5"], "");
    assert_eq!(five.finish().await, Ok(5));
    let ended = world.wait_for_audit("session_ended").await;
    assert_eq!(ended.detail.as_deref(), Some("ended: exit status 5"));

    let spec: ForwardSpec = "0:127.0.0.1:9".parse().unwrap();
    let mut forwarding = world.connect_for(SessionKind::Forward(vec![spec]), "");
    forwarding.forwarding_address().await;
    forwarding.interrupt();
    assert_eq!(forwarding.finish().await, Ok(0));
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(20);
    let details = loop {
        let details: Vec<String> = world
            .audit_events()
            .await
            .into_iter()
            .filter(|e| e.event == "session_ended")
            .filter_map(|e| e.detail)
            .collect();
        if details.len() == 2 || tokio::time::Instant::now() >= deadline {
            break details;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    assert_eq!(
        details,
        [
            "ended: exit status 5",
            "ended: forwarding stopped by the operator"
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_audit_trail_says_how_sessions_ended_over_plain_http() {
    the_audit_trail_says_how_sessions_ended(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_audit_trail_says_how_sessions_ended_over_tls() {
    the_audit_trail_says_how_sessions_ended(true).await;
}
