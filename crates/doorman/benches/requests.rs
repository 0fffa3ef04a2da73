//! Sustained authorization requests against a real `doorman server`
//! process, with the load generated elsewhere: the computers are real
//! `doorman agent` processes, and this process holds the operators (the
//! client library, sealing end to end as `doorman connect` does), the
//! recipients' browsers (an HTTP client) and the SMTP relay (the test
//! sink). Each operator loops: connect to its computer and run `true`,
//! wait for the request's two emails, open both approval pages, both
//! recipients click Allow at once, wait for the command's exit.
//!
//! Reported: requests per second, the time from the clicks to the
//! operator's `session_started` (p50, p90, p99, max), and CPU per request
//! counted apart for the server, the agents and this load generator (user
//! and system time from `/proc`), with the server's own capacity on one
//! core that its CPU per request implies.
//!
//! Run: `cargo bench -p doorman --bench requests` (`DOORMAN_BENCH_REQUESTS=N`
//! per run, default 3000; `DOORMAN_BENCH_COMPUTERS=N`, default 32).

use doorman_test_support::mailroom::{self, Mailroom};
use doorman_test_support::process::{Process, cpu_seconds, listening_address, start_agent};
use doorman_test_support::smtp::SmtpSink;
use doorman_test_support::world::{Connecting, WorldBuilder, request_id};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

const DOORMAN: &str = env!("CARGO_BIN_EXE_doorman");
const OPERATOR: &str = "load";
const TARGET_PER_SECOND: f64 = 500.0;
const TARGET_P99: Duration = Duration::from_millis(50);
/// Requests before the measured run: pools filled, pages cached.
const WARM_UP: usize = 200;

#[tokio::main]
async fn main() {
    let requests = env_number("DOORMAN_BENCH_REQUESTS", 3000);
    let computers = env_number("DOORMAN_BENCH_COMPUTERS", 32);
    doorman_http::serve::raise_open_file_limit();
    let bench = Bench::start(computers).await;
    println!(
        "{requests} authorization requests, {computers} at a time to {computers} computers \
         (`doorman agent` processes) through a `doorman server` process on SQLite; two \
         recipients each, both click Allow; operators, browsers and the SMTP sink in the \
         benchmark's process"
    );
    // For a profiler: `perf record -g -p PID` during the run.
    println!(
        "server pid {}",
        bench.server.pid().expect("the server runs")
    );
    bench.run(WARM_UP).await;
    let figures = bench.run(requests).await;
    figures.print();
    let rate = figures.per_second();
    verdict(
        "requests/s",
        rate >= TARGET_PER_SECOND,
        format!("{rate:.0} (target ≥ {TARGET_PER_SECOND:.0})"),
    );
    let p99 = figures.percentile(99);
    verdict(
        "p99 click → session",
        p99 < TARGET_P99,
        format!("{} (target < {})", ms(p99), ms(TARGET_P99)),
    );
}

fn env_number(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn verdict(what: &str, met: bool, figure: String) {
    let word = if met { "met" } else { "MISSED" };
    println!("{what:<24} {figure:<40} {word}");
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

/// The server, its computers and the operator, ready for runs.
struct Bench {
    dir: tempfile::TempDir,
    url: String,
    token: String,
    smtp: SmtpSink,
    server: Process,
    agents: Vec<(String, Process)>,
    http: reqwest::Client,
}

impl Bench {
    async fn start(computers: usize) -> Bench {
        let dir = tempfile::tempdir().expect("temp dir");
        let data = dir.path().join("data");
        doorman_store::private::create_dir(&data).expect("data dir");
        let store = doorman_store::Store::open(&doorman_server::default_database_url(&data))
            .await
            .expect("database");
        let token = doorman_server::admin::add_operator(&store, OPERATOR)
            .await
            .expect("operator added");
        let mut keys = Vec::with_capacity(computers);
        for i in 0..computers {
            let name = format!("pc-{i:03}");
            let key = doorman_server::admin::add_agent(&store, &name)
                .await
                .expect("agent added");
            keys.push((name, key));
        }
        drop(store);

        let smtp = SmtpSink::start().await;
        let settings = dir.path().join("server.toml");
        // Far above what the run asks of one operator and one computer.
        std::fs::write(
            &settings,
            "max_pending_per_operator = 1000\nmax_requests_per_hour = 100000\n",
        )
        .expect("server settings");
        let server = Process::start(
            DOORMAN,
            &[
                "server",
                "--config",
                path_str(&settings),
                "--listen",
                "127.0.0.1:0",
                "--data-dir",
                path_str(&data),
                "--smtp-url",
                &smtp.url(),
            ],
        );
        let url = format!("http://{}", listening_address(&server).await);

        let builder = WorldBuilder::default();
        let mut agents = Vec::with_capacity(computers);
        for (name, key) in keys {
            let config = dir.path().join(format!("{name}.toml"));
            let text = builder.settings_text_for(&name, &url, &key);
            agents.push((name, start_agent(DOORMAN, &config, &text).await));
        }
        Bench {
            dir,
            url,
            token,
            smtp,
            server,
            agents,
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .timeout(Duration::from_secs(20))
                .build()
                .expect("http client"),
        }
    }

    /// `requests` requests, one operator per computer looping until all
    /// are done; the CPU each side spent on them.
    async fn run(&self, requests: usize) -> Figures {
        let (mailroom, sorting) = Mailroom::open(self.smtp.clone());
        let next = Arc::new(AtomicUsize::new(0));
        let cpu = self.cpu();
        let started = Instant::now();
        let operators: Vec<_> = self
            .agents
            .iter()
            .map(|(computer, _)| {
                let operator = Operator {
                    url: self.url.clone(),
                    token: self.token.clone(),
                    computer: computer.clone(),
                    known: self.dir.path().join(format!("known-{computer}")),
                    http: self.http.clone(),
                    mailroom: Arc::clone(&mailroom),
                };
                let next = Arc::clone(&next);
                tokio::spawn(async move {
                    let mut phases = Vec::new();
                    while next.fetch_add(1, Ordering::Relaxed) < requests {
                        phases.push(operator.one_request().await);
                    }
                    phases
                })
            })
            .collect();
        let mut phases = Vec::with_capacity(requests);
        for operator in operators {
            phases.extend(operator.await.expect("an operator's loop"));
        }
        let elapsed = started.elapsed();
        let cpu = self.cpu().since(&cpu);
        sorting.abort();
        let mut latencies: Vec<Duration> = phases.iter().map(|p| p.session).collect();
        latencies.sort();
        Figures {
            elapsed,
            latencies,
            phases,
            cpu,
        }
    }

    fn cpu(&self) -> Cpu {
        let pid = |process: &Process| process.pid().expect("a running process");
        Cpu {
            server: cpu_seconds(pid(&self.server)),
            agents: self.agents.iter().map(|(_, a)| cpu_seconds(pid(a))).sum(),
            load: cpu_seconds(std::process::id()),
        }
    }
}

fn path_str(path: &Path) -> &str {
    path.to_str().expect("a UTF-8 path")
}

/// CPU seconds (user + system) of each side.
struct Cpu {
    server: f64,
    agents: f64,
    load: f64,
}

impl Cpu {
    fn since(&self, before: &Cpu) -> Cpu {
        Cpu {
            server: self.server - before.server,
            agents: self.agents - before.agents,
            load: self.load - before.load,
        }
    }
}

/// One operator, connecting again and again to one computer.
struct Operator {
    url: String,
    token: String,
    computer: String,
    known: PathBuf,
    http: reqwest::Client,
    mailroom: Arc<Mailroom>,
}

impl Operator {
    /// One request from connect to exit; when each step came.
    async fn one_request(&self) -> Phases {
        let connecting = Connecting::start(
            doorman_client::ConnectRequest {
                server: self.url.clone(),
                ca: None,
                token: doorman_core::Secret::new(&self.token),
                computer: self.computer.clone(),
                reason: "load".into(),
                session: doorman_client::SessionKind::Command(vec!["true".into()]),
                expiry_grace: doorman_client::EXPIRY_GRACE,
                known_computers: doorman_client::known::KnownComputers::at(self.known.clone()),
                end_to_end: true,
            },
            Box::new(tokio::io::empty()),
        );
        let begun = Instant::now();
        let id = request_id(&connecting.event("pending").await);
        let pending_at = begun.elapsed();
        let links = self.mailroom.links(&id, 2).await;
        let mailed_at = begun.elapsed();
        let nonces = mailroom::open_pages(&self.http, &links).await;
        let clicked_at = begun.elapsed();
        let latency = mailroom::allow_at_once(&self.http, &links, &nonces, &connecting).await;
        assert_eq!(connecting.finish().await, Ok(0), "the command ran");
        Phases {
            pending: pending_at,
            mailed: mailed_at,
            clicked: clicked_at,
            session: latency,
            done: begun.elapsed(),
        }
    }
}

/// When each step of one request came, from the operator's start.
struct Phases {
    pending: Duration,
    mailed: Duration,
    clicked: Duration,
    /// From the clicks to `session_started`.
    session: Duration,
    done: Duration,
}

struct Figures {
    elapsed: Duration,
    /// Click → session, sorted.
    latencies: Vec<Duration>,
    phases: Vec<Phases>,
    cpu: Cpu,
}

impl Figures {
    fn per_second(&self) -> f64 {
        self.latencies.len() as f64 / self.elapsed.as_secs_f64()
    }

    fn percentile(&self, percent: usize) -> Duration {
        self.latencies[(self.latencies.len() * percent).div_ceil(100) - 1]
    }

    fn print(&self) {
        let n = self.latencies.len() as f64;
        let per_request = |seconds: f64| seconds * 1000.0 / n;
        println!(
            "| requests/s | p50 | p90 | p99 | max | server CPU/request | agents | load generator |"
        );
        println!("|---|---|---|---|---|---|---|---|");
        println!(
            "| {:.0} | {} | {} | {} | {} | {:.2} ms | {:.2} ms | {:.2} ms |",
            self.per_second(),
            ms(self.percentile(50)),
            ms(self.percentile(90)),
            ms(self.percentile(99)),
            ms(self.latencies[self.latencies.len() - 1]),
            per_request(self.cpu.server),
            per_request(self.cpu.agents),
            per_request(self.cpu.load),
        );
        let mean = |step: fn(&Phases) -> Duration| {
            ms(self.phases.iter().map(step).sum::<Duration>() / self.phases.len().max(1) as u32)
        };
        println!(
            "a request's steps on average, from the operator's start: pending {}, both emails \
             {}, both pages read {}, session started {} after the clicks, command done {}",
            mean(|p| p.pending),
            mean(|p| p.mailed),
            mean(|p| p.clicked),
            mean(|p| p.session),
            mean(|p| p.done),
        );
        let server_ms = per_request(self.cpu.server);
        println!(
            "the server's CPU per request, {server_ms:.2} ms, is {:.0} requests/s on one of its \
             cores; the run used {:.2} cores in all (server {:.2}, agents {:.2}, load {:.2})",
            1000.0 / server_ms,
            (self.cpu.server + self.cpu.agents + self.cpu.load) / self.elapsed.as_secs_f64(),
            self.cpu.server / self.elapsed.as_secs_f64(),
            self.cpu.agents / self.elapsed.as_secs_f64(),
            self.cpu.load / self.elapsed.as_secs_f64(),
        );
    }
}
