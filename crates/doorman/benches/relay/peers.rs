//! The other relays measured beside Doorman: socat, and `ssh -L` through a
//! throwaway sshd on loopback.

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
