//! Running an agreed session: open the session connection to the server and
//! run what was approved — a command with its output streamed back, a login
//! shell in a pseudo-terminal, or a forward session whose tunnels each get a
//! connection of their own. How it ended travels on that connection (the
//! program's exit status, or why it could not run); only a connection that
//! could not be opened is reported on the control connection.

use crate::dialing::SharedDialer;
use crate::error::{LinkError, SessionError};
use crate::notify::{self, Event, Visitor};
use doorman_core::AgentSettings;
use doorman_e2e::tunnel::TunnelSecret;
use doorman_e2e::{ComputerReply, Identity, OperatorHello, SessionKeys};
use doorman_wire::SESSION_PATH_PREFIX;
use doorman_wire::connection::Connection;
use doorman_wire::dial::Upgraded;
use doorman_wire::message::AgentToServer;
use doorman_wire::message::{Service, SessionEnd};
use std::collections::HashMap;
use std::sync::Arc;
use tokio::sync::mpsc;

/// What every session shares with the rest of the agent.
#[derive(Clone)]
pub struct Shared {
    /// The forward sessions in progress, and the targets each may reach.
    pub grants: ForwardGrants,
    /// The way to the server, its TLS configuration built once.
    pub dialer: SharedDialer,
    /// The computer's end-to-end identity, which signs each sealed
    /// session's keys.
    pub identity: Arc<Identity>,
}

/// A session this computer allows: the request, who asked, for what, its
/// time limit in seconds (0: none), and the operator's end-to-end hello
/// when the session is to be sealed (none from the web console).
pub struct Allowed {
    pub request_id: String,
    pub visitor: Visitor,
    pub service: Service,
    pub limit: u32,
    pub hello: Option<OperatorHello>,
}

/// Starts the session in its own task; it ends after `limit` seconds
/// (0: no limit) whatever the operator does, its program killed. The server
/// ends the session at the limit, and tells the operator; the agent's own
/// cut, a moment later, holds even if the server does not. How the session
/// ended travels on its own connection (the program's exit status); the
/// server hears on `to_server` only of a session whose connection could not
/// be opened.
pub fn spawn(
    settings: Arc<AgentSettings>,
    allowed: Allowed,
    shared: Shared,
    to_server: mpsc::UnboundedSender<AgentToServer>,
) {
    tokio::spawn(async move {
        let Shared {
            grants,
            dialer,
            identity,
        } = shared;
        let Allowed {
            request_id,
            visitor,
            service,
            limit,
            hello,
        } = allowed;
        // The session's keys, when the operator sealed it: its tunnels
        // need them from the start.
        let handshake = hello
            .as_ref()
            .map(|hello| {
                // What the computer runs, as the operator's ask said it:
                // the computer signs it, and `connect` checks it.
                let service = serde_json::to_vec(&service).unwrap_or_default();
                doorman_e2e::handshake::respond(&identity, &request_id, &service, hello)
            })
            .transpose();
        let handshake = match handshake {
            Ok(handshake) => handshake,
            Err(error) => {
                failed(&request_id, &SessionError::NotStarted(error.to_string()));
                return;
            }
        };
        // A forward session's tunnels are allowed before its session connection
        // opens: the operator may open one as soon as the server says the
        // session started, which it says once that connection arrives.
        let _grant = match &service {
            Service::Forward { targets } => {
                let tunnels = handshake.as_ref().map(|(_, keys)| keys.tunnels.clone());
                Some(ForwardGrant::insert(
                    grants,
                    &request_id,
                    targets.clone(),
                    tunnels,
                ))
            }
            Service::Command { .. }
            | Service::Shell { .. }
            | Service::Desktop
            | Service::Files(_) => None,
        };
        let end = match dial_session_patiently(&dialer, &settings, &request_id).await {
            Ok(io) => match seal(Connection::new(io), handshake).await {
                Ok(connection) => {
                    let session = (service, connection);
                    run_limited(&settings, &request_id, &visitor, session, limit).await
                }
                Err(error) => failed(&request_id, &error),
            },
            Err(error) => {
                let end = failed(&request_id, &SessionError::from(error));
                // The server's waiting operator hears it at once.
                let _ = to_server.send(AgentToServer::SessionEnded {
                    session_id: request_id,
                    end: end.clone(),
                });
                end
            }
        };
        notify::show(
            settings.notify_command.as_deref(),
            &visitor,
            &Event::SessionEnded {
                status: end.to_string(),
            },
        );
    });
}

/// Sends the reply to the operator's hello as the session connection's
/// first frame and seals the connection with the keys agreed; a session
/// without a hello (the web console's) stays plain.
async fn seal(
    mut connection: Connection<Upgraded>,
    handshake: Option<(ComputerReply, SessionKeys)>,
) -> Result<Connection<Upgraded>, SessionError> {
    let Some((reply, keys)) = handshake else {
        return Ok(connection);
    };
    connection.write_message(&reply).await?;
    connection.seal(keys.sealer, keys.opener);
    Ok(connection)
}

/// Runs the session on its connection, for `limit` seconds at most (0:
/// no limit), and says how it ended.
async fn run_limited(
    settings: &AgentSettings,
    request_id: &str,
    visitor: &Visitor,
    (service, connection): (Service, Connection<Upgraded>),
    limit: u32,
) -> SessionEnd {
    let session = run(settings, visitor, service, connection);
    let ran = if limit > 0 {
        let limit = std::time::Duration::from_secs(u64::from(limit) + 2);
        tokio::time::timeout(limit, session)
            .await
            .unwrap_or(Ok(SessionEnd::TimeLimit))
    } else {
        session.await
    };
    ran.unwrap_or_else(|error| failed(request_id, &error))
}

/// A session that failed, logged.
fn failed(request_id: &str, error: &SessionError) -> SessionEnd {
    tracing::warn!(request = %request_id, %error, "session failed");
    SessionEnd::Failed {
        message: error.to_string(),
    }
}

/// Opens `/v1/session/<id>` on the server as this agent.
async fn dial_session(
    dialer: &SharedDialer,
    settings: &AgentSettings,
    id: &str,
) -> Result<doorman_wire::dial::Upgraded, LinkError> {
    dialer
        .dial(settings, &format!("{SESSION_PATH_PREFIX}{id}"))
        .await
}

/// Forward sessions in progress, by request id.
pub type ForwardGrants = Arc<std::sync::Mutex<HashMap<String, Grant>>>;

/// What a forward session's tunnels may do: reach the targets its
/// approval covers, sealed with its tunnel secret when it is sealed.
pub struct Grant {
    pub targets: Vec<String>,
    pub tunnels: Option<TunnelSecret>,
}

/// The tunnels a forward session may open, for as long as it lives: the
/// entry goes with the guard, also when a time limit drops the session.
struct ForwardGrant {
    grants: ForwardGrants,
    request_id: String,
}

impl ForwardGrant {
    fn insert(
        grants: ForwardGrants,
        request_id: &str,
        targets: Vec<String>,
        tunnels: Option<TunnelSecret>,
    ) -> Self {
        if let Ok(mut map) = grants.lock() {
            map.insert(request_id.to_string(), Grant { targets, tunnels });
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
    dialer: &SharedDialer,
    settings: &AgentSettings,
    id: &str,
) -> Result<doorman_wire::dial::Upgraded, LinkError> {
    let deadline = tokio::time::Instant::now() + SESSION_DIAL_PATIENCE;
    loop {
        match dial_session(dialer, settings, id).await {
            Ok(io) => return Ok(io),
            Err(error) if tokio::time::Instant::now() >= deadline => return Err(error),
            Err(_) => tokio::time::sleep(std::time::Duration::from_millis(250)).await,
        }
    }
}

/// Runs what was approved on the session connection.
async fn run(
    settings: &AgentSettings,
    visitor: &Visitor,
    service: Service,
    connection: Connection<Upgraded>,
) -> Result<SessionEnd, SessionError> {
    let sealed = connection.is_sealed();
    notify::show(
        settings.notify_command.as_deref(),
        visitor,
        &Event::SessionStarted,
    );
    match service {
        Service::Command { argv } => crate::command::run(connection, argv).await,
        Service::Shell { term, rows, cols } => {
            // Only the computer sees a sealed session's screen: it records
            // it, if its owner named whom to seal recordings to.
            let recordings_to = if sealed {
                settings.recordings_to.as_slice()
            } else {
                &[]
            };
            crate::shell::run(connection, term, rows, cols, recordings_to).await
        }
        Service::Desktop => {
            // The offer was checked against these same settings; this only
            // keeps a missing desktop from being a panic.
            let Some(target) = settings.services.desktop.clone() else {
                let (_, mut writer) = connection.split();
                let message = "the desktop is not offered on this computer".to_string();
                crate::command::report_start_failure(&mut writer, message.clone()).await;
                return Err(SessionError::NotStarted(message));
            };
            crate::desktop::run(connection, target).await
        }
        Service::Files(job) => doorman_files::run(connection, job, &settings.services.files)
            .await
            .map_err(SessionError::from),
        Service::Forward { .. } => {
            // The session lasts as long as the operator's connection.
            let mut connection = connection;
            while let Ok(Some(_)) = connection.read_frame().await {}
            Ok(SessionEnd::ForwardingStopped)
        }
    }
}

/// One forwarded connection the server asked for: its id, its target, and
/// its session's tunnel secret when the session is sealed end to end.
pub struct Tunnel {
    pub id: String,
    pub target: String,
    pub secret: Option<TunnelSecret>,
}

/// Carries one forwarded connection: connects to its target, opens the
/// tunnel's session connection, and relays bytes both ways until both
/// sides are done; sealed end to end when its session is.
pub fn spawn_tunnel(
    settings: AgentSettings,
    dialer: SharedDialer,
    tunnel: Tunnel,
    outgoing: mpsc::Sender<AgentToServer>,
) {
    let Tunnel {
        id: tunnel_id,
        target,
        secret,
    } = tunnel;
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
        let path = format!("{SESSION_PATH_PREFIX}{tunnel_id}");
        // A sealed tunnel is not the server's to hand over.
        let handover = secret.is_none();
        let (tunnel, taken_over) = match dialer.dial_tunnel(&settings, &path, handover).await {
            Ok(dialed) => dialed,
            Err(error) => {
                tracing::warn!(%target, %error, "cannot open a tunnel");
                return;
            }
        };
        let relayed = match secret {
            Some(secret) => relay_sealed(tunnel, (&secret, &target), stream).await,
            None if taken_over => doorman_relay::relay_taken_over(tunnel, stream).await,
            None => doorman_relay::relay_dialed(tunnel, stream).await,
        };
        if let Err(error) = relayed {
            tracing::debug!(%target, %error, "a forwarded connection failed");
        }
    });
}

/// A tunnel sealed end to end: out of TLS once the server switches it,
/// then the computer's end of its records.
async fn relay_sealed(
    tunnel: Upgraded,
    secret: (&TunnelSecret, &str),
    local: tokio::net::TcpStream,
) -> std::io::Result<(u64, u64)> {
    use doorman_relay::end_to_end::{End, relay_sealed, switched};
    let socket = switched(tunnel).await?;
    relay_sealed(socket, End::Computer, secret, local).await
}
