//! Which agents are online: one connection per computer name, the channel
//! to its task, offers sent to it and their answers.

use super::lock;
use doorman_proto::message::{ComputerStatus, OfferReply, ServerToAgent};
use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, watch};

/// How long an agent has to answer an offer.
pub const OFFER_TIMEOUT: Duration = Duration::from_secs(10);

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
    address: String,
    /// What its settings say, once it told.
    status: Option<ComputerStatus>,
}

/// How long after a logged displacement the next one of the same computer
/// goes unlogged: two agents with one key make one episode, not a log line
/// every few seconds.
const DISPLACEMENT_LOG_QUIET: std::time::Duration = std::time::Duration::from_secs(600);

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
    pub fn register(&self, name: &str, address: &str) -> (u64, mpsc::Receiver<Box<AgentCommand>>) {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (commands, receiver) = mpsc::channel(64);
        let connection = AgentConnection {
            id,
            commands,
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
        (id, receiver)
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

    fn sender(&self, name: &str) -> Option<mpsc::Sender<Box<AgentCommand>>> {
        lock(&self.online)
            .get(name)
            .map(|link| link.commands.clone())
    }

    /// Offers a session to an agent and waits for its answer.
    pub async fn offer(
        &self,
        computer: &str,
        request_id: &str,
        offer: ServerToAgent,
    ) -> Result<OfferReply, OfferError> {
        let sender = self.sender(computer).ok_or(OfferError::Offline)?;
        let (reply, answer) = oneshot::channel();
        sender
            .send(Box::new(AgentCommand::Offer {
                offer,
                request_id: request_id.to_string(),
                reply,
            }))
            .await
            .map_err(|_| OfferError::Offline)?;
        match tokio::time::timeout(OFFER_TIMEOUT, answer).await {
            Ok(Ok(reply)) => Ok(reply),
            Ok(Err(_)) => Err(OfferError::Offline),
            Err(_) => Err(OfferError::NoAnswer),
        }
    }

    /// Sends a message to an online agent; false if it is not online.
    pub async fn send(&self, computer: &str, message: ServerToAgent) -> bool {
        match self.sender(computer) {
            Some(sender) => sender
                .send(Box::new(AgentCommand::Send(message)))
                .await
                .is_ok(),
            None => false,
        }
    }
}
