//! Doorman's operator side: asks the server for a connection, reports the
//! authorization's progress (a live countdown, or JSON lines), and runs the
//! session like `ssh` does.
#![forbid(unsafe_code)]

mod error;
pub mod forward;
pub mod progress;
mod session;
#[cfg(test)]
mod tests;
pub mod tty;

pub use error::{ConnectError, exit};
pub use forward::ForwardSpec;
pub use progress::{Progress, ProgressStyle};

use doorman_core::Secret;
use doorman_core::names::{validate_name, validate_reason};
use doorman_proto::connection::Connection;
use doorman_proto::message::{
    DEFAULT_WRITE_DEADLINE, OperatorMessage, Refusal, ServerToOperator, Service, silence_limit,
    write_deadline,
};
use doorman_proto::{CONNECT_PATH, DialError, Dialer};
use hyper::StatusCode;
use hyper::header::{AUTHORIZATION, HeaderValue};
use std::future::Future;
use std::pin::pin;
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};

/// Where a connect stands with the server before its session.
enum Phase {
    /// Asked; the server has not said it holds a request (or it admitted
    /// the operator without one).
    Asking,
    /// A request waits for its decision, then for its session: counted
    /// down, resumed over a new connection if this one is lost, cancelled
    /// on Ctrl-C. While undecided the server pings; a connection silent for
    /// `silence` is dead even if no error says so (a NAT or proxy dropped
    /// it). Undecided past `deadline` plus the grace, the server has not
    /// confirmed the expiry: the wait ends.
    Waiting {
        request_id: String,
        deadline: Instant,
        silence: Option<Duration>,
        /// Allowed: the session follows; the deadline no longer holds.
        decided: bool,
    },
    /// Ctrl-C sent the cancel; the server's word is awaited a little while.
    Cancelling { since: Instant, deadline: Instant },
}

/// How long before a session's time limit the operator is warned.
const TIME_LIMIT_WARNING: Duration = Duration::from_secs(60);

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

/// Dials the server again and resumes `request_id`, with growing pauses,
/// until `until` (`Ok(None)`) or an interrupt.
async fn reconnect(
    dialer: &Dialer,
    auth: &HeaderValue,
    request_id: &str,
    until: Instant,
    mut interrupt: std::pin::Pin<&mut impl Future<Output = ()>>,
) -> Result<Option<Connection<doorman_proto::dial::Upgraded>>, ConnectError> {
    let mut pause = Duration::from_millis(200);
    loop {
        let attempt = async {
            tokio::time::sleep(pause).await;
            resume(dialer, auth, request_id).await
        };
        tokio::select! {
            resumed = attempt => if let Some(connection) = resumed? {
                return Ok(Some(connection));
            },
            () = tokio::time::sleep_until(until.into()) => return Ok(None),
            () = interrupt.as_mut() => {
                cancel_after_loss(dialer, auth, request_id).await;
                return Err(ConnectError::Cancelled);
            }
        }
        pause = (pause * 2).min(Duration::from_secs(2));
    }
}

/// A connection that has resumed `request_id`, if the server answers;
/// `Ok(None)` to try again later. A token the server no longer takes (it was
/// replaced or removed meanwhile) is final.
async fn resume(
    dialer: &Dialer,
    auth: &HeaderValue,
    request_id: &str,
) -> Result<Option<Connection<doorman_proto::dial::Upgraded>>, ConnectError> {
    let io = match dial_connect(dialer, auth).await {
        Ok(io) => io,
        Err(ConnectError::BadToken) => return Err(ConnectError::BadToken),
        Err(_) => return Ok(None),
    };
    let mut connection = operator_connection(io);
    let resume = OperatorMessage::Resume {
        request_id: request_id.to_string(),
    };
    Ok(connection
        .write_message(&resume)
        .await
        .ok()
        .map(|()| connection))
}

/// The framed connection of an operator's wait: a server that takes
/// nothing for the write deadline is given up (and dialed again, while a
/// request is pending), not waited on. The session that may follow lifts
/// the deadline: its bytes go at the pace of the remote program.
fn operator_connection(
    io: doorman_proto::dial::Upgraded,
) -> Connection<doorman_proto::dial::Upgraded> {
    let mut connection = Connection::new(io);
    connection.set_write_deadline(Some(DEFAULT_WRITE_DEADLINE));
    connection
}

/// Opens an operator connection; a token the server does not take is
/// [`ConnectError::BadToken`].
async fn dial_connect(
    dialer: &Dialer,
    auth: &HeaderValue,
) -> Result<doorman_proto::dial::Upgraded, ConnectError> {
    match dialer
        .dial(CONNECT_PATH, &[(AUTHORIZATION, auth.clone())])
        .await
    {
        Ok(io) => Ok(io),
        Err(DialError::Refused { status, .. }) if status == StatusCode::UNAUTHORIZED => {
            Err(ConnectError::BadToken)
        }
        Err(error) => Err(ConnectError::Server(error.to_string())),
    }
}

/// A session that broke off: the relay is raw bytes, so a session the server
/// cut because this token was replaced or removed looks like any lost
/// connection. One more dial with the token tells the two apart.
async fn why_session_ended(dialer: &Dialer, auth: &HeaderValue, message: String) -> ConnectError {
    match tokio::time::timeout(PROBE_TIMEOUT, dial_connect(dialer, auth)).await {
        Ok(Err(ConnectError::BadToken)) => ConnectError::TokenRevoked,
        Ok(Ok(mut io)) => {
            let _ = io.shutdown().await;
            ConnectError::SessionFailed(message)
        }
        Ok(Err(_)) | Err(_) => ConnectError::SessionFailed(message),
    }
}

/// How long the probe after a broken session may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// Ctrl-C while the server is out of reach: keeps trying to tell it for a
/// few seconds, so that the links say "cancelled" now rather than the
/// request waiting out its timeout.
async fn cancel_after_loss(dialer: &Dialer, auth: &HeaderValue, request_id: &str) {
    let tell = async {
        let mut pause = Duration::from_millis(100);
        loop {
            if let Ok(Some(mut connection)) = resume(dialer, auth, request_id).await
                && connection
                    .write_message(&OperatorMessage::Cancel)
                    .await
                    .is_ok()
            {
                // Until the server confirms, or says how the request ended.
                while let Ok(Some(message)) = connection.read_message::<ServerToOperator>().await {
                    if !matches!(
                        message,
                        ServerToOperator::Pending { .. }
                            | ServerToOperator::Delivery { .. }
                            | ServerToOperator::Ping
                            | ServerToOperator::Admitted
                    ) {
                        break;
                    }
                }
                return;
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_secs(1));
        }
    };
    let _ = tokio::time::timeout(CANCEL_CONFIRM_TIMEOUT, tell).await;
}

/// How long to wait for the server to confirm a cancellation.
const CANCEL_CONFIRM_TIMEOUT: Duration = Duration::from_secs(5);

/// Completes at `deadline`; never without one.
async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline.into()).await,
        None => std::future::pending().await,
    }
}

/// The server did not confirm the expiry within `grace` of the deadline;
/// whole seconds, rounded up, as the operator is told.
fn expiry_unconfirmed(progress: &mut Progress, grace: Duration) -> ConnectError {
    let grace_secs = grace.as_secs() + u64::from(grace.subsec_nanos() > 0);
    progress.expiry_unconfirmed(grace_secs);
    ConnectError::ExpiryUnconfirmed { grace_secs }
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
    validate_name(&request.computer)
        .map_err(|e| ConnectError::InvalidRequest(format!("computer name {e}")))?;
    validate_reason(&request.reason)
        .map_err(|e| ConnectError::InvalidRequest(format!("--reason {e}")))?;
    let service = match &request.session {
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
    };
    let listeners = match &request.session {
        SessionKind::Forward(specs) => forward::bind_all(specs).await?,
        _ => Vec::new(),
    };
    let dialer = Dialer::new(&request.server, request.ca.as_deref())
        .map_err(|e| ConnectError::Server(e.to_string()))?;
    let mut auth = HeaderValue::from_str(&format!("Bearer {}", request.token.expose()))
        .map_err(|_| ConnectError::BadToken)?;
    auth.set_sensitive(true);
    let mut connection = operator_connection(dial_connect(&dialer, &auth).await?);
    connection
        .write_message(&OperatorMessage::Connect {
            computer: request.computer.clone(),
            reason: request.reason.clone(),
            service,
        })
        .await
        .map_err(|e| ConnectError::Server(e.to_string()))?;

    let grace = request.expiry_grace;
    let mut interrupt = pin!(interrupt);
    let mut ticker = tokio::time::interval(Duration::from_secs(1));
    let mut phase = Phase::Asking;
    let mut last_heard = Instant::now();
    loop {
        let ticking = !matches!(phase, Phase::Asking);
        let cancelling = matches!(phase, Phase::Cancelling { .. });
        // Undecided past the deadline and the grace: the server has not
        // confirmed the expiry, and will not be waited on any longer.
        let give_up = match &phase {
            Phase::Waiting {
                deadline,
                decided: false,
                ..
            } => Some(*deadline + grace),
            _ => None,
        };
        let message = tokio::select! {
            message = connection.read_message::<ServerToOperator>() => message,
            () = sleep_until(give_up) => return Err(expiry_unconfirmed(progress, grace)),
            _ = ticker.tick(), if ticking => match &phase {
                Phase::Waiting { deadline, silence, .. } => {
                    progress.tick(deadline.saturating_duration_since(Instant::now()));
                    if silence.is_some_and(|silence| last_heard.elapsed() > silence) {
                        // As if the connection had closed: reconnect and resume.
                        Ok(None)
                    } else {
                        continue;
                    }
                }
                Phase::Cancelling { since, deadline } => {
                    progress.tick(deadline.saturating_duration_since(Instant::now()));
                    if since.elapsed() > CANCEL_CONFIRM_TIMEOUT {
                        progress.cancelled();
                        return Err(ConnectError::Cancelled);
                    }
                    continue;
                }
                Phase::Asking => continue,
            },
            () = &mut interrupt, if !cancelling => {
                let Phase::Waiting { deadline, .. } = &phase else {
                    return Err(ConnectError::Cancelled);
                };
                phase = Phase::Cancelling { since: Instant::now(), deadline: *deadline };
                // The server settles the cancellation and tells us; the links then say so.
                if connection.write_message(&OperatorMessage::Cancel).await.is_err() {
                    progress.cancelled();
                    return Err(ConnectError::Cancelled);
                }
                continue;
            }
        };
        let resumable = match &phase {
            Phase::Waiting {
                request_id,
                deadline,
                decided,
                ..
            } => Some((request_id.clone(), *deadline, *decided)),
            Phase::Asking | Phase::Cancelling { .. } => None,
        };
        let message = match (message, resumable) {
            (Ok(Some(message)), _) => message,
            (Ok(None), _) if cancelling => {
                progress.cancelled();
                return Err(ConnectError::Cancelled);
            }
            // The request lives on in the server's database: reconnect and
            // pick it up (a server restart, a network blip).
            (Ok(None) | Err(_), Some((request_id, deadline, decided))) => {
                progress.reconnecting();
                // Undecided, the server's word on the expiry is awaited
                // for the grace.
                let until = if decided { deadline } else { deadline + grace };
                let resumed =
                    reconnect(&dialer, &auth, &request_id, until, interrupt.as_mut()).await;
                last_heard = Instant::now();
                connection = match resumed {
                    Ok(Some(connection)) => connection,
                    Ok(None) if decided => {
                        return Err(ConnectError::Server(
                            "lost the server and could not reach it again before the request expired"
                                .into(),
                        ));
                    }
                    Ok(None) => return Err(expiry_unconfirmed(progress, grace)),
                    Err(ConnectError::Cancelled) => {
                        progress.cancelled();
                        return Err(ConnectError::Cancelled);
                    }
                    Err(error) => return Err(error),
                };
                continue;
            }
            (Ok(None), None) => {
                return Err(ConnectError::Server(
                    "the server closed the connection".into(),
                ));
            }
            (Err(error), None) => return Err(ConnectError::Server(error.to_string())),
        };
        last_heard = Instant::now();
        match message {
            ServerToOperator::Ping => {}
            ServerToOperator::Pending {
                request_id,
                expires_in,
                recipients,
                heartbeat_ms,
            } => {
                progress.pending(&request_id, expires_in, &recipients);
                let heartbeat = heartbeat_ms.map(Duration::from_millis);
                connection.set_write_deadline(Some(
                    heartbeat.map_or(DEFAULT_WRITE_DEADLINE, write_deadline),
                ));
                if !cancelling {
                    let mut deadline = Instant::now() + Duration::from_secs(expires_in);
                    // Picked up again after a reconnect: the deadline is
                    // the one first given (the server rounds up to whole
                    // seconds), so that the grace does not start over.
                    if let Phase::Waiting {
                        request_id: waited,
                        deadline: first,
                        ..
                    } = &phase
                        && *waited == request_id
                    {
                        deadline = deadline.min(*first);
                    }
                    phase = Phase::Waiting {
                        request_id,
                        deadline,
                        silence: heartbeat.map(silence_limit),
                        decided: false,
                    };
                }
                ticker.reset();
            }
            // No request to wait on: the session follows.
            ServerToOperator::Admitted => progress.admitted(),
            ServerToOperator::Delivery {
                recipient,
                state,
                detail,
            } => progress.delivery(&recipient, state, detail.as_deref()),
            ServerToOperator::Approval {
                approvals,
                required,
                by,
            } => progress.approval(approvals, required, &by),
            ServerToOperator::ApprovedEarlier {
                request_id,
                by,
                valid_for,
            } => progress.approved_earlier(&request_id, &by, valid_for),
            ServerToOperator::Allowed { by, at } => {
                // The pings stop with the decision; the session follows.
                if let Phase::Waiting {
                    silence, decided, ..
                } = &mut phase
                {
                    *silence = None;
                    *decided = true;
                }
                progress.allowed(&by, at);
            }
            ServerToOperator::Denied { by, at } => {
                progress.denied(&by, at);
                return Err(ConnectError::Denied { by });
            }
            ServerToOperator::Expired { at } => {
                progress.expired(at);
                return Err(ConnectError::Expired);
            }
            ServerToOperator::Cancelled { at } => {
                let _ = at;
                progress.cancelled();
                return Err(ConnectError::Cancelled);
            }
            ServerToOperator::Refused { reason, message } => {
                progress.clear_line();
                return Err(match reason {
                    Refusal::UnknownComputer => ConnectError::UnknownComputer(request.computer),
                    Refusal::ComputerWentOffline => ConnectError::WentOffline(message),
                    Refusal::TokenRevoked => ConnectError::TokenRevoked,
                    Refusal::ComputerOffline => ConnectError::Offline(request.computer),
                    Refusal::NotOffered => ConnectError::NotOffered(message),
                    Refusal::InvalidRequest => ConnectError::InvalidRequest(message),
                    Refusal::SessionFailed => ConnectError::SessionFailed(message),
                    Refusal::Limited => ConnectError::Limited(message),
                    Refusal::DeliveryFailed => ConnectError::Undeliverable(message),
                });
            }
            ServerToOperator::SessionStarted {
                request_id,
                time_limit_secs,
            } => {
                progress.session_started(time_limit_secs);
                if let SessionKind::Forward(_) = request.session {
                    let listening: Vec<String> = listeners
                        .iter()
                        .map(|(listener, target)| {
                            let local = listener
                                .local_addr()
                                .map(|a| a.to_string())
                                .unwrap_or_default();
                            format!("{local} -> {target}")
                        })
                        .collect();
                    progress.forwarding(&listening);
                }
                let started = Instant::now();
                let probe = (dialer.clone(), auth.clone());
                connection.set_write_deadline(None);
                let session = async move {
                    match request.session {
                        SessionKind::Forward(_) => {
                            session::run_forward(
                                connection, listeners, dialer, auth, request_id, terminal,
                                interrupt,
                            )
                            .await
                        }
                        SessionKind::Shell { .. } => {
                            session::run_stream(connection, terminal, interrupt, true).await
                        }
                        SessionKind::Command(_) => {
                            session::run_stream(connection, terminal, interrupt, false).await
                        }
                    }
                };
                tokio::pin!(session);
                // Warned a minute before the computer's time limit (at once
                // when the limit is shorter).
                let limit = time_limit_secs.map(Duration::from_secs);
                let warn_at = limit.map(|limit| started + limit.saturating_sub(TIME_LIMIT_WARNING));
                let mut warned = false;
                let status = loop {
                    tokio::select! {
                        status = &mut session => break status,
                        _ = tokio::time::sleep_until(warn_at.unwrap_or(started).into()), if warn_at.is_some() && !warned => {
                            warned = true;
                            let left = limit.unwrap_or_default().saturating_sub(started.elapsed());
                            progress.time_warning(left);
                        }
                    }
                };
                // Cut off by the time limit rather than by a failure.
                let status = match (status, limit) {
                    (Err(ConnectError::SessionFailed(_)), Some(limit))
                        if started.elapsed() + Duration::from_secs(1) >= limit =>
                    {
                        Err(ConnectError::TimeLimit(limit.as_secs()))
                    }
                    (Err(ConnectError::SessionFailed(message)), _) => {
                        Err(why_session_ended(&probe.0, &probe.1, message).await)
                    }
                    (status, _) => status,
                };
                if let Ok(code) = &status {
                    progress.session_ended(*code);
                }
                return status;
            }
        }
    }
}
