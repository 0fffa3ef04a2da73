//! `--acme-domain` against Pebble, the ACME test CA: the first certificate
//! is issued and served, a restart serves it again without a new order, a
//! certificate close to expiry is renewed, and a CA's refusal stops the
//! server with the CA's reason.

use doorman_test_support::pebble::Pebble;
use doorman_test_support::process::{Process, listening_address, output_of, run};
use std::path::Path;

const DOORMAN: &str = env!("CARGO_BIN_EXE_doorman");

fn path(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// `doorman server` for `domain` over ACME at `pebble`, plus `extra`.
fn server(pebble: &Pebble, data: &Path, domain: &str, extra: &[&str]) -> Process {
    let mut args = vec![
        "server",
        "--listen",
        "127.0.0.1:0",
        "--data-dir",
        path(data),
        "--acme-domain",
        domain,
        "--acme-email",
        "admin@example.com",
        "--acme-directory",
        &pebble.directory,
        "--acme-ca",
        path(&pebble.https_ca),
    ];
    args.extend_from_slice(extra);
    Process::start(DOORMAN, &args)
}

/// What `doorman connect` gets from the server at `url`, trusting only
/// Pebble's root: 242 (unknown computer) means TLS and the token passed.
async fn connect_code(url: &str, token: &str, root: &Path) -> (i32, String) {
    let args = [
        "connect",
        "--server",
        url,
        "--token",
        token,
        "--ca",
        path(root),
        "nowhere",
        "--",
        "true",
    ];
    let (code, _, err) = run(DOORMAN, &args).await;
    (code, err)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_is_issued_kept_across_restarts_and_renewed_when_due() {
    let Some(pebble) = Pebble::start(&[]).await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let token = output_of(
        DOORMAN,
        &[
            "admin",
            "--create",
            "--data-dir",
            path(&data),
            "operator",
            "add",
            "alice",
            "--computers",
            "*",
        ],
    )
    .await;
    let root = dir.path().join("pebble-root.pem");
    std::fs::write(&root, pebble.issuing_root().await).unwrap();

    // First start: ordered, issued, served.
    let first = server(&pebble, &data, "localhost", &[]);
    let address = listening_address(&first).await;
    let url = format!("https://localhost:{}", address.rsplit(':').next().unwrap());
    first
        .stderr
        .wait_until(|t| t.contains("ACME certificate issued and served"))
        .await;
    let (code, err) = connect_code(&url, &token, &root).await;
    assert_eq!(code, 242, "{err}");
    // Gone before the next starts: its data directory's lock with it.
    first.stop().await;

    // A restart serves the stored certificate; nothing is ordered.
    let second = server(&pebble, &data, "localhost", &[]);
    let address = listening_address(&second).await;
    let url = format!("https://localhost:{}", address.rsplit(':').next().unwrap());
    let logged = second
        .stderr
        .wait_until(|t| t.contains("serving the stored ACME certificate"))
        .await;
    assert!(logged.contains("renewing=false"), "{logged}");
    let (code, err) = connect_code(&url, &token, &root).await;
    assert_eq!(code, 242, "{err}");
    assert!(!second.stderr.text().contains("ordering a certificate"));
    second.stop().await;

    // Close to expiry (Pebble's certificates last five years; renew when
    // fewer than ten remain): renewed at start, the new one served.
    let third = server(&pebble, &data, "localhost", &["--acme-renew-days", "3650"]);
    let address = listening_address(&third).await;
    let url = format!("https://localhost:{}", address.rsplit(':').next().unwrap());
    let logged = third
        .stderr
        .wait_until(|t| t.contains("ACME certificate issued and served"))
        .await;
    assert!(logged.contains("renewing=true"), "{logged}");
    assert!(logged.contains("ordering a certificate"), "{logged}");
    let (code, err) = connect_code(&url, &token, &root).await;
    assert_eq!(code, 242, "{err}");
    // The key is sealed in the database, never stored in clear.
    let database = std::fs::read(data.join("doorman.db")).unwrap();
    let wal = std::fs::read(data.join("doorman.db-wal")).unwrap_or_default();
    for bytes in [&database, &wal] {
        let text = String::from_utf8_lossy(bytes);
        assert!(!text.contains("PRIVATE KEY"), "a key stored in clear");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_the_ca_refuses_stops_the_server_with_the_cas_reason() {
    let Some(pebble) = Pebble::start(&["blocked.example"]).await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let mut refused = server(&pebble, &dir.path().join("data"), "blocked.example", &[]);
    assert_eq!(refused.exit_code().await, 1);
    let err = refused.stderr.text();
    let last = err.lines().last().unwrap_or_default();
    assert!(last.starts_with("doorman: the ACME CA refused: "), "{err}");
    assert!(last.contains("blocked"), "{err}");
}
