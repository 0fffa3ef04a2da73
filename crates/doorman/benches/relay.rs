//! Relay speed: bulk throughput (one connection, and four at once), 64-byte
//! round-trip latency, and the agent's and server's memory, through every
//! path in one run — direct TCP, `doorman connect -L` (plain and TLS), a
//! chain of three minimal splice(2) relays (the yardstick for a three-hop
//! relay), socat, and `ssh -L`.
//!
//! Run: `bench/relay.sh` (installs socat and openssh-server, then
//! `cargo bench -p doorman --bench relay`).

#![allow(unsafe_code)] // splice(2) and pipe(2) for the yardstick relay chain.

use doorman_test_support::process::{Process, listening_address};
use std::net::{SocketAddr, TcpListener as StdListener, TcpStream as StdStream};
use std::os::fd::AsRawFd;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const DOORMAN: &str = env!("CARGO_BIN_EXE_doorman");
const BULK_BYTES: u64 = 1 << 30;
const PARALLEL: usize = 4;
const PARALLEL_BYTES: u64 = 256 << 20;
const RTT_ROUNDS: usize = 10_000;
const RTT_BATCH: usize = 250;
const CHUNK: usize = 256 * 1024;

/// Reads everything, then answers with the byte count.
async fn start_sink() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buffer = vec![0u8; CHUNK];
                let mut total = 0u64;
                while let Ok(n) = stream.read(&mut buffer).await {
                    if n == 0 {
                        break;
                    }
                    total += n as u64;
                }
                let _ = stream.write_u64(total).await;
            });
        }
    });
    address
}

/// Echoes every byte back.
async fn start_echo() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let _ = stream.set_nodelay(true);
            tokio::spawn(async move {
                let (mut r, mut w) = stream.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
            });
        }
    });
    address
}

/// Sends `bytes` and waits for the sink's count; returns MiB/s.
async fn bulk_one(address: SocketAddr, bytes: u64) -> f64 {
    let start = Instant::now();
    let mut stream = TcpStream::connect(address).await.unwrap();
    let chunk = vec![0x5au8; CHUNK];
    let mut sent = 0u64;
    while sent < bytes {
        stream.write_all(&chunk).await.unwrap();
        sent += CHUNK as u64;
    }
    stream.shutdown().await.unwrap();
    let received = stream.read_u64().await.unwrap();
    assert_eq!(received, sent, "every byte arrived");
    sent as f64 / (1 << 20) as f64 / start.elapsed().as_secs_f64()
}

async fn bulk_parallel(address: SocketAddr) -> f64 {
    let start = Instant::now();
    let tasks: Vec<_> = (0..PARALLEL)
        .map(|_| tokio::spawn(bulk_one(address, PARALLEL_BYTES)))
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    (PARALLEL as u64 * PARALLEL_BYTES) as f64 / (1 << 20) as f64 / start.elapsed().as_secs_f64()
}

/// 64-byte request/response round trips through every path, interleaved
/// (a batch on each path in turn) so that the load of this shared machine
/// weighs on every path alike: (p50, p99) per path.
async fn round_trips(echoes: &[SocketAddr]) -> Vec<(Duration, Duration)> {
    let mut streams = Vec::new();
    for address in echoes {
        let stream = TcpStream::connect(address).await.unwrap();
        stream.set_nodelay(true).unwrap();
        streams.push(stream);
    }
    let request = [7u8; 64];
    let mut response = [0u8; 64];
    let mut samples = vec![Vec::with_capacity(RTT_ROUNDS); echoes.len()];
    // The first batch warms up and is not counted.
    for batch in 0..=RTT_ROUNDS / RTT_BATCH {
        for (stream, samples) in streams.iter_mut().zip(&mut samples) {
            for _ in 0..RTT_BATCH {
                let start = Instant::now();
                stream.write_all(&request).await.unwrap();
                stream.read_exact(&mut response).await.unwrap();
                if batch > 0 {
                    samples.push(start.elapsed());
                }
            }
        }
    }
    samples
        .into_iter()
        .map(|mut samples| {
            samples.sort();
            (
                samples[samples.len() / 2],
                samples[samples.len() * 99 / 100],
            )
        })
        .collect()
}

fn rss_kib(pid: Option<u32>) -> u64 {
    let Some(pid) = pid else { return 0 };
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

fn free_port() -> u16 {
    StdListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn wait_listening(address: SocketAddr) -> bool {
    let deadline = Instant::now() + Duration::from_secs(15);
    while Instant::now() < deadline {
        if TcpStream::connect(address).await.is_ok() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

async fn doorman(args: &[&str]) -> String {
    let output = tokio::process::Command::new(DOORMAN)
        .args(args)
        .output()
        .await
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap().trim().to_string()
}

/// A doorman server, agent and `connect -L` for both targets.
struct Doorman {
    server: Process,
    agent: Process,
    _connect: Process,
    sink: SocketAddr,
    echo: SocketAddr,
}

async fn start_doorman(dir: &Path, tls: bool, sink: SocketAddr, echo: SocketAddr) -> Doorman {
    std::fs::create_dir_all(dir).unwrap();
    let data = dir.join("data");
    let data = data.to_str().unwrap();
    let token = doorman(&["admin", "--data-dir", data, "operator", "add", "bench"]).await;
    let key = doorman(&["admin", "--data-dir", data, "agent", "add", "bench-pc"]).await;
    let certificates = tls.then(|| doorman_test_support::tls::generate(dir));
    let mut args = vec![
        "server".to_string(),
        "--listen".into(),
        "127.0.0.1:0".into(),
        "--data-dir".into(),
        data.into(),
    ];
    if let Some(c) = &certificates {
        args.extend([
            "--tls-cert".into(),
            c.cert.display().to_string(),
            "--tls-key".into(),
            c.key.display().to_string(),
        ]);
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let server = Process::start(DOORMAN, &args);
    let address = listening_address(&server).await;
    let url = format!("{}://{address}", if tls { "https" } else { "http" });
    let ca_line = certificates
        .as_ref()
        .map(|c| format!("ca = {:?}\n", c.ca.display().to_string()))
        .unwrap_or_default();
    let config = dir.join("agent.toml");
    std::fs::write(
        &config,
        format!(
            "server = \"{url}\"\nname = \"bench-pc\"\nkey = \"{key}\"\n{ca_line}\n[desktop_sharing]\nrequire_email_authorization = false\n\n[services]\nshell = false\nforward = [\"{sink}\", \"{echo}\"]\n"
        ),
    )
    .unwrap();
    let agent = Process::start(DOORMAN, &["agent", "--config", config.to_str().unwrap()]);
    agent
        .stderr
        .wait_until(|t| t.contains("agent online"))
        .await;
    let sink_spec = format!("0:{sink}");
    let echo_spec = format!("0:{echo}");
    let mut connect_args = vec![
        "connect", "bench-pc", "--server", &url, "--token", &token, "--json", "-L", &sink_spec,
        "-L", &echo_spec,
    ];
    let ca_path = certificates.as_ref().map(|c| c.ca.display().to_string());
    if let Some(ca) = &ca_path {
        connect_args.extend(["--ca", ca.as_str()]);
    }
    let connect = Process::start(DOORMAN, &connect_args);
    let text = connect
        .stderr
        .wait_until(|t| t.contains("\"forwarding\"") && t.ends_with('\n'))
        .await;
    let line = text.lines().find(|l| l.contains("\"forwarding\"")).unwrap();
    let event: serde_json::Value = serde_json::from_str(line).unwrap();
    let local = |i: usize| -> SocketAddr {
        event["listen"][i]
            .as_str()
            .unwrap()
            .split(" -> ")
            .next()
            .unwrap()
            .parse()
            .unwrap()
    };
    Doorman {
        server,
        agent,
        sink: local(0),
        echo: local(1),
        _connect: connect,
    }
}

/// A minimal relay: splice(2) through a pipe in each direction.
fn splice_relay(upstream: SocketAddr) -> SocketAddr {
    let listener = StdListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for client in listener.incoming().flatten() {
            let Ok(server) = StdStream::connect(upstream) else {
                continue;
            };
            let _ = client.set_nodelay(true);
            let _ = server.set_nodelay(true);
            let (c2, s2) = (client.try_clone().unwrap(), server.try_clone().unwrap());
            std::thread::spawn(move || splice_pump(&client, &server));
            std::thread::spawn(move || splice_pump(&s2, &c2));
        }
    });
    address
}

fn splice_pump(from: &StdStream, to: &StdStream) {
    let mut fds = [0i32; 2];
    // SAFETY: `fds` has room for the two descriptors pipe(2) writes.
    if unsafe { libc::pipe(fds.as_mut_ptr()) } != 0 {
        return;
    }
    // No SPLICE_F_MORE: it corks small writes, which would stall round trips.
    let flags = libc::SPLICE_F_MOVE;
    loop {
        // SAFETY: valid descriptors, null offsets (sockets and pipes have none).
        let n = unsafe {
            libc::splice(
                from.as_raw_fd(),
                std::ptr::null_mut(),
                fds[1],
                std::ptr::null_mut(),
                1 << 20,
                flags,
            )
        };
        if n <= 0 {
            break;
        }
        let mut left = n;
        while left > 0 {
            // SAFETY: as above.
            let m = unsafe {
                libc::splice(
                    fds[0],
                    std::ptr::null_mut(),
                    to.as_raw_fd(),
                    std::ptr::null_mut(),
                    left as usize,
                    flags,
                )
            };
            if m <= 0 {
                left = -1;
                break;
            }
            left -= m;
        }
        if left < 0 {
            break;
        }
    }
    let _ = to.shutdown(std::net::Shutdown::Write);
    // SAFETY: closing the pipe this function created.
    unsafe {
        libc::close(fds[0]);
        libc::close(fds[1]);
    }
}

fn splice_chain(target: SocketAddr) -> SocketAddr {
    let third = splice_relay(target);
    let second = splice_relay(third);
    splice_relay(second)
}

async fn socat(target: SocketAddr) -> Option<(Process, SocketAddr)> {
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

/// sshd on loopback with a throwaway key, and `ssh -N -L` for both targets.
async fn ssh(
    dir: &Path,
    sink: SocketAddr,
    echo: SocketAddr,
) -> Option<(Vec<Process>, SocketAddr, SocketAddr)> {
    if !Path::new("/usr/sbin/sshd").exists() {
        return None;
    }
    std::fs::create_dir_all(dir).ok()?;
    std::fs::create_dir_all("/run/sshd").ok()?;
    let keygen = |path: &Path| {
        std::process::Command::new("ssh-keygen")
            .args([
                "-q",
                "-t",
                "ed25519",
                "-N",
                "",
                "-f",
                path.to_str().unwrap(),
            ])
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
            "Port {port}\nListenAddress 127.0.0.1\nHostKey {}\nAuthorizedKeysFile {}\nPermitRootLogin prohibit-password\nPasswordAuthentication no\nKbdInteractiveAuthentication no\nStrictModes no\nUsePAM no\nPidFile {}\n",
            host_key.display(),
            dir.join("authorized_keys").display(),
            dir.join("sshd.pid").display()
        ),
    )
    .ok()?;
    let sshd = Process::start(
        "/usr/sbin/sshd",
        &["-D", "-e", "-f", config.to_str().unwrap()],
    );
    if !wait_listening(format!("127.0.0.1:{port}").parse().unwrap()).await {
        return None;
    }
    let (sink_port, echo_port) = (free_port(), free_port());
    let user = std::env::var("USER").unwrap_or_else(|_| "root".into());
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
            "-i",
            user_key.to_str().unwrap(),
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
        vec![sshd, client],
        sink_local,
        echo_local,
    ))
}

/// One path's addresses and figures.
struct Row {
    name: &'static str,
    sink: SocketAddr,
    echo: SocketAddr,
    one: f64,
    four: f64,
    p50: Duration,
    p99: Duration,
}

impl Row {
    fn new(name: &'static str, sink: SocketAddr, echo: SocketAddr) -> Self {
        Row {
            name,
            sink,
            echo,
            one: 0.0,
            four: 0.0,
            p50: Duration::ZERO,
            p99: Duration::ZERO,
        }
    }

    async fn measure_bulk(&mut self) {
        self.one = bulk_one(self.sink, BULK_BYTES).await;
        self.four = bulk_parallel(self.sink).await;
        eprintln!("measured bulk through {}", self.name);
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let dir = tempfile::tempdir().unwrap();
    let sink = start_sink().await;
    let echo = start_echo().await;
    let mut rows = vec![Row::new("direct TCP", sink, echo)];
    let plain = start_doorman(&dir.path().join("plain"), false, sink, echo).await;
    rows.push(Row::new("doorman -L (plain)", plain.sink, plain.echo));
    let tls = start_doorman(&dir.path().join("tls"), true, sink, echo).await;
    rows.push(Row::new("doorman -L (TLS)", tls.sink, tls.echo));
    rows.push(Row::new(
        "3 x splice(2) relay chain",
        splice_chain(sink),
        splice_chain(echo),
    ));
    let socat = match (socat(sink).await, socat(echo).await) {
        (Some((sink_process, sink_socat)), Some((echo_process, echo_socat))) => {
            rows.push(Row::new("socat", sink_socat, echo_socat));
            Some((sink_process, echo_process))
        }
        _ => {
            eprintln!("socat not available: skipped");
            None
        }
    };
    let ssh = ssh(&dir.path().join("ssh"), sink, echo).await;
    match &ssh {
        Some((_, sink_ssh, echo_ssh)) => rows.push(Row::new("ssh -L", *sink_ssh, *echo_ssh)),
        None => eprintln!("ssh -L not available: skipped"),
    }

    let idle = (rss_kib(plain.agent.pid()), rss_kib(plain.server.pid()));
    // Peak memory while the plain path carries its transfers.
    let (agent_pid, server_pid) = (plain.agent.pid(), plain.server.pid());
    let peaks = std::sync::Arc::new([AtomicU64::new(0), AtomicU64::new(0)]);
    for row in &mut rows {
        let sampler = (row.name == "doorman -L (plain)").then(|| {
            let peaks = peaks.clone();
            tokio::spawn(async move {
                loop {
                    peaks[0].fetch_max(rss_kib(agent_pid), Ordering::Relaxed);
                    peaks[1].fetch_max(rss_kib(server_pid), Ordering::Relaxed);
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            })
        });
        row.measure_bulk().await;
        if let Some(sampler) = sampler {
            sampler.abort();
        }
    }
    let busy = (
        peaks[0].load(Ordering::Relaxed),
        peaks[1].load(Ordering::Relaxed),
    );
    let echoes: Vec<SocketAddr> = rows.iter().map(|row| row.echo).collect();
    for (row, (p50, p99)) in rows.iter_mut().zip(round_trips(&echoes).await) {
        row.p50 = p50;
        row.p99 = p99;
    }
    drop((plain, tls, socat, ssh));

    let direct = (rows[0].one, rows[0].four);
    println!(
        "Relay benchmark: 1 connection × {} MiB, {PARALLEL} connections × {} MiB, {RTT_ROUNDS} round trips of 64 bytes on each path (interleaved, {RTT_BATCH} at a time)",
        BULK_BYTES >> 20,
        PARALLEL_BYTES >> 20
    );
    println!(
        "| path | 1 conn MiB/s | ×direct | {PARALLEL} conns MiB/s | ×direct | RTT p50 | RTT p99 |"
    );
    println!("|---|---|---|---|---|---|---|");
    for row in &rows {
        println!(
            "| {} | {:.0} | {:.2} | {:.0} | {:.2} | {:.0} µs | {:.0} µs |",
            row.name,
            row.one,
            row.one / direct.0,
            row.four,
            row.four / direct.1,
            row.p50.as_secs_f64() * 1e6,
            row.p99.as_secs_f64() * 1e6
        );
    }
    let find = |name: &str| rows.iter().find(|r| r.name == name).map(|r| r.one);
    if let (Some(doorman), Some(chain)) = (
        find("doorman -L (plain)"),
        find("3 x splice(2) relay chain"),
    ) {
        println!(
            "doorman plain / splice chain: {:.2} (target ≥ 0.8)",
            doorman / chain
        );
    }
    if let (Some(doorman), Some(socat)) = (find("doorman -L (plain)"), find("socat")) {
        println!(
            "doorman plain / socat: {:.2} (target ≥ 1.2)",
            doorman / socat
        );
    }
    if let (Some(doorman), Some(ssh)) = (find("doorman -L (TLS)"), find("ssh -L")) {
        println!("doorman TLS / ssh -L: {:.2} (target > 1)", doorman / ssh);
    }
    if let Some(doorman) = rows.iter().find(|r| r.name == "doorman -L (plain)") {
        println!(
            "doorman plain RTT p50 − direct: {:.0} µs (target ≤ 100)",
            (doorman.p50.as_secs_f64() - rows[0].p50.as_secs_f64()) * 1e6
        );
    }
    println!(
        "RSS idle: agent {} KiB, server {} KiB; peak during the plain transfers: agent {} KiB, server {} KiB",
        idle.0, idle.1, busy.0, busy.1
    );
}
