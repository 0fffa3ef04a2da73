//! The Windows agent in tests: `doorman.exe`, cross-built by `.ci/run`
//! (which names it in `DOORMAN_WINDOWS_EXE`), run under Wine against the
//! world's Linux server, in a directory and Wine prefix of its own.
//!
//! Debian's Wine 8 lacks `bcryptprimitives.dll`'s `ProcessPrng`, which
//! Rust's standard library calls at start: a shim built with mingw from
//! `wine/bcryptprimitives.c` sits beside the exe (in tests only).

use crate::world::{World, WorldBuilder};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;
use tokio::process::{Child, Command};

const SHIM_SOURCE: &str = include_str!("../wine/bcryptprimitives.c");

/// The cross-built `doorman.exe` this run tests, if it has one.
pub fn windows_exe() -> Option<PathBuf> {
    std::env::var_os("DOORMAN_WINDOWS_EXE").map(PathBuf::from)
}

/// Wine's 64-bit loader: Debian keeps it out of `PATH`.
fn wine() -> PathBuf {
    let debian = Path::new("/usr/lib/wine/wine64");
    if debian.exists() {
        debian.to_path_buf()
    } else {
        PathBuf::from("wine64")
    }
}

/// A Windows agent running under Wine; killed, and its Wine server with
/// it, when dropped.
pub struct WindowsAgent {
    process: Child,
    /// The exe, its shim, its settings (`agent.toml`), its log
    /// (`agent.log`) and its Wine prefix.
    pub dir: tempfile::TempDir,
}

/// How long a Windows agent may take to come online: a fresh Wine prefix
/// takes some seconds before the exe starts, more on a busy machine.
const ONLINE_WITHIN: Duration = Duration::from_secs(90);

impl WindowsAgent {
    /// Registers computer `name` with the world's server, and runs `exe`
    /// as its agent with the settings `builder` gives; returns once the
    /// computer is online (or panics with the agent's log).
    pub async fn start(world: &World, name: &str, builder: &WorldBuilder, exe: &Path) -> Self {
        Self::start_with(world, name, builder, exe, &[]).await
    }

    /// [`WindowsAgent::start`] with more environment, such as `DISPLAY`.
    pub async fn start_with(
        world: &World,
        name: &str,
        builder: &WorldBuilder,
        exe: &Path,
        environment: &[(&str, &str)],
    ) -> Self {
        let key = doorman_server::admin::add_agent(world.broker.store(), name)
            .await
            .expect("agent added");
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::copy(exe, dir.path().join("doorman.exe")).expect("the exe copied");
        build_shim(dir.path());
        let settings = builder.settings_text_for(name, &world.url, &key);
        std::fs::write(dir.path().join("agent.toml"), settings).expect("settings");
        let log = std::fs::File::create(dir.path().join("agent.log")).expect("log file");
        let process = wine_in(dir.path())
            .args(["doorman.exe", "agent", "--config", "agent.toml"])
            .envs(environment.iter().copied())
            .stdout(Stdio::null())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .expect("wine64 runs (Debian: wine64)");
        let agent = WindowsAgent { process, dir };
        let online = async {
            world.broker.agents().wait_for(name, true).await;
            world.broker.agents().wait_for_status(name, |_| true).await;
        };
        if tokio::time::timeout(ONLINE_WITHIN, online).await.is_err() {
            panic!(
                "the Windows agent {name} did not come online within {ONLINE_WITHIN:?}; its log:\n{}",
                agent.log()
            );
        }
        agent
    }

    /// Runs `doorman.exe ARGS` beside the agent (same directory and Wine
    /// prefix); its exit status, standard output and standard error.
    pub async fn run(&self, args: &[&str]) -> (Option<i32>, String, String) {
        run_in(self.dir.path(), "doorman.exe", args).await
    }

    /// Starts `program args` beside the agent, its standard input open and
    /// never written (`cmd.exe` then waits), its standard output piped:
    /// a process that keeps Wine's session, and the services in it, up
    /// until dropped, or one whose output the test reads as it comes.
    pub fn start_program(&self, program: &str, args: &[&str]) -> Child {
        wine_in(self.dir.path())
            .arg(program)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("wine64 runs")
    }

    /// Waits until the agent has logged `text` (within a minute: a log
    /// line of another process has no event to await); its log.
    pub async fn wait_for_log(&self, text: &str) -> String {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            let log = self.log();
            if log.contains(text) {
                return log;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the agent did not log {text:?} within a minute; its log:\n{log}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// What the agent has logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("agent.log")).unwrap_or_default()
    }
}

impl Drop for WindowsAgent {
    fn drop(&mut self) {
        let _ = self.process.start_kill();
        stop_wine(self.dir.path());
    }
}

/// Wine's server outlives a program for a while and writes into the
/// prefix in `dir`: stopped and waited for before the directory goes.
fn stop_wine(dir: &Path) {
    let _ = std::process::Command::new(wineserver())
        .arg("-k")
        .env("WINEPREFIX", dir.join("prefix"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// A Wine prefix of its own, for an installer and what it installs; its
/// Wine server stopped when dropped.
pub struct WinePrefix {
    pub dir: tempfile::TempDir,
}

impl WinePrefix {
    pub fn new() -> Self {
        WinePrefix {
            dir: tempfile::tempdir().expect("temp dir"),
        }
    }

    /// The prefix's `C:` drive.
    pub fn drive_c(&self) -> PathBuf {
        self.dir.path().join("prefix").join("drive_c")
    }

    /// Puts the `ProcessPrng` shim in `folder` (beside an installed exe).
    pub fn add_shim(&self, folder: &Path) {
        build_shim(folder);
    }

    /// Runs `program args` in the prefix; its exit status, standard output
    /// and standard error.
    pub async fn run(&self, program: &str, args: &[&str]) -> (Option<i32>, String, String) {
        run_in(self.dir.path(), program, args).await
    }
}

impl Default for WinePrefix {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for WinePrefix {
    fn drop(&mut self) {
        stop_wine(self.dir.path());
    }
}

/// Runs `program args` under Wine in `dir`; its exit status, standard
/// output and standard error.
async fn run_in(dir: &Path, program: &str, args: &[&str]) -> (Option<i32>, String, String) {
    let output = wine_in(dir)
        .arg(program)
        .args(args)
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output()
        .await
        .expect("wine64 runs");
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// Wine in `dir`, with a prefix of its own there, quiet, and without
/// what a test needs none of (Mono, Gecko, menu entries in `$HOME`).
fn wine_in(dir: &Path) -> Command {
    let mut command = Command::new(wine());
    command
        .current_dir(dir)
        .env("WINEPREFIX", dir.join("prefix"))
        .env("WINEDEBUG", "-all")
        .env("WINEDLLOVERRIDES", "mscoree,mshtml,winemenubuilder.exe=d");
    command
}

/// Wine's server program, beside its loader on Debian.
fn wineserver() -> PathBuf {
    let debian = Path::new("/usr/lib/wine/wineserver");
    if debian.exists() {
        debian.to_path_buf()
    } else {
        PathBuf::from("wineserver")
    }
}

/// Builds the `ProcessPrng` shim into `dir`, beside the exe.
fn build_shim(dir: &Path) {
    let source = dir.join("bcryptprimitives.c");
    std::fs::write(&source, SHIM_SOURCE).expect("shim source");
    let status = std::process::Command::new("x86_64-w64-mingw32-gcc")
        .args(["-shared", "-O2", "-o"])
        .arg(dir.join("bcryptprimitives.dll"))
        .arg(&source)
        .arg("-ladvapi32")
        .status()
        .expect("x86_64-w64-mingw32-gcc runs (Debian: gcc-mingw-w64-x86-64)");
    assert!(status.success(), "the ProcessPrng shim builds");
}
