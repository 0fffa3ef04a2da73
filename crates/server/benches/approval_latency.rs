//! How long from the recipient's Allow click to the remote command's first
//! output byte at the operator, over loopback with a real server, agent,
//! SMTP exchange and HTTP POST. Printed beside the floor measured in the same
//! run: spawning the same command locally and reading its first byte.
//!
//! Run: `cargo bench -p doorman-server --bench approval_latency`

use doorman_test_support::World;
use doorman_test_support::world::extract_nonce;
use std::time::{Duration, Instant};
use tokio::io::AsyncReadExt;

const ROUNDS: usize = 60;

fn summary(mut samples: Vec<Duration>) -> (Duration, Duration, Duration) {
    samples.sort();
    let median = samples[samples.len() / 2];
    let p99 = samples[(samples.len() * 99).div_ceil(100) - 1];
    (samples[0], median, p99)
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

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
        response.expect("POST");
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

    let (d_min, d_median, d_p99) = summary(doorman);
    let (l_min, l_median, l_p99) = summary(local);
    println!("Allow click → first output byte at the operator, {ROUNDS} requests on loopback");
    println!(
        "{:<50} {:>10} {:>10} {:>10}",
        "path", "min", "median", "p99"
    );
    println!(
        "{:<50} {:>10} {:>10} {:>10}",
        "doorman (POST → server → agent → spawn → relay)",
        ms(d_min),
        ms(d_median),
        ms(d_p99)
    );
    println!(
        "{:<50} {:>10} {:>10} {:>10}",
        "local spawn of the same command (floor)",
        ms(l_min),
        ms(l_median),
        ms(l_p99)
    );
    println!(
        "median overhead over the floor: {}",
        ms(d_median.saturating_sub(l_median))
    );
}
