//! Doorman's agent: runs on the remote computer, keeps an outbound connection
//! to the server, answers offers from its own settings file (read afresh for
//! every offer, so changes apply without a restart), enforces email
//! authorization itself, and runs the sessions it has agreed to. Before
//! all that, [`join`] turns an invitation into its settings file.
//!
//! The map:
//!
//! - `control`: the control connection: dials out, answers offers, acts on
//!   settled outcomes, answers pings, and reconnects whenever the server
//!   goes away or falls silent;
//! - `answer`: what this computer's settings answer, read afresh each
//!   time: an offer (refused, asked of the recipients, or admitted) and the
//!   status the web console lists;
//! - `verdict`: whether an allowed session may start: one pure function of
//!   the offer as answered, the outcome, the local answer and the memory;
//! - `memory`: what the agent remembers across connections: the requests
//!   it asked authorization for and the approvals it may reuse, bounded;
//! - `passkeys`: passkey approvals checked here, against the keys pinned
//!   in this computer's settings, whatever the server says;
//! - [`consent`]: local consent: the requests waiting for the person at the
//!   computer, served on a Unix socket only this user may open (a named
//!   pipe on Windows);
//! - `session`: an agreed session on its own connection to the server: a
//!   command, a shell, the desktop, a forward session's tunnels, or a copy
//!   (`doorman_files`);
//! - `command`: one command, its standard streams carried as frames and
//!   its exit status reported at the end;
//! - `shell`: an interactive shell: keystrokes in, the screen out,
//!   resizes, and a sealed session's recording;
//! - `terminal`: the shell in this system's terminal: a pseudo-terminal
//!   on Unix, a pseudo-console (ConPTY) on Windows;
//! - `desktop`: the bytes of the VNC server the settings name, for the
//!   web console's viewer;
//! - `dialing`: how the agent reaches the server: one dialer shared by the
//!   control connection, sessions and tunnels, and the headers that
//!   authenticate it;
//! - [`notify`]: telling the owner: a log line, a desktop notification, and
//!   the owner's `notify_command`;
//! - [`enroll`]: `doorman settings approvers`: recipients' passkeys
//!   enrolled from this computer, listed and removed;
//! - [`join`]: `doorman agent join`: an invitation redeemed for this
//!   computer's key and settings file;
//! - [`settings_file`]: the settings file on disk: loaded with every
//!   problem named, changed atomically, and written new without replacing
//!   one;
//! - [`error`]: why a connection to the server or a session failed.
#![forbid(unsafe_code)]

mod answer;
mod command;
pub mod consent;
mod control;
mod desktop;
mod dialing;
pub mod enroll;
pub mod error;
pub mod identity_file;
pub mod join;
mod memory;
pub mod notify;
mod passkeys;
mod recording;
mod session;
pub mod settings_file;
mod shell;
mod terminal;
mod verdict;

use doorman_core::LocalConsent;
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
    Server(#[from] doorman_wire::DialError),
    #[error(transparent)]
    Identity(#[from] identity_file::IdentityFileError),
    /// Local consent is on, and its socket cannot be had: whatever holds
    /// the path would otherwise stand where the agent should.
    #[error(
        "local consent is on, but the agent cannot listen on its consent socket {path}: {source} (something else holds that path, or its directory is not this user's to write; remove it, or set consent_socket to a path of this user's, such as $XDG_RUNTIME_DIR/doorman.sock)"
    )]
    ConsentSocket {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// A copy that meets the file size limit (`ulimit -f`) fails that file
/// ("File too large"), as a full disk does; by default the signal the
/// kernel sends then (SIGXFSZ) would end the whole agent. Handled, it is
/// not; the handle keeps it so while the agent runs.
#[cfg(unix)]
fn keep_running_past_file_size_limits() -> Option<tokio::signal::unix::Signal> {
    let xfsz = tokio::signal::unix::SignalKind::from_raw(rustix::process::Signal::XFSZ.as_raw());
    tokio::signal::unix::signal(xfsz).ok()
}

/// Elsewhere no signal ends the agent for a file too large.
#[cfg(not(unix))]
fn keep_running_past_file_size_limits() -> Option<()> {
    None
}

/// Runs the agent with the settings file at `config` until `shutdown`
/// completes. Reconnects whenever the server goes away.
pub async fn run(
    config: PathBuf,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), AgentError> {
    let settings = settings_file::load(&config)?;
    let identity = identity_file::path(&config, settings.identity_key.as_deref());
    let identity = std::sync::Arc::new(identity_file::load_or_create(&identity)?);
    let _file_size_limit = keep_running_past_file_size_limits();
    // Built once up front, so that a wrong URL fails at start, not in a
    // loop; every connection after shares it.
    let dialer = dialing::SharedDialer::default();
    dialer.for_settings(&settings)?;
    tracing::info!(
        computer = %settings.name,
        server = %settings.server,
        email_authorization = settings.desktop_sharing.require_email_authorization,
        identity = %identity.public().fingerprint(),
        "doorman agent starting"
    );
    let (to_server, queued) = tokio::sync::mpsc::unbounded_channel();
    let board = consent::ConsentBoard::new(to_server.clone());
    // The socket `doorman consent`, the settings window and the tray talk
    // to. With local consent on, an agent that cannot have it does not
    // start: something else may hold the path. With it off, the agent runs
    // without local answers (turning local consent on later needs a
    // restart that can take the socket), and says so. The socket's file
    // goes when the agent stops (`_socket_file`, dropped once the task
    // serving it is stopped).
    let socket = consent::socket_path(&config, settings.consent_socket.as_deref());
    let (consent_server, _socket_file) = match consent::listen(&socket) {
        Ok((listener, file)) => (
            Some(tokio::spawn(consent::serve(listener, board.clone()))),
            Some(file),
        ),
        Err(source) if settings.desktop_sharing.local_consent != LocalConsent::Off => {
            return Err(AgentError::ConsentSocket {
                path: socket,
                source,
            });
        }
        Err(error) => {
            tracing::warn!(path = %socket.display(), %error, "local consent unavailable: cannot listen on its socket (local consent is off; turning it on needs an agent that can)");
            (None, None)
        }
    };
    let _stop_consent = consent_server
        .map(|task| task.abort_handle())
        .map(AbortOnDrop);
    tokio::select! {
        () = control::run_forever(config, board, dialer, identity, to_server, queued) => Ok(()),
        () = shutdown => {
            tracing::info!("doorman agent stopped");
            Ok(())
        }
    }
}
