//! The shell in a pseudo-console (Windows ConPTY): `%ComSpec%` (else
//! `cmd.exe`), started through `doorman console-host`, which gives it the
//! console as its standard streams, in the user's profile folder. The
//! shell and all it starts live in one job, ended with the session.

use doorman_windows::pseudo_console::{ConsoleProcess, PseudoConsole};
use std::ffi::OsStr;
use std::io;
use std::os::windows::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::ExitStatus;
use std::sync::{Arc, Weak};
use tokio::io::AsyncWriteExt;
use tokio::task::JoinHandle;

/// What the shell prints, as terminal text.
pub type TerminalOutput = tokio::fs::File;

/// The operator's keystrokes, and the console's size.
pub struct TerminalInput {
    input: tokio::fs::File,
    console: Weak<PseudoConsole>,
}

/// The shell's process (the console host, and in its job the shell);
/// ended, and its console closed, when dropped.
pub struct ShellProcess {
    process: Arc<ConsoleProcess>,
    console: Option<Arc<PseudoConsole>>,
    waiting: Option<JoinHandle<io::Result<u32>>>,
    exited: bool,
}

/// The shell `console-host` starts: the system's command interpreter.
fn command_interpreter() -> std::ffi::OsString {
    std::env::var_os("ComSpec")
        .filter(|shell| !shell.is_empty())
        .unwrap_or_else(|| "cmd.exe".into())
}

/// The shell in a new pseudo-console of `rows` × `cols`. Windows
/// consoles have no terminal name; `_term` is for Unix. An error says
/// why, for the operator.
pub fn spawn(
    _term: &str,
    rows: u16,
    cols: u16,
) -> Result<(TerminalOutput, TerminalInput, ShellProcess), String> {
    let (console, pipes) =
        PseudoConsole::open(rows, cols).map_err(|e| format!("cannot open a console: {e}"))?;
    let host = std::env::current_exe().map_err(|e| format!("cannot find doorman.exe: {e}"))?;
    let shell = command_interpreter();
    let profile = std::env::var_os("USERPROFILE").map(PathBuf::from);
    let args: [&OsStr; 2] = [OsStr::new("console-host"), &shell];
    let process = console
        .spawn(&host, &args, profile.as_deref().filter(|p| p.is_dir()))
        .map_err(|error| format!("cannot start {}: {error}", shell.to_string_lossy()))?;
    let console = Arc::new(console);
    let input = TerminalInput {
        input: tokio::fs::File::from_std(pipes.input),
        console: Arc::downgrade(&console),
    };
    let process = ShellProcess {
        process: Arc::new(process),
        console: Some(console),
        waiting: None,
        exited: false,
    };
    Ok((tokio::fs::File::from_std(pipes.output), input, process))
}

impl TerminalInput {
    pub async fn write(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.input.write_all(bytes).await?;
        self.input.flush().await
    }

    pub fn resize(&self, rows: u16, cols: u16) {
        if let Some(console) = self.console.upgrade()
            && let Err(error) = console.resize(rows, cols)
        {
            // Wine's pseudo-console cannot resize (E_NOTIMPL); the
            // session goes on at its first size.
            tracing::debug!(%error, "the console was not resized");
        }
    }

    /// What the operator's end of input is to the shell: Ctrl-Z and
    /// Enter, Windows' end of file at a prompt.
    pub async fn end_input(&mut self) {
        let _ = self.write(b"\x1a\r").await;
    }
}

impl ShellProcess {
    /// Waits for the console host, which exits with the shell's status.
    /// Cancel-safe: the wait goes on in its thread.
    pub async fn wait(&mut self) -> io::Result<ExitStatus> {
        let process = self.process.clone();
        let waiting = self
            .waiting
            .get_or_insert_with(|| tokio::task::spawn_blocking(move || process.wait()));
        let code = waiting.await.map_err(io::Error::other)??;
        self.waiting = None;
        self.exited = true;
        Ok(ExitStatus::from_raw(code))
    }

    pub fn kill(&mut self) {
        let _ = self.process.kill();
    }
}

impl Drop for ShellProcess {
    fn drop(&mut self) {
        if !self.exited {
            self.kill();
        }
        // Closing a pseudo-console may wait for its last output to be
        // read (before Windows 11 24H2): not on the runtime's thread.
        if let Some(console) = self.console.take() {
            std::thread::spawn(move || drop(console));
        }
    }
}
