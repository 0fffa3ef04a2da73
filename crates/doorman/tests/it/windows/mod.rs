//! The Windows agent (issue 28): `doorman.exe`, cross-built, run under
//! Wine against the Linux server: its sessions (`sessions`), what the
//! computer's owner does there (`machine`) and file copies (`files`).
//! Runs where `.ci/run` built the exe (`DOORMAN_WINDOWS_EXE`) and the
//! installer (`DOORMAN_WINDOWS_MSI`); elsewhere each test says it was
//! skipped (and fails under CI).

mod files;
mod machine;
mod sessions;

use doorman_test_support::wine::{WindowsAgent, windows_exe};
use std::path::PathBuf;

const COMPUTER: &str = "win-pc";

fn exe_or_skip() -> Option<PathBuf> {
    let exe = windows_exe();
    if exe.is_none() {
        doorman_test_support::skip_without(
            "the cross-built doorman.exe (DOORMAN_WINDOWS_EXE)",
            ".ci/run builds it: cargo build --target x86_64-pc-windows-gnu -p doorman",
        );
    }
    exe
}

/// `doorman.exe settings --config agent.toml ARGS` beside the agent.
async fn settings(agent: &WindowsAgent, args: &[&str]) -> (Option<i32>, String, String) {
    let mut all = vec!["settings", "--config", "agent.toml"];
    all.extend_from_slice(args);
    agent.run(&all).await
}
