//! The broker's live state, one handle per concern: the server's
//! [`Lifecycle`], the online agents ([`AgentRegistry`]), who waits on which
//! request ([`Waiters`]), the session connections expected
//! ([`SessionSlots`], [`Forwards`]); and the one path by which a request
//! changes ([`Broker::apply`]: an approval, a decision, expiry, a
//! cancellation, a reuse), which runs the state machine, persists its step,
//! and pushes the news to the waiting operator and to the agent at once.

mod agents;
mod apply;
mod expiries;
mod handles;
mod sessions;
mod waiters;

pub use agents::{AgentCommand, AgentLink, AgentRegistry, OFFER_TIMEOUT, OfferError};
pub use doorman_runtime::lifecycle::Lifecycle;
pub use expiries::ExpiryTimers;
pub use sessions::{
    AgentConnection, ExpectedSession, ForwardGrant, ForwardingGuard, Forwards, SessionSlots,
};
pub use waiters::{RequestWatch, Waiters};

use doorman_core::authorization::{Event, Unchanged};
use doorman_core::{AuditKind, CancelCause, Outcome, Request};
use doorman_runtime::clock::Clock;
use doorman_runtime::secrets::ServerKey;
use doorman_store::{AuditEvent, ComputerId, Millis, Store, StoreError};
use doorman_wire::message::{DeliveryState, ServerToAgent, ServerToOperator};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::Notify;

/// Longest reason a computer may give for refusing an allowed request, in
/// characters.
const MAX_REFUSAL_CHARS: usize = 500;

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding one of these maps leaves it consistent (each
    // operation is a single insert or remove), so poisoning is not fatal.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
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
    /// The passkey assertion an Allow was made with (JSON), kept with the
    /// approval for the computer to verify.
    pub assertion: Option<String>,
}

impl Witness {
    /// Puts who, from where and the note on a transition's audit event.
    fn stamp(&self, audit: &mut AuditEvent) {
        audit.actor = self.actor.clone();
        audit.address = self.address.clone();
        audit.user_agent = self.user_agent.clone();
        if self.detail.is_some() {
            audit.detail = self.detail.clone();
        }
    }

    /// Who approved, as the operator is shown it: a recipient's address is
    /// masked; a person at the computer is named as the computer names
    /// them.
    fn shown_name(&self) -> String {
        let by = self.actor.as_deref().unwrap_or_default();
        if by.contains('@') {
            doorman_core::mask::mask_address(by)
        } else {
            by.to_string()
        }
    }
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

/// Shared live state; one per server process.
#[derive(Debug)]
pub struct Broker {
    /// The server's one clock: every time the broker and its handlers
    /// store, compare or sleep towards (see [`doorman_runtime::clock`]).
    clock: Clock,
    store: Store,
    key: ServerKey,
    lifecycle: Lifecycle,
    agents: AgentRegistry,
    waiters: Arc<Waiters>,
    expiries: ExpiryTimers,
    sessions: Arc<SessionSlots>,
    forwards: Arc<Forwards>,
    limits: crate::Limits,
    /// How often agents and waiting operators are pinged.
    heartbeat: Duration,
    /// Wakes the outbox worker when new emails are queued.
    outbox_wakeup: Notify,
    /// Serialises "check the limits, then create the request", so that two
    /// simultaneous connects cannot both slip under a limit.
    admission: tokio::sync::Mutex<()>,
    /// Invalid link tokens per client address.
    link_failures: doorman_http::failures::FailureLimiter,
    /// Wrong operator tokens and agent keys, per client network.
    credential_failures: doorman_http::failures::FailureLimiter,
    /// The last replacement or removal of an agent key the database
    /// records (see `agents::watch_keys`); agent loops check their key
    /// when it changes.
    agent_keys_changed: tokio::sync::watch::Sender<i64>,
    metrics: crate::metrics::Metrics,
    /// Whether shell sessions are recorded, and where.
    recordings: doorman_recordings::Recordings,
}

impl Broker {
    pub fn new(
        clock: Clock,
        store: Store,
        key: ServerKey,
        limits: crate::Limits,
        heartbeat: Duration,
        metrics: crate::metrics::Metrics,
        recordings: doorman_recordings::Recordings,
    ) -> Self {
        Self {
            clock,
            store,
            key,
            lifecycle: Lifecycle::default(),
            agents: AgentRegistry::counted(metrics.computers_connected()),
            waiters: Arc::default(),
            expiries: ExpiryTimers::default(),
            sessions: Arc::default(),
            forwards: Arc::default(),
            limits,
            heartbeat,
            outbox_wakeup: Notify::new(),
            admission: tokio::sync::Mutex::new(()),
            link_failures: doorman_http::failures::FailureLimiter::for_links(),
            credential_failures: doorman_http::failures::FailureLimiter::for_credentials(),
            agent_keys_changed: tokio::sync::watch::Sender::new(0),
            metrics,
            recordings,
        }
    }

    /// Ticks once a heartbeat by the server's clock, the first a
    /// heartbeat from now; a late tick does not bunch up the next ones.
    /// Made before the peer is told anything, so that a test moving the
    /// clock after an event fires it.
    pub fn heartbeat_ticks(&self) -> doorman_runtime::clock::Ticks {
        self.clock.ticks(self.heartbeat)
    }

    /// The heartbeat as sent in `Welcome` and `Pending`.
    pub fn heartbeat_ms(&self) -> Option<u64> {
        u64::try_from(self.heartbeat.as_millis()).ok()
    }

    /// The computer `computer` (whose id is `id`) went offline (not because
    /// the server stops): its pending requests cannot lead to a session, so
    /// they are cancelled and their operators told.
    pub async fn computer_went_offline(&self, computer: &str, id: ComputerId) {
        if self.lifecycle.is_stopping() {
            return;
        }
        let pending = match self.store.pending_for_computer(id).await {
            Ok(pending) => pending,
            Err(error) => {
                tracing::error!(%error, "cannot list the pending requests of an offline computer");
                return;
            }
        };
        for request in pending {
            let cancel = Event::Cancel {
                cause: CancelCause::ComputerGone,
                at: self.clock.now_millis(),
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

    /// Computer `computer` refused the session of its allowed request
    /// `request_id`, for `reason` (an approval its own checks do not
    /// accept: a passkey, the local consent, a reuse): the request ends
    /// cancelled, refused by the computer, in the audit trail and on the
    /// recipients' pages, and its outcome is never sent to the agent
    /// again. The reason as recorded when this call recorded it; `None` for
    /// a request of another computer, one not allowed (refused already), or
    /// one whose session started.
    pub async fn refused_by_computer(
        &self,
        computer: &str,
        computer_id: ComputerId,
        request_id: &str,
        reason: &str,
    ) -> Result<Option<String>, StoreError> {
        // The computer's words, one visible line of bounded length.
        let reason: String = doorman_core::display::escape_hidden(reason)
            .chars()
            .take(MAX_REFUSAL_CHARS)
            .collect();
        let Some((row, Request::Settled(settled))) = self.store.load(request_id).await? else {
            return Ok(None);
        };
        // This computer's, not an earlier one's of the same name.
        if row.computer_id != Some(computer_id) {
            return Ok(None);
        }
        let at = self.clock.now_millis();
        let Ok(refused) = settled.refused_by_computer(reason.clone(), at) else {
            return Ok(None);
        };
        let Outcome::Cancelled { cause, .. } = refused.outcome() else {
            return Ok(None);
        };
        let audit = AuditEvent::new(AuditKind::Refused, at)
            .request(&row.id, &row.computer)
            .actor(computer)
            .detail(cause.describe());
        if !self.store.persist_refusal(&row, &refused, &audit).await? {
            return Ok(None);
        }
        tracing::warn!(computer = %computer, request = %request_id, cause = %cause.describe(), "the computer refused an allowed request");
        self.waiters.settle(&row.id, refused.outcome());
        Ok(Some(reason))
    }

    /// Tells the waiting operator and the agent how the request ended,
    /// waiting on neither: an agent that does not take the news is dropped
    /// (see [`AgentRegistry::send`]) and hears it again when it dials back,
    /// if it was an Allow.
    async fn publish(&self, row: &doorman_store::RequestRow, outcome: &Outcome) {
        self.waiters.settle(&row.id, outcome);
        let settled = ServerToAgent::Settled {
            request_id: row.id.clone(),
            outcome: outcome.clone(),
            assertions: self.assertions_of(row, outcome).await,
        };
        self.agents.send(&row.computer, settled);
    }

    /// The passkey assertions an allowed request's approvals were made
    /// with; none (and no query) when the computer required none. One that
    /// cannot be read is left out: the computer then refuses for too few.
    pub async fn assertions_of(
        &self,
        request: &doorman_store::RequestRow,
        outcome: &Outcome,
    ) -> Vec<doorman_core::passkey::Assertion> {
        if request.passkey.is_none() || !matches!(outcome, Outcome::Allowed { .. }) {
            return Vec::new();
        }
        match self.store.approval_assertions(&request.id).await {
            Ok(stored) => stored
                .iter()
                .filter_map(|json| serde_json::from_str(json).ok())
                .collect(),
            Err(error) => {
                tracing::error!(%error, "cannot read the passkey assertions of a request");
                Vec::new()
            }
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
        self.waiters.tell(
            request_id,
            ServerToOperator::Delivery {
                recipient: doorman_core::mask::mask_address(recipient),
                state,
                detail,
            },
        );
    }

    /// Expires the request when its time comes by the server's clock (or
    /// at once if it has come), and keeps trying until the expiry lands: a
    /// database that fails at the deadline (a full disk, a lost
    /// connection) only delays it, by at most [`EXPIRY_RETRY_CAP`] once the
    /// database is back. Stops once the request is settled (by this or
    /// anything else) or gone, or when the server stops: settled by this
    /// server, at once ([`ExpiryTimers`]).
    pub fn schedule_expiry(self: &Arc<Self>, request_id: String, expires_at: Millis) {
        let broker = Arc::clone(self);
        let timer = self.expiries.start(&request_id);
        self.lifecycle.spawn(async move {
            broker
                .expire_when_due(&request_id, expires_at, &timer.settled)
                .await;
            broker.expiries.finished(&request_id, &timer);
        });
    }

    async fn expire_when_due(
        &self,
        request_id: &str,
        expires_at: Millis,
        settled: &tokio_util::sync::CancellationToken,
    ) {
        let mut pauses = expiry_backoff();
        let mut failures: u64 = 0;
        loop {
            // Monotonic: a wall-clock step neither brings the deadline
            // nearer nor puts it off; a test that moves the clock past it
            // wakes this at once.
            tokio::select! {
                () = self.clock.sleep_until(expires_at) => {}
                () = settled.cancelled() => return,
                () = self.lifecycle.stopping() => return,
            }
            let pause = match self.expire(request_id).await {
                Ok(Applied::Unchanged(Unchanged::NotYetExpired)) => EXPIRY_RETRY_MIN,
                Ok(_) => return,
                Err(error) => {
                    failures += 1;
                    // Once, then once a minute or so: an outage does not
                    // flood the log with one line per request and second.
                    if failures % 60 == 1 {
                        tracing::warn!(%error, request = %request_id, failures, "cannot expire the request yet; trying again until it lands");
                    }
                    pauses.next().unwrap_or(EXPIRY_RETRY_CAP)
                }
            };
            // On the same clock: a test moves through an outage.
            tokio::select! {
                () = self.clock.sleep(pause) => {}
                () = self.lifecycle.stopping() => return,
            }
        }
    }

    /// Applies `Event::Expire` to the request now: `Settled(Expired)` if
    /// this call expired it, `AlreadySettled` if something settled it
    /// first, `Unchanged(NotYetExpired)` before its deadline. Used by the
    /// expiry timer and, as a backstop, by the operator's wait.
    pub async fn expire(&self, request_id: &str) -> Result<Applied, StoreError> {
        let expire = Event::Expire {
            at: self.clock.now_millis(),
        };
        self.apply(request_id, expire, Witness::default()).await
    }
}

/// The first pause before trying a failed expiry again; it doubles up to
/// [`EXPIRY_RETRY_CAP`].
const EXPIRY_RETRY_MIN: Duration = Duration::from_millis(20);

/// The longest pause between two tries of an expiry the database failed:
/// how late an expiry may land once the database is back.
pub const EXPIRY_RETRY_CAP: Duration = Duration::from_secs(1);

/// The pauses between tries of an expiry the database keeps failing: 20 ms,
/// 40 ms … up to [`EXPIRY_RETRY_CAP`], without end.
fn expiry_backoff() -> impl Iterator<Item = Duration> {
    use backon::BackoffBuilder;
    backon::ExponentialBuilder::default()
        .with_min_delay(EXPIRY_RETRY_MIN)
        .with_max_delay(EXPIRY_RETRY_CAP)
        .without_max_times()
        .build()
}
