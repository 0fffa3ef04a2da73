//! One control connection, from the server's welcome to its end: the loop
//! that reads the server's messages, watches for its silence and writes
//! what the agent's tasks queue, and one handler per message kind.

use super::{Acting, tunnel};
use crate::error::LinkError;
use crate::memory::Memory;
use crate::notify::Visitor;
use crate::session;
use crate::settings_file;
use doorman_core::Outcome;
use doorman_core::passkey::Assertion;
use doorman_e2e::OperatorHello;
use doorman_wire::connection::{FrameReader, FrameWriter};
use doorman_wire::dial::Upgraded;
use doorman_wire::message::{
    AgentToServer, ComputerStatus, DEFAULT_WRITE_DEADLINE, ServerToAgent, Service, silence_limit,
    write_deadline,
};
use std::path::Path;
use std::time::Duration;
use tokio::io::{ReadHalf, WriteHalf};
use tokio::sync::mpsc;

type Reader = FrameReader<ReadHalf<Upgraded>>;
type Writer = FrameWriter<WriteHalf<Upgraded>>;

/// What the server's welcome says it does.
pub(super) struct Welcome {
    /// How often it pings, if it does.
    pub(super) heartbeat: Option<Duration>,
    /// It takes [`AgentToServer::Status`].
    pub(super) takes_status: bool,
    /// It takes [`AgentToServer::Refused`].
    pub(super) takes_refusals: bool,
}

/// The server's first message, which must be its welcome.
pub(super) async fn await_welcome(reader: &mut Reader) -> Result<Welcome, LinkError> {
    match reader.read_message::<ServerToAgent>().await? {
        Some(ServerToAgent::Welcome {
            heartbeat_ms,
            takes_status,
            takes_refusals,
        }) => Ok(Welcome {
            heartbeat: heartbeat_ms.map(Duration::from_millis),
            takes_status,
            takes_refusals,
        }),
        _ => Err(LinkError::NoWelcome),
    }
}

/// A connection being served: its writer, and what its handlers share.
pub(super) struct Served<'a> {
    config: &'a Path,
    memory: &'a mut Memory,
    acting: Acting<'a>,
    writer: Writer,
    /// What the console shows of this computer (and the recipients the
    /// server may enrol), as the server was last told it; none while the
    /// server takes no status.
    told: Option<ComputerStatus>,
    /// Messages from tasks (tunnel refusals), which go out through this
    /// connection's writer.
    outgoing: mpsc::Sender<AgentToServer>,
    to_send: mpsc::Receiver<AgentToServer>,
}

impl<'a> Served<'a> {
    pub(super) fn new(
        config: &'a Path,
        memory: &'a mut Memory,
        acting: Acting<'a>,
        mut writer: Writer,
        heartbeat: Option<Duration>,
    ) -> Self {
        // A server that stops reading is given up, like one that falls
        // silent, and dialed again.
        writer.set_write_deadline(Some(
            heartbeat.map_or(DEFAULT_WRITE_DEADLINE, write_deadline),
        ));
        let (outgoing, to_send) = mpsc::channel::<AgentToServer>(64);
        Self {
            config,
            memory,
            acting,
            writer,
            told: None,
            outgoing,
            to_send,
        }
    }

    /// Serves the connection until the server closes it (`Ok`), falls
    /// silent, displaces this agent or the connection fails. Messages
    /// `queued` by the rest of the agent go out on it meanwhile.
    pub(super) async fn serve(
        mut self,
        mut reader: Reader,
        queued: &mut mpsc::UnboundedReceiver<AgentToServer>,
        heartbeat: Option<Duration>,
    ) -> Result<(), LinkError> {
        // A connection the server stopped pinging (a NAT that forgot it, a
        // server host that vanished) is given up, so that the agent dials
        // again instead of waiting on it forever.
        let silence = heartbeat.map(silence_limit);
        let mut heard_by = silence.map(|silence| tokio::time::Instant::now() + silence);
        loop {
            let message = tokio::select! {
                message = reader.read_message::<ServerToAgent>() => match message {
                    Ok(Some(message)) => message,
                    Ok(None) => return Ok(()),
                    Err(e) => return Err(e.into()),
                },
                () = sleep_until(heard_by) => {
                    let silence = silence.unwrap_or_default();
                    return Err(LinkError::Silent(silence));
                }
                Some(message) = self.to_send.recv() => {
                    self.writer.write_message(&message).await?;
                    continue;
                }
                Some(message) = queued.recv() => {
                    self.writer.write_message(&message).await?;
                    continue;
                }
            };
            heard_by = silence.map(|silence| tokio::time::Instant::now() + silence);
            self.handle(message).await?;
        }
    }

    /// Acts on one message from the server.
    async fn handle(&mut self, message: ServerToAgent) -> Result<(), LinkError> {
        match message {
            ServerToAgent::Welcome { .. } => Ok(()),
            ServerToAgent::Displaced { address } => Err(LinkError::Displaced { address }),
            ServerToAgent::Ping => self.on_ping().await,
            ServerToAgent::Offer {
                request_id,
                operator,
                operator_ip,
                reason,
                service,
                e2e,
            } => {
                let visitor = Visitor {
                    operator,
                    operator_ip,
                    reason,
                    service: service.describe(),
                };
                self.on_offer(request_id, visitor, service, e2e).await
            }
            ServerToAgent::Settled {
                request_id,
                outcome,
                assertions,
            } => self.on_settled(request_id, outcome, &assertions).await,
            ServerToAgent::OpenTunnel {
                session_id,
                tunnel_id,
                target,
                sealed,
            } => {
                self.on_open_tunnel(session_id, tunnel_id, target, sealed)
                    .await
            }
        }
    }

    /// Tells the server what the console shows of this computer.
    pub(super) async fn tell(&mut self, status: ComputerStatus) -> Result<(), LinkError> {
        self.writer
            .write_message(&AgentToServer::Status(status.clone()))
            .await?;
        self.told = Some(status);
        Ok(())
    }

    /// Answers a ping, and tells a server that takes the status again if
    /// the settings changed it.
    async fn on_ping(&mut self) -> Result<(), LinkError> {
        self.writer.write_message(&AgentToServer::Pong).await?;
        let now = self
            .told
            .as_ref()
            .and_then(|_| settings_file::load(self.config).ok())
            .map(|settings| crate::answer::status_of(&settings));
        if let Some(now) = now
            && self.told.as_ref() != Some(&now)
        {
            self.tell(now).await?;
        }
        Ok(())
    }

    /// Answers an offer (see [`Acting::offered`]).
    async fn on_offer(
        &mut self,
        request_id: String,
        visitor: Visitor,
        service: Service,
        hello: Option<OperatorHello>,
    ) -> Result<(), LinkError> {
        let reply = self.acting.offered(
            self.config,
            self.memory,
            &request_id,
            visitor,
            service,
            hello,
        );
        let answer = AgentToServer::OfferReply {
            request_id: request_id.clone(),
            reply,
        };
        if let Err(error) = self.writer.write_message(&answer).await {
            // The server never had the answer, and refuses the operator:
            // nothing will settle the request.
            self.memory.awaited.forget(&request_id);
            self.acting.board.settle(&request_id);
            return Err(error.into());
        }
        Ok(())
    }

    /// Acts on a settled request (see [`Acting::settled`]), and tells the
    /// server of this computer's refusal.
    async fn on_settled(
        &mut self,
        request_id: String,
        outcome: Outcome,
        assertions: &[Assertion],
    ) -> Result<(), LinkError> {
        let message = self
            .acting
            .settled(self.memory, request_id, outcome, assertions);
        if let Some(message) = message {
            self.writer.write_message(&message).await?;
        }
        Ok(())
    }

    /// Opens a forward session's tunnel to `target` if [`tunnel::permitted`],
    /// and refuses it otherwise.
    async fn on_open_tunnel(
        &mut self,
        session_id: String,
        tunnel_id: String,
        target: String,
        sealed: bool,
    ) -> Result<(), LinkError> {
        let shared = self.acting.shared;
        let permitted = tunnel::permitted(self.config, shared, &session_id, &target, sealed);
        if let Some((settings, secret)) = permitted {
            let dialer = shared.dialer.clone();
            let tunnel = session::Tunnel {
                id: tunnel_id,
                target,
                secret,
            };
            session::spawn_tunnel(settings, dialer, tunnel, self.outgoing.clone());
            return Ok(());
        }
        tracing::warn!(session = %session_id, %target, "refusing a tunnel that no allowed session covers");
        let refusal = AgentToServer::TunnelRefused {
            tunnel_id,
            message: format!("forwarding to {target} is not allowed"),
        };
        self.writer.write_message(&refusal).await?;
        Ok(())
    }
}

/// Completes at `deadline`, or never without one.
async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}
