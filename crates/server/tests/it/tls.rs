//! Everything over TLS on the one port: pages, agents, operators, tunnels;
//! verification against the given CA, with no way around it.

use doorman_client::{ConnectError, ForwardSpec, SessionKind};
use doorman_test_support::World;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// `GET path` from the world's server; the raw response.
async fn https_get(world: &World, path: &str) -> String {
    doorman_test_support::tls::https_get(world.address, world.ca.as_deref(), path).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_and_tunnels_run_over_tls() {
    let echo = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let target = echo.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = echo.accept().await {
            tokio::spawn(async move {
                let (mut r, mut w) = stream.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
            });
        }
    });
    let world = World::builder()
        .tls()
        .without_email_authorization()
        .forward(&[&target])
        .start()
        .await;
    assert!(world.url.starts_with("https://"));

    let command = world.connect(&["sh", "-c", "echo secure"], "");
    let stdout = command.stdout.clone();
    assert_eq!(command.finish().await, Ok(0));
    assert_eq!(stdout.text(), "secure\n");

    let spec: ForwardSpec = format!("0:{target}").parse().unwrap();
    let mut forward = world.connect_for(SessionKind::Forward(vec![spec]), "");
    let local = forward.forwarding_address().await;
    let mut stream = tokio::net::TcpStream::connect(local).await.unwrap();
    stream.write_all(b"through tls").await.unwrap();
    let mut answer = [0u8; 11];
    stream.read_exact(&mut answer).await.unwrap();
    assert_eq!(&answer, b"through tls");
    // The tunnel was sealed end to end: both its connections left TLS, the
    // server relayed records it cannot open, and the bytes came through all
    // the same.
    let bulk: Vec<u8> = (0..2_000_000u32).map(|i| (i % 253) as u8).collect();
    let (mut reading, mut writing) = stream.into_split();
    let sent = bulk.clone();
    let writer = tokio::spawn(async move {
        writing.write_all(&sent).await.unwrap();
        writing.shutdown().await.unwrap();
    });
    let mut echoed = Vec::new();
    reading.read_to_end(&mut echoed).await.unwrap();
    writer.await.unwrap();
    assert!(echoed == bulk, "the bulk echoed whole and in order");
    let metrics = https_get(&world, "/metrics").await;
    assert!(
        metrics.contains("doorman_tunnels_total{tls=\"end_to_end\"} 1\n"),
        "{metrics}"
    );
    assert!(metrics.contains("doorman_tunnels_total{tls=\"handed_over\"} 0\n"));
    assert!(metrics.contains("doorman_tunnels_total{tls=\"server\"} 0\n"));
    forward.interrupt();
    assert_eq!(forward.finish().await, Ok(0));

    // An operator that does not seal its session (as the web console does
    // not): the agent takes its TLS session over.
    let spec: ForwardSpec = format!("0:{target}").parse().unwrap();
    let mut forward = world.connect_for_unsealed(SessionKind::Forward(vec![spec]));
    let local = forward.forwarding_address().await;
    let mut stream = tokio::net::TcpStream::connect(local).await.unwrap();
    stream.write_all(b"handed over").await.unwrap();
    let mut answer = [0u8; 11];
    stream.read_exact(&mut answer).await.unwrap();
    assert_eq!(&answer, b"handed over");
    let metrics = https_get(&world, "/metrics").await;
    assert!(
        metrics.contains("doorman_tunnels_total{tls=\"handed_over\"} 1\n"),
        "{metrics}"
    );
    forward.interrupt();
    assert_eq!(forward.finish().await, Ok(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn links_are_https_and_pages_send_hsts() {
    let world = World::builder().tls().start().await;
    let connecting = world.connect(&["true"], "");
    connecting.event("pending").await;
    let mails = world.smtp.wait_for(2).await;
    let link = mails[0].link();
    assert!(
        link.starts_with(&format!("https://{}/a/", world.address)),
        "{link}"
    );
    let path = link
        .split_once(&world.address.to_string())
        .unwrap()
        .1
        .to_string();
    let response = https_get(&world, &path).await;
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(
        response
            .to_ascii_lowercase()
            .contains("strict-transport-security: max-age="),
        "{response}"
    );
    assert!(response.contains("Allow Session"));
    drop(connecting);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_the_operator_does_not_trust_is_refused_with_the_reason() {
    let mut world = World::builder()
        .tls()
        .without_email_authorization()
        .start()
        .await;
    let other = tempfile::tempdir().unwrap();
    let stranger = doorman_test_support::tls::generate(other.path());
    world.ca = Some(stranger.ca.clone());
    let result = world.connect(&["true"], "").finish().await;
    let Err(ConnectError::Server(message)) = &result else {
        panic!("expected a TLS failure, got {result:?}")
    };
    // Issue 31: a CA was given; it is the one that does not match.
    assert!(
        message.contains("the server at 127.0.0.1:")
            && message.contains(&format!(
                "does not match the CA in {}",
                stranger.ca.display()
            ))
            && !message.contains("signed by no CA trusted here"),
        "{message}"
    );
    assert!(!message.contains('\n'));
    assert_eq!(result.unwrap_err().exit_code(), 255);

    // And with the system's roots, which do not include the test CA.
    world.ca = None;
    let result = world.connect(&["true"], "").finish().await;
    let message = result.unwrap_err().to_string();
    assert!(
        message.contains("certificate") || message.contains("no trusted root"),
        "{message}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http_url_for_a_tls_server_says_to_use_https() {
    let world = World::builder()
        .tls()
        .without_email_authorization()
        .start()
        .await;
    let plain = world.url.replacen("https://", "http://", 1);
    let result = world.connect_through(&plain, &["true"]).finish().await;
    let Err(ConnectError::Server(message)) = &result else {
        panic!("expected a failure, got {result:?}")
    };
    assert!(
        message.ends_with("speaks TLS: use an https:// URL"),
        "{message}"
    );
}
