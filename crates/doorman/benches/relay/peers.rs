//! The other relays measured beside Doorman: socat, rathole (a reverse
//! proxy, server and client on loopback, its defaults: TCP, no
//! encryption), and `ssh -L` through a throwaway sshd on loopback.

use doorman_test_support::process::Process;
use doorman_test_support::sshd::{free_port, wait_listening};
use std::net::SocketAddr;
use std::path::Path;

/// socat forwarding to `target`, forking a process per connection.
pub async fn socat(target: SocketAddr) -> Option<(Process, SocketAddr)> {
    if std::process::Command::new("socat")
        .arg("-V")
        .output()
        .is_err()
    {
        return None;
    }
    let port = free_port();
    let process = Process::start(
        "socat",
        &[
            &format!("TCP-LISTEN:{port},bind=127.0.0.1,reuseaddr,fork"),
            &format!("TCP:{target}"),
        ],
    );
    let address: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    wait_listening(address).await.then_some((process, address))
}

/// A rathole server and client forwarding a port each to `sink` and
/// `echo`, through the client's connection out to the server as Doorman's
/// agent's; ready once a byte comes back through the echo service.
pub async fn rathole(
    dir: &Path,
    sink: SocketAddr,
    echo: SocketAddr,
) -> Option<(Vec<Process>, SocketAddr, SocketAddr)> {
    if std::process::Command::new("rathole")
        .arg("--version")
        .output()
        .is_err()
    {
        return None;
    }
    std::fs::create_dir_all(dir).ok()?;
    let (control, sink_port, echo_port) = (free_port(), free_port(), free_port());
    let server = dir.join("server.toml");
    std::fs::write(
        &server,
        format!(
            "[server]\nbind_addr = \"127.0.0.1:{control}\"\n\
             [server.services.sink]\ntoken = \"bench\"\nbind_addr = \"127.0.0.1:{sink_port}\"\n\
             [server.services.echo]\ntoken = \"bench\"\nbind_addr = \"127.0.0.1:{echo_port}\"\n"
        ),
    )
    .ok()?;
    let client = dir.join("client.toml");
    std::fs::write(
        &client,
        format!(
            "[client]\nremote_addr = \"127.0.0.1:{control}\"\n\
             [client.services.sink]\ntoken = \"bench\"\nlocal_addr = \"{sink}\"\n\
             [client.services.echo]\ntoken = \"bench\"\nlocal_addr = \"{echo}\"\n"
        ),
    )
    .ok()?;
    let server = Process::start("rathole", &["--server", server.to_str()?]);
    let client = Process::start("rathole", &["--client", client.to_str()?]);
    let sink_local: SocketAddr = format!("127.0.0.1:{sink_port}").parse().unwrap();
    let echo_local: SocketAddr = format!("127.0.0.1:{echo_port}").parse().unwrap();
    echoes(echo_local)
        .await
        .then_some((vec![server, client], sink_local, echo_local))
}

/// Whether a byte sent to `address` comes back within 15 s (a forward
/// whose far end is not connected yet closes the connection).
async fn echoes(address: SocketAddr) -> bool {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(15);
    while tokio::time::Instant::now() < deadline {
        let attempt = tokio::time::timeout(std::time::Duration::from_secs(2), async {
            let mut stream = tokio::net::TcpStream::connect(address).await?;
            stream.write_all(b"x").await?;
            let mut byte = [0u8; 1];
            stream.read_exact(&mut byte).await?;
            Ok::<_, std::io::Error>(byte == *b"x")
        });
        if let Ok(Ok(true)) = attempt.await {
            return true;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    false
}

/// sshd on loopback with a throwaway key, and `ssh -N -L` for both targets
/// with `cipher`.
pub async fn ssh(
    dir: &Path,
    cipher: &str,
    sink: SocketAddr,
    echo: SocketAddr,
) -> Option<(Vec<Process>, SocketAddr, SocketAddr)> {
    let sshd = doorman_test_support::sshd::start(dir).await?;
    let (sink_port, echo_port) = (free_port(), free_port());
    let (port, user) = (sshd.port, sshd.user.clone());
    let client = Process::start(
        "ssh",
        &[
            "-N",
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            "UserKnownHostsFile=/dev/null",
            "-o",
            "BatchMode=yes",
            "-c",
            cipher,
            "-i",
            sshd.user_key.to_str()?,
            "-p",
            &port.to_string(),
            "-L",
            &format!("{sink_port}:{sink}"),
            "-L",
            &format!("{echo_port}:{echo}"),
            &format!("{user}@127.0.0.1"),
        ],
    );
    let sink_local: SocketAddr = format!("127.0.0.1:{sink_port}").parse().unwrap();
    let echo_local: SocketAddr = format!("127.0.0.1:{echo_port}").parse().unwrap();
    (wait_listening(sink_local).await && wait_listening(echo_local).await).then_some((
        vec![sshd.into_process(), client],
        sink_local,
        echo_local,
    ))
}
