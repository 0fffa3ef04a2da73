//! The consent socket: a Unix socket, mode 0600, that only the agent's own
//! user may open; its peer's credentials name who answers, and
//! `doorman consent` talks only to a socket the agent's user serves.

use super::{ConsentBoard, ConsentError, ConsentRequest, ConsentResponse, respond};
use doorman_wire::accept::AcceptBackoff;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};

/// Longest request line a consent client may send.
const MAX_LINE: usize = 4096;

/// Listens on `path` (replacing a stale socket, mode 0600) for consent
/// clients of this user; the file goes when the [`SocketFile`] is dropped.
pub fn listen(path: &Path) -> std::io::Result<(UnixListener, SocketFile)> {
    if let Ok(meta) = std::fs::symlink_metadata(path)
        && meta.file_type().is_socket()
    {
        std::fs::remove_file(path)?;
    }
    let listener = UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    let file = SocketFile {
        path: path.to_path_buf(),
        identity: socket_identity(path),
    };
    Ok((listener, file))
}

/// The consent socket's file, removed when dropped (the agent stopping),
/// so that `doorman consent` then says the agent is not running. A file
/// another agent bound at the path since is left alone.
#[derive(Debug)]
pub struct SocketFile {
    path: PathBuf,
    /// Device and inode of the socket this agent bound.
    identity: Option<(u64, u64)>,
}

impl Drop for SocketFile {
    fn drop(&mut self) {
        if self.identity.is_some() && socket_identity(&self.path) == self.identity {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// Device and inode of the socket at `path`, if a socket is there.
fn socket_identity(path: &Path) -> Option<(u64, u64)> {
    let meta = std::fs::symlink_metadata(path).ok()?;
    meta.file_type()
        .is_socket()
        .then(|| (meta.dev(), meta.ino()))
}

/// Serves consent clients on `listener` forever. A failed accept (out of
/// descriptors, most often) is waited out, not retried at once.
pub async fn serve(listener: UnixListener, board: ConsentBoard) {
    let own_uid = own_uid().ok();
    let mut backoff = AcceptBackoff::new("the consent socket");
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => {
                backoff.succeeded();
                stream
            }
            Err(error) => {
                backoff.failed(&error).await;
                continue;
            }
        };
        let board = board.clone();
        tokio::spawn(async move {
            if let Err(error) = serve_client(stream, &board, own_uid).await {
                tracing::debug!(%error, "consent client failed");
            }
        });
    }
}

async fn serve_client(
    stream: UnixStream,
    board: &ConsentBoard,
    own_uid: Option<u32>,
) -> std::io::Result<()> {
    // The socket's mode already keeps other users out; the peer's
    // credentials say it again, and name who answers.
    let peer = stream.peer_cred()?.uid();
    let (reader, mut writer) = stream.into_split();
    let response = if own_uid != Some(peer) {
        ConsentResponse::Error {
            message: "only the agent's own user may answer its requests".into(),
        }
    } else {
        let mut line = String::new();
        let mut reader = BufReader::new(reader).take(MAX_LINE as u64);
        reader.read_line(&mut line).await?;
        respond(board, &line, user_name_of(peer)).await
    };
    let mut text = serde_json::to_string(&response).unwrap_or_default();
    text.push('\n');
    writer.write_all(text.as_bytes()).await?;
    writer.shutdown().await
}

/// The login name of `uid` as the system's user database has it (through
/// NSS: `/etc/passwd`, LDAP, SSSD, systemd-homed…), or `uid N` when it
/// knows none. It may ask a directory server: call it off the runtime's
/// threads (`user_name_of`).
pub fn user_name(uid: u32) -> String {
    uzers::get_user_by_uid(uid)
        .map(|user| user.name().to_string_lossy().into_owned())
        .unwrap_or_else(|| format!("uid {uid}"))
}

/// [`user_name`] on a blocking thread, so that a slow directory server
/// holds up no other task.
async fn user_name_of(uid: u32) -> String {
    tokio::task::spawn_blocking(move || user_name(uid))
        .await
        .unwrap_or_else(|_| format!("uid {uid}"))
}

/// `doorman consent`: asks the running agent over its socket, once the
/// socket has shown that the agent, which runs as this user, is what
/// answers there.
pub async fn call(path: &Path, request: &ConsentRequest) -> Result<ConsentResponse, ConsentError> {
    let own = own_uid().map_err(|source| ConsentError::Unreachable {
        path: path.to_path_buf(),
        source,
    })?;
    call_expecting(path, request, own).await
}

/// [`call`], talking only to a socket whose server runs as `expected_uid`:
/// whoever could bind the path first (a directory others may write to, an
/// agent that could not take its socket) would otherwise read the answers
/// and choose what `list` shows. Nothing is sent to any other peer.
pub async fn call_expecting(
    path: &Path,
    request: &ConsentRequest,
    expected_uid: u32,
) -> Result<ConsentResponse, ConsentError> {
    let unreachable = |source| ConsentError::Unreachable {
        path: path.to_path_buf(),
        source,
    };
    let stream = UnixStream::connect(path)
        .await
        .map_err(|source| match source.kind() {
            std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused => {
                ConsentError::NotRunning {
                    path: path.to_path_buf(),
                }
            }
            _ => unreachable(source),
        })?;
    // The credentials of whoever listens there, as the kernel recorded
    // them when it called listen().
    let peer = stream.peer_cred().map_err(unreachable)?.uid();
    if !peer_allowed(expected_uid, peer) {
        return Err(ConsentError::NotTheAgent {
            path: path.to_path_buf(),
            peer,
            own: expected_uid,
        });
    }
    super::exchange(stream, request, path).await
}

/// Whether a consent client running as `own` may talk to a socket served
/// by `peer`. The agent runs as the computer's owner and its clients
/// (`doorman consent`, the settings window, the tray icon) as the same
/// user, so only that user's own process answers; not even root's, which
/// has no reason to hold this user's socket.
pub fn peer_allowed(own: u32, peer: u32) -> bool {
    own == peer
}

/// The user this process runs as, as the kernel reports it for a socket
/// (the same measure as the peer's): std has no `getuid` without `unsafe`.
pub(super) fn own_uid() -> std::io::Result<u32> {
    let (ours, _theirs) = UnixStream::pair()?;
    Ok(ours.peer_cred()?.uid())
}

/// Who answers from the desktop: the agent's own user.
pub(super) async fn desktop_user() -> String {
    match std::fs::metadata("/proc/self").map(|meta| meta.uid()) {
        Ok(uid) => user_name_of(uid).await,
        Err(_) => "the desktop's user".into(),
    }
}
