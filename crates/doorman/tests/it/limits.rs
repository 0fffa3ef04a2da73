//! The server and its open-file limit: the soft limit is raised to the hard
//! one at start, and connection limits shrink to fit what is left, so that
//! slow connections from one source cannot take every descriptor and lock
//! everyone else out.

use doorman_test_support::process::{Process, listening_address};
use std::net::SocketAddr;
use std::path::Path;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const DOORMAN: &str = env!("CARGO_BIN_EXE_doorman");

/// `doorman server` started by `sh` after `ulimit ULIMIT`.
fn server_under(ulimit: &str, data: &Path) -> Process {
    let script = format!(
        "{ulimit} && exec {DOORMAN} server --listen 127.0.0.1:0 --data-dir {}",
        data.display()
    );
    Process::start("sh", &["-c", &script])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_soft_open_file_limit_is_raised_to_the_hard_one() {
    let dir = tempfile::tempdir().unwrap();
    let server = server_under(
        "ulimit -Sn 100 && ulimit -Hn 4096",
        &dir.path().join("data"),
    );
    listening_address(&server).await;
    let logged = server.stderr.text();
    assert!(logged.contains("open_files=4096"), "{logged}");
    assert!(logged.contains("max_connections=4032"), "{logged}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_connections_from_one_source_do_not_lock_others_out() {
    let dir = tempfile::tempdir().unwrap();
    let server = server_under("ulimit -n 128", &dir.path().join("data"));
    let address: SocketAddr = listening_address(&server).await.parse().unwrap();
    assert!(server.stderr.text().contains("max_connections=64"));
    // Twice as many slow connections as the server has descriptors.
    let mut slow = Vec::new();
    for _ in 0..256 {
        let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
        let _ = stream
            .write_all(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n")
            .await;
        slow.push(stream);
    }
    // Another address is served at once.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::from(([127, 0, 0, 2], 0))).unwrap();
    let mut other = socket.connect(address).await.unwrap();
    other
        .write_all(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut answer = String::new();
    let _ = tokio::time::timeout(
        std::time::Duration::from_secs(20),
        other.read_to_string(&mut answer),
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let logged = server.stderr.text();
    assert!(!logged.contains("Too many open files"), "{logged}");
    assert!(
        logged.contains("this source holds its most connections"),
        "{logged}"
    );
}
