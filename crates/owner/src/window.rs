//! The settings window's server: 127.0.0.1 at a port the system picks, for
//! as long as the page is used. It stops once nothing has asked it anything
//! for a while (the page was closed), or when the command is stopped.

use crate::access::Access;
use crate::page;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
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

/// What the page's handlers share.
pub(crate) struct WindowState {
    pub config: PathBuf,
    pub access: Access,
    last_used: Mutex<Instant>,
}

impl WindowState {
    pub fn touch(&self) {
        *self.last_used.lock().unwrap_or_else(|e| e.into_inner()) = Instant::now();
    }

    fn idle_for(&self) -> Duration {
        self.last_used
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .elapsed()
    }
}

/// An open settings window.
pub struct SettingsWindow {
    /// The one-time URL that opens it.
    pub url: String,
    server: tokio::task::JoinHandle<()>,
}

impl SettingsWindow {
    /// Serves the settings of the agent whose settings file is `config`;
    /// the file must be readable (and valid) by whoever runs this.
    pub async fn open(config: PathBuf, idle: Duration) -> Result<SettingsWindow, WindowError> {
        doorman_agent::settings_file::load(&config)?;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(WindowError::Listen)?;
        let address = listener.local_addr().map_err(WindowError::Listen)?;
        let state = Arc::new(WindowState {
            config,
            access: Access::new(),
            last_used: Mutex::new(Instant::now()),
        });
        let url = format!("http://{address}/open/{}", state.access.secret());
        let router = page::routes(state.clone());
        let server = tokio::spawn(async move {
            let unused = async move {
                loop {
                    tokio::time::sleep(idle.min(Duration::from_secs(30))).await;
                    if state.idle_for() >= idle {
                        return;
                    }
                }
            };
            let served = axum::serve(listener, router).with_graceful_shutdown(unused);
            if let Err(error) = served.await {
                tracing::error!(%error, "the settings window stopped");
            }
        });
        Ok(SettingsWindow { url, server })
    }

    /// Resolves once the window has stopped for want of use.
    pub async fn closed(mut self) {
        let _ = (&mut self.server).await;
    }
}

impl Drop for SettingsWindow {
    fn drop(&mut self) {
        self.server.abort();
    }
}
