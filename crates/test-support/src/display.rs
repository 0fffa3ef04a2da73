//! An X display for tests that need a desktop (a Windows program's tray
//! icon under Wine): TigerVNC's `Xtigervnc` with no VNC port, on a display
//! it picks itself (`-displayfd`) and says once it is ready; stopped when
//! dropped. Needs Debian's tigervnc-standalone-server.

use std::process::Stdio;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// A running X display.
pub struct Display {
    /// `:N`, for `DISPLAY`.
    pub name: String,
    _server: Child,
}

impl Display {
    /// Starts a display, 1024×768; `None`, after saying why, where
    /// Xtigervnc is not installed (never under CI).
    pub async fn start() -> Option<Display> {
        if crate::which("Xtigervnc").is_none() {
            crate::skip_without("Xtigervnc", "apt-get install tigervnc-standalone-server");
            return None;
        }
        // The display's number comes on standard error, alone on its line,
        // once the server accepts clients.
        let mut server = Command::new("Xtigervnc")
            .args([
                "-displayfd",
                "2",
                "-rfbport",
                "-1",
                "-SecurityTypes",
                "None",
            ])
            .args(["-geometry", "1024x768", "-nolisten", "tcp"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("start Xtigervnc");
        let errors = server.stderr.take().expect("stderr");
        let mut lines = BufReader::new(errors).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            if !line.is_empty() && line.bytes().all(|b| b.is_ascii_digit()) {
                // Keep reading, so that the server never blocks on a full pipe.
                tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
                return Some(Display {
                    name: format!(":{line}"),
                    _server: server,
                });
            }
        }
        panic!("Xtigervnc ended before it named its display");
    }
}
