//! Why a copy failed: the files crate's one error type. The agent wraps it
//! in its own session error, which prints it word for word.

use doorman_wire::ConnectionError;

/// Why a copy (or a Files view) failed. A file that fails alone is not a
/// failure of the copy: the copy's last word counts it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FilesError {
    /// The session connection failed: the operator left, or stopped
    /// reading.
    #[error(transparent)]
    Connection(#[from] ConnectionError),
    /// The copy could not start; the operator was told.
    #[error("{0}")]
    NotStarted(String),
}
