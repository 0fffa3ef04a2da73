//! A session's own conversation: what the operator and the program say
//! inside a session connection ([`SessionMessage`]), and how a session
//! ended ([`SessionEnd`] as the computer saw it, [`EndCause`] as the
//! server ended it).

use serde::{Deserialize, Serialize};

/// How a session ended, as the computer saw it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "how", rename_all = "snake_case", deny_unknown_fields)]
pub enum SessionEnd {
    /// The program (command or shell) exited with this status.
    Exited { code: i32 },
    /// The program was killed by this signal.
    Signalled { signal: i32 },
    /// The operator closed a forward session (Ctrl-C).
    ForwardingStopped,
    /// The operator's side went away before the program ended; it was
    /// stopped.
    OperatorLeft,
    /// The computer's `max_session_seconds` was reached.
    TimeLimit,
    /// The session could not run (program not found, no pseudo-terminal…).
    Failed { message: String },
    /// A copy ended: this many files and bytes copied, this many failed.
    Copied { files: u64, bytes: u64, failed: u64 },
}

impl std::fmt::Display for SessionEnd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SessionEnd::Exited { code } => write!(f, "exit status {code}"),
            SessionEnd::Signalled { signal } => write!(f, "killed by signal {signal}"),
            SessionEnd::ForwardingStopped => f.write_str("forwarding stopped by the operator"),
            SessionEnd::OperatorLeft => f.write_str("the operator left; the program was stopped"),
            SessionEnd::TimeLimit => f.write_str("time limit"),
            SessionEnd::Failed { message } => write!(f, "failed: {message}"),
            SessionEnd::Copied {
                files,
                bytes,
                failed,
            } => {
                let copied = super::files::plural(*files, "file");
                write!(f, "copied {copied} ({})", super::files::human_size(*bytes))?;
                match failed {
                    0 => Ok(()),
                    failed => write!(f, "; {failed} failed"),
                }
            }
        }
    }
}

impl SessionEnd {
    /// From a finished program's status.
    pub fn of(status: std::process::ExitStatus) -> Self {
        #[cfg(unix)]
        if let Some(signal) = std::os::unix::process::ExitStatusExt::signal(&status) {
            return SessionEnd::Signalled { signal };
        }
        SessionEnd::Exited {
            code: status.code().unwrap_or(-1),
        }
    }
}

/// Operator ↔ agent, inside a session connection, which the server relays
/// frame by frame from the agent to the operator: a session ends with the
/// program's [`SessionMessage::Exit`], or with the server's
/// [`SessionMessage::Ended`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum SessionMessage {
    /// The operator's standard input is finished.
    StdinEof,
    /// The operator's terminal changed size.
    Resize { rows: u16, cols: u16 },
    /// The remote program ended.
    Exit {
        code: Option<i32>,
        signal: Option<i32>,
    },
    /// The session could not run (program not found, …).
    Error { message: String },
    /// A copy's last word from the computer: this many files and bytes
    /// copied, this many failed.
    Copied { files: u64, bytes: u64, failed: u64 },
    /// Server → operator only, the connection's last frame: the server
    /// ended the session, for `cause`, and `message` says so in words for
    /// the operator. The server never passes on one from the agent.
    Ended { cause: EndCause, message: String },
    /// What the computer recorded of a session it sealed (its recording
    /// went to the server in [`crate::Frame::Recording`] frames): the
    /// asciicast text's size, SHA-256 and whether it was cut at its limit.
    /// For the server's audit trail only.
    Recorded {
        size: u64,
        sha256: String,
        truncated: bool,
    },
}

/// Why the server ended a session ([`SessionMessage::Ended`]); `connect`
/// exits with a status of its own for each.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EndCause {
    /// The computer's `max_session_seconds` was reached.
    TimeLimit,
    /// The operator's access to the computer (its grant) was revoked.
    AccessRevoked,
    /// The operator's token was replaced or removed.
    TokenRevoked,
    /// The computer was removed from the server.
    ComputerRemoved,
    /// The computer's side of the session closed, or broke, before the
    /// program's exit status came.
    ComputerLost,
    /// The operator resumed the request on another connection.
    Superseded,
    /// The server is stopping.
    ServerStopping,
    /// A cause this side does not know (from a newer server).
    #[serde(other)]
    Other,
}
