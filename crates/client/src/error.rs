//! Why a connection did not run a session, and the exit status each cause
//! gives `doorman connect` (listed in its `--help`).

use doorman_wire::message::EndCause;

/// Exit statuses of `doorman connect` for its own failures. They sit above
/// the signal range (128 + n) so they rarely collide with a remote command's.
pub mod exit {
    pub const INVALID_REQUEST: i32 = 2;
    pub const CANCELLED: i32 = 130;
    pub const DENIED: i32 = 240;
    pub const EXPIRED: i32 = 241;
    pub const UNKNOWN_COMPUTER: i32 = 242;
    pub const OFFLINE: i32 = 243;
    pub const BAD_TOKEN: i32 = 244;
    pub const NOT_OFFERED: i32 = 245;
    pub const SESSION_FAILED: i32 = 246;
    pub const LIMITED: i32 = 247;
    pub const UNDELIVERABLE: i32 = 248;
    /// The computer's identity is not the one remembered for it, or it
    /// could not prove one (someone between changed the session's keys).
    pub const IDENTITY: i32 = 249;
    /// `doorman cp`: some files went, some did not (each said why).
    pub const PARTLY_COPIED: i32 = 250;
    /// Cannot reach or talk to the server, or it did not confirm a
    /// request's expiry within the grace after its deadline.
    pub const SERVER: i32 = 255;
}

/// A connection that ended without a session, or a session that broke.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectError {
    #[error("authorization denied by {by}")]
    Denied { by: String },
    #[error("authorization expired: nobody approved the request in time")]
    Expired,
    /// The request's deadline passed `grace_secs` ago and the server has
    /// not said it expired (it is unreachable, or cannot record the
    /// expiry): `connect` stops waiting.
    #[error(
        "the server did not confirm the request's expiry within {grace_secs} s of its deadline"
    )]
    ExpiryUnconfirmed { grace_secs: u64 },
    #[error("request cancelled")]
    Cancelled,
    #[error("unknown computer or not permitted: {0:?}")]
    UnknownComputer(String),
    #[error("computer {0:?} is offline")]
    Offline(String),
    /// The server's words: the computer went offline, or was removed.
    #[error("{0}")]
    WentOffline(String),
    #[error("the server refused the operator token")]
    BadToken,
    #[error("your operator token was replaced or removed")]
    TokenRevoked,
    #[error("refused by the computer: {0}")]
    NotOffered(String),
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    #[error("session failed: {0}")]
    SessionFailed(String),
    #[error("refused: {0}")]
    Limited(String),
    /// The server ended the session, for `cause`: its time limit, a
    /// revocation, the computer's side lost, its own stop. `message` is
    /// the server's word, which is what the operator is told.
    #[error("{message}")]
    Ended { cause: EndCause, message: String },
    #[error("{0}")]
    Undeliverable(String),
    #[error(
        "the identity of {computer} has changed: it proved {presented}, but {file} remembers {known} for it. Someone may be intercepting the session (the server, or whoever controls it), or the computer's identity key was replaced (its agent reinstalled). If you know the key was replaced, run `doorman known remove {computer}` and connect again"
    )]
    IdentityChanged {
        computer: String,
        presented: String,
        known: String,
        file: String,
    },
    #[error(
        "{computer} did not prove its identity for this session ({problem}): someone between you and the computer, such as the server, may have changed the session's keys; no session was started"
    )]
    IdentityUnproven { computer: String, problem: String },
    #[error("{0}")]
    Server(String),
}

impl ConnectError {
    /// The server ended the session, for `cause`, in its own `message`:
    /// what the operator is shown, with any hidden character (a terminal's
    /// escape, a line break) spelled out, since only the server vouches
    /// for it.
    pub fn ended(cause: EndCause, message: &str) -> Self {
        ConnectError::Ended {
            cause,
            message: doorman_core::display::escape_hidden(message),
        }
    }

    pub fn exit_code(&self) -> i32 {
        match self {
            ConnectError::Denied { .. } => exit::DENIED,
            ConnectError::Expired => exit::EXPIRED,
            ConnectError::Cancelled => exit::CANCELLED,
            ConnectError::UnknownComputer(_) => exit::UNKNOWN_COMPUTER,
            ConnectError::Offline(_) | ConnectError::WentOffline(_) => exit::OFFLINE,
            ConnectError::BadToken | ConnectError::TokenRevoked => exit::BAD_TOKEN,
            ConnectError::NotOffered(_) => exit::NOT_OFFERED,
            ConnectError::InvalidRequest(_) => exit::INVALID_REQUEST,
            ConnectError::SessionFailed(_) => exit::SESSION_FAILED,
            ConnectError::Ended { cause, .. } => ended(*cause),
            ConnectError::Limited(_) => exit::LIMITED,
            ConnectError::Undeliverable(_) => exit::UNDELIVERABLE,
            ConnectError::IdentityChanged { .. } | ConnectError::IdentityUnproven { .. } => {
                exit::IDENTITY
            }
            ConnectError::Server(_) | ConnectError::ExpiryUnconfirmed { .. } => exit::SERVER,
        }
    }
}

/// The exit status of a session the server ended for `cause`: as for the
/// same cause before a session (a revoked grant: not permitted; a revoked
/// token: a bad token; a removed computer: offline), else that of a session
/// cut off.
fn ended(cause: EndCause) -> i32 {
    match cause {
        EndCause::AccessRevoked => exit::UNKNOWN_COMPUTER,
        EndCause::TokenRevoked => exit::BAD_TOKEN,
        EndCause::ComputerRemoved => exit::OFFLINE,
        EndCause::TimeLimit
        | EndCause::ComputerLost
        | EndCause::Superseded
        | EndCause::ServerStopping
        | EndCause::Other => exit::SESSION_FAILED,
    }
}
