//! `doorman connect` in a real terminal: tmux gives it a pseudo-terminal,
//! as a user's terminal emulator would. A window resized during the shell
//! session reaches the remote shell, and the local terminal's modes are
//! exactly what they were once the session ends (raw mode undone). And
//! `doorman agent join` asks its questions on a terminal.
//!
//! Needs `tmux` (`.ci/run` installs it). Without it the test says so and
//! passes, except under CI where it fails.

use doorman_test_support::process::{Process, listening_address};
use doorman_test_support::{skip_without, which};
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::process::Command;

const DOORMAN: &str = env!("CARGO_BIN_EXE_doorman");

fn path(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

async fn doorman(args: &[&str]) -> String {
    doorman_test_support::process::output_of(DOORMAN, args).await
}

/// A tmux server of this test's own, with one window running `sh`.
struct Tmux {
    socket: PathBuf,
}

impl Tmux {
    async fn start(dir: &Path, width: u16, height: u16) -> Tmux {
        let tmux = Tmux {
            socket: dir.join("tmux.sock"),
        };
        tmux.run(&[
            "-f",
            "/dev/null",
            "new-session",
            "-d",
            "-s",
            "t",
            "-x",
            &width.to_string(),
            "-y",
            &height.to_string(),
            "sh",
        ])
        .await;
        tmux
    }

    async fn run(&self, args: &[&str]) {
        let status = Command::new("tmux")
            .arg("-S")
            .arg(&self.socket)
            .args(args)
            .env_remove("TMUX")
            .status()
            .await
            .expect("tmux runs");
        assert!(status.success(), "tmux {args:?}");
    }

    /// Types `line` and Enter into the window.
    async fn type_line(&self, line: &str) {
        self.run(&["send-keys", "-t", "t", "-l", line]).await;
        self.run(&["send-keys", "-t", "t", "Enter"]).await;
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = std::process::Command::new("tmux")
            .arg("-S")
            .arg(&self.socket)
            .arg("kill-server")
            .status();
    }
}

/// Waits (20 s at most) until `file` holds a whole line, and returns it.
/// What the shells in the window write goes to files: the only sign of it.
async fn line_in(file: &Path) -> String {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(text) = std::fs::read_to_string(file)
            && text.ends_with('\n')
        {
            return text.trim().to_string();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "nothing written to {}",
            file.display()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resized_window_reaches_the_remote_shell_and_the_terminal_is_restored() {
    if which("tmux").is_none() {
        skip_without("tmux", "apt-get install tmux");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let data = path(&data);
    let token = doorman(&[
        "admin",
        "--create",
        "--data-dir",
        data,
        "operator",
        "add",
        "alice",
        "--computers",
        "*",
    ])
    .await;
    let key = doorman(&["admin", "--data-dir", data, "agent", "add", "office-pc"]).await;
    let server = Process::start(
        DOORMAN,
        &["server", "--listen", "127.0.0.1:0", "--data-dir", data],
    );
    let url = format!("http://{}", listening_address(&server).await);
    let config = dir.path().join("agent.toml");
    std::fs::write(
        &config,
        format!(
            "server = \"{url}\"\nname = \"office-pc\"\nkey = \"{key}\"\n\n[desktop_sharing]\nrequire_email_authorization = false\n"
        ),
    )
    .unwrap();
    let agent = Process::start(DOORMAN, &["agent", "--config", path(&config)]);
    agent
        .stderr
        .wait_until(|t| t.contains("agent online"))
        .await;

    let tmux = Tmux::start(dir.path(), 80, 24).await;
    let file = |name: &str| dir.path().join(name);
    tmux.type_line(&format!("stty -g > {}", path(&file("before"))))
        .await;
    let before = line_in(&file("before")).await;
    tmux.type_line(&format!(
        "{DOORMAN} connect office-pc --server {url} --token {token} --known-computers {}; stty -g > {}",
        path(&file("known_computers")),
        path(&file("after"))
    ))
    .await;
    // In the remote shell, through the session.
    tmux.type_line(&format!("stty size > {}", path(&file("size-1"))))
        .await;
    assert_eq!(line_in(&file("size-1")).await, "24 80");
    tmux.run(&["resize-window", "-t", "t", "-x", "100", "-y", "30"])
        .await;
    // The new size travels beside the typed keys, not in order with them:
    // asked again until it has arrived (a size that never does fails).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    for attempt in 2.. {
        let answer = file(&format!("size-{attempt}"));
        tmux.type_line(&format!("stty size > {}", path(&answer)))
            .await;
        let size = line_in(&answer).await;
        if size == "30 100" {
            break;
        }
        assert_eq!(size, "24 80", "the old size until the new one arrives");
        assert!(
            tokio::time::Instant::now() < deadline,
            "the remote shell never saw the new size"
        );
    }
    tmux.type_line("exit").await;
    // Back in the local shell once the session ended.
    assert_eq!(line_in(&file("after")).await, before);
}

/// Issue 31: on a terminal, `doorman agent join` asks for the recipients
/// and the timeout before it uses the invitation, asks again after an
/// answer it cannot take, and writes what it was told.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn join_on_a_terminal_asks_for_the_recipients_and_the_timeout() {
    if which("tmux").is_none() {
        skip_without("tmux", "apt-get install tmux");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let data = path(&data);
    let server = Process::start(
        DOORMAN,
        &["server", "--listen", "127.0.0.1:0", "--data-dir", data],
    );
    listening_address(&server).await;
    let line = doorman(&["admin", "--data-dir", data, "agent", "invite", "lab-pc"]).await;
    let line = line.replacen("doorman", DOORMAN, 1);
    let config = dir.path().join("agent.toml");
    let status = dir.path().join("status");

    let tmux = Tmux::start(dir.path(), 100, 30).await;
    tmux.type_line(&format!(
        "{line} --config {}; echo $? > {}",
        path(&config),
        path(&status)
    ))
    .await;
    // Typed ahead: the terminal holds the lines until join reads them.
    tmux.type_line("not an address").await;
    tmux.type_line("it@example.com, owner@example.com").await;
    tmux.type_line("60").await;
    assert_eq!(line_in(&status).await, "0");
    let settings = std::fs::read_to_string(&config).unwrap();
    assert!(
        settings.contains("recipients = [\"it@example.com\", \"owner@example.com\"]"),
        "{settings}"
    );
    assert!(
        settings.contains("email_authorization_timeout = 60"),
        "{settings}"
    );
    assert!(
        settings.contains("require_email_authorization = true"),
        "{settings}"
    );
}
