//! The operator's terminal during an interactive shell: raw mode (restored on
//! every exit path, panics included) and its window size.

use std::io::IsTerminal;
use std::os::fd::AsFd;
use std::sync::Mutex;

/// The settings to put back; also read by the panic hook.
static SAVED: Mutex<Option<rustix::termios::Termios>> = Mutex::new(None);

/// Whether stdin and stdout are both terminals.
pub fn interactive() -> bool {
    std::io::stdin().is_terminal() && std::io::stdout().is_terminal()
}

/// The terminal's size as (rows, cols), 24×80 when unknown.
pub fn size() -> (u16, u16) {
    match rustix::termios::tcgetwinsize(std::io::stdout().as_fd()) {
        Ok(size) if size.ws_row > 0 && size.ws_col > 0 => (size.ws_row, size.ws_col),
        _ => (24, 80),
    }
}

/// How many columns the terminal on stderr (where progress goes) has; 80
/// when unknown.
pub fn stderr_width() -> usize {
    match rustix::termios::tcgetwinsize(std::io::stderr().as_fd()) {
        Ok(size) if size.ws_col > 0 => usize::from(size.ws_col),
        _ => 80,
    }
}

fn restore() {
    if let Ok(mut saved) = SAVED.lock()
        && let Some(termios) = saved.take()
    {
        let _ = rustix::termios::tcsetattr(
            std::io::stdin().as_fd(),
            rustix::termios::OptionalActions::Now,
            &termios,
        );
    }
}

/// Raw mode while alive.
pub struct RawMode(());

impl RawMode {
    pub fn enable() -> std::io::Result<Self> {
        let stdin = std::io::stdin();
        let original = rustix::termios::tcgetattr(stdin.as_fd())?;
        let mut raw = original.clone();
        raw.make_raw();
        if let Ok(mut saved) = SAVED.lock() {
            *saved = Some(original);
        }
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            restore();
            previous(info);
        }));
        rustix::termios::tcsetattr(stdin.as_fd(), rustix::termios::OptionalActions::Now, &raw)?;
        Ok(Self(()))
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        restore();
    }
}
