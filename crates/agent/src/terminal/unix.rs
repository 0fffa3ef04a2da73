//! The login shell in a pseudo-terminal (Unix).

use std::io;
use std::process::ExitStatus;
use tokio::io::AsyncWriteExt;

/// What the shell prints.
pub type TerminalOutput = pty_process::OwnedReadPty;

/// The operator's keystrokes, and the terminal's size.
pub struct TerminalInput(pty_process::OwnedWritePty);

/// The shell's process; killed if dropped while it runs.
pub struct ShellProcess(tokio::process::Child);

/// The shell to start: `$SHELL`, else `/bin/sh`.
fn login_shell() -> String {
    std::env::var("SHELL")
        .ok()
        .filter(|shell| !shell.is_empty())
        .unwrap_or_else(|| "/bin/sh".into())
}

/// The login shell in a new pseudo-terminal of `rows` × `cols`, in the
/// home directory, with `TERM` set to `term` (already sanitized). An
/// error says why, for the operator.
pub fn spawn(
    term: &str,
    rows: u16,
    cols: u16,
) -> Result<(TerminalOutput, TerminalInput, ShellProcess), String> {
    let (pty, pts) = pty_process::open().map_err(|e| format!("cannot open a terminal: {e}"))?;
    pty.resize(pty_process::Size::new(rows.max(1), cols.max(1)))
        .map_err(|e| format!("cannot size the terminal: {e}"))?;
    let shell = login_shell();
    let mut command = pty_process::Command::new(&shell)
        .arg("-l")
        .env("TERM", term)
        .kill_on_drop(true);
    if let Some(home) = std::env::var_os("HOME") {
        command = command.current_dir(home);
    }
    let child = command
        .spawn(pts)
        .map_err(|error| format!("cannot start {shell}: {error}"))?;
    let (output, input) = pty.into_split();
    Ok((output, TerminalInput(input), ShellProcess(child)))
}

impl TerminalInput {
    pub async fn write(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.0.write_all(bytes).await
    }

    pub fn resize(&self, rows: u16, cols: u16) {
        let _ = self
            .0
            .resize(pty_process::Size::new(rows.max(1), cols.max(1)));
    }

    /// What the operator's end of input is to the shell: Ctrl-D, as a
    /// terminal sends it.
    pub async fn end_input(&mut self) {
        let _ = self.0.write_all(&[4]).await;
    }
}

impl ShellProcess {
    pub async fn wait(&mut self) -> io::Result<ExitStatus> {
        self.0.wait().await
    }

    pub fn kill(&mut self) {
        let _ = self.0.start_kill();
    }
}
