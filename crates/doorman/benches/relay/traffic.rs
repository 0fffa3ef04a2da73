//! The traffic the benchmark measures: iperf3's bulk transfers (its client
//! and server processes of their own) and 64-byte round trips to an echo
//! server in this process, with the median and range of the rounds.

use crate::{RTT_BATCH, RTT_ROUNDS, SECONDS};
use doorman_test_support::process::Process;
use doorman_test_support::sshd::{free_port, wait_listening};
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// `iperf3 -s` on a port of its own, the target of every bulk transfer.
pub async fn start_iperf_server() -> Option<(Process, SocketAddr)> {
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
pub async fn iperf_retried(
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
pub fn spread(samples: &[f64]) -> (f64, f64, f64) {
    let mut sorted = samples.to_vec();
    sorted.sort_by(f64::total_cmp);
    (
        sorted[sorted.len() / 2],
        sorted[0],
        sorted[sorted.len() - 1],
    )
}

/// Echoes every byte back.
pub async fn start_echo() -> SocketAddr {
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
pub async fn round_trips(echoes: &[SocketAddr]) -> Vec<(Duration, Duration)> {
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
