//! A shell in a terminal of this system's kind, behind one interface:
//! a pseudo-terminal and the login shell on Unix, a pseudo-console
//! (ConPTY) and `%ComSpec%` on Windows. `shell` runs the session over it.

#[cfg(unix)]
#[path = "unix.rs"]
mod system;
#[cfg(windows)]
#[path = "windows.rs"]
mod system;

pub use system::{ShellProcess, TerminalInput, TerminalOutput, spawn};
