//! An agent's control connection: registers the agent as online, carries
//! offers to it and its answers back, pushes settled outcomes, and pings it,
//! taking it offline when it falls silent, or when it stops reading: every
//! write has a deadline ([`write_deadline`] of the heartbeat), and the
//! broker, which never waits on an agent, marks one whose queue is full as
//! stuck.

use crate::broker::{AgentCommand, AgentLink, Applied, Broker, Witness};
use crate::clock::now_millis;
use crate::store::{AgentKey, ComputerId};
use doorman_core::Decision;
use doorman_core::authorization::Event;
use doorman_core::limits::MAX_NAME_LEN;
use doorman_proto::ConnectionError;
use doorman_proto::connection::FrameWriter;
use doorman_proto::dial::Upgraded;
use doorman_proto::message::{
    AgentToServer, OfferReply, ServerToAgent, SessionEnd, silence_limit, write_deadline,
};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncWrite;
use tokio::sync::oneshot;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

/// Serves one agent connection until it closes, the server stops, or the
/// key it was opened with (`agent`, as stored) is replaced or removed.
pub async fn serve(
    broker: Arc<Broker>,
    io: Upgraded,
    name: String,
    agent: AgentKey,
    address: std::net::IpAddr,
) {
    let span = tracing::info_span!("agent", computer = %name);
    serve_agent(broker, io, name, agent, address)
        .instrument(span)
        .await;
}

async fn serve_agent(
    broker: Arc<Broker>,
    io: Upgraded,
    name: String,
    agent: AgentKey,
    address: std::net::IpAddr,
) {
    let mut connection = crate::relay::framed(io);
    connection.set_write_deadline(Some(write_deadline(broker.heartbeat)));
    let (mut reader, mut writer) = connection.split();
    let AgentLink {
        id: link_id,
        mut commands,
        stuck,
    } = broker.agents.register(&name, &address.to_string());
    tracing::info!("agent online");
    let mut offers: HashMap<String, oneshot::Sender<OfferReply>> = HashMap::new();
    let mut welcome = vec![ServerToAgent::Welcome {
        heartbeat_ms: broker.heartbeat_ms(),
        takes_status: true,
        takes_refusals: true,
    }];
    // Allowed while this agent was away (a server restart): it may be
    // waiting. Only this computer's: not those of an earlier one of its name.
    match broker
        .store
        .allowed_without_session(agent.id, now_millis() - 10 * 60 * 1000)
        .await
    {
        Ok(requests) => {
            for request in requests {
                let Some(outcome) = request.outcome() else {
                    continue;
                };
                let assertions = broker.assertions_of(&request, &outcome).await;
                welcome.push(ServerToAgent::Settled {
                    request_id: request.id,
                    outcome,
                    assertions,
                });
            }
        }
        Err(error) => {
            tracing::error!(%error, "cannot list requests allowed while the agent was away")
        }
    }
    // Whether the connection may still take a clean close.
    let mut writable = true;
    for message in &welcome {
        if !tell(&mut writer, message, &stuck).await {
            writable = false;
            break;
        }
    }
    let silence = silence_limit(broker.heartbeat);
    let mut last_heard = Instant::now();
    let mut heartbeat = broker.heartbeat_ticks();
    let mut key_changes = broker.agent_keys_changed.subscribe();
    key_changes.mark_unchanged();
    if writable {
        loop {
            tokio::select! {
                Ok(()) = key_changes.changed() => {
                    if !key_still_current(&broker, &name, &agent).await {
                        tracing::warn!("agent's key was replaced or removed; closing its connection");
                        break;
                    }
                }
                _ = heartbeat.tick() => {
                    if last_heard.elapsed() > silence {
                        tracing::warn!(silent_for = ?last_heard.elapsed(), "agent fell silent; closing its connection");
                        break;
                    }
                    if !tell(&mut writer, &ServerToAgent::Ping, &stuck).await {
                        writable = false;
                        break;
                    }
                }
                command = commands.recv() => {
                    let Some(command) = command else { break };
                    let message = match *command {
                        AgentCommand::Offer { offer, request_id, reply } => {
                            offers.insert(request_id, reply);
                            offer
                        }
                        AgentCommand::Send(message) => message,
                    };
                    if !tell(&mut writer, &message, &stuck).await {
                        writable = false;
                        break;
                    }
                }
                message = reader.read_message::<AgentToServer>() => {
                    let message = match message {
                        Ok(Some(message)) => message,
                        Ok(None) => break,
                        Err(error) if error.is_hang_up() => {
                            tracing::info!("agent hung up (it stopped, or its network went away)");
                            break;
                        }
                        Err(error @ ConnectionError::Io(_)) => {
                            tracing::info!(%error, "agent connection lost");
                            break;
                        }
                        Err(error) => {
                            tracing::warn!(%error, "agent sent a bad message; closing");
                            break;
                        }
                    };
                    last_heard = Instant::now();
                    match message {
                        AgentToServer::Pong => {}
                        AgentToServer::Status(mut status) => {
                            status.recipients.truncate(doorman_core::limits::MAX_RECIPIENTS);
                            broker.agents.set_status(&name, link_id, status);
                        }
                        AgentToServer::OfferReply { request_id, reply } => {
                            if let Some(waiting) = offers.remove(&request_id) {
                                let _ = waiting.send(reply);
                            }
                        }
                        AgentToServer::TunnelRefused { tunnel_id, message } => {
                            tracing::info!(%message, "tunnel refused by the agent");
                            // Dropping the slot tells the waiting operator at once.
                            drop(broker.sessions.take_sender(&tunnel_id, &name));
                        }
                        AgentToServer::SessionEnded { session_id, end } => {
                            broker.sessions.report_end(&session_id, &name, end);
                        }
                        AgentToServer::Refused { request_id, reason } => {
                            // Recorded before this agent's next message is
                            // read, so a flood of them waits on the
                            // database instead of piling up; the operator
                            // waiting for the session hears the computer's
                            // words.
                            refused(&broker, &name, agent.id, &request_id, &reason).await;
                        }
                        AgentToServer::LocalDecision { request_id, decision, user } => {
                            // Applied beside this loop: settling pushes the
                            // outcome back through this agent's channel.
                            let broker_for_task = Arc::clone(&broker);
                            let name = name.clone();
                            let id = agent.id;
                            broker.lifecycle.spawn(async move {
                                local_decision(&broker_for_task, &name, id, &request_id, decision, &user).await;
                            });
                        }
                    }
                }
                // Its queue is full: the broker found it stuck (and said so).
                () = stuck.cancelled() => {
                    writable = false;
                    break;
                }
                _ = broker.lifecycle.stopping() => break,
            }
        }
    }
    // A clean end (TLS close_notify) tells the agent that the server closed
    // the connection on purpose, e.g. when it stops, rather than losing it;
    // an agent that takes nothing more is not waited on for it.
    if writable {
        let _ = tokio::time::timeout(CLOSE_TIMEOUT, writer.shutdown()).await;
    }
    tracing::info!("agent offline");
    if broker.agents.unregister(&name, link_id) {
        broker.computer_went_offline(&name, agent.id).await;
    }
}

/// How long closing an agent's connection cleanly may take; a peer that
/// stopped reading must not hold up the server's stop.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(1);

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

/// A person at computer `name` (whose id is `id`) answered one of its
/// requests: applied as a local decision, audited with their login name.
async fn local_decision(
    broker: &Broker,
    name: &str,
    id: ComputerId,
    request_id: &str,
    decision: Decision,
    user: &str,
) {
    let user_ok = !user.is_empty()
        && user.len() <= MAX_NAME_LEN
        && !user.chars().any(|c| c.is_control() || c == ',');
    // Only the computer a request was made to answers it locally.
    let ours = matches!(broker.store.request(request_id).await, Ok(Some(row)) if row.computer_id == Some(id));
    if !user_ok || !ours {
        tracing::warn!(computer = %name, request = %request_id, "ignoring a local decision for another computer's request or with a bad user name");
        return;
    }
    let event = Event::LocalDecide {
        decision,
        by: format!("{user} (at {name})"),
        at: now_millis(),
    };
    let witness = Witness {
        actor: Some(format!("{user} (at {name})")),
        detail: Some(format!("local decision by {user} at the computer")),
        ..Witness::default()
    };
    match broker.apply(request_id, event, witness).await {
        Ok(Applied::Unchanged(why)) => {
            tracing::info!(computer = %name, request = %request_id, ?why, "local decision changed nothing");
        }
        Ok(_) => {}
        Err(error) => tracing::error!(%error, "cannot apply a local decision"),
    }
}

/// Computer `name` refused the session of its allowed request: the request
/// ends refused (never sent to the agent again), and the operator waiting
/// for the session is told why.
async fn refused(broker: &Broker, name: &str, id: ComputerId, request_id: &str, reason: &str) {
    match broker
        .refused_by_computer(name, id, request_id, reason)
        .await
    {
        Ok(Some(reason)) => {
            let message = format!("the computer refused the approval: {reason}");
            let end = SessionEnd::Failed { message };
            broker.sessions.report_end(request_id, name, end);
        }
        Ok(None) => {
            tracing::info!(computer = %name, request = %request_id, "ignoring a refusal of a request that is not this computer's, not allowed, or whose session started");
        }
        Err(error) => tracing::error!(%error, "cannot record a computer's refusal"),
    }
}

/// Watches the database for agent keys replaced or removed (by `doorman
/// admin`, another process) with one query a heartbeat, and wakes the agent
/// loops to check their own key only then: ten thousand connected agents
/// cost one query a heartbeat, not ten thousand.
pub async fn watch_keys(broker: Arc<Broker>) {
    let mut ticks = broker.heartbeat_ticks();
    loop {
        match broker.store.last_agent_key_change().await {
            Ok(last) => {
                broker.agent_keys_changed.send_if_modified(|known| {
                    let changed = *known != last;
                    *known = last;
                    changed
                });
            }
            Err(error) => tracing::warn!(%error, "cannot check for replaced agent keys"),
        }
        tokio::select! {
            _ = ticks.tick() => {}
            () = broker.lifecycle.stopping() => return,
        }
    }
}

/// Whether `name` is still the computer its connection was opened as, with
/// the same key (`doorman admin agent rotate|remove` change it; a computer
/// added again under the name is another one). A database that cannot
/// answer revokes nothing.
async fn key_still_current(broker: &Broker, name: &str, agent: &AgentKey) -> bool {
    match broker.store.agent_key(name).await {
        Ok(stored) => stored.as_ref() == Some(agent),
        Err(error) => {
            tracing::error!(%error, "cannot check an agent's key");
            true
        }
    }
}
