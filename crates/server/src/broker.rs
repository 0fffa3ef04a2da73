//! The broker's live state: which agents are online, who waits on which
//! request, which session connections are expected; and the one path by which
//! a request changes ([`Broker::apply`]: an approval, a decision, expiry, a
//! cancellation), which runs the state machine, persists its step, and
//! pushes the news to the waiting operator and to the agent at once.

use crate::clock::now_millis;
use crate::secrets::ServerKey;
use crate::store::transitions::transition_audit;
use crate::store::{Block, Millis, Store, StoreError};
use doorman_core::authorization::{Event, Step, Unchanged};
use doorman_core::{CancelCause, Outcome, Request};
use doorman_proto::dial::Upgraded;
use doorman_proto::message::{DeliveryState, OfferReply, ServerToAgent, ServerToOperator};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::{Notify, broadcast, mpsc, oneshot, watch};

/// How long an agent has to answer an offer.
pub const OFFER_TIMEOUT: Duration = Duration::from_secs(10);

/// Completes once the server is shutting down.
pub async fn stopping(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|stop| *stop).await;
}

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

#[derive(Debug)]
struct AgentLink {
    id: u64,
    commands: mpsc::Sender<AgentCommand>,
}

#[derive(Debug)]
struct SessionSlot {
    /// Tells this slot from a later one for the same request.
    id: u64,
    computer: String,
    /// Taken when the agent's session connection arrives.
    deliver: Option<oneshot::Sender<Upgraded>>,
    /// Dropped when a later slot for the same request replaces this one,
    /// which tells the operator connection holding it that it is superseded.
    _current: oneshot::Sender<()>,
}

/// Where an event came from, for the audit trail: who (an operator, a
/// recipient's address), from which address and browser, and a note that
/// replaces the transition's own.
#[derive(Clone, Debug, Default)]
pub struct Witness {
    pub actor: Option<String>,
    pub address: Option<String>,
    pub user_agent: Option<String>,
    pub detail: Option<String>,
}

/// What [`Broker::apply`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Applied {
    /// An Allow was counted; more are needed.
    Approved { approvals: u32, required: u32 },
    /// This call settled the request.
    Settled(Outcome),
    /// It was settled before.
    AlreadySettled(Outcome),
    /// Nothing changed.
    Unchanged(Unchanged),
    /// No such request.
    Unknown,
}

/// A forward session in progress: who may open tunnels, to where.
#[derive(Clone, Debug)]
pub struct ForwardGrant {
    pub operator: String,
    pub computer: String,
    pub targets: Vec<String>,
    /// Closes (`changed()` fails) when the forward session ends: its
    /// tunnels end with it.
    pub ended: watch::Receiver<()>,
}

/// What operators' connections wait on: the outcome, and news (deliveries,
/// approvals).
/// Several may wait on one request (an operator reconnecting while its old
/// connection is still being torn down).
#[derive(Debug)]
struct Waiter {
    outcome: watch::Sender<Option<Outcome>>,
    news: broadcast::Sender<ServerToOperator>,
    watchers: usize,
}

/// Why an offer got no answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OfferError {
    Offline,
    NoAnswer,
}

/// Shared live state; one per server process.
#[derive(Debug)]
pub struct Broker {
    pub store: Store,
    pub key: ServerKey,
    agents: Mutex<HashMap<String, AgentLink>>,
    waiting: Mutex<HashMap<String, Waiter>>,
    sessions: Mutex<HashMap<String, SessionSlot>>,
    forwards: Mutex<HashMap<String, ForwardGrant>>,
    /// Tells an agent's connection, or a session slot, from a later one of
    /// the same name.
    next_id: AtomicU64,
    /// Bumped whenever an agent comes or goes, so callers can await it.
    agents_changed: watch::Sender<u64>,
    /// Wakes the outbox worker when new emails are queued.
    pub outbox_wakeup: Notify,
    pub shutdown: watch::Receiver<bool>,
    tasks: Arc<TaskCount>,
    pub limits: crate::Limits,
    /// How often agents and waiting operators are pinged.
    pub heartbeat: Duration,
    /// Serialises "check the limits, then create the request", so that two
    /// simultaneous connects cannot both slip under a limit.
    pub admission: tokio::sync::Mutex<()>,
    /// Invalid link tokens per client address.
    pub link_failures: crate::link_limit::FailureLimiter,
}

/// Counts the tasks started with [`Broker::spawn`], so that shutdown can wait
/// for them.
#[derive(Debug, Default)]
struct TaskCount {
    running: AtomicUsize,
    idle: Notify,
}

/// Decrements the count when a task ends, even by panic.
struct TaskGuard(Arc<TaskCount>);

impl Drop for TaskGuard {
    fn drop(&mut self) {
        if self.0.running.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.idle.notify_waiters();
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding one of these maps leaves it consistent (each
    // operation is a single insert or remove), so poisoning is not fatal.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Broker {
    pub fn new(
        store: Store,
        key: ServerKey,
        shutdown: watch::Receiver<bool>,
        limits: crate::Limits,
        heartbeat: Duration,
    ) -> Self {
        Self {
            heartbeat,
            store,
            key,
            agents: Mutex::default(),
            waiting: Mutex::default(),
            sessions: Mutex::default(),
            forwards: Mutex::default(),
            next_id: AtomicU64::new(1),
            agents_changed: watch::channel(0).0,
            outbox_wakeup: Notify::new(),
            shutdown,
            tasks: Arc::default(),
            limits,
            admission: tokio::sync::Mutex::new(()),
            link_failures: crate::link_limit::FailureLimiter::default(),
        }
    }

    /// Ticks once a heartbeat, the first a heartbeat from now; a late tick
    /// does not bunch up the next ones.
    pub fn heartbeat_ticks(&self) -> tokio::time::Interval {
        let mut ticks =
            tokio::time::interval_at(tokio::time::Instant::now() + self.heartbeat, self.heartbeat);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticks
    }

    /// The heartbeat as sent in `Welcome` and `Pending`.
    pub fn heartbeat_ms(&self) -> Option<u64> {
        u64::try_from(self.heartbeat.as_millis()).ok()
    }

    /// Spawns a task that `run` waits for at shutdown.
    pub fn spawn<F>(&self, future: F)
    where
        F: std::future::Future<Output = ()> + Send + 'static,
    {
        self.tasks.running.fetch_add(1, Ordering::AcqRel);
        let guard = TaskGuard(Arc::clone(&self.tasks));
        tokio::spawn(async move {
            future.await;
            drop(guard);
        });
    }

    /// Waits until every task started with [`Broker::spawn`] has ended.
    pub async fn wait_for_tasks(&self) {
        loop {
            let idle = self.tasks.idle.notified();
            tokio::pin!(idle);
            idle.as_mut().enable();
            if self.tasks.running.load(Ordering::Acquire) == 0 {
                return;
            }
            idle.await;
        }
    }

    /// Registers an agent's connection, replacing an older one of the same name.
    pub fn register_agent(&self, name: &str) -> (u64, mpsc::Receiver<AgentCommand>) {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (commands, receiver) = mpsc::channel(64);
        lock(&self.agents).insert(name.to_string(), AgentLink { id, commands });
        self.agents_changed.send_modify(|version| *version += 1);
        (id, receiver)
    }

    /// Removes this connection of the agent; false when a newer one had
    /// already replaced it (the agent is still online).
    pub fn unregister_agent(&self, name: &str, id: u64) -> bool {
        let mut agents = lock(&self.agents);
        let removed = agents.get(name).is_some_and(|link| link.id == id);
        if removed {
            agents.remove(name);
        }
        drop(agents);
        self.agents_changed.send_modify(|version| *version += 1);
        removed
    }

    /// The computer went offline (not because the server stops): its pending
    /// requests cannot lead to a session, so they are cancelled and their
    /// operators told.
    pub async fn computer_went_offline(&self, computer: &str) {
        if *self.shutdown.borrow() {
            return;
        }
        let pending = match self.store.pending_for_computer(computer).await {
            Ok(pending) => pending,
            Err(error) => {
                tracing::error!(%error, "cannot list the pending requests of an offline computer");
                return;
            }
        };
        for request in pending {
            let cancel = Event::Cancel {
                cause: CancelCause::ComputerGone,
                at: now_millis(),
            };
            let witness = Witness {
                actor: Some(computer.to_string()),
                ..Witness::default()
            };
            if let Err(error) = self.apply(&request.id, cancel, witness).await {
                tracing::error!(%error, "cannot cancel a request of an offline computer");
            }
        }
    }

    /// Waits until the named agent is online (or offline, with `online = false`).
    pub async fn wait_for_agent(&self, name: &str, online: bool) {
        let mut changes = self.agents_changed.subscribe();
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
        lock(&self.agents).contains_key(name)
    }

    fn agent_sender(&self, name: &str) -> Option<mpsc::Sender<AgentCommand>> {
        lock(&self.agents)
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
        let sender = self.agent_sender(computer).ok_or(OfferError::Offline)?;
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

    /// Starts watching a request's outcome; the registration ends when the
    /// returned guard is dropped.
    pub fn watch_request(self: &Arc<Self>, request_id: &str) -> RequestWatch {
        let mut waiting = lock(&self.waiting);
        let waiter = waiting
            .entry(request_id.to_string())
            .or_insert_with(|| Waiter {
                outcome: watch::channel(None).0,
                news: broadcast::channel(64).0,
                watchers: 0,
            });
        waiter.watchers += 1;
        RequestWatch {
            broker: Arc::clone(self),
            request_id: request_id.to_string(),
            receiver: waiter.outcome.subscribe(),
            news: waiter.news.subscribe(),
        }
    }

    /// Expects the agent's session connection for a request.
    pub fn expect_session(self: &Arc<Self>, request_id: &str, computer: &str) -> ExpectedSession {
        let (deliver, receiver) = oneshot::channel();
        let (current, superseded) = oneshot::channel();
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        // An operator that resumed (its old connection went dead) takes the
        // slot over from the old connection's handler, which then stops.
        lock(&self.sessions).insert(
            request_id.to_string(),
            SessionSlot {
                id,
                computer: computer.to_string(),
                deliver: Some(deliver),
                _current: current,
            },
        );
        ExpectedSession {
            broker: Arc::clone(self),
            id,
            request_id: request_id.to_string(),
            receiver,
            superseded,
        }
    }

    /// Hands an agent's session connection to the operator waiting for it, if
    /// that agent is the one expected. `None`: nothing waits for it.
    pub fn session_sender(
        &self,
        request_id: &str,
        computer: &str,
    ) -> Option<oneshot::Sender<Upgraded>> {
        lock(&self.sessions)
            .get_mut(request_id)
            .filter(|slot| slot.computer == computer)
            .and_then(|slot| slot.deliver.take())
    }

    /// Lets the operator open tunnels for this session until the returned
    /// guard is dropped.
    pub fn grant_forwarding(
        self: &Arc<Self>,
        session: &str,
        operator: &str,
        computer: &str,
        targets: Vec<String>,
    ) -> ForwardingGuard {
        let (alive, ended) = watch::channel(());
        lock(&self.forwards).insert(
            session.to_string(),
            ForwardGrant {
                operator: operator.to_string(),
                computer: computer.to_string(),
                targets,
                ended,
            },
        );
        ForwardingGuard {
            broker: Arc::clone(self),
            session: session.to_string(),
            _alive: alive,
        }
    }

    pub fn forward_grant(&self, session: &str) -> Option<ForwardGrant> {
        lock(&self.forwards).get(session).cloned()
    }

    /// Sends a message to an online agent; false if it is not online.
    pub async fn send_to_agent(&self, computer: &str, message: ServerToAgent) -> bool {
        match self.agent_sender(computer) {
            Some(sender) => sender.send(AgentCommand::Send(message)).await.is_ok(),
            None => false,
        }
    }

    /// Applies an event to a request: runs the state machine on the request
    /// as stored, persists its step with one conditional write (reading
    /// again and reapplying when something else changed it first), and
    /// pushes the news: an approval to the waiting operator, an outcome to
    /// the operator and the agent.
    pub async fn apply(
        &self,
        request_id: &str,
        event: Event,
        witness: Witness,
    ) -> Result<Applied, StoreError> {
        // Each retry means another transition won in between; a request
        // has at most a few dozen recipients.
        for _ in 0..64 {
            let Some((row, machine)) = self.store.load(request_id).await? else {
                return Ok(Applied::Unknown);
            };
            let pending = match machine {
                Request::Pending(pending) => pending,
                Request::Settled(settled) => {
                    return Ok(Applied::AlreadySettled(settled.outcome().clone()));
                }
            };
            let at = event.at();
            let step = pending.apply(event.clone());
            let Some(mut audit) = transition_audit(&row, &step, at) else {
                if let Step::Unchanged(_, why) = step {
                    return Ok(Applied::Unchanged(why));
                }
                continue;
            };
            audit.actor = witness.actor.clone();
            audit.address = witness.address.clone();
            audit.user_agent = witness.user_agent.clone();
            if witness.detail.is_some() {
                audit.detail = witness.detail.clone();
            }
            let block = match &step {
                Step::Settled(settled) if settled.reported() => {
                    let minutes = self.limits.block_minutes;
                    audit.detail = Some(format!(
                        "recipient did not expect this request; {} blocked from {} for {minutes} minutes",
                        row.operator, row.computer
                    ));
                    Some(Block {
                        operator: row.operator.clone(),
                        computer: row.computer.clone(),
                        until: at + i64::from(minutes) * 60_000,
                        reported_by: witness.actor.clone().unwrap_or_default(),
                    })
                }
                _ => None,
            };
            if !self
                .store
                .persist(&row, &step, at, &audit, block.as_ref())
                .await?
            {
                continue;
            }
            return Ok(match step {
                Step::Approved(pending) => {
                    let approvals = u32::try_from(pending.approvals.len()).unwrap_or(u32::MAX);
                    let required = pending.required_approvals;
                    // A recipient's address is masked; a person at the
                    // computer is named as the computer names them.
                    let by = witness.actor.as_deref().unwrap_or_default();
                    let by = if by.contains('@') {
                        doorman_core::mask::mask_address(by)
                    } else {
                        by.to_string()
                    };
                    self.tell_operator(
                        request_id,
                        ServerToOperator::Approval {
                            approvals,
                            required,
                            by,
                        },
                    );
                    Applied::Approved {
                        approvals,
                        required,
                    }
                }
                Step::Settled(settled) => {
                    self.publish(&row.id, &row.computer, settled.outcome())
                        .await;
                    Applied::Settled(settled.outcome().clone())
                }
                Step::Unchanged(_, why) => Applied::Unchanged(why),
            });
        }
        Err(StoreError::Contended(request_id.to_string()))
    }

    async fn publish(&self, request_id: &str, computer: &str, outcome: &Outcome) {
        if let Some(waiting) = lock(&self.waiting).get(request_id) {
            waiting.outcome.send_replace(Some(outcome.clone()));
        }
        if let Some(agent) = self.agent_sender(computer) {
            let _ = agent
                .send(AgentCommand::Send(ServerToAgent::Settled {
                    request_id: request_id.to_string(),
                    outcome: outcome.clone(),
                }))
                .await;
        }
    }

    /// Tells the waiting operator how the email to `recipient` is doing.
    pub fn report_delivery(
        &self,
        request_id: &str,
        recipient: &str,
        state: DeliveryState,
        detail: Option<String>,
    ) {
        self.tell_operator(
            request_id,
            ServerToOperator::Delivery {
                recipient: doorman_core::mask::mask_address(recipient),
                state,
                detail,
            },
        );
    }

    /// Sends news to the operators waiting on a request, if any.
    fn tell_operator(&self, request_id: &str, news: ServerToOperator) {
        if let Some(waiting) = lock(&self.waiting).get(request_id) {
            let _ = waiting.news.send(news);
        }
    }

    /// Expires the request when its time comes (or at once if it has come).
    pub fn schedule_expiry(self: &Arc<Self>, request_id: String, expires_at: Millis) {
        let broker = Arc::clone(self);
        let mut shutdown = self.shutdown.clone();
        self.spawn(async move {
            let wait = u64::try_from(expires_at - now_millis()).unwrap_or(0);
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(wait)) => {}
                _ = crate::broker::stopping(&mut shutdown) => return,
            }
            // A timer that fires a hair before `expires_at` changes nothing
            // (the state machine keeps the request's full time): try again.
            for _ in 0..50 {
                let expire = Event::Expire { at: now_millis() };
                match broker.apply(&request_id, expire, Witness::default()).await {
                    Ok(Applied::Unchanged(Unchanged::NotYetExpired)) => {}
                    Ok(_) => return,
                    Err(e) => tracing::warn!(error = %e, "could not expire request"),
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        });
    }
}

/// Ends a forward session's grant on drop.
#[derive(Debug)]
pub struct ForwardingGuard {
    broker: Arc<Broker>,
    session: String,
    /// Dropped with the guard, which ends the session's tunnels.
    _alive: watch::Sender<()>,
}

impl Drop for ForwardingGuard {
    fn drop(&mut self) {
        lock(&self.broker.forwards).remove(&self.session);
    }
}

/// A registration for a request's outcome; unregisters on drop.
#[derive(Debug)]
pub struct RequestWatch {
    broker: Arc<Broker>,
    request_id: String,
    pub receiver: watch::Receiver<Option<Outcome>>,
    pub news: broadcast::Receiver<ServerToOperator>,
}

impl Drop for RequestWatch {
    fn drop(&mut self) {
        let mut waiting = lock(&self.broker.waiting);
        if let Some(waiter) = waiting.get_mut(&self.request_id) {
            waiter.watchers = waiter.watchers.saturating_sub(1);
            if waiter.watchers == 0 {
                waiting.remove(&self.request_id);
            }
        }
    }
}

/// The operator connection that speaks for a request, from its wait to the
/// end of its session: it receives the agent's session connection, and
/// learns when the operator resumed the request on another connection. The
/// slot is removed on drop.
#[derive(Debug)]
pub struct ExpectedSession {
    broker: Arc<Broker>,
    id: u64,
    request_id: String,
    pub receiver: oneshot::Receiver<Upgraded>,
    /// Completes (with an error) once a later connection took over.
    pub superseded: oneshot::Receiver<()>,
}

impl Drop for ExpectedSession {
    fn drop(&mut self) {
        let mut sessions = lock(&self.broker.sessions);
        // Not a newer slot for the same request (see `expect_session`).
        if sessions
            .get(&self.request_id)
            .is_some_and(|slot| slot.id == self.id)
        {
            sessions.remove(&self.request_id);
        }
    }
}
