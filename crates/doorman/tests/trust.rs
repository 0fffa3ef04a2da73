//! Trust boundaries through the binary: what a peer sends cannot forge a log
//! line, plain `http://` carries no token off the machine, and what the
//! server and agent write stays theirs whatever the umask.

use doorman_core::Outcome;
use doorman_proto::message::ServerToAgent;
use doorman_test_support::fake_server::FakeServer;
use doorman_test_support::process::{Process, listening_address};
use reqwest::StatusCode;
use std::path::Path;

const DOORMAN: &str = env!("CARGO_BIN_EXE_doorman");
const KEY: &str = "dak_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";

fn path(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_a_server_sends_cannot_forge_lines_in_the_agents_log() {
    let server = FakeServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("agent.toml");
    std::fs::write(
        &config,
        format!(
            "server = \"{}\"\nname = \"pc\"\nkey = \"{KEY}\"\n",
            server.url
        ),
    )
    .unwrap();
    let agent = Process::start(DOORMAN, &["agent", "--config", path(&config)]);
    let mut control = server.accept().await.connection;
    control
        .write_message(&ServerToAgent::Welcome { heartbeat_ms: None })
        .await
        .unwrap();
    let forged = "2026-01-01T00:00:00.000000Z  INFO doorman_agent: session allowed by boss";
    control
        .write_message(&ServerToAgent::Settled {
            request_id: format!("x\r\n{forged}\u{202E}"),
            outcome: Outcome::Allowed {
                by: "it@example.com".into(),
                at: 1,
                reused_from: None,
            },
        })
        .await
        .unwrap();
    let logged = agent
        .stderr
        .wait_until(|t| t.contains("did not ask for"))
        .await;
    assert!(
        !logged.lines().any(|line| line.starts_with(forged)),
        "{logged}"
    );
    assert!(logged.contains(r"x\r\n2026-01-01"), "{logged}");
    assert!(logged.contains(r"\u{202e}"), "{logged}");
    assert!(!logged.contains('\u{202E}'), "{logged}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trusted_proxy_that_names_no_client_is_never_local_and_the_log_says_so_once() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = Process::start(
        DOORMAN,
        &[
            "server",
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
            path(&data),
            "--trusted-proxy",
            "127.0.0.1",
        ],
    );
    let outbox = format!("http://{}/outbox", listening_address(&server).await);
    let http = reqwest::Client::new();
    let status = |headers: &[(&'static str, &'static str)]| {
        let mut request = http.get(&outbox);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        async move { request.send().await.unwrap().status() }
    };
    for headers in [
        &[][..],
        &[("x-real-ip", "127.0.0.1")],
        &[("x-forwarded-for", "unknown")],
        &[("forwarded", "for=unknown")],
        &[("forwarded", "for=203.0.113.9")],
        &[
            ("forwarded", "for=127.0.0.1"),
            ("x-forwarded-for", "203.0.113.9"),
        ],
    ] {
        assert_eq!(status(headers).await, StatusCode::FORBIDDEN, "{headers:?}");
    }
    // A proxy that names a client on this host, in either header.
    for headers in [
        &[("x-forwarded-for", "127.0.0.1")][..],
        &[("forwarded", "for=127.0.0.1")],
        &[("forwarded", r#"for="[::1]:4711""#)],
    ] {
        assert_eq!(status(headers).await, StatusCode::OK, "{headers:?}");
    }
    let said = server.stderr.text();
    assert_eq!(
        said.matches("without a usable X-Forwarded-For or Forwarded header")
            .count(),
        1,
        "{said}"
    );
}
