//! File copies (issue 27): `doorman cp` against OpenSSH on the same
//! loopback. One 512 MiB file beside `scp` with AES-256-GCM, and a tree of
//! 10,000 files of 1 KiB in 100 folders beside `tar c | ssh … tar x` with
//! the same cipher.
//!
//! Doorman runs as real processes: `doorman server` over TLS, `doorman
//! agent` sharing a folder, and one `doorman cp` process per copy. Email
//! authorization is on: each copy's request is emailed to an SMTP sink in
//! this process, whose recipient opens the link and clicks Allow at once
//! (GET the page, POST `decision=allow` with its nonce, over TLS), so every
//! Doorman figure includes asking and approval.
//!
//! Every figure is the wall time of a whole process (`doorman cp`, `scp`,
//! or `bash` running the tar pipeline) from spawn to exit. Each round runs
//! both paths of a case in turn, their order alternating, so that the load
//! of this shared machine weighs on both alike; a first round warms up and
//! is not counted. The destination is emptied before every run and checked
//! after it. The table gives the median of the rounds and their range.
//!
//! Run: `bench/files.sh` (installs openssh-server and openssh-client, then
//! `cargo bench -p doorman --bench files`); DOORMAN_BENCH_ROUNDS=N for
//! another number of rounds.

mod ssh;
mod stack;

use ssh::Ssh;
use stack::{Doorman, reset_peak, start_doorman, status_kib};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

const DOORMAN: &str = env!("CARGO_BIN_EXE_doorman");
/// Counted rounds, unless DOORMAN_BENCH_ROUNDS says otherwise.
const ROUNDS: usize = 5;
const BIG_MIB: u64 = 512;
const TREE_DIRS: usize = 100;
const FILES_PER_DIR: usize = 100;
const SMALL_BYTES: usize = 1024;
/// OpenSSH's AES-256-GCM: the same kind of cipher as Doorman's TLS.
const CIPHER: &str = "aes256-gcm@openssh.com";
const COMPUTER: &str = "bench-pc";
const RECIPIENT: &str = "it@example.com";
/// The longest one copy may take before the benchmark gives up.
const RUN_DEADLINE: Duration = Duration::from_secs(600);

/// Fills `buffer` with bytes that do not compress: a splitmix64 stream.
fn fill(buffer: &mut [u8], state: &mut u64) {
    for chunk in buffer.chunks_mut(8) {
        *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = *state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        chunk.copy_from_slice(&z.to_le_bytes()[..chunk.len()]);
    }
}

/// Makes the sources once, in `dir`: `big.bin` and `tree/dNN/fNNN`.
fn make_sources(dir: &Path) -> (PathBuf, PathBuf) {
    std::fs::create_dir_all(dir).unwrap();
    let mut state = 1u64;
    let big = dir.join("big.bin");
    let mut file = std::io::BufWriter::new(std::fs::File::create(&big).unwrap());
    let mut buffer = vec![0u8; 1 << 20];
    for _ in 0..BIG_MIB {
        fill(&mut buffer, &mut state);
        file.write_all(&buffer).unwrap();
    }
    file.flush().unwrap();
    let tree = dir.join("tree");
    let mut small = [0u8; SMALL_BYTES];
    for d in 0..TREE_DIRS {
        let sub = tree.join(format!("d{d:02}"));
        std::fs::create_dir_all(&sub).unwrap();
        for f in 0..FILES_PER_DIR {
            fill(&mut small, &mut state);
            std::fs::write(sub.join(format!("f{f:03}")), &small[..]).unwrap();
        }
    }
    (big, tree)
}

/// Empties the copies' destination for the next run.
fn clean(dest: &Path) {
    if dest.exists() {
        std::fs::remove_dir_all(dest).unwrap();
    }
    std::fs::create_dir(dest).unwrap();
}

/// Regular files under `dir`, at any depth.
fn count_files(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .map(|entry| match entry.file_type() {
                    Ok(kind) if kind.is_dir() => count_files(&entry.path()),
                    Ok(kind) if kind.is_file() => 1,
                    _ => 0,
                })
                .sum::<usize>()
        })
        .unwrap_or(0)
}

/// What one path of a case measured, a sample a counted round.
#[derive(Default)]
struct Samples {
    seconds: Vec<f64>,
    /// Doorman's only: spawn until the Allow was taken.
    approval_ms: Vec<f64>,
}

/// Median, minimum and maximum.
fn spread(samples: &[f64]) -> (f64, f64, f64) {
    let mut sorted = samples.to_vec();
    sorted.sort_by(f64::total_cmp);
    (
        sorted[sorted.len() / 2],
        sorted[0],
        sorted[sorted.len() - 1],
    )
}

fn cell(samples: &[f64], decimals: usize) -> String {
    if samples.is_empty() {
        return "—".into();
    }
    let (median, min, max) = spread(samples);
    format!("{median:.decimals$} ({min:.decimals$}–{max:.decimals$})")
}

/// The sources, made once.
struct Sources {
    big: PathBuf,
    tree: PathBuf,
}

/// The two cases: one big file, a tree of small ones.
#[derive(Clone, Copy)]
enum Case {
    BigFile,
    Tree,
}

impl Case {
    fn name(self) -> &'static str {
        match self {
            Case::BigFile => "one big file",
            Case::Tree => "a tree of small files",
        }
    }

    /// `doorman cp`'s arguments after `--ca CA`.
    fn cp_args(self, sources: &Sources, remote_dest: &str) -> Vec<String> {
        let mut args = match self {
            Case::BigFile => vec![sources.big.display().to_string()],
            Case::Tree => vec!["-r".to_string(), sources.tree.display().to_string()],
        };
        args.push(remote_dest.to_string());
        args
    }

    /// The same copy with OpenSSH.
    async fn peer(self, ssh: &Ssh, sources: &Sources, dest: &Path) -> Duration {
        match self {
            Case::BigFile => ssh.scp(&sources.big, dest).await,
            Case::Tree => ssh.tar(&sources.tree, dest).await,
        }
    }

    /// Checks that `who` copied everything into `dest`.
    fn check(self, dest: &Path, who: &str) {
        match self {
            Case::BigFile => {
                let size = std::fs::metadata(dest.join("big.bin")).map_or(0, |m| m.len());
                assert_eq!(size, BIG_MIB << 20, "{who} copied the whole file");
            }
            Case::Tree => {
                let copied = count_files(&dest.join("tree"));
                let files = TREE_DIRS * FILES_PER_DIR;
                assert_eq!(copied, files, "{who} copied every file of the tree");
            }
        }
    }
}

/// Runs `case` for `rounds` counted rounds after a warm-up: Doorman's copy
/// and its peer's in turn, their order alternating; the destination
/// emptied before each and checked after. (Doorman's samples, the peer's.)
async fn run_case(
    case: Case,
    rounds: usize,
    stack: &mut Doorman,
    ssh: Option<&Ssh>,
    sources: &Sources,
    dest: &Path,
) -> (Samples, Samples) {
    let remote_dest = format!("{COMPUTER}:{}/", dest.display());
    let cp_args = case.cp_args(sources, &remote_dest);
    let cp_args: Vec<&str> = cp_args.iter().map(String::as_str).collect();
    let (mut ours, mut theirs) = (Samples::default(), Samples::default());
    for round in 0..=rounds {
        let counted = round > 0;
        for turn in [round % 2, 1 - round % 2] {
            clean(dest);
            if turn == 0 {
                let (total, approved) = stack.cp(&cp_args).await;
                case.check(dest, "doorman cp");
                if counted {
                    ours.seconds.push(total.as_secs_f64());
                    ours.approval_ms.push(approved.as_secs_f64() * 1e3);
                }
            } else if let Some(ssh) = ssh {
                let took = case.peer(ssh, sources, dest).await;
                case.check(dest, "the OpenSSH peer");
                if counted {
                    theirs.seconds.push(took.as_secs_f64());
                }
            }
        }
        if counted {
            eprintln!("{}: round {round} of {rounds} done", case.name());
        } else {
            eprintln!("{}: warm-up round done", case.name());
        }
    }
    (ours, theirs)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let rounds = std::env::var("DOORMAN_BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
        .filter(|&n| n > 0)
        .unwrap_or(ROUNDS);
    let dir = tempfile::tempdir().unwrap();
    let files = TREE_DIRS * FILES_PER_DIR;
    eprintln!("making the sources: one {BIG_MIB} MiB file, {files} files of {SMALL_BYTES} bytes");
    let (big, tree) = make_sources(&dir.path().join("sources"));
    let sources = Sources { big, tree };
    let shared = dir.path().join("shared");
    let dest = shared.join("in");
    std::fs::create_dir_all(&dest).unwrap();
    let mut stack = start_doorman(&dir.path().join("doorman"), &shared).await;
    let ssh = ssh::start_sshd(&dir.path().join("ssh")).await;
    let (agent, server) = (stack.agent.pid(), stack.server.pid());
    let idle = (status_kib(agent, "VmRSS:"), status_kib(server, "VmRSS:"));
    let mut samples = Vec::new();
    let mut peaks = Vec::new();
    for case in [Case::BigFile, Case::Tree] {
        // Each case's peak is its own, not the one before's.
        reset_peak(agent);
        reset_peak(server);
        let (ours, theirs) =
            run_case(case, rounds, &mut stack, ssh.as_ref(), &sources, &dest).await;
        samples.extend([ours, theirs]);
        peaks.push((status_kib(agent, "VmHWM:"), status_kib(server, "VmHWM:")));
    }
    let [big_ours, big_scp, tree_ours, tree_tar] = &samples[..] else {
        unreachable!("two cases, two paths each");
    };
    report(
        rounds,
        ssh.is_some(),
        [big_ours, big_scp, tree_ours, tree_tar],
    );
    println!(
        "Memory (KiB): agent VmRSS idle {}, peak (VmHWM) during the {BIG_MIB} MiB copies {}, during the tree copies {}; server VmRSS idle {}, peaks {} and {}",
        idle.0, peaks[0].0, peaks[1].0, idle.1, peaks[0].1, peaks[1].1
    );
}

fn median(samples: &[f64]) -> f64 {
    spread(samples).0
}

/// Prints the table and the ratios to the issue's targets.
fn report(rounds: usize, ssh: bool, [big_ours, big_scp, tree_ours, tree_tar]: [&Samples; 4]) {
    let mib = BIG_MIB as f64;
    let rate =
        |samples: &Samples| -> Vec<f64> { samples.seconds.iter().map(|s| mib / s).collect() };
    let files = TREE_DIRS * FILES_PER_DIR;
    println!(
        "File copies: `doorman cp` over TLS with email authorization on (every copy asked for, emailed and approved by a click) against OpenSSH with {CIPHER} on the same loopback; {rounds} rounds after a warm-up, both paths in turn: wall time of the whole process from spawn to exit, median (min–max)"
    );
    println!("| case | path | seconds | MiB/s | spawn → Allow taken |");
    println!("|---|---|---|---|---|");
    let big = format!("one {BIG_MIB} MiB file");
    let tree = format!("{files} files of {SMALL_BYTES} B in {TREE_DIRS} folders");
    let not_run = "not run: sshd or ssh is not installed (bench/files.sh installs them)";
    println!(
        "| {big} | doorman cp (TLS, approval included) | {} | {} | {} ms |",
        cell(&big_ours.seconds, 2),
        cell(&rate(big_ours), 0),
        cell(&big_ours.approval_ms, 0)
    );
    if ssh {
        println!(
            "| {big} | scp ({CIPHER}) | {} | {} | — |",
            cell(&big_scp.seconds, 2),
            cell(&rate(big_scp), 0)
        );
    } else {
        println!("| {big} | scp | {not_run} | | |");
    }
    println!(
        "| {tree} | doorman cp -r (TLS, approval included) | {} | — | {} ms |",
        cell(&tree_ours.seconds, 2),
        cell(&tree_ours.approval_ms, 0)
    );
    if ssh {
        println!(
            "| {tree} | tar c \\| ssh … tar x ({CIPHER}) | {} | — | — |",
            cell(&tree_tar.seconds, 2)
        );
        println!(
            "doorman cp / scp, MiB/s: {:.2} (target ≥ 1)",
            median(&rate(big_ours)) / median(&rate(big_scp))
        );
        println!(
            "doorman cp -r / tar c | ssh … tar x, seconds: {:.2} (target < 2)",
            median(&tree_ours.seconds) / median(&tree_tar.seconds)
        );
    } else {
        println!("| {tree} | tar c \\| ssh … tar x | {not_run} | | |");
    }
}
