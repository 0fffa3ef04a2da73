//! What doorman's processes use while the benchmark runs: CPU time per GiB
//! carried, and resident memory idle and at its peak during the transfers.

use crate::stack::Doorman;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// CPU seconds (user + system) a process has used so far.
fn cpu_seconds(pid: Option<u32>) -> f64 {
    pid.map_or(0.0, doorman_test_support::process::cpu_seconds)
}

fn rss_kib(pid: Option<u32>) -> u64 {
    pid.map_or(0, doorman_test_support::process::rss_kib)
}

/// CPU used by doorman's three processes on one path, per GiB carried.
#[derive(Default)]
pub struct CpuUse {
    seconds: [f64; 3],
    mib: f64,
}

impl CpuUse {
    pub fn snapshot(stack: &Doorman) -> [f64; 3] {
        [
            cpu_seconds(stack.connect.pid()),
            cpu_seconds(stack.server.pid()),
            cpu_seconds(stack.agent.pid()),
        ]
    }

    pub fn add(&mut self, before: [f64; 3], after: [f64; 3], mib: f64) {
        for (total, (b, a)) in self.seconds.iter_mut().zip(before.iter().zip(after)) {
            *total += a - b;
        }
        self.mib += mib;
    }

    pub fn per_gib(&self) -> String {
        let gib = self.mib / 1024.0;
        let [connect, server, agent] = self.seconds.map(|s| s / gib);
        format!("connect {connect:.2} s, server {server:.2} s, agent {agent:.2} s per GiB")
    }
}

/// The agent's and server's memory before any transfer, in KiB: resident
/// (RSS), and their own pages alone (USS).
pub struct IdleMemory {
    pub rss: (u64, u64),
    pub private: (u64, u64),
}

impl IdleMemory {
    pub fn of(stack: &Doorman) -> IdleMemory {
        let private = |pid: Option<u32>| pid.map_or(0, doorman_test_support::process::private_kib);
        IdleMemory {
            rss: (rss_kib(stack.agent.pid()), rss_kib(stack.server.pid())),
            private: (private(stack.agent.pid()), private(stack.server.pid())),
        }
    }
}

/// The agent's and server's peak resident memory, sampled every 20 ms
/// until stopped.
pub struct PeakSampler {
    peaks: Arc<[AtomicU64; 2]>,
    sampler: tokio::task::AbortHandle,
}

impl PeakSampler {
    pub fn start(stack: &Doorman) -> PeakSampler {
        let (agent_pid, server_pid) = (stack.agent.pid(), stack.server.pid());
        let peaks = Arc::new([AtomicU64::new(0), AtomicU64::new(0)]);
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
        PeakSampler {
            peaks,
            sampler: sampler.abort_handle(),
        }
    }

    /// Stops sampling: the agent's and the server's peaks, in KiB.
    pub fn stop(self) -> (u64, u64) {
        self.sampler.abort();
        (
            self.peaks[0].load(Ordering::Relaxed),
            self.peaks[1].load(Ordering::Relaxed),
        )
    }
}
