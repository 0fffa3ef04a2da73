//! Relay speed: bulk throughput (one connection, and four at once), 64-byte
//! round-trip latency, and the agent's and server's memory and CPU, through
//! every path in one run — direct TCP, `doorman connect -L` (plain and
//! TLS, sealed end to end), the same forwards unsealed (the relay's own
//! speed; the agent taking the operator's TLS session over), a chain of
//! three minimal splice(2) relays (the yardstick for a three-hop relay),
//! socat, rathole, and `ssh -L` with AES-256-GCM and with ChaCha20-Poly1305.
//!
//! Bulk transfers are iperf3's: its client and server are processes of
//! their own, as in an outside measurement. Each round runs every path in
//! turn, so that the load of this shared machine weighs on every path
//! alike; the figures are the median of the rounds and their range.
//!
//! Run: `bench/relay.sh` (installs iperf3, socat, openssh-server and
//! rathole, then `cargo bench -p doorman --bench relay`).
//!
//! The Doorman stack is [`stack`]; the other relays are [`splice`] (the
//! yardstick chain) and [`peers`] (socat, rathole, ssh); the measurements are
//! [`traffic`] (bulk and round trips) and [`resources`] (CPU and memory).

mod peers;
mod resources;
mod splice;
mod stack;
mod traffic;

use doorman_test_support::process::Process;
use peers::{rathole, socat, ssh};
use resources::{CpuUse, IdleMemory, PeakSampler};
use splice::splice_chain;
use stack::{Doorman, start_doorman};
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;
use traffic::{iperf_retried, round_trips, spread, start_echo, start_iperf_server};

const DOORMAN: &str = env!("CARGO_BIN_EXE_doorman");
const PLAIN_UNSEALED: &str = "doorman -L (plain, unsealed)";
const PLAIN_SEALED: &str = "doorman -L (plain, end to end)";
const TLS_HANDED_OVER: &str = "doorman -L (TLS, unsealed: handed over)";
const TLS_SEALED: &str = "doorman -L (TLS, end to end)";
const RATHOLE: &str = "rathole";
/// Bulk rounds: each path runs once per round, in turn.
const ROUNDS: usize = 5;
/// Seconds of each iperf3 run.
const SECONDS: u32 = 2;
const PARALLEL: usize = 4;
const RTT_ROUNDS: usize = 10_000;
const RTT_BATCH: usize = 250;

/// One path: where its bulk and round-trip traffic goes, how many times a
/// byte is sealed on its way, and what was measured.
struct Route {
    name: &'static str,
    /// Times each byte is sealed (and opened again): once per TLS, SSH or
    /// end-to-end session whose two ends do the cryptography. Doorman's
    /// sealed paths are one: `connect` and the agent seal, and the server
    /// relays records it cannot open (plain or TLS, the tunnel leaves the
    /// server's TLS); so is the handed-over path, whose records the
    /// server gave the agent the keys of.
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
    let (mut paths, peers) = routes(dir.path(), bulk, echo, &plain, &tls).await;

    let idle = IdleMemory::of(&plain);
    let peaks = PeakSampler::start(&plain);
    let (cpu_plain, cpu_tls) = bulk_rounds(&mut paths, &plain, &tls).await;
    let busy = peaks.stop();
    measure_round_trips(&mut paths).await;
    let tunnels = tls.tunnels().await;
    drop((plain, tls, peers));

    print_table(&paths);
    print_comparisons(&paths);
    for path in paths.iter().filter(|p| p.failures > 0) {
        println!(
            "{}: {} iperf3 runs failed and were run again",
            path.name, path.failures
        );
    }
    println!("CPU, plain path sealed end to end: {}", cpu_plain.per_gib());
    println!("CPU, TLS path sealed end to end: {}", cpu_tls.per_gib());
    println!("TLS path's tunnels: {tunnels}");
    println!(
        "RSS idle: agent {} KiB, server {} KiB (their own pages, USS: {} and {} KiB); peak during the transfers: agent {} KiB, server {} KiB",
        idle.rss.0, idle.rss.1, idle.private.0, idle.private.1, busy.0, busy.1
    );
}

/// Every path, in the order of the table: direct TCP, doorman's two, the
/// splice chain, then socat, rathole and ssh where installed (else a row that says
/// why not); and the peers' processes, which must outlive the measurements.
async fn routes(
    dir: &Path,
    bulk: SocketAddr,
    echo: SocketAddr,
    plain: &Doorman,
    tls: &Doorman,
) -> (Vec<Route>, Vec<Process>) {
    let mut paths = vec![
        Route::new("direct TCP", 0, bulk, echo),
        Route::new(PLAIN_UNSEALED, 0, plain.unsealed.sink, plain.unsealed.echo),
        Route::new(PLAIN_SEALED, 1, plain.sink, plain.echo),
        Route::new(TLS_HANDED_OVER, 1, tls.unsealed.sink, tls.unsealed.echo),
        Route::new(TLS_SEALED, 1, tls.sink, tls.echo),
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
    match rathole(&dir.join("rathole"), bulk, echo).await {
        Some((processes, bulk_rathole, echo_rathole)) => {
            paths.push(Route::new(RATHOLE, 0, bulk_rathole, echo_rathole));
            peers.extend(processes);
        }
        None => paths.push(Route::not_run(RATHOLE, 0, "rathole is not installed")),
    }
    for (name, cipher, sub) in [
        ("ssh -L (aes256-gcm)", "aes256-gcm@openssh.com", "ssh-aes"),
        (
            "ssh -L (chacha20-poly1305)",
            "chacha20-poly1305@openssh.com",
            "ssh-chacha",
        ),
    ] {
        match ssh(&dir.join(sub), cipher, bulk, echo).await {
            Some((processes, bulk_ssh, echo_ssh)) => {
                paths.push(Route::new(name, 1, bulk_ssh, echo_ssh));
                peers.extend(processes);
            }
            None => paths.push(Route::not_run(name, 1, "sshd or ssh is not installed")),
        }
    }
    (paths, peers)
}

/// [`ROUNDS`] rounds of bulk transfers, one connection then [`PARALLEL`],
/// every path in turn; the CPU doorman's plain and TLS stacks used for them.
async fn bulk_rounds(paths: &mut [Route], plain: &Doorman, tls: &Doorman) -> (CpuUse, CpuUse) {
    let mut cpu_plain = CpuUse::default();
    let mut cpu_tls = CpuUse::default();
    for round in 1..=ROUNDS {
        for path in paths.iter_mut() {
            let Ok((target, _)) = path.target else {
                continue;
            };
            let stack = match path.name {
                PLAIN_SEALED => Some((plain, &mut cpu_plain)),
                TLS_SEALED => Some((tls, &mut cpu_tls)),
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
    (cpu_plain, cpu_tls)
}

/// The round trips of every path that ran, measured together.
async fn measure_round_trips(paths: &mut [Route]) {
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
}

/// What was measured and how, then a row per path.
fn print_table(paths: &[Route]) {
    println!(
        "Relay benchmark: iperf3 (client and server separate processes), {ROUNDS} rounds of {SECONDS} s runs on every path in turn, 1 connection and {PARALLEL} at once: median MiB/s (min–max); {RTT_ROUNDS} round trips of 64 bytes per path (interleaved, {RTT_BATCH} at a time)"
    );
    println!(
        "| path | seals per byte | 1 conn MiB/s | ×direct | {PARALLEL} conns MiB/s | ×direct | RTT p50 | RTT p99 |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    let direct = (spread(&paths[0].one).0, spread(&paths[0].four).0);
    for path in paths {
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
}

/// The ratios the targets are set for, and doorman's added latency.
fn print_comparisons(paths: &[Route]) {
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
    ratio(PLAIN_UNSEALED, "3 x splice(2) relay chain", "target ≥ 1");
    ratio(PLAIN_UNSEALED, "socat", "target ≥ 1.2");
    ratio(PLAIN_SEALED, RATHOLE, "target ≥ 1.3: issue 32");
    ratio(PLAIN_UNSEALED, RATHOLE, "for reference");
    ratio(TLS_SEALED, TLS_HANDED_OVER, "target ≥ 1: issue 29");
    ratio(PLAIN_SEALED, TLS_SEALED, "for reference: the same records");
    ratio(TLS_SEALED, "ssh -L (aes256-gcm)", "target ≥ 1.5: issue 32");
    ratio(TLS_SEALED, "ssh -L (chacha20-poly1305)", "for reference");
    let rtt = |name: &str| paths.iter().find(|p| p.name == name).and_then(|p| p.rtt);
    for doorman in [PLAIN_SEALED, PLAIN_UNSEALED] {
        if let (Some((p50, p99)), Some((rathole_p50, rathole_p99))) = (rtt(doorman), rtt(RATHOLE)) {
            let us = |d: Duration| d.as_secs_f64() * 1e6;
            println!(
                "{doorman} RTT p50 / p99 against rathole's: {:.0} / {:.0} µs against {:.0} / {:.0} (target: no worse)",
                us(p50),
                us(p99),
                us(rathole_p50),
                us(rathole_p99)
            );
        }
    }
    if let (Some((direct, _)), Some((plain, _))) = (paths[0].rtt, paths[1].rtt) {
        println!(
            "doorman plain (unsealed) RTT p50 − direct: {:.0} µs (target ≤ 100)",
            (plain.as_secs_f64() - direct.as_secs_f64()) * 1e6
        );
    }
}
