//! How long from the recipient's Allow click to the remote command's first
//! output byte at the operator, over loopback with a real server, agent,
//! SMTP exchange and HTTP POST. Printed beside the floor measured in the same
//! run: spawning the same command locally and reading its first byte.
//!
//! Run: `cargo bench -p doorman-server --bench approval_latency`

use doorman_test_support::World;
use doorman_test_support::figures::{ms, summary};
use doorman_test_support::world::extract_nonce;
use std::time::{Duration, Instant};
use tokio::io::AsyncReadExt;

/// Enough samples that the 99th percentile is not the maximum: five lie
/// above it.
const ROUNDS: usize = 500;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    // More requests to one computer than the flood limit lets through in an
    // hour: this measures latency, not the limits.
    let world = World::builder()
        .recipients(&["it@example.com"])
        .limits(doorman_server::Limits {
            max_requests_per_hour: 1000,
            ..doorman_server::Limits::default()
        })
        .start()
        .await;
    let mut doorman = Vec::with_capacity(ROUNDS);
    for round in 0..ROUNDS {
        let connecting = world.connect(&["echo", "x"], "benchmark");
        connecting.event("pending").await;
        let mails = world.smtp.wait_for(round + 1).await;
        let link = mails[round].link();
        let (_, page) = world.page(&link).await;
        let nonce = extract_nonce(&page).expect("form");
        let stdout = connecting.stdout.clone();
        let start = Instant::now();
        let post = world
            .http
            .post(&link)
            .form(&[("decision", "allow"), ("nonce", nonce.as_str())])
            .send();
        let first_byte = async {
            stdout.wait_until(|text| !text.is_empty()).await;
            start.elapsed()
        };
        let (response, elapsed) = tokio::join!(post, first_byte);
        assert_eq!(
            response.expect("POST").status(),
            reqwest::StatusCode::SEE_OTHER,
            "the Allow click is taken"
        );
        doorman.push(elapsed);
        assert_eq!(connecting.finish().await, Ok(0));
    }

    let mut local = Vec::with_capacity(ROUNDS);
    for _ in 0..ROUNDS {
        let start = Instant::now();
        let mut child = tokio::process::Command::new("echo")
            .arg("x")
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("spawn echo");
        let mut byte = [0u8; 1];
        child
            .stdout
            .as_mut()
            .expect("stdout")
            .read_exact(&mut byte)
            .await
            .expect("read");
        local.push(start.elapsed());
        child.wait().await.expect("wait");
    }

    let doorman = summary(doorman);
    let local = summary(local);
    println!("Allow click → first output byte at the operator, {ROUNDS} requests on loopback");
    let row = |path: &str, figures: &[Duration; 5]| {
        let [min, median, p90, p99, max] = figures.map(ms);
        println!("{path:<50} {min:>10} {median:>10} {p90:>10} {p99:>10} {max:>10}");
    };
    println!(
        "{:<50} {:>10} {:>10} {:>10} {:>10} {:>10}",
        "path", "min", "median", "p90", "p99", "max"
    );
    row("doorman (POST → server → agent → spawn → relay)", &doorman);
    row("local spawn of the same command (floor)", &local);
    println!(
        "median overhead over the floor: {}",
        ms(doorman[1].saturating_sub(local[1]))
    );
}
