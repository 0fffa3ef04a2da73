//! Many idle computers on one server: a release `doorman server` process
//! and, in this process, N agents that speak the real agent protocol (the
//! upgrade with a name and key, the welcome, a pong for every ping), each
//! from a loopback address of its own group. Reported beside their
//! targets: the server's memory per connected computer, its CPU on
//! heartbeats, and how long all N take to be online again after the server
//! is killed and restarted, reconnecting with the real agent's jittered
//! backoff. Then one real `doorman agent`'s idle memory.
//!
//! Run: `cargo bench -p doorman --bench idle_agents` (N=10000; set
//! DOORMAN_BENCH_AGENTS for another N).

use doorman_test_support::process::{
    Process, cpu_seconds, listening_address, private_kib, rss_kib, start_agent,
};
use doorman_wire::Connection;
use doorman_wire::message::{AgentToServer, ServerToAgent};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const DOORMAN: &str = env!("CARGO_BIN_EXE_doorman");
/// The server's heartbeat: CPU is measured over three of them.
const HEARTBEAT: Duration = Duration::from_secs(20);

fn server(data: &Path, listen: &str) -> Process {
    Process::start(
        DOORMAN,
        &[
            "server",
            "--listen",
            listen,
            "--data-dir",
            data.to_str().unwrap(),
        ],
    )
}

/// Agent `i` dials from 127.1.x.y: a hundred computers per address, as
/// behind small NATs.
fn source(i: usize) -> SocketAddr {
    let group = i / 100;
    SocketAddr::from(([127, 1, (group / 250) as u8, (group % 250 + 1) as u8], 0))
}

/// One agent's life: connect, count itself online at the welcome, answer
/// pings; after losing the server, reconnect with the agent's backoff.
async fn agent(i: usize, server: SocketAddr, key: String, online: Arc<AtomicUsize>) {
    let mut failures = 0u32;
    loop {
        let result = async {
            let socket = tokio::net::TcpSocket::new_v4()?;
            socket.bind(source(i))?;
            let mut stream = socket.connect(server).await?;
            let request = format!(
                "GET /v1/agent HTTP/1.1\r\nHost: {server}\r\nConnection: upgrade\r\nUpgrade: doorman/1\r\nAuthorization: Bearer {key}\r\nx-doorman-agent: pc{i}\r\n\r\n"
            );
            stream.write_all(request.as_bytes()).await?;
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") {
                if stream.read(&mut byte).await? == 0 {
                    return Err(std::io::Error::other("closed before the upgrade"));
                }
                head.push(byte[0]);
            }
            if !head.starts_with(b"HTTP/1.1 101") {
                return Err(std::io::Error::other(String::from_utf8_lossy(&head).to_string()));
            }
            let mut connection = Connection::new(stream);
            let mut counted = false;
            loop {
                match connection.read_message::<ServerToAgent>().await {
                    Ok(Some(ServerToAgent::Welcome { .. })) => {
                        counted = true;
                        online.fetch_add(1, Ordering::SeqCst);
                    }
                    Ok(Some(ServerToAgent::Ping)) => {
                        if connection.write_message(&AgentToServer::Pong).await.is_err() {
                            break;
                        }
                    }
                    Ok(Some(_)) => {}
                    Ok(None) | Err(_) => break,
                }
            }
            if counted {
                online.fetch_sub(1, Ordering::SeqCst);
            }
            Ok(())
        }
        .await;
        failures = if result.is_ok() {
            0
        } else {
            failures.saturating_add(1)
        };
        // The real agent's backoff: 0.5 s doubling to 30 s, plus up to as
        // much again at random.
        let base = Duration::from_millis(500)
            .saturating_mul(1 << failures.min(6))
            .min(Duration::from_secs(30));
        let jitter = base.mul_f64(rand_fraction(i as u64 ^ u64::from(failures)));
        tokio::time::sleep(base + jitter).await;
    }
}

/// A fraction in [0, 1) from a seed (a splitmix step), enough to spread
/// reconnects.
fn rand_fraction(seed: u64) -> f64 {
    let nanos = Instant::now().elapsed().as_nanos() as u64;
    let mut z = seed.wrapping_add(nanos).wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    (z ^ (z >> 31)) as f64 / u64::MAX as f64
}

/// Waits until `online` reaches `n`; how long that took.
async fn all_online(online: &AtomicUsize, n: usize, since: Instant) -> Duration {
    let deadline = since + Duration::from_secs(600);
    while online.load(Ordering::SeqCst) < n {
        assert!(
            Instant::now() < deadline,
            "only {} of {n} online after 10 minutes",
            online.load(Ordering::SeqCst)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    since.elapsed()
}

#[tokio::main]
async fn main() {
    let n: usize = std::env::var("DOORMAN_BENCH_AGENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let own_files = doorman_http::serve::raise_open_file_limit();
    assert!(
        own_files as usize > n + 100,
        "this process may open only {own_files} files"
    );
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    doorman_store::private::create_dir(&data).unwrap();
    // N agents registered straight into the database.
    let store = doorman_store::Store::open(&doorman_server::default_database_url(&data))
        .await
        .unwrap();
    let mut keys = Vec::with_capacity(n);
    for i in 0..n {
        let key = doorman_runtime::secrets::new_token(doorman_runtime::secrets::AGENT_KEY_PREFIX)
            .unwrap();
        store
            .add_agent(&format!("pc{i}"), &doorman_runtime::secrets::hash(&key), 0)
            .await
            .unwrap();
        keys.push(key);
    }
    drop(store);

    let first = server(&data, "127.0.0.1:0");
    let address: SocketAddr = listening_address(&first).await.parse().unwrap();
    let pid = first.pid().unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let idle_rss = rss_kib(pid);
    let online = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    for (i, key) in keys.into_iter().enumerate() {
        tokio::spawn(agent(i, address, key, Arc::clone(&online)));
    }
    let connect_time = all_online(&online, n, started).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let loaded_rss = rss_kib(pid);
    let per_agent = (loaded_rss.saturating_sub(idle_rss)) as f64 * 1024.0 / n as f64;

    let cpu_before = cpu_seconds(pid);
    let window = HEARTBEAT * 3;
    tokio::time::sleep(window).await;
    let cpu_share = (cpu_seconds(pid) - cpu_before) / window.as_secs_f64() * 100.0;
    assert_eq!(
        online.load(Ordering::SeqCst),
        n,
        "every agent stayed online"
    );

    // kill -9 and restart on the same port.
    let mut first = first;
    first.child.kill().await.unwrap();
    let killed = Instant::now();
    let second = server(&data, &address.to_string());
    listening_address(&second).await;
    let back = all_online(&online, n, killed).await;

    println!("idle computers on one server (N = {n}), release build, this machine");
    println!("| figure | measured | target |");
    println!("|---|---|---|");
    println!(
        "| server memory per connected computer | {:.1} KiB ({} MiB idle, {} MiB with N) | ≤ 10 KiB |",
        per_agent / 1024.0,
        idle_rss / 1024,
        loaded_rss / 1024
    );
    println!(
        "| server CPU on heartbeats ({}s window, pings every {}s) | {cpu_share:.2} % of one core | < 5 % |",
        window.as_secs(),
        HEARTBEAT.as_secs()
    );
    println!(
        "| all N online from a cold start | {:.1} s | — |",
        connect_time.as_secs_f64()
    );
    println!(
        "| all N online again after kill -9 and restart | {:.1} s | ≤ 30 s |",
        back.as_secs_f64()
    );
    let mut second = second;
    second.child.kill().await.unwrap();

    // One real agent, idle, for its own memory.
    let (rss, private) = doorman_agent_memory(&data).await;
    println!(
        "| one idle `doorman agent` (RSS) | {:.1} MiB | ≤ 7 MiB |",
        rss as f64 / 1024.0
    );
    println!(
        "| one idle `doorman agent` (its own pages: USS) | {:.1} MiB | — |",
        private as f64 / 1024.0
    );
}

/// A real `doorman agent`'s memory once online and idle, in KiB: resident,
/// and its own (see `process::private_kib`).
async fn doorman_agent_memory(data: &Path) -> (u64, u64) {
    let key = doorman_test_support::process::output_of(
        DOORMAN,
        &[
            "admin",
            "--data-dir",
            data.to_str().unwrap(),
            "agent",
            "add",
            "real-pc",
        ],
    )
    .await;
    let server = server(data, "127.0.0.1:0");
    let url = format!("http://{}", listening_address(&server).await);
    let config = data.join("agent.toml");
    let settings = format!("server = \"{url}\"\nname = \"real-pc\"\nkey = \"{key}\"\n");
    let agent = start_agent(DOORMAN, &config, &settings).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let pid = agent.pid().unwrap();
    (rss_kib(pid), private_kib(pid))
}
