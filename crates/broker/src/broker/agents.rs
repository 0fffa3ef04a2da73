//! Which agents are online: one connection per computer name, the channel
//! to its task, offers sent to it and their answers. Nothing here waits on
//! an agent: a message that finds its agent's queue full is not sent, and
//! the agent, which stopped reading, is dropped (it dials again and is sent
//! what it missed).

use super::lock;
use doorman_wire::message::{ComputerStatus, OfferReply, ServerToAgent};
use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;

/// How long an agent has to answer an offer.
pub const OFFER_TIMEOUT: Duration = Duration::from_secs(10);

/// Messages that may wait for an agent's connection task. A healthy agent
/// takes each in a moment; one whose queue is full has stopped reading, and
/// is dropped.
const QUEUE: usize = 64;

/// What the broker asks of an agent's connection task.
#[derive(Debug)]
pub enum AgentCommand {
    Offer {
        offer: ServerToAgent,
        request_id: String,
        reply: oneshot::Sender<OfferReply>,
    },
    Send(ServerToAgent),
}

/// Why an offer got no answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OfferError {
    Offline,
    NoAnswer,
}

#[derive(Debug)]
struct AgentConnection {
    /// Tells this connection from a later one of the same name.
    id: u64,
    commands: mpsc::Sender<Box<AgentCommand>>,
    /// Cancelled when the agent is found stuck: its task then closes the
    /// connection.
    stuck: CancellationToken,
    address: String,
    /// What its settings say, once it told.
    status: Option<ComputerStatus>,
}

/// How long after a logged displacement the next one of the same computer
/// goes unlogged: two agents with one key make one episode, not a log line
/// every few seconds.
const DISPLACEMENT_LOG_QUIET: std::time::Duration = std::time::Duration::from_secs(600);

/// One connection's end of the registry, for the task serving it.
#[derive(Debug)]
pub struct AgentLink {
    /// Tells this connection from a later one of the same name.
    pub id: u64,
    /// What the broker asks of the connection.
    pub commands: mpsc::Receiver<Box<AgentCommand>>,
    /// Cancelled when the agent did not take its messages: close the
    /// connection at once.
    pub stuck: CancellationToken,
}

/// The online agents, by computer name.
#[derive(Debug)]
pub struct AgentRegistry {
    online: Mutex<HashMap<String, AgentConnection>>,
    /// When a displacement of each computer was last logged.
    displacements_logged: Mutex<HashMap<String, std::time::Instant>>,
    next_id: AtomicU64,
    /// Bumped whenever an agent comes or goes, so callers can await it.
    changed: watch::Sender<u64>,
    /// `doorman_computers_connected`.
    connected: metrics::Gauge,
}

impl AgentRegistry {
    /// An empty registry that keeps `connected` at its size.
    pub fn counted(connected: metrics::Gauge) -> Self {
        Self {
            online: Mutex::default(),
            displacements_logged: Mutex::default(),
            next_id: AtomicU64::new(1),
            changed: watch::channel(0).0,
            connected,
        }
    }

    /// Registers an agent's connection from `address`, replacing an older
    /// one of the same name, which is told who took its place.
    /// Commands travel boxed: a channel allocates room for 32 of what it
    /// carries at once, and every online agent has one.
    pub fn register(&self, name: &str, address: &str) -> AgentLink {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (commands, receiver) = mpsc::channel(QUEUE);
        let stuck = CancellationToken::new();
        let connection = AgentConnection {
            id,
            commands,
            stuck: stuck.clone(),
            address: address.to_string(),
            status: None,
        };
        let mut online = lock(&self.online);
        let older = online.insert(name.to_string(), connection);
        self.connected.set(online.len() as f64);
        drop(online);
        if let Some(older) = older {
            let displaced = ServerToAgent::Displaced {
                address: address.to_string(),
            };
            let _ = older
                .commands
                .try_send(Box::new(AgentCommand::Send(displaced)));
            let mut logged = lock(&self.displacements_logged);
            let quiet = logged
                .get(name)
                .is_some_and(|at| at.elapsed() < DISPLACEMENT_LOG_QUIET);
            if !quiet {
                logged.insert(name.to_string(), std::time::Instant::now());
                tracing::warn!(
                    computer = %name,
                    new = %address,
                    old = %older.address,
                    "another agent connected with this computer's name and key and replaced the connected one (two agents sharing a key?)"
                );
            }
        }
        self.changed.send_modify(|version| *version += 1);
        AgentLink {
            id,
            commands: receiver,
            stuck,
        }
    }

    /// Removes this connection of the agent; false when a newer one had
    /// already replaced it (the agent is still online).
    pub fn unregister(&self, name: &str, id: u64) -> bool {
        let mut online = lock(&self.online);
        let removed = online.get(name).is_some_and(|link| link.id == id);
        if removed {
            online.remove(name);
        }
        self.connected.set(online.len() as f64);
        drop(online);
        self.changed.send_modify(|version| *version += 1);
        removed
    }

    /// Waits until the named agent is online (or offline, with `online = false`).
    pub async fn wait_for(&self, name: &str, online: bool) {
        let mut changes = self.changed.subscribe();
        loop {
            if self.is_online(name) == online {
                return;
            }
            if changes.changed().await.is_err() {
                return;
            }
        }
    }

    /// Records what this connection's agent says of its settings.
    pub fn set_status(&self, name: &str, id: u64, status: ComputerStatus) {
        if let Some(link) = lock(&self.online).get_mut(name)
            && link.id == id
        {
            link.status = Some(status);
        }
        self.changed.send_modify(|version| *version += 1);
    }

    /// Waits until the named agent is online and has said what its
    /// settings offer, and that satisfies `wanted`.
    pub async fn wait_for_status(
        &self,
        name: &str,
        wanted: impl Fn(&ComputerStatus) -> bool,
    ) -> ComputerStatus {
        let mut changes = self.changed.subscribe();
        loop {
            if let Some(status) = self.status(name).filter(|status| wanted(status)) {
                return status;
            }
            if changes.changed().await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    }

    /// What the online agent said of its settings, if it did.
    pub fn status(&self, name: &str) -> Option<ComputerStatus> {
        lock(&self.online)
            .get(name)
            .and_then(|link| link.status.clone())
    }

    /// The recipients the online agent announced (its settings'), if it
    /// is online and told: the only addresses its enrolments may reach.
    pub fn recipients(&self, name: &str) -> Option<Vec<String>> {
        lock(&self.online)
            .get(name)
            .and_then(|link| link.status.as_ref())
            .map(|status| status.recipients.clone())
    }

    pub fn is_online(&self, name: &str) -> bool {
        lock(&self.online).contains_key(name)
    }

    /// Queues `command` for the agent's connection without waiting; false
    /// when it is not online, or stuck: its queue is full because it
    /// stopped reading (its connection's writes wait on it, see
    /// `crate::agents`). A stuck agent is told to close its connection:
    /// waiting on it would hold up whoever sends (an approval's POST, an
    /// operator's connect), and an agent that is alive dials again and is
    /// sent again what it missed (requests allowed meanwhile).
    fn queue(&self, computer: &str, command: AgentCommand) -> bool {
        let online = lock(&self.online);
        let Some(link) = online.get(computer) else {
            return false;
        };
        match link.commands.try_send(Box::new(command)) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Closed(_)) => false,
            Err(mpsc::error::TrySendError::Full(_)) => {
                let first = !link.stuck.is_cancelled();
                link.stuck.cancel();
                drop(online);
                if first {
                    tracing::warn!(
                        computer = %computer,
                        waiting = QUEUE,
                        "the agent takes none of its messages (it stopped reading); dropping its connection"
                    );
                }
                false
            }
        }
    }

    /// Offers a session to an agent and waits for its answer.
    pub async fn offer(
        &self,
        computer: &str,
        request_id: &str,
        offer: ServerToAgent,
    ) -> Result<OfferReply, OfferError> {
        let (reply, answer) = oneshot::channel();
        let command = AgentCommand::Offer {
            offer,
            request_id: request_id.to_string(),
            reply,
        };
        if !self.queue(computer, command) {
            return Err(OfferError::Offline);
        }
        match tokio::time::timeout(OFFER_TIMEOUT, answer).await {
            Ok(Ok(reply)) => Ok(reply),
            Ok(Err(_)) => Err(OfferError::Offline),
            Err(_) => Err(OfferError::NoAnswer),
        }
    }

    /// Sends a message to an online agent, without waiting on it; false if
    /// it is not online, or was found stuck (see `queue`).
    pub fn send(&self, computer: &str, message: ServerToAgent) -> bool {
        self.queue(computer, AgentCommand::Send(message))
    }
}

#[cfg(test)]
mod tests {
    use super::{AgentRegistry, OfferError, QUEUE};
    use doorman_wire::message::ServerToAgent;

    #[tokio::test]
    async fn a_message_that_finds_the_queue_full_waits_for_nothing_and_drops_the_agent() {
        let registry = AgentRegistry::counted(metrics::Gauge::noop());
        let link = registry.register("pc", "192.0.2.1");
        for _ in 0..QUEUE {
            assert!(registry.send("pc", ServerToAgent::Ping));
        }
        assert!(!link.stuck.is_cancelled());
        // Nobody takes the queue's messages: the next is not sent, and the
        // connection is told to close.
        assert!(!registry.send("pc", ServerToAgent::Ping));
        assert!(link.stuck.is_cancelled());
        let offer = registry.offer("pc", "r1", ServerToAgent::Ping).await;
        assert_eq!(offer, Err(OfferError::Offline));
        assert!(!registry.send("another-pc", ServerToAgent::Ping));
    }
}
