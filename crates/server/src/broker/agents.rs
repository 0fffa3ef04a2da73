//! Which agents are online: one connection per computer name, the channel
//! to its task, offers sent to it and their answers.

use super::lock;
use doorman_proto::message::{OfferReply, ServerToAgent};
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
    commands: mpsc::Sender<AgentCommand>,
}

/// The online agents, by computer name.
#[derive(Debug)]
pub struct AgentRegistry {
    online: Mutex<HashMap<String, AgentConnection>>,
    next_id: AtomicU64,
    /// Bumped whenever an agent comes or goes, so callers can await it.
    changed: watch::Sender<u64>,
}

impl Default for AgentRegistry {
    fn default() -> Self {
        Self {
            online: Mutex::default(),
            next_id: AtomicU64::new(1),
            changed: watch::channel(0).0,
        }
    }
}

impl AgentRegistry {
    /// Registers an agent's connection, replacing an older one of the same name.
    pub fn register(&self, name: &str) -> (u64, mpsc::Receiver<AgentCommand>) {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (commands, receiver) = mpsc::channel(64);
        lock(&self.online).insert(name.to_string(), AgentConnection { id, commands });
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

    pub fn is_online(&self, name: &str) -> bool {
        lock(&self.online).contains_key(name)
    }

    fn sender(&self, name: &str) -> Option<mpsc::Sender<AgentCommand>> {
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
            .send(AgentCommand::Offer {
                offer,
                request_id: request_id.to_string(),
                reply,
            })
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
            Some(sender) => sender.send(AgentCommand::Send(message)).await.is_ok(),
            None => false,
        }
    }
}
