//! Running an agreed session: open the session connection to the server and
//! run what was approved — a command with its output streamed back, a login
//! shell in a pseudo-terminal, or a forward session whose tunnels each get a
//! connection of their own — then report how it ended.

use crate::link::{ForwardGrants, agent_headers};
use crate::notify::{self, Event, Visitor};
use crate::settings_file;
use bytes::Bytes;
use doorman_proto::connection::{Connection, FrameWriter, decode_message};
use doorman_proto::frame::Frame;
use doorman_proto::message::AgentToServer;
use doorman_proto::message::{Service, SessionMessage};
use doorman_proto::{Dialer, SESSION_PATH_PREFIX};
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::process::Command;
use tokio::sync::Mutex;
use tokio::sync::mpsc;

type SharedWriter<W> = Arc<Mutex<FrameWriter<W>>>;

/// Starts the session in its own task; it ends after `limit` seconds
/// (0: no limit) whatever the operator does, its program killed. The server
/// cuts the session at the limit and records it; the agent's own cut, a
/// moment later, holds even if the server does not.
pub fn spawn(
    config: PathBuf,
    request_id: String,
    visitor: Visitor,
    service: Service,
    grants: ForwardGrants,
    limit: u32,
) {
    tokio::spawn(async move {
        let session = run(&config, &request_id, &visitor, service, grants);
        let ran = if limit > 0 {
            let limit = std::time::Duration::from_secs(u64::from(limit) + 2);
            tokio::time::timeout(limit, session)
                .await
                .unwrap_or_else(|_| Ok("ended: time limit".into()))
        } else {
            session.await
        };
        let status = match ran {
            Ok(status) => status,
            Err(error) => {
                tracing::warn!(request = %request_id, %error, "session failed");
                format!("failed: {error}")
            }
        };
        let command = crate::link::notify_command(&config);
        notify::show(
            command.as_deref(),
            &visitor,
            &Event::SessionEnded { status },
        );
    });
}

/// Opens `/v1/session/<id>` on the server as this agent.
async fn dial_session(
    config: &std::path::Path,
    id: &str,
) -> Result<doorman_proto::dial::Upgraded, String> {
    let settings = settings_file::load(config).map_err(|e| e.to_string())?;
    let dialer =
        Dialer::new(&settings.server, settings.ca.as_deref()).map_err(|e| e.to_string())?;
    let headers = agent_headers(&settings)?;
    dialer
        .dial(&format!("{SESSION_PATH_PREFIX}{id}"), &headers)
        .await
        .map_err(|e| e.to_string())
}

/// The tunnels a forward session may open, for as long as it lives: the
/// entry goes with the guard, also when a time limit drops the session.
struct ForwardGrant {
    grants: ForwardGrants,
    request_id: String,
}

impl ForwardGrant {
    fn insert(grants: ForwardGrants, request_id: &str, targets: Vec<String>) -> Self {
        if let Ok(mut map) = grants.lock() {
            map.insert(request_id.to_string(), targets);
        }
        Self {
            grants,
            request_id: request_id.to_string(),
        }
    }
}

impl Drop for ForwardGrant {
    fn drop(&mut self) {
        if let Ok(mut map) = self.grants.lock() {
            map.remove(&self.request_id);
        }
    }
}

/// How long the agent keeps trying to open an allowed session: the operator
/// may still be reconnecting (after a server restart) when the Allow lands.
const SESSION_DIAL_PATIENCE: std::time::Duration = std::time::Duration::from_secs(20);

/// Opens the session connection, retrying while nobody waits for it yet or
/// the server is unreachable.
async fn dial_session_patiently(
    config: &std::path::Path,
    id: &str,
) -> Result<doorman_proto::dial::Upgraded, String> {
    let deadline = tokio::time::Instant::now() + SESSION_DIAL_PATIENCE;
    loop {
        match dial_session(config, id).await {
            Ok(io) => return Ok(io),
            Err(error) if tokio::time::Instant::now() >= deadline => return Err(error),
            Err(_) => tokio::time::sleep(std::time::Duration::from_millis(250)).await,
        }
    }
}

async fn run(
    config: &std::path::Path,
    request_id: &str,
    visitor: &Visitor,
    service: Service,
    grants: ForwardGrants,
) -> Result<String, String> {
    let io = dial_session_patiently(config, request_id).await?;
    let command = crate::link::notify_command(config);
    notify::show(command.as_deref(), visitor, &Event::SessionStarted);
    match service {
        Service::Command { argv } => run_command(Connection::new(io), argv).await,
        Service::Shell { term, rows, cols } => {
            crate::shell::run(Connection::new(io), term, rows, cols).await
        }
        Service::Forward { targets } => {
            let _grant = ForwardGrant::insert(grants, request_id, targets);
            // The session lasts as long as the operator's connection.
            let mut io = io;
            let mut sink = [0u8; 1024];
            while let Ok(n) = io.read(&mut sink).await {
                if n == 0 {
                    break;
                }
            }
            Ok("forwarding ended".into())
        }
    }
}

/// Carries one forwarded connection: connects to `target`, opens the tunnel's
/// session connection, and relays bytes both ways until both sides are done.
pub fn spawn_tunnel(
    config: PathBuf,
    tunnel_id: String,
    target: String,
    outgoing: mpsc::Sender<AgentToServer>,
) {
    tokio::spawn(async move {
        let stream = match tokio::net::TcpStream::connect(&target).await {
            Ok(stream) => stream,
            Err(error) => {
                tracing::warn!(%target, %error, "cannot connect a forwarded connection");
                let _ = outgoing
                    .send(AgentToServer::TunnelRefused {
                        tunnel_id,
                        message: format!("cannot connect to {target}: {error}"),
                    })
                    .await;
                return;
            }
        };
        let _ = stream.set_nodelay(true);
        let tunnel = match dial_session(&config, &tunnel_id).await {
            Ok(io) => io,
            Err(error) => {
                tracing::warn!(%target, %error, "cannot open a tunnel");
                return;
            }
        };
        let _ = doorman_proto::relay::relay_dialed(tunnel, stream).await;
    });
}

async fn run_command<T>(connection: Connection<T>, argv: Vec<String>) -> Result<String, String>
where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut reader, writer) = connection.split();
    let writer: SharedWriter<_> = Arc::new(Mutex::new(writer));
    let mut command = Command::new(&argv[0]);
    command
        .args(&argv[1..])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    if let Some(home) = std::env::var_os("HOME") {
        command.current_dir(home);
    }
    let mut child = match command.spawn() {
        Ok(child) => child,
        Err(error) => {
            let message = format!("cannot run {:?}: {error}", argv[0]);
            return Err(report_start_failure(&mut *writer.lock().await, message).await);
        }
    };
    let stdout = child
        .stdout
        .take()
        .map(|out| tokio::spawn(pump(out, writer.clone(), Frame::Stdout)));
    let stderr = child
        .stderr
        .take()
        .map(|err| tokio::spawn(pump(err, writer.clone(), Frame::Stderr)));
    let mut stdin = child.stdin.take();

    // Feed the operator's input until it ends; a closed connection means the
    // operator is gone, and the program is stopped.
    let exit = loop {
        tokio::select! {
            frame = reader.read_frame() => match frame {
                Ok(Some(Frame::Stdin(data))) => {
                    if let Some(input) = stdin.as_mut()
                        && input.write_all(&data).await.is_err()
                    {
                        stdin = None;
                    }
                }
                Ok(Some(Frame::Message(payload))) => {
                    if let Ok(SessionMessage::StdinEof) = decode_message(&payload) {
                        stdin = None;
                    }
                }
                Ok(Some(_)) => {}
                Ok(None) | Err(_) => {
                    let _ = child.start_kill();
                    let _ = child.wait().await;
                    return Ok("operator disconnected".into());
                }
            },
            status = child.wait() => break status.map_err(|e| e.to_string())?,
        }
    };
    drop(stdin);
    // All output is sent before the exit status.
    for pump in [stdout, stderr].into_iter().flatten() {
        let _ = pump.await;
    }
    #[cfg(unix)]
    let signal = std::os::unix::process::ExitStatusExt::signal(&exit);
    #[cfg(not(unix))]
    let signal = None;
    let mut writer = writer.lock().await;
    writer
        .write_message(&SessionMessage::Exit {
            code: exit.code(),
            signal,
        })
        .await
        .map_err(|e| e.to_string())?;
    let _ = writer.shutdown().await;
    Ok(format!("{exit}"))
}

/// Tells the operator the program could not start (status 127, as a shell
/// would say) and returns the message.
pub async fn report_start_failure<W: AsyncWrite + Unpin>(
    writer: &mut FrameWriter<W>,
    message: String,
) -> String {
    let _ = writer
        .write_message(&SessionMessage::Error {
            message: message.clone(),
        })
        .await;
    let _ = writer
        .write_message(&SessionMessage::Exit {
            code: Some(127),
            signal: None,
        })
        .await;
    let _ = writer.shutdown().await;
    message
}

async fn pump<R, W>(mut source: R, writer: SharedWriter<W>, frame: fn(Bytes) -> Frame)
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut buffer = vec![0u8; 32 * 1024];
    loop {
        match source.read(&mut buffer).await {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                let data = Bytes::copy_from_slice(&buffer[..n]);
                if writer.lock().await.write_frame(&frame(data)).await.is_err() {
                    return;
                }
            }
        }
    }
}
