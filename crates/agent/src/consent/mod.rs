//! Local consent: a person at the computer answers requests there
//! (`local_consent` in the settings). The running agent keeps a board of
//! the requests waiting for a local answer and serves it on a Unix socket
//! that only its own user may open (a named pipe on Windows); `doorman consent list|allow|deny` and
//! the desktop notification's actions talk to it. Answers go to the server
//! as local decisions, and the agent remembers them, so that with
//! `local_consent = "required"` it starts no session the person at the
//! computer did not allow, whatever the server says.

use crate::notify::Visitor;
use doorman_core::{Decision, LocalConsent};
use doorman_wire::message::AgentToServer;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

// The transport: a Unix socket only the agent's own user may open, or a
// named pipe on Windows that answers its own user and administrators.
#[cfg(unix)]
#[path = "socket.rs"]
mod transport;
#[cfg(windows)]
#[path = "pipe.rs"]
mod transport;
mod who;

pub use transport::{SocketFile, call, listen, serve};
#[cfg(unix)]
pub use transport::{call_expecting, peer_allowed, user_name};
pub use who::{LOCAL_SYSTEM, pipe_client_allowed, pipe_server_allowed};

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
    #[error(
        "refusing the consent pipe {path}: it is served by {server}, neither this user nor the agent's service (LocalSystem); something else holds that name (stop it, or set consent_socket to another \\\\.\\pipe\\ name)"
    )]
    NotTheAgentsPipe { path: PathBuf, server: String },
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
        let user = transport::desktop_user().await;
        if let Err(message) = board.answer(&id, decision, &user) {
            tracing::info!(reason = ?message, "desktop answer not taken");
        }
    });
}

/// Where the consent socket is: `consent_socket` from the settings, or
/// beside the settings file (`agent.toml` → `agent.consent.sock`); on
/// Windows the pipe `\\.\pipe\doorman-consent`.
pub fn socket_path(config: &Path, configured: Option<&Path>) -> PathBuf {
    if let Some(path) = configured {
        return path.to_path_buf();
    }
    if cfg!(windows) {
        return PathBuf::from(r"\\.\pipe\doorman-consent");
    }
    let stem = config
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "agent".into());
    config.with_file_name(format!("{stem}.consent.sock"))
}

/// How long `doorman consent` (the window, the tray) waits for the agent
/// to answer: it answers from memory, so a wait longer than this is an
/// agent stuck, said as such rather than waited on forever.
const ANSWER_WITHIN: std::time::Duration = std::time::Duration::from_secs(10);

/// Sends `request` on `connection` (to the agent at `path`, whom the
/// transport has checked) and reads its one-line answer (1 MiB at most,
/// within [`ANSWER_WITHIN`]).
async fn exchange<C>(
    connection: C,
    request: &ConsentRequest,
    path: &Path,
) -> Result<ConsentResponse, ConsentError>
where
    C: tokio::io::AsyncRead + tokio::io::AsyncWrite,
{
    use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
    let unreachable = |source| ConsentError::Unreachable {
        path: path.to_path_buf(),
        source,
    };
    let text =
        serde_json::to_string(request).map_err(|e| ConsentError::BadAnswer(e.to_string()))?;
    let asked = async {
        let (reader, mut writer) = tokio::io::split(connection);
        writer.write_all(format!("{text}\n").as_bytes()).await?;
        let mut line = String::new();
        BufReader::new(reader)
            .take(1 << 20)
            .read_line(&mut line)
            .await?;
        Ok(line)
    };
    let line = tokio::time::timeout(ANSWER_WITHIN, asked)
        .await
        .map_err(|_| {
            unreachable(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("no answer within {} s", ANSWER_WITHIN.as_secs()),
            ))
        })?
        .map_err(unreachable)?;
    match serde_json::from_str(&line) {
        Ok(ConsentResponse::Error { message }) => Err(ConsentError::Refused(message)),
        Ok(response) => Ok(response),
        Err(error) => Err(ConsentError::BadAnswer(error.to_string())),
    }
}

/// The answer to one request `line` from a client allowed to answer;
/// `who` names that client, asked only when it answers.
async fn respond<F>(board: &ConsentBoard, line: &str, who: F) -> ConsentResponse
where
    F: std::future::Future<Output = String>,
{
    let answer = |id: &str, decision, user: &str| match board.answer(id, decision, user) {
        Ok(id) => ConsentResponse::Answered { id, decision },
        Err(message) => ConsentResponse::Error { message },
    };
    match serde_json::from_str::<ConsentRequest>(line) {
        Ok(ConsentRequest::List) => ConsentResponse::Waiting {
            requests: board.list(),
        },
        Ok(ConsentRequest::Allow { id }) => answer(&id, Decision::Allow, &who.await),
        Ok(ConsentRequest::Deny { id }) => answer(&id, Decision::Deny, &who.await),
        Ok(ConsentRequest::Status) => ConsentResponse::Status {
            online: board.online.load(std::sync::atomic::Ordering::Relaxed),
            waiting: board.list().len(),
        },
        Err(error) => ConsentResponse::Error {
            message: format!("bad consent request: {error}"),
        },
    }
}

#[cfg(all(test, unix))]
mod tests {
    use super::transport::own_uid;
    use super::*;
    use std::os::unix::fs::MetadataExt;

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
