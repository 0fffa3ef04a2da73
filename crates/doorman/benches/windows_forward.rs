//! A forward's throughput through the Windows agent under Wine (issue 28;
//! informative only: Wine's sockets are not Windows'), side by side with
//! the Linux agent and direct TCP in the same run: one connection, 128 MiB
//! a round into a sink that counts it, five rounds, medians and ranges in
//! MiB/s. Run by `bench/windows.sh`, which cross-builds the release exe and
//! names it in DOORMAN_WINDOWS_EXE.

use doorman_client::{ForwardSpec, SessionKind};
use doorman_test_support::wine::WindowsAgent;
use doorman_test_support::world::World;
use std::net::SocketAddr;
use std::time::Instant;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

const ROUND: usize = 128 << 20;
const ROUNDS: usize = 5;

/// A sink that reads each connection to its end and reports how much came.
async fn start_sink() -> (SocketAddr, mpsc::UnboundedReceiver<usize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let (done, received) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let done = done.clone();
            tokio::spawn(async move {
                let mut buffer = vec![0u8; 256 * 1024];
                let mut total = 0;
                while let Ok(n) = stream.read(&mut buffer).await {
                    if n == 0 {
                        break;
                    }
                    total += n;
                }
                let _ = done.send(total);
            });
        }
    });
    (address, received)
}

/// MiB/s of one round through `address`, counted until the sink has it all.
async fn round(address: &str, sink: &mut mpsc::UnboundedReceiver<usize>) -> f64 {
    let chunk = vec![7u8; 256 * 1024];
    let started = Instant::now();
    let mut stream = TcpStream::connect(address).await.unwrap();
    stream.set_nodelay(true).unwrap();
    for _ in 0..ROUND / chunk.len() {
        stream.write_all(&chunk).await.unwrap();
    }
    stream.shutdown().await.unwrap();
    let received = sink.recv().await.unwrap();
    assert_eq!(received, ROUND, "the sink got every byte");
    ROUND as f64 / f64::from(1 << 20) / started.elapsed().as_secs_f64()
}

/// Median, minimum and maximum.
fn spread(mut samples: Vec<f64>) -> (f64, f64, f64) {
    samples.sort_by(f64::total_cmp);
    (
        samples[samples.len() / 2],
        samples[0],
        samples[samples.len() - 1],
    )
}

/// A forward session to `target` through `computer`: its local address.
async fn forward(world: &World, computer: &str, target: SocketAddr) -> String {
    let spec: ForwardSpec = format!("0:{target}").parse().unwrap();
    let forwarding = world.connect_with(
        computer,
        &world.operator_token,
        SessionKind::Forward(vec![spec]),
        "",
        Box::new(tokio::io::empty()),
    );
    let address = forwarding.forwarding_address().await.to_string();
    // The session lives as long as the benchmark.
    std::mem::forget(forwarding);
    address
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let Some(exe) = doorman_test_support::wine::windows_exe() else {
        eprintln!("set DOORMAN_WINDOWS_EXE to a cross-built doorman.exe (bench/windows.sh does)");
        std::process::exit(2);
    };
    let (sink, mut received) = start_sink().await;
    let builder = World::builder()
        .without_email_authorization()
        .forward(&[&sink.to_string()]);
    let world = builder.clone().start().await;
    let _agent = WindowsAgent::start(&world, "win-pc", &builder, &exe).await;
    let paths = [
        ("direct TCP", sink.to_string()),
        ("Linux agent", forward(&world, "office-pc", sink).await),
        (
            "Windows agent (Wine)",
            forward(&world, "win-pc", sink).await,
        ),
    ];
    let mut samples = vec![Vec::new(); paths.len()];
    // Rounds interleave the paths, so that the machine's moods spread.
    for _ in 0..ROUNDS {
        for (index, (_, address)) in paths.iter().enumerate() {
            samples[index].push(round(address, &mut received).await);
        }
    }
    println!(
        "forward throughput, one connection, {ROUNDS} rounds of {} MiB, MiB/s",
        ROUND >> 20
    );
    println!("{:<22} {:>8} {:>17}", "path", "median", "range");
    let mut medians = Vec::new();
    for ((name, _), samples) in paths.iter().zip(samples) {
        let (median, min, max) = spread(samples);
        medians.push(median);
        println!(
            "{name:<22} {median:>8.0} {:>17}",
            format!("{min:.0}–{max:.0}")
        );
    }
    println!(
        "Windows agent / Linux agent: {:.2}; Windows agent / direct: {:.2}",
        medians[2] / medians[1],
        medians[2] / medians[0]
    );
    std::process::exit(0);
}
