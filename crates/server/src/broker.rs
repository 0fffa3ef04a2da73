//! The broker's live state: which agents are online, who waits on which
//! request, which session connections are expected; and the one path by which
//! a request settles (decide, expire, cancel), which pushes the outcome to the
//! waiting operator and to the agent at once.

use crate::secrets::ServerKey;
use crate::store::{AuditEvent, Millis, Store, StoreError};
use doorman_core::{Outcome, RequestState};
use doorman_proto::dial::Upgraded;
use doorman_proto::message::{DeliveryState, OfferReply, ServerToAgent, ServerToOperator};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::{Notify, broadcast, mpsc, oneshot, watch};

/// How long an agent has to answer an offer.
pub const OFFER_TIMEOUT: Duration = Duration::from_secs(10);

/// The current time in milliseconds since the Unix epoch.
pub fn now_millis() -> Millis {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

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

/// Why a request was cancelled when its operator did not cancel it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CancelCause {
    /// The computer went offline while the request was pending.
    ComputerGone,
    /// No authorization email could be delivered; the last server reply.
    Undeliverable(String),
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

/// What operators' connections wait on: the outcome, and delivery news.
/// Several may wait on one request (an operator reconnecting while its old
/// connection is still being torn down).
#[derive(Debug)]
struct Waiter {
    outcome: watch::Sender<Option<Outcome>>,
    deliveries: broadcast::Sender<ServerToOperator>,
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
    cancel_causes: Mutex<HashMap<String, CancelCause>>,
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
    pub link_failures: crate::pages::FailureLimiter,
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
            cancel_causes: Mutex::default(),
            next_id: AtomicU64::new(1),
            agents_changed: watch::channel(0).0,
            outbox_wakeup: Notify::new(),
            shutdown,
            tasks: Arc::default(),
            limits,
            admission: tokio::sync::Mutex::new(()),
            link_failures: crate::pages::FailureLimiter::default(),
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
            let audit = AuditEvent {
                at: now_millis(),
                event: "cancelled".into(),
                request_id: Some(request.id.clone()),
                computer: Some(computer.to_string()),
                detail: Some("the computer went offline".into()),
                ..AuditEvent::default()
            };
            if let Err(error) = self
                .cancel_because(
                    &request.id,
                    Some(computer),
                    CancelCause::ComputerGone,
                    audit,
                )
                .await
            {
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
                deliveries: broadcast::channel(64).0,
                watchers: 0,
            });
        waiter.watchers += 1;
        RequestWatch {
            broker: Arc::clone(self),
            request_id: request_id.to_string(),
            receiver: waiter.outcome.subscribe(),
            deliveries: waiter.deliveries.subscribe(),
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

    /// Cancels a request for a reason other than its operator's wish; the
    /// operator's connection learns the cause from [`Broker::take_cancel_cause`].
    pub async fn cancel_because(
        &self,
        request_id: &str,
        decided_by: Option<&str>,
        cause: CancelCause,
        audit: AuditEvent,
    ) -> Result<(), StoreError> {
        self.settle_with_cause(
            request_id,
            RequestState::Cancelled,
            decided_by,
            audit,
            Some(cause),
        )
        .await?;
        Ok(())
    }

    /// Why a request was cancelled, if not by its operator.
    pub fn take_cancel_cause(&self, request_id: &str) -> Option<CancelCause> {
        lock(&self.cancel_causes).remove(request_id)
    }

    /// Settles a request if it is still pending, records the audit event, and
    /// pushes the outcome. Returns the request's outcome afterwards (whoever won).
    pub async fn settle(
        &self,
        request_id: &str,
        state: RequestState,
        decided_by: Option<&str>,
        audit: AuditEvent,
    ) -> Result<Option<Outcome>, StoreError> {
        Ok(self
            .settle_and_tell(request_id, state, decided_by, audit)
            .await?
            .1)
    }

    /// [`Broker::settle`], also saying whether this call was the one that
    /// settled the request.
    pub async fn settle_and_tell(
        &self,
        request_id: &str,
        state: RequestState,
        decided_by: Option<&str>,
        audit: AuditEvent,
    ) -> Result<(bool, Option<Outcome>), StoreError> {
        self.settle_with_cause(request_id, state, decided_by, audit, None)
            .await
    }

    /// Only the call that settles the request records its cause, and before
    /// the outcome is pushed, so the woken operator finds it; a losing call
    /// (e.g. the second of two failed emails) leaves the winner's alone.
    async fn settle_with_cause(
        &self,
        request_id: &str,
        state: RequestState,
        decided_by: Option<&str>,
        audit: AuditEvent,
        cause: Option<CancelCause>,
    ) -> Result<(bool, Option<Outcome>), StoreError> {
        let now = now_millis();
        let won = self
            .store
            .settle(request_id, state, decided_by, now, &audit)
            .await?;
        let Some(mut row) = self.store.request(request_id).await? else {
            return Ok((false, None));
        };
        if !won && row.state == RequestState::Pending && row.expires_at <= now {
            // A late decision: the request has expired; settle it as such.
            let expired = AuditEvent {
                at: now,
                event: "expired".into(),
                request_id: Some(row.id.clone()),
                computer: Some(row.computer.clone()),
                ..AuditEvent::default()
            };
            if self
                .store
                .settle(request_id, RequestState::Expired, None, now, &expired)
                .await?
            {
                row = self.store.request(request_id).await?.unwrap_or(row);
                if let Some(outcome) = row.outcome() {
                    self.publish(&row.id, &row.computer, &outcome).await;
                }
            }
            return Ok((false, row.outcome()));
        }
        let outcome = row.outcome();
        if won && let Some(outcome) = &outcome {
            if let Some(cause) = cause {
                lock(&self.cancel_causes).insert(request_id.to_string(), cause);
            }
            self.publish(&row.id, &row.computer, outcome).await;
        }
        Ok((won, outcome))
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
        if let Some(waiting) = lock(&self.waiting).get(request_id) {
            let _ = waiting.deliveries.send(ServerToOperator::Delivery {
                recipient: doorman_core::mask::mask_address(recipient),
                state,
                detail,
            });
        }
    }

    /// Expires the request when its time comes (or at once if it has come).
    pub fn schedule_expiry(
        self: &Arc<Self>,
        request_id: String,
        computer: String,
        expires_at: Millis,
    ) {
        let broker = Arc::clone(self);
        let mut shutdown = self.shutdown.clone();
        self.spawn(async move {
            let wait = u64::try_from(expires_at - now_millis()).unwrap_or(0);
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(wait)) => {}
                _ = crate::broker::stopping(&mut shutdown) => return,
            }
            // The database refuses an expiry before `expires_at`; a timer that
            // fires a hair early simply tries once more.
            for _ in 0..50 {
                let audit = AuditEvent {
                    at: now_millis(),
                    event: "expired".into(),
                    request_id: Some(request_id.clone()),
                    computer: Some(computer.clone()),
                    ..AuditEvent::default()
                };
                match broker
                    .settle(&request_id, RequestState::Expired, None, audit)
                    .await
                {
                    Ok(Some(_)) => return,
                    Ok(None) => {}
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
    pub deliveries: broadcast::Receiver<ServerToOperator>,
}

impl Drop for RequestWatch {
    fn drop(&mut self) {
        let mut waiting = lock(&self.broker.waiting);
        if let Some(waiter) = waiting.get_mut(&self.request_id) {
            waiter.watchers = waiter.watchers.saturating_sub(1);
            if waiter.watchers == 0 {
                waiting.remove(&self.request_id);
                // Nobody is left to take it.
                lock(&self.broker.cancel_causes).remove(&self.request_id);
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
