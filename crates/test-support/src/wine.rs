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

/// A Windows agent running under Wine; killed when dropped.
pub struct WindowsAgent {
    _process: Child,
    /// The exe, its shim, its settings and its Wine prefix.
    pub dir: tempfile::TempDir,
}

impl WindowsAgent {
    /// Registers computer `name` with the world's server, and runs `exe`
    /// as its agent with the settings `builder` gives; returns once the
    /// computer is online.
    pub async fn start(world: &World, name: &str, builder: &WorldBuilder, exe: &Path) -> Self {
        let key = doorman_server::admin::add_agent(world.broker.store(), name)
            .await
            .expect("agent added");
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::copy(exe, dir.path().join("doorman.exe")).expect("the exe copied");
        build_shim(dir.path());
        let settings = builder.settings_text_for(name, &world.url, &key);
        std::fs::write(dir.path().join("agent.toml"), settings).expect("settings");
        let process = Command::new(wine())
            .args(["doorman.exe", "agent", "--config", "agent.toml"])
            .current_dir(dir.path())
            .env("WINEPREFIX", dir.path().join("prefix"))
            .env("WINEDEBUG", "-all")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("wine64 runs (Debian: wine64)");
        // A fresh Wine prefix takes some seconds before the agent starts.
        world.wait_for_agent(name, true).await;
        WindowsAgent {
            _process: process,
            dir,
        }
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
