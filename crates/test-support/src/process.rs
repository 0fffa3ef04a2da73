//! Real `doorman` processes for tests and benchmarks: spawn one, capture its
//! output into buffers the caller can await, and stop it on drop.

use crate::world::SharedBuf;
use std::process::Stdio;
use std::time::Duration;
use tokio::io::AsyncReadExt;
use tokio::process::{Child, Command};
use tokio::task::JoinHandle;

/// A running process whose stdout and stderr are captured.
pub struct Process {
    pub child: Child,
    pub stdout: SharedBuf,
    pub stderr: SharedBuf,
    drains: Vec<JoinHandle<()>>,
}

impl Process {
    /// Starts `program args…` with stdin closed.
    pub fn start(program: &str, args: &[&str]) -> Self {
        Self::start_with_env(program, args, &[])
    }

    /// [`Process::start`] with these environment variables set.
    pub fn start_with_env(program: &str, args: &[&str], env: &[(&str, &str)]) -> Self {
        let mut child = Command::new(program)
            .args(args)
            .env("DOORMAN_KNOWN_COMPUTERS", known_computers())
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {program}: {e}"));
        let stdout = SharedBuf::default();
        let stderr = SharedBuf::default();
        let drains = vec![
            drain(child.stdout.take().expect("stdout"), stdout.clone()),
            drain(child.stderr.take().expect("stderr"), stderr.clone()),
        ];
        Self {
            child,
            stdout,
            stderr,
            drains,
        }
    }

    /// The exit code (20 s at most), once the output the process wrote is
    /// in `stdout` and `stderr`.
    pub async fn exit_code(&mut self) -> i32 {
        let status = tokio::time::timeout(Duration::from_secs(20), self.child.wait())
            .await
            .expect("process exits in time")
            .expect("wait");
        // The pipes end with the process, unless a child of its own still
        // holds them: then what is there is what there is.
        for drain in self.drains.drain(..) {
            let _ = tokio::time::timeout(Duration::from_secs(5), drain).await;
        }
        status.code().unwrap_or(-1)
    }

    /// Kills the process and waits until it is gone (20 s at most), so
    /// that what it held (a data directory's lock, a port) is free.
    pub async fn stop(mut self) {
        let _ = self.child.start_kill();
        let _ = tokio::time::timeout(Duration::from_secs(20), self.child.wait())
            .await
            .expect("the process ends once killed");
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }
}

fn drain(
    mut source: impl tokio::io::AsyncRead + Unpin + Send + 'static,
    mut sink: SharedBuf,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut buffer = [0u8; 4096];
        while let Ok(n) = source.read(&mut buffer).await {
            if n == 0 {
                break;
            }
            let _ = std::io::Write::write_all(&mut sink, &buffer[..n]);
        }
    })
}

/// A known-computers file of its own for one process (under a folder
/// that lives as long as the test binary), unless the test gives one: the
/// operator's default file is not the tests' to write, and computers of
/// two tests met on one port must not look like one computer changed.
fn known_computers() -> std::path::PathBuf {
    static DIR: std::sync::OnceLock<tempfile::TempDir> = std::sync::OnceLock::new();
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let dir = DIR.get_or_init(|| tempfile::tempdir().expect("temp dir"));
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    dir.path().join(format!("known_computers.{n}"))
}

/// How long [`run`] lets a program run before the test fails (and the
/// program is killed).
const RUN_DEADLINE: Duration = Duration::from_secs(60);

/// Runs `program args…` to completion (60 s at most, then it is killed and
/// the test fails naming it), with stdin closed and without the
/// environment's `DOORMAN_*` variables that stand in for options
/// (`DOORMAN_SERVER`, `DOORMAN_TOKEN`, `DOORMAN_DATA_DIR`,
/// `DOORMAN_DATABASE_URL`, `DOORMAN_AGENT_CONFIG`): (exit code, stdout,
/// stderr).
pub async fn run(program: &str, args: &[&str]) -> (i32, String, String) {
    run_in(program, args, &[], None).await
}

/// [`run`] with these environment variables set, in `dir` (else the
/// test's working directory).
pub async fn run_in(
    program: &str,
    args: &[&str],
    env: &[(&str, &str)],
    dir: Option<&std::path::Path>,
) -> (i32, String, String) {
    let mut command = Command::new(program);
    command.args(args);
    command.env("DOORMAN_KNOWN_COMPUTERS", known_computers());
    for name in [
        "DOORMAN_SERVER",
        "DOORMAN_TOKEN",
        "DOORMAN_DATA_DIR",
        "DOORMAN_DATABASE_URL",
        "DOORMAN_AGENT_CONFIG",
    ] {
        command.env_remove(name);
    }
    command.envs(env.iter().copied());
    if let Some(dir) = dir {
        command.current_dir(dir);
    }
    let output = command.stdin(Stdio::null()).kill_on_drop(true).output();
    let output = tokio::time::timeout(RUN_DEADLINE, output)
        .await
        .unwrap_or_else(|_| panic!("{program} {args:?} did not finish within {RUN_DEADLINE:?}"))
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).to_string(),
        String::from_utf8_lossy(&output.stderr).to_string(),
    )
}

/// What `doorman admin` wrote on stderr after the line that names the
/// database it used (`doorman admin: using …`), which must be its first.
pub fn after_using_line(stderr: &str) -> &str {
    match stderr.split_once('\n') {
        Some((first, rest)) if first.starts_with("doorman admin: using ") => rest,
        _ => panic!("no `doorman admin: using …` line first: {stderr}"),
    }
}

/// [`run`], which must succeed: what it printed, trimmed.
pub async fn output_of(program: &str, args: &[&str]) -> String {
    let (code, out, err) = run(program, args).await;
    assert_eq!(code, 0, "{program} {args:?}: {err}");
    out.trim().to_string()
}

/// Writes an agent's settings file and starts `DOORMAN agent` with it;
/// returns once the agent is online.
pub async fn start_agent(doorman: &str, config: &std::path::Path, settings: &str) -> Process {
    std::fs::write(config, settings).expect("write the agent's settings");
    let path = config.to_str().expect("utf-8 path");
    let agent = Process::start(doorman, &["agent", "--config", path]);
    agent
        .stderr
        .wait_until(|t| t.contains("agent online"))
        .await;
    agent
}

/// The `address=` a `doorman server` logs when it listens.
pub async fn listening_address(server: &Process) -> String {
    logged_address(server, "doorman server listening").await
}

/// The `address=` of the first line of `process`'s log that contains
/// `marker`, once there is one.
pub async fn logged_address(process: &Process, marker: &str) -> String {
    let log = process.stderr.wait_until(|t| t.contains(marker)).await;
    let line = log
        .lines()
        .find(|l| l.contains(marker))
        .expect("the marked line");
    line.split("address=")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .expect("an address")
        .to_string()
}

/// The TCP ports process `pid` listens on, from `/proc`: its sockets'
/// inodes matched against the kernel's table of listening sockets.
pub fn listening_ports(pid: u32) -> Vec<u16> {
    let inodes: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|entries| {
            entries
                .filter_map(|entry| std::fs::read_link(entry.ok()?.path()).ok())
                .filter_map(|link| {
                    let link = link.to_string_lossy().to_string();
                    Some(
                        link.strip_prefix("socket:[")?
                            .strip_suffix(']')?
                            .to_string(),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    let mut ports = Vec::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let text = std::fs::read_to_string(table).unwrap_or_default();
        for line in text.lines().skip(1) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            // local_address is fields[1] ("0100007F:1F90"), st fields[3]
            // ("0A" is LISTEN), inode fields[9].
            if fields.len() > 9 && fields[3] == "0A" && inodes.iter().any(|i| i == fields[9]) {
                let port = fields[1].rsplit(':').next().unwrap_or("");
                if let Ok(port) = u16::from_str_radix(port, 16) {
                    ports.push(port);
                }
            }
        }
    }
    ports.sort_unstable();
    ports.dedup();
    ports
}

/// CPU seconds (user + system) process `pid` has used so far; 0 once it is
/// gone.
pub fn cpu_seconds(pid: u32) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    // Fields after the command name, which is in parentheses.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // utime and stime are fields 14 and 15 (1-based), 11 and 12 here.
    let per_second = rustix::param::clock_ticks_per_second() as f64;
    (ticks(11) + ticks(12)) / per_second
}

/// Memory of process `pid`'s own in KiB (its unique set: private pages,
/// clean or dirty), which RSS overstates by the pages of the binary and
/// libraries it shares with the page cache; 0 once it is gone.
pub fn private_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup"))
        .map(|rollup| {
            rollup
                .lines()
                .filter(|l| l.starts_with("Private_Clean:") || l.starts_with("Private_Dirty:"))
                .filter_map(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
                .sum()
        })
        .unwrap_or(0)
}

/// Resident memory of process `pid` in KiB; 0 once it is gone.
pub fn rss_kib(pid: u32) -> u64 {
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
