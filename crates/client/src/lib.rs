//! Doorman's operator side: asks the server for a connection, reports the
//! authorization's progress (a live countdown, or JSON lines), and runs the
//! session like `ssh` does. `connect` goes through its phases in turn, one
//! module each: `server` dials and asks (and resumes a request on a new
//! connection), `wait` counts down until the session starts or there is
//! none, and `session` runs it to the program's exit status or the
//! server's word on why it ended.
//!
//! The map:
//!
//! - `server`: the way to the server: `/v1/connect` dialed with the
//!   operator's token, the ask, and a request picked up again on a new
//!   connection;
//! - `wait`: before the session: the server's answer, the live countdown,
//!   and a Ctrl-C that cancels the request;
//! - `session`: the operator's side of a session: the program's streams
//!   and exit status, or a forward session's listeners, and the server's
//!   word when it ended the session;
//! - [`forward`]: port forwarding like `ssh -L`: `[BIND:]PORT:HOST:PORT`
//!   parsed, and each local connection carried through a tunnel of its own;
//! - [`copy`]: `doorman cp`: the plan, the files sent or received, and the
//!   report;
//! - [`progress`]: telling the operator how the connection goes: a human
//!   line with a live countdown, or JSON lines (`--json`);
//! - [`tty`]: the terminal during a shell: raw mode and its window size;
//! - [`known`]: the computers met before and their identities, which
//!   every end-to-end session must prove again (`known_computers`);
//! - `error`: why no session ran, and the exit status each cause gives
//!   ([`ConnectError`], [`exit`]).
#![forbid(unsafe_code)]

pub mod copy;
mod error;
pub mod forward;
pub mod known;
pub mod progress;
mod server;
mod session;
#[cfg(test)]
mod tests;
pub mod tty;
mod wait;

pub use doorman_wire::message::EndCause;
pub use error::{ConnectError, exit};
pub use forward::ForwardSpec;
pub use progress::{Progress, ProgressStyle};

use doorman_core::Secret;
use doorman_core::names::{validate_name, validate_reason};
use doorman_wire::message::Service;
use server::Server;
use std::future::Future;
use std::pin::pin;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use wait::Wait;

/// How long past a request's deadline `connect` waits for the server to
/// confirm that it expired (exit status 241) before it gives up on the
/// server ([`ConnectError::ExpiryUnconfirmed`], 255). The server expires a
/// request at its deadline, retrying every second while its database
/// fails; this leaves room for that and for a restart.
pub const EXPIRY_GRACE: Duration = Duration::from_secs(10);

/// What the operator asks for.
#[derive(Clone, Debug)]
pub struct ConnectRequest {
    pub server: String,
    /// CA certificates to trust for an `https://` server instead of the system's.
    pub ca: Option<std::path::PathBuf>,
    pub token: Secret,
    pub computer: String,
    pub reason: String,
    pub session: SessionKind,
    /// How long past the request's deadline to wait for the server's word
    /// ([`EXPIRY_GRACE`]; tests shorten it).
    pub expiry_grace: Duration,
    /// The computers met before, and their identities.
    pub known_computers: known::KnownComputers,
    /// Seal the session end to end (`doorman connect` always does). Unset,
    /// the operator stands where the web console does, whose sessions the
    /// server reads and records: for tests of the server's own recordings.
    pub end_to_end: bool,
}

/// What to do once allowed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SessionKind {
    /// Run this argv directly (no shell) on the computer.
    Command(Vec<String>),
    /// The remote login shell in a pseudo-terminal of this size.
    Shell { term: String, rows: u16, cols: u16 },
    /// Carry local connections to targets on the computer's side.
    Forward(Vec<ForwardSpec>),
    /// Copy files to or from the computer (`doorman cp`).
    Copy(copy::plan::CopyPlan),
}

/// Where the session's streams go: the process's own in the binary, buffers
/// in tests.
pub struct Terminal {
    pub stdin: Box<dyn AsyncRead + Send + Unpin>,
    pub stdout: Box<dyn AsyncWrite + Send + Unpin>,
    pub stderr: Box<dyn AsyncWrite + Send + Unpin>,
    /// The process's own terminal: raw mode and window-size changes apply
    /// during a shell session.
    pub is_tty: bool,
}

impl Terminal {
    /// The process's standard streams.
    pub fn stdio() -> Self {
        Self {
            stdin: Box::new(tokio::io::stdin()),
            stdout: Box::new(tokio::io::stdout()),
            stderr: Box::new(tokio::io::stderr()),
            is_tty: tty::interactive(),
        }
    }
}

/// Asks for the connection and, once allowed, runs the session. Returns the
/// remote command's exit status (128 + signal when killed by a signal).
/// `interrupt` completing (Ctrl-C) cancels a pending request or ends the session.
pub async fn connect(
    request: ConnectRequest,
    progress: &mut Progress,
    terminal: Terminal,
    interrupt: impl Future<Output = ()>,
) -> Result<i32, ConnectError> {
    let service = service_of(&request)?;
    let listeners = match &request.session {
        SessionKind::Forward(specs) => forward::bind_all(specs).await?,
        _ => Vec::new(),
    };
    let server = Server::new(&request.server, request.ca.as_deref(), &request.token)?;
    let (initiator, hello) = match request.end_to_end {
        true => {
            let (initiator, hello) = doorman_e2e::Initiator::start()
                .map_err(|e| ConnectError::SessionFailed(e.to_string()))?;
            (Some(initiator), Some(hello))
        }
        false => (None, None),
    };
    // The computer signs what it runs; this is what was asked.
    let asked_service = serde_json::to_vec(&service).unwrap_or_default();
    let asked = server
        .ask(&request.computer, &request.reason, service, hello)
        .await?;
    let mut interrupt = pin!(interrupt);
    let mut started = Wait::new(&server, &request.computer, request.expiry_grace, asked)
        .run(progress, interrupt.as_mut())
        .await?;
    if let Some(initiator) = initiator {
        let sealing = session::Sealing {
            initiator,
            service: asked_service,
            computer: &request.computer,
            known: &request.known_computers,
        };
        let (connection, id) = (&mut started.connection, &started.request_id);
        started.tunnels = Some(session::seal(connection, id, sealing, progress).await?);
    }
    session::run(
        started,
        request.session,
        listeners,
        server,
        terminal,
        progress,
        interrupt,
    )
    .await
}

/// What `request` asks of the computer, once its names and reason are
/// checked.
fn service_of(request: &ConnectRequest) -> Result<Service, ConnectError> {
    validate_name(&request.computer)
        .map_err(|e| ConnectError::InvalidRequest(format!("computer name {e}")))?;
    validate_reason(&request.reason)
        .map_err(|e| ConnectError::InvalidRequest(format!("--reason {e}")))?;
    Ok(match &request.session {
        SessionKind::Command(argv) if argv.is_empty() => {
            return Err(ConnectError::InvalidRequest(
                "give a command to run after --, e.g. `doorman connect office-pc -- uptime`".into(),
            ));
        }
        SessionKind::Command(argv) => Service::Command { argv: argv.clone() },
        SessionKind::Shell { term, rows, cols } => Service::Shell {
            term: term.clone(),
            rows: *rows,
            cols: *cols,
        },
        SessionKind::Forward(specs) => Service::Forward {
            targets: specs.iter().map(|spec| spec.target.clone()).collect(),
        },
        SessionKind::Copy(plan) => Service::Files(plan.job.clone()),
    })
}
