//! Doorman's agent: runs on the remote computer, keeps an outbound connection
//! to the server, answers offers from its own settings file (read afresh for
//! every offer, so changes apply without a restart), enforces email
//! authorization itself, and runs the sessions it has agreed to.
#![forbid(unsafe_code)]

mod answer;
mod command;
pub mod consent;
mod control;
mod desktop;
mod dialing;
pub mod enroll;
pub mod error;
mod memory;
pub mod notify;
mod passkeys;
mod session;
pub mod settings_file;
mod shell;
mod verdict;

use std::future::Future;
use std::path::PathBuf;

pub use settings_file::SettingsFileError;

/// Stops a task when dropped.
struct AbortOnDrop(tokio::task::AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Why the agent cannot run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AgentError {
    #[error(transparent)]
    Settings(#[from] SettingsFileError),
    #[error("{0}")]
    Server(#[from] doorman_proto::DialError),
}

/// Runs the agent with the settings file at `config` until `shutdown`
/// completes. Reconnects whenever the server goes away.
pub async fn run(
    config: PathBuf,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), AgentError> {
    let settings = settings_file::load(&config)?;
    // Checked once up front so that a wrong URL fails at start, not in a loop.
    doorman_proto::Dialer::new(&settings.server, settings.ca.as_deref())?;
    tracing::info!(
        computer = %settings.name,
        server = %settings.server,
        email_authorization = settings.desktop_sharing.require_email_authorization,
        "doorman agent starting"
    );
    let (to_server, queued) = tokio::sync::mpsc::unbounded_channel();
    let board = consent::ConsentBoard::new(to_server.clone());
    // The socket `doorman consent` talks to; an agent that cannot have one
    // still runs, without local answers.
    let socket = consent::socket_path(&config, settings.consent_socket.as_deref());
    let consent_server = match consent::listen(&socket) {
        Ok(listener) => Some(tokio::spawn(consent::serve(listener, board.clone()))),
        Err(error) => {
            tracing::warn!(path = %socket.display(), %error, "local consent unavailable: cannot listen on its socket");
            None
        }
    };
    let _stop_consent = consent_server
        .map(|task| task.abort_handle())
        .map(AbortOnDrop);
    tokio::select! {
        () = control::run_forever(config, board, to_server, queued) => Ok(()),
        () = shutdown => {
            tracing::info!("doorman agent stopped");
            Ok(())
        }
    }
}
