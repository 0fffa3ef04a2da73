//! Local consent: a person at the computer answers requests there
//! (`local_consent` in the settings). The running agent keeps a board of
//! the requests waiting for a local answer and serves it on a Unix socket
//! that only its own user may open; `doorman consent list|allow|deny` and
//! the desktop notification's actions talk to it. Answers go to the server
//! as local decisions, and the agent remembers them, so that with
//! `local_consent = "required"` it starts no session the person at the
//! computer did not allow, whatever the server says.

use crate::notify::Visitor;
use doorman_core::{Decision, LocalConsent};
use doorman_wire::accept::AcceptBackoff;
use doorman_wire::message::AgentToServer;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::mpsc;

/// Longest request line a consent client may send.
const MAX_LINE: usize = 4096;

/// What `doorman consent` asks the agent.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "command", rename_all = "snake_case", deny_unknown_fields)]
pub enum ConsentRequest {
    List,
    Allow {
        id: String,
    },
    Deny {
        id: String,
    },
    /// Whether the agent is connected, and how many requests wait here:
    /// what the owner's tray icon shows.
    Status,
}

/// One request waiting for a local answer, as listed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Waiting {
    pub id: String,
    pub operator: String,
    pub operator_ip: String,
    pub reason: String,
    pub service: String,
    pub mode: LocalConsent,
    pub expires_in: u64,
}

/// The agent's answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum ConsentResponse {
    Waiting { requests: Vec<Waiting> },
    Answered { id: String, decision: Decision },
    Status { online: bool, waiting: usize },
    Error { message: String },
}

/// Why `doorman consent` could not get an answer.
#[derive(Debug, thiserror::Error)]
pub enum ConsentError {
    /// Nothing listens at the socket's path: no file there, or one an
    /// agent that was killed left behind.
    #[error(
        "the agent is not running: nothing answers at {path} (start `doorman agent` with this settings file, as this user)"
    )]
    NotRunning { path: PathBuf },
    #[error(
        "cannot reach the running agent at {path}: {source} (is `doorman agent` running with this settings file, as this user?)"
    )]
    Unreachable {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "refusing the consent socket at {path}: it is served by uid {peer}, not by this user (uid {own}), and the agent runs as its owner; something else holds that path (remove it, or set consent_socket to a path of this user's, such as $XDG_RUNTIME_DIR/doorman.sock)"
    )]
    NotTheAgent { path: PathBuf, peer: u32, own: u32 },
    #[error("the agent's answer was not understood: {0}")]
    BadAnswer(String),
    #[error("{0}")]
    Refused(String),
}

struct Item {
    visitor: Visitor,
    mode: LocalConsent,
    expires: Instant,
    answer: Option<Decision>,
}

/// The requests waiting for a local answer, shared by the agent's control
/// connection (which adds and settles them) and the consent socket.
#[derive(Clone)]
pub struct ConsentBoard {
    items: Arc<Mutex<HashMap<String, Item>>>,
    decisions: mpsc::UnboundedSender<AgentToServer>,
    /// Whether the control connection is up.
    online: Arc<std::sync::atomic::AtomicBool>,
}

impl ConsentBoard {
    /// A board whose answers go out through `decisions`.
    pub fn new(decisions: mpsc::UnboundedSender<AgentToServer>) -> Self {
        Self {
            items: Arc::default(),
            decisions,
            online: Arc::default(),
        }
    }

    /// The control connection came up or went down.
    pub fn set_online(&self, online: bool) {
        self.online
            .store(online, std::sync::atomic::Ordering::Relaxed);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Item>> {
        self.items
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// A request this agent asked authorization for, which a person at the
    /// computer may answer until it expires.
    pub fn add(&self, id: &str, visitor: &Visitor, mode: LocalConsent, timeout_secs: u32) {
        if mode == LocalConsent::Off {
            return;
        }
        let mut items = self.lock();
        let now = Instant::now();
        items.retain(|_, item| item.expires > now);
        items.insert(
            id.to_string(),
            Item {
                visitor: visitor.clone(),
                mode,
                expires: now + Duration::from_secs(u64::from(timeout_secs)),
                answer: None,
            },
        );
    }

    /// The request ended: returns the local answer it got, if any.
    pub fn settle(&self, id: &str) -> Option<Decision> {
        self.lock().remove(id).and_then(|item| item.answer)
    }

    fn list(&self) -> Vec<Waiting> {
        let now = Instant::now();
        let mut waiting: Vec<Waiting> = self
            .lock()
            .iter()
            .filter(|(_, item)| item.expires > now && item.answer.is_none())
            .map(|(id, item)| Waiting {
                id: id.clone(),
                operator: item.visitor.operator.clone(),
                operator_ip: item.visitor.operator_ip.clone(),
                reason: item.visitor.reason.clone(),
                service: item.visitor.service.clone(),
                mode: item.mode,
                expires_in: item.expires.saturating_duration_since(now).as_secs(),
            })
            .collect();
        waiting.sort_by_key(|w| w.expires_in);
        waiting
    }

    /// Records a local answer and sends it to the server. `id` may be a
    /// unique prefix of at least 6 characters.
    pub fn answer(&self, id: &str, decision: Decision, user: &str) -> Result<String, String> {
        let mut items = self.lock();
        let now = Instant::now();
        let matching: Vec<String> = items
            .iter()
            .filter(|(key, item)| {
                item.expires > now && item.answer.is_none() && id.len() >= 6 && key.starts_with(id)
            })
            .map(|(key, _)| key.clone())
            .collect();
        let [full] = matching.as_slice() else {
            return Err(if matching.is_empty() {
                format!(
                    "no request {id:?} is waiting for an answer here (see `doorman consent list`)"
                )
            } else {
                format!("{id:?} matches several requests; give more of the id")
            });
        };
        if let Some(item) = items.get_mut(full) {
            item.answer = Some(decision);
        }
        let message = AgentToServer::LocalDecision {
            request_id: full.clone(),
            decision,
            user: user.to_string(),
        };
        self.decisions
            .send(message)
            .map_err(|_| "the agent is stopping".to_string())?;
        Ok(full.clone())
    }
}

/// Offers Allow and Deny on a desktop notification, where a session bus and
/// a `notify-send` that takes actions (libnotify 0.7.10 and later) are
/// there; the person who clicks is the desktop's, the agent's own user.
/// Silently nothing otherwise: `doorman consent` always works.
pub fn ask_on_desktop(board: &ConsentBoard, id: &str, visitor: &Visitor, timeout_secs: u32) {
    if std::env::var_os("DBUS_SESSION_BUS_ADDRESS").is_none() {
        return;
    }
    let text = format!(
        "{} ({}) asks to {}; reason: {}",
        visitor.operator,
        visitor.operator_ip,
        visitor.service,
        if visitor.reason.is_empty() {
            "(none given)"
        } else {
            &visitor.reason
        }
    );
    let spawned = tokio::process::Command::new("notify-send")
        .args([
            "--app-name=Doorman",
            "--wait",
            "--action=allow=Allow",
            "--action=deny=Deny",
            "Doorman: allow this connection?",
            &text,
        ])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn();
    let Ok(child) = spawned else {
        return;
    };
    let board = board.clone();
    let id = id.to_string();
    tokio::spawn(async move {
        let wait = Duration::from_secs(u64::from(timeout_secs));
        let Ok(Ok(output)) = tokio::time::timeout(wait, child.wait_with_output()).await else {
            return;
        };
        let decision = match String::from_utf8_lossy(&output.stdout).trim() {
            "allow" => Decision::Allow,
            "deny" => Decision::Deny,
            _ => return,
        };
        let user = match std::fs::metadata("/proc/self").map(|meta| meta.uid()) {
            Ok(uid) => user_name_of(uid).await,
            Err(_) => "the desktop's user".into(),
        };
        if let Err(message) = board.answer(&id, decision, &user) {
            tracing::info!(reason = ?message, "desktop answer not taken");
        }
    });
}

/// Where the consent socket is: `consent_socket` from the settings, or
/// beside the settings file (`agent.toml` → `agent.consent.sock`).
pub fn socket_path(config: &Path, configured: Option<&Path>) -> PathBuf {
    if let Some(path) = configured {
        return path.to_path_buf();
    }
    let stem = config
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "agent".into());
    config.with_file_name(format!("{stem}.consent.sock"))
}

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
        match serde_json::from_str::<ConsentRequest>(&line) {
            Ok(ConsentRequest::List) => ConsentResponse::Waiting {
                requests: board.list(),
            },
            Ok(ConsentRequest::Allow { id }) => {
                answer(board, &id, Decision::Allow, &user_name_of(peer).await)
            }
            Ok(ConsentRequest::Deny { id }) => {
                answer(board, &id, Decision::Deny, &user_name_of(peer).await)
            }
            Ok(ConsentRequest::Status) => ConsentResponse::Status {
                online: board.online.load(std::sync::atomic::Ordering::Relaxed),
                waiting: board.list().len(),
            },
            Err(error) => ConsentResponse::Error {
                message: format!("bad consent request: {error}"),
            },
        }
    };
    let mut text = serde_json::to_string(&response).unwrap_or_default();
    text.push('\n');
    writer.write_all(text.as_bytes()).await?;
    writer.shutdown().await
}

fn answer(board: &ConsentBoard, id: &str, decision: Decision, user: &str) -> ConsentResponse {
    match board.answer(id, decision, user) {
        Ok(id) => ConsentResponse::Answered { id, decision },
        Err(message) => ConsentResponse::Error { message },
    }
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
    let (reader, mut writer) = stream.into_split();
    let mut text =
        serde_json::to_string(request).map_err(|e| ConsentError::BadAnswer(e.to_string()))?;
    text.push('\n');
    writer
        .write_all(text.as_bytes())
        .await
        .map_err(unreachable)?;
    let mut line = String::new();
    BufReader::new(reader)
        .take(1 << 20)
        .read_line(&mut line)
        .await
        .map_err(unreachable)?;
    match serde_json::from_str(&line) {
        Ok(ConsentResponse::Error { message }) => Err(ConsentError::Refused(message)),
        Ok(response) => Ok(response),
        Err(error) => Err(ConsentError::BadAnswer(error.to_string())),
    }
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
fn own_uid() -> std::io::Result<u32> {
    let (ours, _theirs) = UnixStream::pair()?;
    Ok(ours.peer_cred()?.uid())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_client_talks_only_to_its_own_users_socket() {
        let cases = [
            (1000, 1000, true),
            (1000, 1001, false),
            (1000, 0, false),
            (0, 1000, false),
            (0, 0, true),
        ];
        for (own, peer, allowed) in cases {
            assert_eq!(peer_allowed(own, peer), allowed, "own {own}, peer {peer}");
        }
    }

    /// Issue 26: names come from getpwuid_r, so that users NSS knows from
    /// a directory (LDAP, SSSD) are named too, not only /etc/passwd's.
    #[test]
    fn user_names_come_from_the_systems_user_database() {
        assert_eq!(user_name(0), "root");
        assert_eq!(user_name(4_000_000_000), "uid 4000000000");
    }

    #[tokio::test]
    async fn this_process_knows_its_own_uid() {
        let dir = tempfile::tempdir().unwrap();
        let made_by_us = std::fs::metadata(dir.path()).unwrap().uid();
        assert_eq!(own_uid().unwrap(), made_by_us);
    }
}
