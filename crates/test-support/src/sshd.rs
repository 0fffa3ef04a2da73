//! A throwaway OpenSSH server on loopback, for the benchmarks that measure
//! Doorman beside ssh, scp and `ssh -L`: a host key and a user key made
//! now, password logins off, and the SFTP subsystem (scp speaks SFTP since
//! OpenSSH 9.0).

use crate::process::Process;
use std::net::{SocketAddr, TcpListener as StdListener};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// A running sshd: its port, and the key and user that log in to it.
pub struct Sshd {
    _process: Process,
    pub port: u16,
    pub user_key: PathBuf,
    pub user: String,
}

impl Sshd {
    /// The server's process, for a caller that keeps processes together
    /// (it stops when dropped).
    pub fn into_process(self) -> Process {
        self._process
    }
}

/// A port free on loopback now.
pub fn free_port() -> u16 {
    StdListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Whether something listens at `address` within 15 s.
pub async fn wait_listening(address: SocketAddr) -> bool {
    let deadline = Instant::now() + Duration::from_secs(15);
    while Instant::now() < deadline {
        if tokio::net::TcpStream::connect(address).await.is_ok() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

/// Starts sshd with its files in `dir`; `None` when OpenSSH's server is
/// not installed (or cannot run, e.g. without root for `/run/sshd`).
pub async fn start(dir: &Path) -> Option<Sshd> {
    if !Path::new("/usr/sbin/sshd").exists() {
        return None;
    }
    std::fs::create_dir_all(dir).ok()?;
    std::fs::create_dir_all("/run/sshd").ok()?;
    let keygen = |path: &Path| {
        std::process::Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-f"])
            .arg(path)
            .status()
            .map(|s| s.success())
            .unwrap_or(false)
    };
    let host_key = dir.join("host_key");
    let user_key = dir.join("user_key");
    if !keygen(&host_key) || !keygen(&user_key) {
        return None;
    }
    std::fs::copy(dir.join("user_key.pub"), dir.join("authorized_keys")).ok()?;
    let port = free_port();
    let config = dir.join("sshd_config");
    std::fs::write(
        &config,
        format!(
            "Port {port}\nListenAddress 127.0.0.1\nHostKey {}\nAuthorizedKeysFile {}\nPermitRootLogin prohibit-password\nPasswordAuthentication no\nKbdInteractiveAuthentication no\nStrictModes no\nUsePAM no\nPidFile {}\nSubsystem sftp internal-sftp\n",
            host_key.display(),
            dir.join("authorized_keys").display(),
            dir.join("sshd.pid").display()
        ),
    )
    .ok()?;
    let process = Process::start("/usr/sbin/sshd", &["-D", "-e", "-f", config.to_str()?]);
    if !wait_listening(format!("127.0.0.1:{port}").parse().ok()?).await {
        return None;
    }
    Some(Sshd {
        _process: process,
        port,
        user_key,
        user: std::env::var("USER").unwrap_or_else(|_| "root".into()),
    })
}
