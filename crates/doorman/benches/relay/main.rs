//! Relay speed: bulk throughput (one connection, and four at once), 64-byte
//! round-trip latency, and the agent's and server's memory and CPU, through
//! every path in one run — direct TCP, `doorman connect -L` (plain and
//! TLS), a chain of three minimal splice(2) relays (the yardstick for a
//! three-hop relay), socat, and `ssh -L` with AES-256-GCM and with
//! ChaCha20-Poly1305.
//!
//! Bulk transfers are iperf3's: its client and server are processes of
//! their own, as in an outside measurement. Each round runs every path in
//! turn, so that the load of this shared machine weighs on every path
//! alike; the figures are the median of the rounds and their range.
//!
//! Run: `bench/relay.sh` (installs iperf3, socat and openssh-server, then
//! `cargo bench -p doorman --bench relay`).

#![allow(unsafe_code)] // splice(2) and pipe(2) for the yardstick relay chain.

use doorman_test_support::process::{Process, listening_address};
use doorman_test_support::sshd::{free_port, wait_listening};
use std::net::{SocketAddr, TcpListener as StdListener, TcpStream as StdStream};
use std::os::fd::AsRawFd;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const DOORMAN: &str = env!("CARGO_BIN_EXE_doorman");
/// Bulk rounds: each path runs once per round, in turn.
const ROUNDS: usize = 5;
/// Seconds of each iperf3 run.
const SECONDS: u32 = 2;
const PARALLEL: usize = 4;
const RTT_ROUNDS: usize = 10_000;
const RTT_BATCH: usize = 250;

/// `iperf3 -s` on a port of its own, the target of every bulk transfer.
async fn start_iperf_server() -> Option<(Process, SocketAddr)> {
    if std::process::Command::new("iperf3")
        .arg("--version")
        .output()
        .is_err()
    {
        return None;
    }
    let address: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let process = Process::start(
        "iperf3",
        &["-s", "-B", "127.0.0.1", "-p", &address.port().to_string()],
    );
    wait_listening(address).await.then_some((process, address))
}

/// One iperf3 run through `address` with `parallel` connections: MiB/s
/// received, or what iperf3 said went wrong.
async fn iperf(address: SocketAddr, parallel: usize) -> Result<f64, String> {
    let output = tokio::process::Command::new("iperf3")
        .args([
            "-c",
            &address.ip().to_string(),
            "-p",
            &address.port().to_string(),
        ])
        .args([
            "-t",
            &SECONDS.to_string(),
            "-P",
            &parallel.to_string(),
            "-J",
        ])
        .output()
        .await
        .map_err(|e| format!("cannot run iperf3: {e}"))?;
    let report: serde_json::Value =
        serde_json::from_slice(&output.stdout).map_err(|e| format!("iperf3 wrote no JSON: {e}"))?;
    let bits = report["end"]["sum_received"]["bits_per_second"]
        .as_f64()
        .ok_or_else(|| report["error"].to_string())?;
    Ok(bits / 8.0 / f64::from(1 << 20))
}

/// [`iperf`], tried up to three times: a failed run is reported (and
/// counted in the output), not fatal.
async fn iperf_retried(
    name: &str,
    address: SocketAddr,
    parallel: usize,
    failures: &mut u32,
) -> f64 {
    let mut tries = 0;
    loop {
        match iperf(address, parallel).await {
            Ok(mib) => return mib,
            Err(error) if tries < 2 => {
                tries += 1;
                *failures += 1;
                eprintln!("iperf3 through {name} ({parallel} connections) failed: {error}; again");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            Err(error) => panic!("iperf3 through {name} failed three times: {error}"),
        }
    }
}

/// Median, minimum and maximum.
fn spread(samples: &[f64]) -> (f64, f64, f64) {
    let mut sorted = samples.to_vec();
    sorted.sort_by(f64::total_cmp);
    (
        sorted[sorted.len() / 2],
        sorted[0],
        sorted[sorted.len() - 1],
    )
}

/// CPU seconds (user + system) a process has used so far.
fn cpu_seconds(pid: Option<u32>) -> f64 {
    pid.map_or(0.0, doorman_test_support::process::cpu_seconds)
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
    pid.map_or(0, doorman_test_support::process::rss_kib)
}

async fn doorman(args: &[&str]) -> String {
    doorman_test_support::process::output_of(DOORMAN, args).await
}

/// A doorman server, agent and `connect -L` for both targets.
struct Doorman {
    server: Process,
    agent: Process,
    connect: Process,
    sink: SocketAddr,
    echo: SocketAddr,
    /// The server's URL, and its CA's file for TLS.
    url: String,
    ca: Option<String>,
}

impl Doorman {
    /// The TLS server's `doorman_tunnels_total` lines.
    async fn tunnels(&self) -> String {
        let Some(ca) = &self.ca else {
            return "not a TLS server".into();
        };
        let address = self.url.trim_start_matches("https://").parse().unwrap();
        doorman_test_support::tls::https_get(address, Some(Path::new(ca)), "/metrics")
            .await
            .lines()
            .filter(|l| l.starts_with("doorman_tunnels_total{"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

async fn start_doorman(dir: &Path, tls: bool, sink: SocketAddr, echo: SocketAddr) -> Doorman {
    std::fs::create_dir_all(dir).unwrap();
    let data = dir.join("data");
    let data = data.to_str().unwrap();
    let token = doorman(&[
        "admin",
        "--create",
        "--data-dir",
        data,
        "operator",
        "add",
        "bench",
        "--computers",
        "bench-pc",
    ])
    .await;
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
    let settings = format!(
        "server = \"{url}\"\nname = \"bench-pc\"\nkey = \"{key}\"\n{ca_line}\n[desktop_sharing]\nrequire_email_authorization = false\n\n[services]\nshell = false\nforward = [\"{sink}\", \"{echo}\"]\n"
    );
    let agent = doorman_test_support::process::start_agent(DOORMAN, &config, &settings).await;
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
        connect,
        url,
        ca: ca_path,
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

/// sshd on loopback with a throwaway key, and `ssh -N -L` for both targets
/// with `cipher`.
async fn ssh(
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

/// One path: where its bulk and round-trip traffic goes, how many times a
/// byte is sealed on its way, and what was measured.
struct Route {
    name: &'static str,
    /// Times each byte is sealed (and opened again): once per TLS or SSH
    /// session whose two ends do the cryptography. Doorman's TLS path is
    /// one: the server hands the operator's session to the agent and
    /// relays its records without opening them.
    seals: u32,
    target: Result<(SocketAddr, SocketAddr), String>,
    one: Vec<f64>,
    four: Vec<f64>,
    rtt: Option<(Duration, Duration)>,
    /// iperf3 runs that failed and were run again.
    failures: u32,
}

impl Route {
    fn new(name: &'static str, seals: u32, bulk: SocketAddr, echo: SocketAddr) -> Self {
        Route {
            name,
            seals,
            target: Ok((bulk, echo)),
            one: Vec::new(),
            four: Vec::new(),
            rtt: None,
            failures: 0,
        }
    }

    fn not_run(name: &'static str, seals: u32, why: &str) -> Self {
        Route {
            name,
            seals,
            target: Err(why.to_string()),
            one: Vec::new(),
            four: Vec::new(),
            rtt: None,
            failures: 0,
        }
    }

    fn median_one(&self) -> Option<f64> {
        (!self.one.is_empty()).then(|| spread(&self.one).0)
    }
}

/// CPU used by doorman's three processes on one path, per GiB carried.
#[derive(Default)]
struct CpuUse {
    seconds: [f64; 3],
    mib: f64,
}

impl CpuUse {
    fn snapshot(stack: &Doorman) -> [f64; 3] {
        [
            cpu_seconds(stack.connect.pid()),
            cpu_seconds(stack.server.pid()),
            cpu_seconds(stack.agent.pid()),
        ]
    }

    fn add(&mut self, before: [f64; 3], after: [f64; 3], mib: f64) {
        for (total, (b, a)) in self.seconds.iter_mut().zip(before.iter().zip(after)) {
            *total += a - b;
        }
        self.mib += mib;
    }

    fn per_gib(&self) -> String {
        let gib = self.mib / 1024.0;
        let [connect, server, agent] = self.seconds.map(|s| s / gib);
        format!("connect {connect:.2} s, server {server:.2} s, agent {agent:.2} s per GiB")
    }
}

fn cell((median, min, max): (f64, f64, f64)) -> String {
    format!("{median:.0} ({min:.0}–{max:.0})")
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let dir = tempfile::tempdir().unwrap();
    let Some((_iperf_server, bulk)) = start_iperf_server().await else {
        println!("Relay benchmark not run: iperf3 is not installed (bench/relay.sh installs it)");
        return;
    };
    let echo = start_echo().await;
    let plain = start_doorman(&dir.path().join("plain"), false, bulk, echo).await;
    let tls = start_doorman(&dir.path().join("tls"), true, bulk, echo).await;
    let mut paths = vec![
        Route::new("direct TCP", 0, bulk, echo),
        Route::new("doorman -L (plain)", 0, plain.sink, plain.echo),
        Route::new("doorman -L (TLS)", 1, tls.sink, tls.echo),
        Route::new(
            "3 x splice(2) relay chain",
            0,
            splice_chain(bulk),
            splice_chain(echo),
        ),
    ];
    let mut peers = Vec::new();
    match (socat(bulk).await, socat(echo).await) {
        (Some((bulk_process, bulk_socat)), Some((echo_process, echo_socat))) => {
            paths.push(Route::new("socat", 0, bulk_socat, echo_socat));
            peers.extend([bulk_process, echo_process]);
        }
        _ => paths.push(Route::not_run("socat", 0, "socat is not installed")),
    }
    for (name, cipher, sub) in [
        ("ssh -L (aes256-gcm)", "aes256-gcm@openssh.com", "ssh-aes"),
        (
            "ssh -L (chacha20-poly1305)",
            "chacha20-poly1305@openssh.com",
            "ssh-chacha",
        ),
    ] {
        match ssh(&dir.path().join(sub), cipher, bulk, echo).await {
            Some((processes, bulk_ssh, echo_ssh)) => {
                paths.push(Route::new(name, 1, bulk_ssh, echo_ssh));
                peers.extend(processes);
            }
            None => paths.push(Route::not_run(name, 1, "sshd or ssh is not installed")),
        }
    }

    let idle = (rss_kib(plain.agent.pid()), rss_kib(plain.server.pid()));
    let private = |pid: Option<u32>| pid.map_or(0, doorman_test_support::process::private_kib);
    let idle_private = (private(plain.agent.pid()), private(plain.server.pid()));
    let (agent_pid, server_pid) = (plain.agent.pid(), plain.server.pid());
    let peaks = std::sync::Arc::new([AtomicU64::new(0), AtomicU64::new(0)]);
    let sampler = {
        let peaks = peaks.clone();
        tokio::spawn(async move {
            loop {
                peaks[0].fetch_max(rss_kib(agent_pid), Ordering::Relaxed);
                peaks[1].fetch_max(rss_kib(server_pid), Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };
    let mut cpu_plain = CpuUse::default();
    let mut cpu_tls = CpuUse::default();
    for round in 1..=ROUNDS {
        for path in &mut paths {
            let Ok((target, _)) = path.target else {
                continue;
            };
            let stack = match path.name {
                "doorman -L (plain)" => Some((&plain, &mut cpu_plain)),
                "doorman -L (TLS)" => Some((&tls, &mut cpu_tls)),
                _ => None,
            };
            let before = stack.as_ref().map(|(stack, _)| CpuUse::snapshot(stack));
            let one = iperf_retried(path.name, target, 1, &mut path.failures).await;
            let four = iperf_retried(path.name, target, PARALLEL, &mut path.failures).await;
            if let (Some((stack, cpu)), Some(before)) = (stack, before) {
                let carried = (one + four) * f64::from(SECONDS);
                cpu.add(before, CpuUse::snapshot(stack), carried);
            }
            path.one.push(one);
            path.four.push(four);
        }
        eprintln!("bulk round {round} of {ROUNDS} done");
    }
    sampler.abort();
    let busy = (
        peaks[0].load(Ordering::Relaxed),
        peaks[1].load(Ordering::Relaxed),
    );
    let measured: Vec<usize> = (0..paths.len())
        .filter(|&i| paths[i].target.is_ok())
        .collect();
    let echoes: Vec<SocketAddr> = measured
        .iter()
        .filter_map(|&i| paths[i].target.as_ref().ok().map(|(_, echo)| *echo))
        .collect();
    for (&i, rtt) in measured.iter().zip(round_trips(&echoes).await) {
        paths[i].rtt = Some(rtt);
    }
    let tunnels = tls.tunnels().await;
    drop((plain, tls, peers));

    println!(
        "Relay benchmark: iperf3 (client and server separate processes), {ROUNDS} rounds of {SECONDS} s runs on every path in turn, 1 connection and {PARALLEL} at once: median MiB/s (min–max); {RTT_ROUNDS} round trips of 64 bytes per path (interleaved, {RTT_BATCH} at a time)"
    );
    println!(
        "| path | seals per byte | 1 conn MiB/s | ×direct | {PARALLEL} conns MiB/s | ×direct | RTT p50 | RTT p99 |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    let direct = (spread(&paths[0].one).0, spread(&paths[0].four).0);
    for path in &paths {
        match &path.target {
            Err(why) => println!(
                "| {} | {} | not run: {why} | | | | | |",
                path.name, path.seals
            ),
            Ok(_) => {
                let (one, four) = (spread(&path.one), spread(&path.four));
                let (p50, p99) = path.rtt.unwrap_or_default();
                println!(
                    "| {} | {} | {} | {:.2} | {} | {:.2} | {:.0} µs | {:.0} µs |",
                    path.name,
                    path.seals,
                    cell(one),
                    one.0 / direct.0,
                    cell(four),
                    four.0 / direct.1,
                    p50.as_secs_f64() * 1e6,
                    p99.as_secs_f64() * 1e6
                );
            }
        }
    }
    let median = |name: &str| {
        paths
            .iter()
            .find(|p| p.name == name)
            .and_then(Route::median_one)
    };
    let ratio = |a: &str, b: &str, target: &str| match (median(a), median(b)) {
        (Some(x), Some(y)) => println!("{a} / {b}: {:.2} ({target})", x / y),
        _ => println!("{a} / {b}: not measured (a path was not run)"),
    };
    ratio(
        "doorman -L (plain)",
        "3 x splice(2) relay chain",
        "target ≥ 1",
    );
    ratio("doorman -L (plain)", "socat", "target ≥ 1.2");
    ratio("doorman -L (TLS)", "ssh -L (aes256-gcm)", "target ≥ 1");
    ratio(
        "doorman -L (TLS)",
        "ssh -L (chacha20-poly1305)",
        "for reference",
    );
    if let (Some((direct, _)), Some((plain, _))) = (paths[0].rtt, paths[1].rtt) {
        println!(
            "doorman plain RTT p50 − direct: {:.0} µs (target ≤ 100)",
            (plain.as_secs_f64() - direct.as_secs_f64()) * 1e6
        );
    }
    for path in paths.iter().filter(|p| p.failures > 0) {
        println!(
            "{}: {} iperf3 runs failed and were run again",
            path.name, path.failures
        );
    }
    println!("CPU, plain path: {}", cpu_plain.per_gib());
    println!("CPU, TLS path: {}", cpu_tls.per_gib());
    println!("TLS path's tunnels: {tunnels}");
    println!(
        "RSS idle: agent {} KiB, server {} KiB (their own pages, USS: {} and {} KiB); peak during the transfers: agent {} KiB, server {} KiB",
        idle.0, idle.1, idle_private.0, idle_private.1, busy.0, busy.1
    );
}
