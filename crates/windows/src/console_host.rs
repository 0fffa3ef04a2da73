//! The first process in a shell's pseudo-console (`doorman console-host
//! SHELL`): it opens the console as the shell's standard streams and
//! waits for it. Windows gives a process started in a pseudo-console
//! standard streams of its own only on some systems (Wine gives none), so
//! this step makes every system alike. It outlives Ctrl-C, which the
//! console sends to every process attached to it; the shell decides.

use std::ffi::OsString;
use std::fs::OpenOptions;
use std::io;
use std::process::Command;
use windows_sys::Win32::System::Console::SetConsoleCtrlHandler;
use windows_sys::core::BOOL;

/// Ctrl-C and Ctrl-Break are the shell's to act on, not this host's.
unsafe extern "system" fn handled(_event: u32) -> BOOL {
    1
}

/// Runs `program` with `args` on this process's console; its exit code.
pub fn run(program: &OsString, args: &[OsString]) -> io::Result<i32> {
    // SAFETY: `handled` is a valid handler for the process's lifetime;
    // a handler (unlike ignoring) is not inherited by the shell.
    unsafe { SetConsoleCtrlHandler(Some(handled), 1) };
    let console_in = OpenOptions::new().read(true).write(true).open("CONIN$")?;
    let console_out = OpenOptions::new().read(true).write(true).open("CONOUT$")?;
    let errors = console_out.try_clone()?;
    let status = Command::new(program)
        .args(args)
        .stdin(console_in)
        .stdout(console_out)
        .stderr(errors)
        .status()?;
    Ok(status.code().unwrap_or(1))
}
