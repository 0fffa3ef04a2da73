//! Sustained authorization requests: operators connecting to many computers
//! at once, two emails each to an SMTP sink, both recipients clicking Allow,
//! the command run and the session ended. Reports requests per second and the
//! time from the click to the session's start, on SQLite and on PostgreSQL,
//! and on SQLite again with 1,000 slow connections held open against the
//! server beside the load (each sends part of a request head and is
//! reconnected when the server drops it).
//!
//! Everything runs in this one process (server, agents, SMTP sink, operators,
//! browsers) on two worker threads, so the load generator shares the
//! machine's two cores with the server.
//!
//! Run: `cargo bench -p doorman-server --bench request_throughput`
//! (`DOORMAN_BENCH_REQUESTS=N` per run, default 3000).

use doorman_test_support::mailroom::{self, Mailroom};
use doorman_test_support::postgres::Postgres;
use doorman_test_support::world::{World, request_id};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

/// Computers, each with one operator's request in flight at a time.
const COMPUTERS: usize = 64;
const SLOW_CONNECTIONS: usize = 1000;
const TARGET_PER_SECOND: f64 = 500.0;
const TARGET_P99: Duration = Duration::from_millis(50);

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    doorman_http::serve::raise_open_file_limit();
    let requests: usize = std::env::var("DOORMAN_BENCH_REQUESTS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(3000);
    println!(
        "{requests} authorization requests per run, {COMPUTERS} at a time to {COMPUTERS} computers; \
         two recipients each, both click Allow; everything in one process on 2 worker threads"
    );
    println!(
        "{:<44} {:>10} {:>10} {:>10} {:>10} {:>10}",
        "run", "req/s", "p50", "p90", "p99", "max"
    );

    let sqlite = Bench::start(None).await;
    let quiet = sqlite.run(requests).await;
    quiet.print("SQLite");
    let attack = SlowConnections::open(sqlite.world.address, SLOW_CONNECTIONS).await;
    let loaded = sqlite.run(requests).await;
    let dropped = attack.stop();
    loaded.print(&format!(
        "SQLite, {SLOW_CONNECTIONS} slow connections beside"
    ));
    drop(sqlite);

    let postgres = if Postgres::installed() {
        let server = Postgres::start().await;
        let bench = Bench::start(Some(server.new_database().await)).await;
        let figures = bench.run(requests).await;
        figures.print("PostgreSQL (same machine)");
        Some((server, figures))
    } else {
        println!(
            "{:<44} not run: PostgreSQL is not installed (apt-get install postgresql)",
            "PostgreSQL"
        );
        None
    };

    println!();
    println!(
        "slow connections: {SLOW_CONNECTIONS} held open; the server dropped {dropped} of them at its \
         header deadline during the run, each reopened at once"
    );
    let rate = quiet.per_second();
    verdict(
        "SQLite requests/s",
        rate >= TARGET_PER_SECOND,
        format!(
            "{rate:.0} (target ≥ {TARGET_PER_SECOND:.0}; {:.1}× short)",
            TARGET_PER_SECOND / rate
        ),
    );
    let p99 = quiet.percentile(99);
    verdict(
        "SQLite p99 click → session",
        p99 < TARGET_P99,
        format!(
            "{} (target < {}; {:.1}× over)",
            ms(p99),
            ms(TARGET_P99),
            p99.as_secs_f64() / TARGET_P99.as_secs_f64()
        ),
    );
    let ratio = loaded.percentile(99).as_secs_f64() / p99.as_secs_f64();
    verdict(
        "p99 under attack / quiet",
        ratio <= 2.0,
        format!("{ratio:.2}× (target ≤ 2×)"),
    );
    if let Some((_, figures)) = &postgres {
        println!(
            "PostgreSQL / SQLite requests/s: {:.2}",
            figures.per_second() / quiet.per_second()
        );
    }
}

fn verdict(what: &str, met: bool, figure: String) {
    let word = if met { "met" } else { "MISSED" };
    println!("{what:<30} {figure:<55} {word}");
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

/// A world with [`COMPUTERS`] computers, ready for runs.
struct Bench {
    world: Arc<World>,
    computers: Vec<String>,
}

impl Bench {
    async fn start(database: Option<String>) -> Bench {
        let mut builder = World::builder().limits(doorman_server::Limits {
            max_pending_per_operator: 100_000,
            max_requests_per_hour: 100_000,
            block_minutes: 20,
        });
        if let Some(url) = database {
            builder = builder.database(&url);
        }
        let world = builder.clone().start().await;
        let mut computers = vec![doorman_test_support::world::COMPUTER.to_string()];
        for i in 1..COMPUTERS {
            let name = format!("pc-{i:03}");
            world.add_agent(&name, &builder).await;
            computers.push(name);
        }
        Bench {
            world: Arc::new(world),
            computers,
        }
    }

    /// `requests` requests, one operator per computer looping until all
    /// are done.
    async fn run(&self, requests: usize) -> Figures {
        let (mailroom, sorting) = Mailroom::open(self.world.smtp.clone());
        let next = Arc::new(AtomicUsize::new(0));
        let started = Instant::now();
        let operators: Vec<_> = self
            .computers
            .iter()
            .map(|computer| {
                let world = self.world.clone();
                let computer = computer.clone();
                let mailroom = mailroom.clone();
                let next = next.clone();
                tokio::spawn(async move {
                    let mut latencies = Vec::new();
                    while next.fetch_add(1, Ordering::Relaxed) < requests {
                        latencies.push(one_request(&world, &computer, &mailroom).await);
                    }
                    latencies
                })
            })
            .collect();
        let mut latencies = Vec::with_capacity(requests);
        for operator in operators {
            latencies.extend(operator.await.expect("an operator's loop"));
        }
        let elapsed = started.elapsed();
        sorting.abort();
        latencies.sort();
        Figures { elapsed, latencies }
    }
}

/// One request from connect to exit; returns the time from the clicks to
/// the session's start.
async fn one_request(world: &World, computer: &str, mailroom: &Mailroom) -> Duration {
    let connecting = world.connect_to(computer, &world.operator_token, &["true"], "load");
    let id = request_id(&connecting.event("pending").await);
    let links = mailroom.links(&id, 2).await;
    let nonces = mailroom::open_pages(&world.http, &links).await;
    let latency = mailroom::allow_at_once(&world.http, &links, &nonces, &connecting).await;
    assert_eq!(connecting.finish().await, Ok(0), "the command ran");
    latency
}

struct Figures {
    elapsed: Duration,
    latencies: Vec<Duration>,
}

impl Figures {
    fn per_second(&self) -> f64 {
        self.latencies.len() as f64 / self.elapsed.as_secs_f64()
    }

    fn percentile(&self, percent: usize) -> Duration {
        self.latencies[(self.latencies.len() * percent).div_ceil(100) - 1]
    }

    fn print(&self, run: &str) {
        println!(
            "{run:<44} {:>10.0} {:>10} {:>10} {:>10} {:>10}",
            self.per_second(),
            ms(self.percentile(50)),
            ms(self.percentile(90)),
            ms(self.percentile(99)),
            ms(self.latencies[self.latencies.len() - 1]),
        );
    }
}

/// Connections that each send part of a request head and then nothing,
/// reopened whenever the server closes one.
struct SlowConnections {
    tasks: Vec<tokio::task::JoinHandle<()>>,
    dropped: Arc<AtomicUsize>,
}

impl SlowConnections {
    /// Returns once all `count` are open.
    async fn open(server: std::net::SocketAddr, count: usize) -> SlowConnections {
        let dropped = Arc::new(AtomicUsize::new(0));
        let (opened, mut all_open) = mpsc::channel::<()>(count);
        let mut tasks = Vec::with_capacity(count);
        for _ in 0..count {
            let dropped = dropped.clone();
            let opened = opened.clone();
            tasks.push(tokio::spawn(async move {
                let mut first = true;
                loop {
                    let Ok(mut stream) = tokio::net::TcpStream::connect(server).await else {
                        continue;
                    };
                    let head = b"GET /outbox HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ";
                    if stream.write_all(head).await.is_err() {
                        continue;
                    }
                    if std::mem::take(&mut first) {
                        let _ = opened.send(()).await;
                    }
                    let mut byte = [0u8; 1];
                    // The server answers 408 or closes; either ends the wait.
                    let _ = stream.read(&mut byte).await;
                    dropped.fetch_add(1, Ordering::Relaxed);
                }
            }));
        }
        for _ in 0..count {
            all_open.recv().await.expect("slow connections opening");
        }
        dropped.store(0, Ordering::Relaxed);
        SlowConnections { tasks, dropped }
    }

    /// Closes them all; returns how many the server dropped since all were
    /// open.
    fn stop(self) -> usize {
        for task in &self.tasks {
            task.abort();
        }
        self.dropped.load(Ordering::Relaxed)
    }
}
