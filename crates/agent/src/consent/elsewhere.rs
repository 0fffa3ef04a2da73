//! Where there is no consent socket yet (Windows: a named pipe that checks
//! the caller's SID is to come): the agent cannot listen, so with local
//! consent on it refuses to start and says why, and `doorman consent`
//! reaches nothing.

use super::{ConsentBoard, ConsentError, ConsentRequest, ConsentResponse};
use std::path::{Path, PathBuf};

/// What the agent would listen on.
#[derive(Debug)]
pub struct Listener;

/// Nothing to remove.
#[derive(Debug)]
pub struct SocketFile;

fn unsupported() -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::Unsupported,
        "local consent has no transport on this system yet",
    )
}

pub fn listen(_path: &Path) -> std::io::Result<(Listener, SocketFile)> {
    Err(unsupported())
}

pub async fn serve(_listener: Listener, _board: ConsentBoard) {}

pub async fn call(path: &Path, request: &ConsentRequest) -> Result<ConsentResponse, ConsentError> {
    call_expecting(path, request, 0).await
}

pub async fn call_expecting(
    path: &Path,
    _request: &ConsentRequest,
    _expected_uid: u32,
) -> Result<ConsentResponse, ConsentError> {
    Err(ConsentError::Unreachable {
        path: PathBuf::from(path),
        source: unsupported(),
    })
}

/// A user named by number, as the Unix side names one it cannot find.
pub fn user_name(uid: u32) -> String {
    format!("uid {uid}")
}

/// Who answers from the desktop: the user the agent runs as.
pub(super) async fn desktop_user() -> String {
    std::env::var("USERNAME").unwrap_or_else(|_| "the desktop's user".into())
}
