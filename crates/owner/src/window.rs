//! The settings window's server: 127.0.0.1 at a port the system picks, for
//! as long as the page is used. It stops once its one-time link expired
//! unopened, once nobody who holds the page's session has asked it anything
//! for a while (the page was closed; requests without the session do not
//! count), or when the command is stopped.

use crate::access::{Access, DEFAULT_LINK_LIFETIME};
use crate::browser::RedirectFile;
use crate::state::WindowState;
use std::ffi::OsStr;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long the window waits for the page before it stops.
pub const DEFAULT_IDLE: Duration = Duration::from_secs(15 * 60);

/// Why the window could not open.
#[derive(Debug, thiserror::Error)]
pub enum WindowError {
    #[error(transparent)]
    Settings(#[from] doorman_agent::settings_file::SettingsFileError),
    #[error("cannot listen on 127.0.0.1: {0}")]
    Listen(std::io::Error),
}

/// How long the window lasts.
#[derive(Clone, Copy, Debug)]
pub struct Lifetimes {
    /// Without a request from the page's session for this long, it stops.
    pub idle: Duration,
    /// The one-time link works this long; unopened by then, the window
    /// stops.
    pub link: Duration,
}

impl Default for Lifetimes {
    fn default() -> Self {
        Self {
            idle: DEFAULT_IDLE,
            link: DEFAULT_LINK_LIFETIME,
        }
    }
}

/// Why a window stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Stopped {
    /// The page's session asked nothing for the idle time.
    Unused,
    /// Nobody opened the one-time link in time.
    LinkExpired,
    /// Its server failed (logged).
    Failed,
}

/// Why the window should stop at `now`, or when to look again.
fn stop_or_wake(state: &WindowState, now: Instant) -> Result<Instant, Stopped> {
    let idle_ends = state.idle_ends();
    if idle_ends.is_some_and(|end| now >= end) {
        return Err(Stopped::Unused);
    }
    let link_expires = state.access.unused_link_expires();
    if link_expires.is_some_and(|end| now >= end) {
        return Err(Stopped::LinkExpired);
    }
    let much_later = now + Duration::from_secs(3600);
    let wake = [idle_ends, link_expires]
        .into_iter()
        .flatten()
        .min()
        .unwrap_or(much_later);
    Ok(wake)
}

/// Resolves when the window should stop, and says why.
async fn until_stopped(state: &WindowState) -> Stopped {
    loop {
        match stop_or_wake(state, Instant::now()) {
            Err(stopped) => return stopped,
            Ok(wake) => tokio::time::sleep_until(tokio::time::Instant::from_std(wake)).await,
        }
    }
}

/// An open settings window.
pub struct SettingsWindow {
    /// The one-time URL that opens it. It holds the secret: print it to the
    /// owner only, and hand the browser [`SettingsWindow::browser_command`]
    /// rather than this.
    pub url: String,
    server: tokio::task::JoinHandle<Stopped>,
    /// The file that leads the browser to `url`, once there is one; removed
    /// with the window.
    redirect: Option<RedirectFile>,
}

impl SettingsWindow {
    /// Serves the settings of the agent whose settings file is `config`;
    /// the file must be readable (and valid) by whoever runs this.
    pub async fn open(config: PathBuf, idle: Duration) -> Result<SettingsWindow, WindowError> {
        let lifetimes = Lifetimes {
            idle,
            ..Lifetimes::default()
        };
        Self::open_with(config, lifetimes).await
    }

    /// [`SettingsWindow::open`] with both lifetimes chosen.
    pub async fn open_with(
        config: PathBuf,
        lifetimes: Lifetimes,
    ) -> Result<SettingsWindow, WindowError> {
        doorman_agent::settings_file::load(&config)?;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(WindowError::Listen)?;
        let address: SocketAddr = listener.local_addr().map_err(WindowError::Listen)?;
        let now = Instant::now();
        let state = Arc::new(WindowState::new(
            config,
            Access::new(now, lifetimes.link),
            address.port(),
            lifetimes.idle,
            now,
        ));
        let url = format!("http://{address}/open/{}", state.access.link());
        let router = crate::router::routes(state.clone());
        let server = tokio::spawn(async move {
            let (said, why) = tokio::sync::oneshot::channel();
            let signal = async move {
                let _ = said.send(until_stopped(&state).await);
            };
            let served = axum::serve(listener, router).with_graceful_shutdown(signal);
            if let Err(error) = served.await {
                tracing::error!(%error, "the settings window stopped");
                return Stopped::Failed;
            }
            why.await.unwrap_or(Stopped::Failed)
        });
        Ok(SettingsWindow {
            url,
            server,
            redirect: None,
        })
    }

    /// The command that shows the window in the desktop's browser:
    /// `program` (`xdg-open`) with one argument, the path of a file of the
    /// owner's alone (0600, in a fresh 0700 directory under
    /// `$XDG_RUNTIME_DIR`) that sends the browser on to the one-time URL.
    /// Every user of the computer may read a process's arguments; the
    /// secret is never among them.
    pub fn browser_command(
        &mut self,
        program: impl AsRef<OsStr>,
    ) -> std::io::Result<std::process::Command> {
        self.browser_command_with(program, &[])
    }

    /// [`SettingsWindow::browser_command`] with the desktop's own opener:
    /// `xdg-open`, or on Windows the default browser through
    /// `rundll32 url.dll,FileProtocolHandler`.
    pub fn default_browser_command(&mut self) -> std::io::Result<std::process::Command> {
        if cfg!(windows) {
            self.browser_command_with("rundll32", &["url.dll,FileProtocolHandler"])
        } else {
            self.browser_command_with("xdg-open", &[])
        }
    }

    fn browser_command_with(
        &mut self,
        program: impl AsRef<OsStr>,
        leading: &[&str],
    ) -> std::io::Result<std::process::Command> {
        let redirect = RedirectFile::create(&self.url)?;
        let mut command = std::process::Command::new(program);
        command
            .args(leading)
            .arg(redirect.path())
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        self.redirect = Some(redirect);
        Ok(command)
    }

    /// Resolves once the window has stopped by itself, saying why.
    pub async fn closed(mut self) -> Stopped {
        (&mut self.server).await.unwrap_or(Stopped::Failed)
    }
}

impl Drop for SettingsWindow {
    fn drop(&mut self) {
        self.server.abort();
    }
}
