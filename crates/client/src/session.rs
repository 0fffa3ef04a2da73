//! The operator's side of a session: the remote program's output to our
//! stdout and stderr, our stdin to it, and its exit status back; or a
//! forward session's local listeners. A session ends with the program's
//! exit status, or with the server's word on why it ended
//! ([`SessionMessage::Ended`]), which is what the operator is told.

use crate::known::{KnownComputers, Recognition};
use crate::server::Server;
use crate::wait::Started;
use crate::{ConnectError, Progress, SessionKind, Terminal};
use bytes::Bytes;
use doorman_e2e::tunnel::TunnelSecret;
use doorman_e2e::{ComputerReply, Initiator};
use doorman_wire::connection::{Connection, ConnectionError, FrameWriter, decode_message};
use doorman_wire::dial::Upgraded;
use doorman_wire::frame::{Frame, MAX_PAYLOAD_LEN};
use doorman_wire::message::SessionMessage;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, WriteHalf};
use tokio::net::TcpListener;

/// How long the computer has to answer the key exchange once the session
/// started.
const REPLY_TIMEOUT: Duration = Duration::from_secs(60);

/// How long before a session's time limit the operator is warned.
const TIME_LIMIT_WARNING: Duration = Duration::from_secs(60);

/// What the operator is told of a session connection that closed without
/// the program's exit status or the server's word.
const CLOSED: &str = "the connection to the server closed before the session ended";

/// What seals a session end to end: `connect`'s half of the key exchange,
/// and what the computer's proven identity is checked against.
pub(crate) struct Sealing<'a> {
    pub(crate) initiator: Initiator,
    /// What the operator asked the computer to run, as the ask said it.
    pub(crate) service: Vec<u8>,
    pub(crate) computer: &'a str,
    pub(crate) known: &'a KnownComputers,
}

/// Runs the session the server started to its end; returns the remote
/// program's exit status (0 for a forward session stopped by `interrupt`).
pub(crate) async fn run(
    started: Started,
    kind: SessionKind,
    listeners: Vec<(TcpListener, String)>,
    server: Server,
    terminal: Terminal,
    progress: &mut Progress,
    interrupt: Pin<&mut impl Future<Output = ()>>,
) -> Result<i32, ConnectError> {
    let Started {
        mut connection,
        request_id,
        time_limit_secs,
        tunnels,
    } = started;
    progress.session_started(time_limit_secs);
    if let SessionKind::Forward(_) = kind {
        progress.forwarding(&listening(&listeners));
    }
    // The session's bytes go at the pace of the remote program.
    connection.set_write_deadline(None);
    let status = match kind {
        // A copy shows its own progress.
        SessionKind::Copy(plan) => crate::copy::run(connection, plan, progress, interrupt).await,
        SessionKind::Forward(_) => {
            let Server { dialer, auth } = server;
            let forwarding = Forwarding {
                listeners,
                dialer,
                auth,
                session: request_id,
                tunnels,
            };
            let session = run_forward(connection, forwarding, terminal, interrupt);
            warned_of_the_time_limit(session, time_limit_secs, progress).await
        }
        SessionKind::Shell { .. } | SessionKind::Command(_) => {
            let shell = matches!(kind, SessionKind::Shell { .. });
            let session = run_stream(connection, terminal, interrupt, shell);
            warned_of_the_time_limit(session, time_limit_secs, progress).await
        }
    };
    match &status {
        Ok(code) => progress.session_ended(*code),
        Err(error @ ConnectError::Ended { cause, message }) => {
            progress.session_cut(*cause, message, error.exit_code());
        }
        Err(_) => {}
    }
    status
}

/// Reads the computer's reply to the hello sent with the ask, checks the
/// identity it proves against the one remembered (remembering it on first
/// use), and seals the connection with the keys agreed. Returns the secret
/// of the session's tunnels.
pub(crate) async fn seal(
    connection: &mut Connection<Upgraded>,
    request_id: &str,
    sealing: Sealing<'_>,
    progress: &mut Progress,
) -> Result<TunnelSecret, ConnectError> {
    let Sealing {
        initiator,
        service,
        computer,
        known,
    } = sealing;
    let unproven = |problem: String| ConnectError::IdentityUnproven {
        computer: computer.to_string(),
        problem,
    };
    let first = tokio::time::timeout(REPLY_TIMEOUT, connection.read_frame())
        .await
        .map_err(|_| {
            ConnectError::SessionFailed(format!(
                "{computer} did not answer the end-to-end key exchange within {} s",
                REPLY_TIMEOUT.as_secs()
            ))
        })?;
    let reply = match first {
        Ok(Some(Frame::Message(payload))) => {
            if let Ok(SessionMessage::Ended { cause, message }) = decode_message(&payload) {
                return Err(ConnectError::ended(cause, &message));
            }
            decode_message::<ComputerReply>(&payload)
                .map_err(|_| unproven("its first word was not an end-to-end reply".into()))?
        }
        Ok(Some(_)) => {
            return Err(unproven(
                "its first word was not an end-to-end reply".into(),
            ));
        }
        Ok(None) | Err(_) => return Err(ConnectError::SessionFailed(CLOSED.into())),
    };
    let (identity, keys) = initiator
        .finish(request_id, &service, &reply)
        .map_err(|error| unproven(error.to_string()))?;
    let fingerprint = identity.fingerprint().to_string();
    let file = known.path();
    match known.recognise(computer, &identity) {
        Ok(Recognition::Known) => progress.identity(computer, &fingerprint, true, file),
        Ok(Recognition::Changed { known }) => {
            return Err(ConnectError::IdentityChanged {
                computer: computer.to_string(),
                presented: fingerprint,
                known: known.fingerprint().to_string(),
                file: file.display().to_string(),
            });
        }
        Ok(Recognition::New) => match known.remember(computer, &identity) {
            Ok(()) => progress.identity(computer, &fingerprint, false, file),
            Err(error) => progress.identity_not_remembered(&format!(
                "{computer}'s identity {fingerprint} was not remembered: {error}"
            )),
        },
        // A file that cannot be read cannot vouch for the computer.
        Err(error) => return Err(unproven(error.to_string())),
    }
    connection.seal(keys.sealer, keys.opener);
    Ok(keys.tunnels)
}

/// Each listener as `local -> target`.
fn listening(listeners: &[(TcpListener, String)]) -> Vec<String> {
    listeners
        .iter()
        .map(|(listener, target)| {
            let local = listener
                .local_addr()
                .map(|a| a.to_string())
                .unwrap_or_default();
            format!("{local} -> {target}")
        })
        .collect()
}

/// Awaits `session`, warning the operator a minute before the computer's
/// time limit of `time_limit_secs` (at once when the limit is shorter).
/// The server ends the session at the limit, and says so.
async fn warned_of_the_time_limit<T>(
    session: impl Future<Output = T>,
    time_limit_secs: Option<u64>,
    progress: &mut Progress,
) -> T {
    let started = Instant::now();
    let Some(limit) = time_limit_secs.map(Duration::from_secs) else {
        return session.await;
    };
    let warn_at = started + limit.saturating_sub(TIME_LIMIT_WARNING);
    tokio::pin!(session);
    tokio::select! {
        ended = &mut session => return ended,
        () = tokio::time::sleep_until(warn_at.into()) => {
            progress.time_warning(limit.saturating_sub(started.elapsed()));
        }
    }
    session.await
}

/// Runs a command or shell session until the remote program exits; returns
/// its status. `shell` puts the local terminal in raw mode (when it is one)
/// and sends window-size changes.
async fn run_stream(
    connection: Connection<Upgraded>,
    terminal: Terminal,
    interrupt: Pin<&mut impl Future<Output = ()>>,
    shell: bool,
) -> Result<i32, ConnectError> {
    let Terminal {
        stdin,
        mut stdout,
        mut stderr,
        is_tty,
    } = terminal;
    let raw = if shell && is_tty {
        Some(crate::tty::RawMode::enable().map_err(|e| {
            ConnectError::SessionFailed(format!("cannot put the terminal in raw mode: {e}"))
        })?)
    } else {
        None
    };
    let (mut reader, writer) = connection.split();
    let writer = Arc::new(tokio::sync::Mutex::new(writer));
    let input = tokio::spawn(forward_input(stdin, writer.clone()));
    let resize = (shell && is_tty).then(|| tokio::spawn(forward_resizes(writer.clone())));
    let mut interrupt = interrupt;
    let result = loop {
        let frame = tokio::select! {
            frame = reader.read_frame() => frame,
            () = &mut interrupt => break Err(ConnectError::Cancelled),
        };
        match frame {
            Ok(Some(Frame::Stdout(data))) => write_out(&mut stdout, &data).await,
            Ok(Some(Frame::Stderr(data))) => write_out(&mut stderr, &data).await,
            Ok(Some(Frame::Message(payload))) => match decode_message::<SessionMessage>(&payload) {
                Ok(SessionMessage::Exit { code, signal }) => {
                    break Ok(code.unwrap_or_else(|| 128 + signal.unwrap_or(0)));
                }
                Ok(SessionMessage::Error { message }) => {
                    write_out(&mut stderr, format!("doorman: {message}\n").as_bytes()).await;
                }
                Ok(SessionMessage::Ended { cause, message }) => {
                    break Err(ConnectError::ended(cause, &message));
                }
                Ok(
                    SessionMessage::StdinEof
                    | SessionMessage::Resize { .. }
                    | SessionMessage::Copied { .. }
                    | SessionMessage::Recorded { .. },
                ) => {}
                Err(error) => break Err(ConnectError::SessionFailed(error.to_string())),
            },
            Ok(Some(Frame::Stdin(_) | Frame::Sealed(_) | Frame::Recording(_))) => {}
            // Without the server's word (which says when the computer's side
            // ended first): the server, or the way to it, is gone.
            Ok(None) | Err(ConnectionError::Io(_) | ConnectionError::Truncated) => {
                break Err(ConnectError::SessionFailed(CLOSED.into()));
            }
            Err(error) => break Err(ConnectError::SessionFailed(error.to_string())),
        }
    };
    input.abort();
    if let Some(resize) = resize {
        resize.abort();
    }
    let _ = stdout.flush().await;
    let _ = stderr.flush().await;
    drop(raw);
    result
}

/// What a forward session carries: local listeners, each to its target,
/// whose connections go through tunnels of session `session`.
struct Forwarding {
    listeners: Vec<(TcpListener, String)>,
    dialer: doorman_wire::Dialer,
    auth: hyper::header::HeaderValue,
    session: String,
    /// The session's tunnel secret, when it is sealed end to end.
    tunnels: Option<TunnelSecret>,
}

/// Runs a forward session until interrupted (status 0) or until the server
/// ends it, and says why.
async fn run_forward(
    connection: Connection<Upgraded>,
    forwarding: Forwarding,
    terminal: Terminal,
    interrupt: Pin<&mut impl Future<Output = ()>>,
) -> Result<i32, ConnectError> {
    let Terminal { mut stderr, .. } = terminal;
    let Forwarding {
        listeners,
        dialer,
        auth,
        session,
        tunnels,
    } = forwarding;
    let (errors, mut failures) = tokio::sync::mpsc::unbounded_channel();
    let acceptors = crate::forward::serve(listeners, dialer, auth, session, tunnels, errors);
    // The session connection carries nothing but its end; it stays open
    // (both halves) as long as the session does.
    let (mut reader, _writer) = connection.split();
    let mut interrupt = interrupt;
    let result = loop {
        tokio::select! {
            () = &mut interrupt => break Ok(0),
            Some(message) = failures.recv() => {
                write_out(&mut stderr, format!("doorman: {message}\n").as_bytes()).await;
            }
            frame = reader.read_frame() => match frame {
                Ok(Some(Frame::Message(payload))) => {
                    if let Ok(SessionMessage::Ended { cause, message }) = decode_message(&payload) {
                        break Err(ConnectError::ended(cause, &message));
                    }
                }
                Ok(Some(_)) => {}
                Ok(None) | Err(_) => break Err(ConnectError::SessionFailed(CLOSED.into())),
            },
        }
    };
    for acceptor in acceptors {
        acceptor.abort();
    }
    result
}

async fn write_out(out: &mut (dyn AsyncWrite + Send + Unpin), data: &[u8]) {
    // A closed stdout (e.g. `| head`) must not stop the session.
    if out.write_all(data).await.is_ok() {
        let _ = out.flush().await;
    }
}

type SharedWriter = Arc<tokio::sync::Mutex<FrameWriter<WriteHalf<Upgraded>>>>;

/// Sends the terminal's size whenever it changes (SIGWINCH).
async fn forward_resizes(writer: SharedWriter) {
    let Ok(mut changes) =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::window_change())
    else {
        return;
    };
    while changes.recv().await.is_some() {
        let (rows, cols) = crate::tty::size();
        if writer
            .lock()
            .await
            .write_message(&SessionMessage::Resize { rows, cols })
            .await
            .is_err()
        {
            return;
        }
    }
}

async fn forward_input(mut stdin: Box<dyn AsyncRead + Send + Unpin>, writer: SharedWriter) {
    let mut buffer = vec![0u8; 32 * 1024.min(MAX_PAYLOAD_LEN)];
    loop {
        match stdin.read(&mut buffer).await {
            Ok(0) | Err(_) => {
                let _ = writer
                    .lock()
                    .await
                    .write_message(&SessionMessage::StdinEof)
                    .await;
                return;
            }
            Ok(n) => {
                let frame = Frame::Stdin(Bytes::copy_from_slice(&buffer[..n]));
                if writer.lock().await.write_frame(&frame).await.is_err() {
                    return;
                }
            }
        }
    }
}
