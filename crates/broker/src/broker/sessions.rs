//! The session connections the server expects: one slot per request whose
//! operator waits for the agent's side, and the forward sessions whose
//! operators may open tunnels.

use super::lock;
use doorman_wire::dial::Upgraded;
use doorman_wire::message::SessionEnd;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::{oneshot, watch};

/// The agent's session connection as it arrived.
#[derive(Debug)]
pub struct AgentConnection {
    pub io: Upgraded,
    /// The agent offered to take a forwarded connection's TLS session over
    /// and was told yes (`doorman_relay::handover`).
    pub takes_over: bool,
}

#[derive(Debug)]
struct SessionSlot {
    /// Tells this slot from a later one for the same request.
    id: u64,
    computer: String,
    /// Taken when the agent's session connection arrives.
    deliver: Option<oneshot::Sender<AgentConnection>>,
    /// Dropped when a later slot for the same request replaces this one,
    /// which tells the operator connection holding it that it is superseded.
    _current: oneshot::Sender<()>,
}

/// Where the agent's report that a session failed before its connection
/// opened goes.
#[derive(Debug)]
struct EndSlot {
    /// The [`SessionSlot`]'s id, for the same reason.
    id: u64,
    computer: String,
    report: oneshot::Sender<SessionEnd>,
}

/// The expected session connections, by request (or tunnel) id, and the
/// agents' reports of sessions that failed before their connection opened.
#[derive(Debug)]
pub struct SessionSlots {
    slots: Mutex<HashMap<String, SessionSlot>>,
    ends: Mutex<HashMap<String, EndSlot>>,
    next_id: AtomicU64,
}

impl Default for SessionSlots {
    fn default() -> Self {
        Self {
            slots: Mutex::default(),
            ends: Mutex::default(),
            next_id: AtomicU64::new(1),
        }
    }
}

impl SessionSlots {
    /// The agent of `computer` says how `session` ended: only a failure
    /// before its connection opened (a refusal, a connection it could not
    /// open) is awaited; a session's own end travels on its connection.
    pub fn report_end(&self, session: &str, computer: &str, end: SessionEnd) {
        let mut ends = lock(&self.ends);
        if ends
            .get(session)
            .is_some_and(|slot| slot.computer == computer)
            && let Some(slot) = ends.remove(session)
        {
            let _ = slot.report.send(end);
        }
    }

    /// Expects the agent's session connection for a request.
    pub fn expect(self: &Arc<Self>, request_id: &str, computer: &str) -> ExpectedSession {
        let (deliver, receiver) = oneshot::channel();
        let (current, superseded) = oneshot::channel();
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        // An operator that resumed (its old connection went dead) takes the
        // slot over from the old connection's handler, which then stops.
        lock(&self.slots).insert(
            request_id.to_string(),
            SessionSlot {
                id,
                computer: computer.to_string(),
                deliver: Some(deliver),
                _current: current,
            },
        );
        // The agent's word that the session failed before its connection
        // opened is awaited from now on: a refusal may come at once.
        let (report, end) = oneshot::channel();
        lock(&self.ends).insert(
            request_id.to_string(),
            EndSlot {
                id,
                computer: computer.to_string(),
                report,
            },
        );
        ExpectedSession {
            slots: Arc::clone(self),
            id,
            request_id: request_id.to_string(),
            receiver,
            superseded,
            end,
        }
    }

    /// Hands an agent's session connection to the operator waiting for it, if
    /// that agent is the one expected. `None`: nothing waits for it.
    pub fn take_sender(
        &self,
        request_id: &str,
        computer: &str,
    ) -> Option<oneshot::Sender<AgentConnection>> {
        lock(&self.slots)
            .get_mut(request_id)
            .filter(|slot| slot.computer == computer)
            .and_then(|slot| slot.deliver.take())
    }
}

/// The operator connection that speaks for a request, from its wait to the
/// end of its session: it receives the agent's session connection, and
/// learns when the operator resumed the request on another connection. The
/// slot is removed on drop.
#[derive(Debug)]
pub struct ExpectedSession {
    slots: Arc<SessionSlots>,
    id: u64,
    request_id: String,
    pub receiver: oneshot::Receiver<AgentConnection>,
    /// Completes (with an error) once a later connection took over.
    pub superseded: oneshot::Receiver<()>,
    /// The agent's report, over its control connection, that the session
    /// failed before its connection opened (a refusal, a connection it
    /// could not open). Once open, the session's end (the program's exit
    /// status) travels on its own connection.
    pub end: oneshot::Receiver<SessionEnd>,
}

impl Drop for ExpectedSession {
    fn drop(&mut self) {
        let mut slots = lock(&self.slots.slots);
        // Not a newer slot for the same request (see `SessionSlots::expect`).
        if slots
            .get(&self.request_id)
            .is_some_and(|slot| slot.id == self.id)
        {
            slots.remove(&self.request_id);
        }
        drop(slots);
        let mut ends = lock(&self.slots.ends);
        if ends
            .get(&self.request_id)
            .is_some_and(|slot| slot.id == self.id)
        {
            ends.remove(&self.request_id);
        }
    }
}

/// A forward session in progress: who may open tunnels, to where.
#[derive(Clone, Debug)]
pub struct ForwardGrant {
    pub operator: doorman_store::OperatorId,
    pub computer: String,
    pub targets: Vec<String>,
    /// Closes (`changed()` fails) when the forward session ends: its
    /// tunnels end with it.
    pub ended: watch::Receiver<()>,
}

/// The forward sessions in progress, by session id.
#[derive(Debug, Default)]
pub struct Forwards {
    grants: Mutex<HashMap<String, ForwardGrant>>,
}

impl Forwards {
    /// Lets the operator open tunnels for this session until the returned
    /// guard is dropped.
    pub fn grant(
        self: &Arc<Self>,
        session: &str,
        operator: doorman_store::OperatorId,
        computer: &str,
        targets: Vec<String>,
    ) -> ForwardingGuard {
        let (alive, ended) = watch::channel(());
        lock(&self.grants).insert(
            session.to_string(),
            ForwardGrant {
                operator,
                computer: computer.to_string(),
                targets,
                ended,
            },
        );
        ForwardingGuard {
            forwards: Arc::clone(self),
            session: session.to_string(),
            _alive: alive,
        }
    }

    pub fn get(&self, session: &str) -> Option<ForwardGrant> {
        lock(&self.grants).get(session).cloned()
    }
}

/// Ends a forward session's grant on drop.
#[derive(Debug)]
pub struct ForwardingGuard {
    forwards: Arc<Forwards>,
    session: String,
    /// Dropped with the guard, which ends the session's tunnels.
    _alive: watch::Sender<()>,
}

impl Drop for ForwardingGuard {
    fn drop(&mut self) {
        lock(&self.forwards.grants).remove(&self.session);
    }
}
