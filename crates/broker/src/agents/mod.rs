//! An agent's control connection: registers the agent as online, carries
//! offers to it and its answers back, pushes settled outcomes, and pings it,
//! taking it offline when it falls silent, or when it stops reading: every
//! write has a deadline ([`write_deadline`] of the heartbeat), and the
//! broker, which never waits on an agent, marks one whose queue is full as
//! stuck.
//!
//! This module owns the connection's start and the watch on agent keys;
//! `connection` serves one connection (welcome, heartbeat, the broker's
//! commands, the clean close), and `replies` acts on what the agent says.

mod connection;
mod replies;

use crate::broker::{AgentCommand, AgentLink, Broker};
use crate::relay::AgentStream;
use connection::Served;
use doorman_store::AgentKey;
use doorman_wire::connection::FrameReader;
use doorman_wire::dial::Upgraded;
use doorman_wire::message::write_deadline;
use std::ops::ControlFlow;
use std::sync::Arc;
use tokio::io::{ReadHalf, WriteHalf};
use tokio::sync::mpsc;
use tracing::Instrument;

/// Serves one agent connection until it closes, the server stops, or the
/// key it was opened with (`agent`, as stored) is replaced or removed.
///
/// Registers the agent as online at once, and returns the future that
/// serves it: set up here rather than in the future, which then holds each
/// part once (an async fn keeps its arguments for its whole life, beside
/// what they were moved into), a few kilobytes less for every idle
/// computer.
pub fn serve(
    broker: Arc<Broker>,
    io: Upgraded,
    name: String,
    agent: AgentKey,
    address: std::net::IpAddr,
) -> impl Future<Output = ()> + Send {
    let span = tracing::info_span!("agent", computer = %name);
    let mut connection = crate::relay::framed(io);
    connection.set_write_deadline(Some(write_deadline(broker.heartbeat())));
    let (reader, writer) = connection.split();
    // Made before the agent is online (see heartbeat_ticks).
    let heartbeat = broker.heartbeat_ticks();
    let AgentLink {
        id: link_id,
        commands,
        stuck,
    } = broker.agents().register(&name, &address.to_string());
    span.in_scope(|| tracing::info!("agent online"));
    let served = Served::new(broker, name, agent, link_id, writer, stuck, heartbeat);
    serve_agent(served, reader, commands).instrument(span)
}

/// Welcomes the agent, serves its connection, and takes it offline when
/// the connection ends.
async fn serve_agent(
    mut served: Served<WriteHalf<AgentStream>>,
    mut reader: FrameReader<ReadHalf<AgentStream>>,
    mut commands: mpsc::Receiver<Box<AgentCommand>>,
) {
    let close = match served.welcome().await {
        ControlFlow::Continue(()) => served.serve(&mut reader, &mut commands).await,
        ControlFlow::Break(close) => close,
    };
    served.close(close).await;
}

/// Watches the database for agent keys replaced or removed (by `doorman
/// admin`, another process) with one query a heartbeat, and wakes the agent
/// loops to check their own key only then: ten thousand connected agents
/// cost one query a heartbeat, not ten thousand.
pub async fn watch_keys(broker: Arc<Broker>) {
    let mut ticks = broker.heartbeat_ticks();
    loop {
        match broker.store().last_agent_key_change().await {
            Ok(last) => {
                broker.agent_keys_changed().send_if_modified(|known| {
                    let changed = *known != last;
                    *known = last;
                    changed
                });
            }
            Err(error) => tracing::warn!(%error, "cannot check for replaced agent keys"),
        }
        tokio::select! {
            () = ticks.tick() => {}
            () = broker.lifecycle().stopping() => return,
        }
    }
}

/// Whether `name` is still the computer its connection was opened as, with
/// the same key (`doorman admin agent rotate|remove` change it; a computer
/// added again under the name is another one). A database that cannot
/// answer revokes nothing.
async fn key_still_current(broker: &Broker, name: &str, agent: &AgentKey) -> bool {
    match broker.store().agent_key(name).await {
        Ok(stored) => stored.as_ref() == Some(agent),
        Err(error) => {
            tracing::error!(%error, "cannot check an agent's key");
            true
        }
    }
}
