//! The shell in a pseudo-console (Windows ConPTY): `%ComSpec%` (else
//! `cmd.exe`), started through `doorman console-host`, which gives it the
//! console as its standard streams, in the user's profile folder. The
//! shell and all it starts live in one job, ended with the session. The
//! console's pipes block: a thread of its own reads each, and one waits
//! for the shell, so that no session holds the runtime's blocking threads.

use doorman_windows::pseudo_console::{ConsoleProcess, PseudoConsole};
use std::ffi::OsStr;
use std::io;
use std::io::{Read, Write};
use std::os::windows::process::ExitStatusExt;
use std::path::PathBuf;
use std::pin::Pin;
use std::process::ExitStatus;
use std::sync::{Arc, Weak};
use std::task::{Context, Poll, ready};
use tokio::io::{AsyncRead, ReadBuf};
use tokio::sync::{mpsc, oneshot};

/// What the shell prints, as terminal text: what the console's reading
/// thread hands over.
pub struct TerminalOutput {
    chunks: mpsc::Receiver<Vec<u8>>,
    chunk: Vec<u8>,
    taken: usize,
}

/// The operator's keystrokes (to the console's writing thread), and the
/// console's size.
pub struct TerminalInput {
    keys: mpsc::Sender<Vec<u8>>,
    console: Weak<PseudoConsole>,
}

/// The shell's process (the console host, and in its job the shell);
/// ended, and its console closed, when dropped.
pub struct ShellProcess {
    process: Arc<ConsoleProcess>,
    console: Option<Arc<PseudoConsole>>,
    exit: oneshot::Receiver<io::Result<u32>>,
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
    let process = Arc::new(process);
    let (keys, mut typed) = mpsc::channel::<Vec<u8>>(64);
    let (printed, chunks) = mpsc::channel(8);
    let (exited, exit) = oneshot::channel();
    let (mut input, mut output) = (pipes.input, pipes.output);
    let waited = process.clone();
    let threads = [
        std::thread::Builder::new().spawn(move || {
            while let Some(keys) = typed.blocking_recv() {
                if input.write_all(&keys).is_err() {
                    break;
                }
            }
        }),
        // Ends when the console closes its side, at the session's end.
        std::thread::Builder::new().spawn(move || {
            let mut buffer = vec![0u8; 32 * 1024];
            while let Ok(n) = output.read(&mut buffer) {
                if n == 0 || printed.blocking_send(buffer[..n].to_vec()).is_err() {
                    break;
                }
            }
        }),
        std::thread::Builder::new().spawn(move || {
            let _ = exited.send(waited.wait());
        }),
    ];
    if let Some(Err(error)) = threads.into_iter().find(Result::is_err) {
        let _ = process.kill();
        return Err(format!("cannot start the console's threads: {error}"));
    }
    let input = TerminalInput {
        keys,
        console: Arc::downgrade(&console),
    };
    let output = TerminalOutput {
        chunks,
        chunk: Vec::new(),
        taken: 0,
    };
    let process = ShellProcess {
        process,
        console: Some(console),
        exit,
        exited: false,
    };
    Ok((output, input, process))
}

impl AsyncRead for TerminalOutput {
    fn poll_read(
        mut self: Pin<&mut Self>,
        context: &mut Context<'_>,
        buffer: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.taken == self.chunk.len() {
            match ready!(self.chunks.poll_recv(context)) {
                Some(chunk) => {
                    self.chunk = chunk;
                    self.taken = 0;
                }
                // The console closed: end of output.
                None => return Poll::Ready(Ok(())),
            }
        }
        let this = &mut *self;
        let n = buffer.remaining().min(this.chunk.len() - this.taken);
        buffer.put_slice(&this.chunk[this.taken..this.taken + n]);
        this.taken += n;
        Poll::Ready(Ok(()))
    }
}

impl TerminalInput {
    pub async fn write(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.keys
            .send(bytes.to_vec())
            .await
            .map_err(|_| io::Error::from(io::ErrorKind::BrokenPipe))
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
        let code = (&mut self.exit)
            .await
            .map_err(|_| io::Error::other("the shell's waiting thread ended"))??;
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
