//! A real VNC server for tests: TigerVNC's `Xtigervnc` on a display nobody
//! holds, serving the first connection to a port the test holds itself (in
//! inetd mode), so that no port is chosen, released and hoped for. Needs
//! Debian's tigervnc-standalone-server.

use std::process::Stdio;

/// A VNC port waiting for its one viewer; stopped (SIGTERM, so that it
/// removes its lock and socket) by [`Vnc::stop`].
pub struct Vnc {
    /// `127.0.0.1:PORT`, for `[services]` settings.
    pub target: String,
    server: tokio::task::JoinHandle<tokio::process::Child>,
}

impl Vnc {
    /// A desktop of `width`×`height` named `name`, with X's classic weave
    /// on its root window (something to see); `None`, after saying why,
    /// when Xtigervnc is not installed (never under CI).
    pub async fn start(width: u32, height: u32, name: &str) -> Option<Vnc> {
        if crate::which("Xtigervnc").is_none() {
            crate::skip_without("Xtigervnc", "apt-get install tigervnc-standalone-server");
            return None;
        }
        // A VNC server killed earlier leaves its lock and socket behind, and
        // a new one on that display would stop.
        let display = (100..1000)
            .find(|n| {
                !std::path::Path::new(&format!("/tmp/.X{n}-lock")).exists()
                    && !std::path::Path::new(&format!("/tmp/.X11-unix/X{n}")).exists()
            })
            .map(|n| format!(":{n}"))
            .expect("a free X display");
        let port = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind a VNC port");
        let target = port.local_addr().expect("address").to_string();
        let geometry = format!("{width}x{height}");
        let name = name.to_string();
        let server = tokio::spawn(async move {
            let (viewer, _) = port
                .accept()
                .await
                .expect("the viewer reaches the VNC port");
            let viewer = viewer.into_std().expect("a std socket");
            viewer.set_nonblocking(false).expect("blocking");
            let input = std::os::fd::OwnedFd::from(viewer);
            let output = input.try_clone().expect("dup");
            tokio::process::Command::new("Xtigervnc")
                .args([
                    &display,
                    "-inetd",
                    "-geometry",
                    &geometry,
                    "-depth",
                    "24",
                    "-retro",
                ])
                .args(["-SecurityTypes", "None", "-desktop", &name])
                .args(["-nolisten", "tcp"])
                .stdin(Stdio::from(input))
                .stdout(Stdio::from(output))
                .stderr(Stdio::null())
                .kill_on_drop(true)
                .spawn()
                .expect("start Xtigervnc")
        });
        Some(Vnc { target, server })
    }

    /// Stops the server, if a viewer ever started it.
    pub async fn stop(self) {
        if !self.server.is_finished() {
            self.server.abort();
            return;
        }
        let Ok(mut server) = self.server.await else {
            return;
        };
        if let Some(pid) = server.id() {
            let _ = std::process::Command::new("kill")
                .arg(pid.to_string())
                .status();
        }
        let _ = server.wait().await;
    }
}
