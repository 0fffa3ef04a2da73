//! One agent's connection, served: the welcome (and the outcomes it missed
//! while away), the loop that selects between the heartbeat, key changes,
//! the broker's commands and the agent's messages, and the close, clean
//! when the agent still takes writes.
//!
//! The steps that read or write the database are boxed where they are
//! awaited: a future is as large as the largest step it may await, and a
//! query's is kilobytes, which every idle computer's connection would
//! otherwise hold while it waits for a ping (docs/BENCHMARKS.md, "Idle
//! computers").

use super::key_still_current;
use crate::broker::{AgentCommand, Broker};
use doorman_runtime::clock::Ticks;
use doorman_store::{AgentKey, ComputerId};
use doorman_wire::ConnectionError;
use doorman_wire::connection::{FrameReader, FrameWriter};
use doorman_wire::message::{AgentToServer, OfferReply, ServerToAgent, silence_limit};
use std::collections::HashMap;
use std::ops::ControlFlow::{self, Break, Continue};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// How long closing an agent's connection cleanly may take; a peer that
/// stopped reading must not hold up the server's stop.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(1);

/// How a connection's loop ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Close {
    /// The connection may still take a clean close.
    Clean,
    /// A write failed, missed its deadline, or the broker found the agent
    /// stuck: nothing more is written to it.
    Abandon,
}

/// An agent's connection being served, and what its handlers share.
pub(super) struct Served<W> {
    pub(super) broker: Arc<Broker>,
    pub(super) name: String,
    /// The key the connection was opened with, as stored.
    pub(super) agent: AgentKey,
    /// Tells this connection from a later one of the same name.
    pub(super) link_id: u64,
    writer: FrameWriter<W>,
    /// Cancelled when the agent did not take its messages.
    stuck: CancellationToken,
    heartbeat: Ticks,
    /// Offers sent to the agent, each with the operator awaiting its reply.
    pub(super) offers: HashMap<String, oneshot::Sender<OfferReply>>,
}

impl<W: AsyncWrite + Unpin> Served<W> {
    pub(super) fn new(
        broker: Arc<Broker>,
        name: String,
        agent: AgentKey,
        link_id: u64,
        writer: FrameWriter<W>,
        stuck: CancellationToken,
        heartbeat: Ticks,
    ) -> Self {
        Self {
            broker,
            name,
            agent,
            link_id,
            writer,
            stuck,
            heartbeat,
            offers: HashMap::new(),
        }
    }

    /// Welcomes the agent, then tells it the requests allowed while it was
    /// away (a server restart): it may be waiting for them.
    pub(super) async fn welcome(&mut self) -> ControlFlow<Close> {
        let mut welcome = vec![ServerToAgent::Welcome {
            heartbeat_ms: self.broker.heartbeat_ms(),
            takes_status: true,
            takes_refusals: true,
        }];
        welcome.extend(Box::pin(allowed_while_away(&self.broker, self.agent.id)).await);
        for message in &welcome {
            self.send(message).await?;
        }
        Continue(())
    }

    /// Serves the connection until it is to close, and says how.
    pub(super) async fn serve<R: AsyncRead + Unpin>(
        &mut self,
        reader: &mut FrameReader<R>,
        commands: &mut mpsc::Receiver<Box<AgentCommand>>,
    ) -> Close {
        let silence = silence_limit(self.broker.heartbeat());
        let mut last_heard = Instant::now();
        let mut key_changes = self.broker.agent_keys_changed().subscribe();
        key_changes.mark_unchanged();
        loop {
            let step = tokio::select! {
                Ok(()) = key_changes.changed() => self.keys_changed().await,
                () = self.heartbeat.tick() => self.beat(last_heard, silence).await,
                command = commands.recv() => self.command(command).await,
                message = reader.read_message::<AgentToServer>() => match received(message) {
                    Some(message) => {
                        last_heard = Instant::now();
                        self.on_message(message).await;
                        Continue(())
                    }
                    None => Break(Close::Clean),
                },
                // Its queue is full: the broker found it stuck (and said so).
                () = self.stuck.cancelled() => Break(Close::Abandon),
                _ = self.broker.lifecycle().stopping() => Break(Close::Clean),
            };
            if let Break(close) = step {
                return close;
            }
        }
    }

    /// Ends the connection, cleanly if it may still take that, and takes
    /// the agent offline unless a later connection took its place.
    pub(super) async fn close(&mut self, close: Close) {
        // A clean end (TLS close_notify) tells the agent that the server
        // closed the connection on purpose, e.g. when it stops, rather than
        // losing it; an agent that takes nothing more is not waited on for it.
        if close == Close::Clean {
            let _ = tokio::time::timeout(CLOSE_TIMEOUT, self.writer.shutdown()).await;
        }
        tracing::info!("agent offline");
        if self.broker.agents().unregister(&self.name, self.link_id) {
            Box::pin(self.broker.computer_went_offline(&self.name, self.agent.id)).await;
        }
    }

    /// Agent keys changed somewhere: closes the connection if its own was
    /// replaced or removed.
    async fn keys_changed(&mut self) -> ControlFlow<Close> {
        if Box::pin(key_still_current(&self.broker, &self.name, &self.agent)).await {
            return Continue(());
        }
        tracing::warn!("agent's key was replaced or removed; closing its connection");
        Break(Close::Clean)
    }

    /// A heartbeat: closes a connection that was silent for longer than
    /// `silence`, and pings the agent otherwise.
    async fn beat(&mut self, last_heard: Instant, silence: Duration) -> ControlFlow<Close> {
        if last_heard.elapsed() > silence {
            tracing::warn!(silent_for = ?last_heard.elapsed(), "agent fell silent; closing its connection");
            return Break(Close::Clean);
        }
        self.send(&ServerToAgent::Ping).await
    }

    /// Carries out the broker's command; none left: the broker let the
    /// connection go.
    async fn command(&mut self, command: Option<Box<AgentCommand>>) -> ControlFlow<Close> {
        let Some(command) = command else {
            return Break(Close::Clean);
        };
        let message = match *command {
            AgentCommand::Offer {
                offer,
                request_id,
                reply,
            } => {
                self.offers.insert(request_id, reply);
                offer
            }
            AgentCommand::Send(message) => message,
        };
        self.send(&message).await
    }

    /// Writes `message` to the agent; see [`tell`].
    async fn send(&mut self, message: &ServerToAgent) -> ControlFlow<Close> {
        if tell(&mut self.writer, message, &self.stuck).await {
            Continue(())
        } else {
            Break(Close::Abandon)
        }
    }
}

/// The outcomes of this computer's requests allowed in the last 10 minutes
/// without a session. Only this computer's: not those of an earlier one of
/// its name.
async fn allowed_while_away(broker: &Broker, id: ComputerId) -> Vec<ServerToAgent> {
    let since = broker.now_millis() - 10 * 60 * 1000;
    let requests = match broker.store().allowed_without_session(id, since).await {
        Ok(requests) => requests,
        Err(error) => {
            tracing::error!(%error, "cannot list requests allowed while the agent was away");
            return Vec::new();
        }
    };
    let mut settled = Vec::new();
    for request in requests {
        let Some(outcome) = request.outcome() else {
            continue;
        };
        let assertions = broker.assertions_of(&request, &outcome).await;
        settled.push(ServerToAgent::Settled {
            request_id: request.id,
            outcome,
            assertions,
        });
    }
    settled
}

/// The message read, or none (with the reason logged) when the connection
/// is to close: the agent hung up, the connection was lost, or the agent
/// sent something that is not a message.
fn received(message: Result<Option<AgentToServer>, ConnectionError>) -> Option<AgentToServer> {
    match message {
        Ok(message) => message,
        Err(error) if error.is_hang_up() => {
            tracing::info!("agent hung up (it stopped, or its network went away)");
            None
        }
        Err(error @ ConnectionError::Io(_)) => {
            tracing::info!(%error, "agent connection lost");
            None
        }
        Err(error) => {
            tracing::warn!(%error, "agent sent a bad message; closing");
            None
        }
    }
}

/// Writes `message` to the agent; false, with the reason logged, when the
/// connection is to close: it failed, the agent took nothing for the write
/// deadline, or the broker found the agent stuck meanwhile (its queue
/// full), which ends the write at once.
async fn tell<W: AsyncWrite + Unpin>(
    writer: &mut FrameWriter<W>,
    message: &ServerToAgent,
    stuck: &CancellationToken,
) -> bool {
    tokio::select! {
        written = writer.write_message(message) => match written {
            Ok(()) => true,
            Err(error @ ConnectionError::WriteStalled(_)) => {
                tracing::warn!(%error, "the agent stopped reading; closing its connection");
                false
            }
            Err(error) => {
                tracing::info!(%error, "agent connection lost");
                false
            }
        },
        () = stuck.cancelled() => false,
    }
}
