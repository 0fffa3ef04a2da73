//! Why a connection to the server or a session ended in failure: the agent's
//! error types, which its log lines and notifications print.

use crate::settings_file::SettingsFileError;
use doorman_wire::{ConnectionError, DialError};
use std::time::Duration;

/// Why the control connection (or a session connection) could not be kept.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    #[error(transparent)]
    Settings(#[from] SettingsFileError),
    #[error(transparent)]
    Dial(#[from] DialError),
    #[error(transparent)]
    Wire(#[from] ConnectionError),
    #[error("the agent's {0} is not a valid HTTP header value")]
    BadHeader(&'static str),
    #[error("the server did not welcome the agent")]
    NoWelcome,
    #[error("the server was silent for {} s", .0.as_secs_f32())]
    Silent(Duration),
    #[error("another agent connected as this computer from {address}")]
    Displaced { address: String },
}

/// Why a session failed (its program's own exit status is not a failure).
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error(transparent)]
    Connection(#[from] LinkError),
    /// The program could not start; the operator was told.
    #[error("{0}")]
    NotStarted(String),
    #[error("the program could not be waited for: {0}")]
    Wait(std::io::Error),
    /// A copy failed: its own words, unchanged (the connection's error, or
    /// why it could not start, which the operator was told).
    #[error(transparent)]
    Files(#[from] doorman_files::FilesError),
}

impl From<ConnectionError> for SessionError {
    fn from(error: ConnectionError) -> Self {
        SessionError::Connection(LinkError::from(error))
    }
}
