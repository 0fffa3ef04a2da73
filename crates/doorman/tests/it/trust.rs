//! Trust boundaries through the binary: what a peer sends cannot forge a log
//! line, plain `http://` carries no token off the machine, and what the
//! server and agent write stays theirs whatever the umask.

use doorman_core::Outcome;
use doorman_test_support::fake_server::FakeServer;
use doorman_test_support::process::{Process, listening_address};
use doorman_wire::message::ServerToAgent;
use reqwest::StatusCode;
use std::path::Path;

const DOORMAN: &str = env!("CARGO_BIN_EXE_doorman");
const KEY: &str = "dak_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";

fn path(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// `doorman server --listen IP:0 --data-dir DATA EXTRA…`.
fn start_server(ip: &str, data: &Path, extra: &[&str]) -> Process {
    let listen = format!("{ip}:0");
    let mut args = vec!["server", "--listen", &listen, "--data-dir", path(data)];
    args.extend_from_slice(extra);
    Process::start(DOORMAN, &args)
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
        .write_message(&ServerToAgent::Welcome {
            heartbeat_ms: None,
            takes_status: false,
            takes_refusals: false,
        })
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
            assertions: Vec::new(),
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
    let server = start_server("127.0.0.1", &data, &["--trusted-proxy", "127.0.0.1"]);
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_and_keys_never_travel_in_clear_to_another_machine() {
    let (code, _, err) = doorman_test_support::process::run(
        DOORMAN,
        &[
            "connect",
            "--server",
            "http://doorman.example.com:8080",
            "--token",
            "dop_x",
            "office-pc",
            "--",
            "true",
        ],
    )
    .await;
    assert_ne!(code, 0);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("refusing to send credentials in clear to doorman.example.com"),
        "{err}"
    );
    assert!(err.contains("use https://"), "{err}");

    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("agent.toml");
    std::fs::write(
        &config,
        format!("server = \"http://10.0.0.5:8080\"\nname = \"pc\"\nkey = \"{KEY}\"\n"),
    )
    .unwrap();
    let (code, _, err) =
        doorman_test_support::process::run(DOORMAN, &["agent", "--config", path(&config)]).await;
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("refusing to send credentials in clear to 10.0.0.5"),
        "{err}"
    );
}

/// `doorman server` on `ip` with this certificate and key; its `https://`
/// URL.
async fn tls_server(ip: &str, dir: &Path, cert: &Path, key: &Path) -> (Process, String) {
    let server = start_server(
        ip,
        &dir.join("data"),
        &["--tls-cert", path(cert), "--tls-key", path(key)],
    );
    let url = format!("https://{}", listening_address(&server).await);
    (server, url)
}

/// What `doorman connect --ca CA` says to the server at `url`.
async fn connect_error(url: &str, ca: &Path) -> String {
    let args = [
        "connect",
        "--server",
        url,
        "--token",
        "dop_x",
        "--ca",
        path(ca),
        "pc",
        "--",
        "true",
    ];
    let (code, _, err) = doorman_test_support::process::run(DOORMAN, &args).await;
    assert_ne!(code, 0, "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    err
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificate_errors_are_explained_in_plain_words() {
    let dir = tempfile::tempdir().unwrap();
    // What `openssl req -x509` makes: a certificate that is its own CA.
    let (cert, key) = doorman_test_support::tls::openssl_style_self_signed(dir.path());
    let (_server, url) = tls_server("127.0.0.1", &dir.path().join("one"), &cert, &key).await;
    let err = connect_error(&url, &cert).await;
    assert!(
        err.contains("is a CA certificate, not a server certificate"),
        "{err}"
    );
    assert!(err.contains("doorman admin tls init"), "{err}");
    assert!(!err.contains("CaUsedAsEndEntity"), "{err}");
    // A server certificate, checked against another CA than its own.
    let made = doorman_test_support::tls::generate(&dir.path().join("certs"));
    let other = doorman_test_support::tls::generate(&dir.path().join("other"));
    let (_server, url) =
        tls_server("127.0.0.1", &dir.path().join("two"), &made.cert, &made.key).await;
    let err = connect_error(&url, &other.ca).await;
    // Issue 31: the --ca given is named as the CA that does not match,
    // rather than asking for a --ca.
    assert!(
        err.contains(&format!("does not match the CA in {}", other.ca.display())),
        "{err}"
    );
    assert!(err.contains("doorman admin tls init"), "{err}");
    assert!(!err.contains("BadSignature"), "{err}");
    // The right CA, but an address the certificate does not carry.
    let (_server, url) = tls_server(
        "127.0.0.2",
        &dir.path().join("three"),
        &made.cert,
        &made.key,
    )
    .await;
    let err = connect_error(&url, &made.ca).await;
    assert!(
        err.contains("is for another name than the one in the server URL"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_init_makes_a_private_ca_the_server_serves_with_and_clients_trust() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let admin = |args: &[&str]| {
        let mut all = vec!["admin", "--data-dir", path(&data)];
        all.extend_from_slice(args);
        let all: Vec<String> = all.iter().map(|s| s.to_string()).collect();
        async move {
            let all: Vec<&str> = all.iter().map(String::as_str).collect();
            doorman_test_support::process::run(DOORMAN, &all).await
        }
    };
    let (code, _, err) = admin(&["tls", "init", "--name", "bad name"]).await;
    assert_eq!(code, 1);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("\"bad name\" is not a valid DNS name"),
        "{err}"
    );
    assert!(!data.join("tls").exists());

    let (code, out, err) =
        admin(&["tls", "init", "--name", "localhost", "--ip", "127.0.0.1"]).await;
    assert_eq!(code, 0, "{err}");
    let ca = data.join("tls/ca.pem");
    assert!(out.contains(&format!("{} (new)", ca.display())), "{out}");
    let fingerprint = out
        .lines()
        .find_map(|l| l.strip_prefix("SHA-256 fingerprint: "))
        .expect("a fingerprint")
        .to_string();
    assert_eq!(fingerprint.len(), 95, "{fingerprint}");
    assert!(out.contains("ca = "), "{out}");
    assert!(out.contains("--ca"), "{out}");

    let (code, _, err) = admin(&["operator", "add", "alice", "--computers", "*", "--create"]).await;
    assert_eq!(code, 0, "{err}");
    let server = start_server("127.0.0.1", &data, &[]);
    let url = format!("https://{}", listening_address(&server).await);
    let logged = server.stderr.text();
    assert!(logged.contains("tls=true"), "{logged}");
    // The token is checked over TLS the CA vouches for: the computer is
    // what is unknown.
    let (_, token, _) = admin(&["operator", "rotate", "alice"]).await;
    let (code, _, err) = doorman_test_support::process::run(
        DOORMAN,
        &[
            "connect",
            "--server",
            &url,
            "--token",
            token.trim(),
            "--ca",
            path(&ca),
            "nowhere",
            "--",
            "true",
        ],
    )
    .await;
    assert_eq!(code, 242, "{err}");

    // Again, for another name: the CA stays, so clients keep trusting it.
    let (code, out, _) = admin(&["tls", "init", "--name", "doorman.example.com"]).await;
    assert_eq!(code, 0);
    assert!(out.contains("(kept)"), "{out}");
    assert!(out.contains(&fingerprint), "{out}");
}

/// `doorman server … ARGS` as it starts: its exit status and what it said.
async fn server_refuses(args: &[&str]) -> (i32, String) {
    let mut all = vec!["server", "--listen", "127.0.0.1:0"];
    all.extend_from_slice(args);
    let (code, _, err) = doorman_test_support::process::run(DOORMAN, &all).await;
    (code, err)
}

/// Issue 25: a server started so that secrets would cross the network in
/// clear stops at once and says what to do.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_would_take_secrets_in_clear_does_not_start() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let data = path(&data);
    // Plain HTTP to another host.
    let (code, err) = server_refuses(&[
        "--data-dir",
        data,
        "--public-url",
        "http://doorman.example.com",
    ])
    .await;
    assert_eq!(code, 1, "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("is plain HTTP to another host"), "{err}");
    assert!(err.contains("--insecure-public-url"), "{err}");
    // Listening on every address with no TLS and no public URL is the same.
    let (code, _, err) = doorman_test_support::process::run(
        DOORMAN,
        &["server", "--listen", "0.0.0.0:0", "--data-dir", data],
    )
    .await;
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("is plain HTTP to another host"), "{err}");
    // A lab may say so.
    let lab = start_server(
        "127.0.0.1",
        Path::new(data),
        &[
            "--public-url",
            "http://lab.internal:8080",
            "--insecure-public-url",
        ],
    );
    listening_address(&lab).await;

    // TLS, but links to http://.
    let admin = |args: &[&str]| {
        let mut all = vec!["admin", "--data-dir", data];
        all.extend_from_slice(args);
        let all: Vec<String> = all.iter().map(|s| s.to_string()).collect();
        async move {
            let all: Vec<&str> = all.iter().map(String::as_str).collect();
            doorman_test_support::process::run(DOORMAN, &all).await
        }
    };
    drop(lab);
    let (code, _, err) = admin(&["tls", "init", "--name", "localhost"]).await;
    assert_eq!(code, 0, "{err}");
    let (code, err) =
        server_refuses(&["--data-dir", data, "--public-url", "http://127.0.0.1:8080"]).await;
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("this server speaks only TLS"), "{err}");

    // TLS files the server cannot read: no quiet fallback to plain HTTP.
    // (Root reads any file, so a file that cannot be opened at all stands
    // for one of another account; contrib/debian/check tries the real
    // thing with the service's account.)
    let cert = Path::new(data).join("tls/server.pem");
    std::fs::remove_file(&cert).unwrap();
    std::os::unix::fs::symlink(&cert, &cert).unwrap();
    let (code, err) = server_refuses(&["--data-dir", data]).await;
    assert_eq!(code, 1, "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(
        err.contains(&format!("cannot read {}", cert.display())),
        "{err}"
    );
    assert!(err.contains("would serve plain HTTP"), "{err}");
}
