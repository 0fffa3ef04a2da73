//! What the broker lends out: each of its handles by what it is for, and
//! the few things done through them often enough to have a name. The
//! fields stay private, so every reach into the broker reads as one of
//! these.

use super::{AgentRegistry, Broker, ExpiryTimers, Forwards, Lifecycle, SessionSlots, Waiters};
use crate::metrics::Metrics;
use doorman_http::failures::FailureLimiter;
use doorman_recordings::Recorder;
use doorman_runtime::clock::Clock;
use doorman_runtime::secrets::ServerKey;
use doorman_store::{Millis, Store};
use std::sync::Arc;
use std::time::Duration;

impl Broker {
    /// The server's one clock: every time the broker and its handlers
    /// store, compare or sleep towards.
    pub fn clock(&self) -> &Clock {
        &self.clock
    }

    /// Now, by [`Broker::clock`].
    pub fn now_millis(&self) -> Millis {
        self.clock.now_millis()
    }

    /// The database.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The server's key: link tokens, page nonces, sealed secrets.
    pub fn key(&self) -> &ServerKey {
        &self.key
    }

    /// The server's stop, and the tasks it waits for.
    pub fn lifecycle(&self) -> &Lifecycle {
        &self.lifecycle
    }

    /// The computers online, and the offers and commands sent to them.
    pub fn agents(&self) -> &AgentRegistry {
        &self.agents
    }

    /// Who waits on which request.
    pub fn waiters(&self) -> &Arc<Waiters> {
        &self.waiters
    }

    /// The expiry timers of the pending requests.
    pub fn expiries(&self) -> &ExpiryTimers {
        &self.expiries
    }

    /// The session connections expected from agents.
    pub fn sessions(&self) -> &Arc<SessionSlots> {
        &self.sessions
    }

    /// The forward sessions running, and the targets each may reach.
    pub fn forwards(&self) -> &Arc<Forwards> {
        &self.forwards
    }

    /// The limits that keep recipients from being flooded.
    pub fn limits(&self) -> crate::Limits {
        self.limits
    }

    /// How often agents and waiting operators are pinged.
    pub fn heartbeat(&self) -> Duration {
        self.heartbeat
    }

    /// What the server counts.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// Whether shell sessions are recorded, and where.
    pub fn recorder(&self) -> Recorder<'_> {
        Recorder {
            store: &self.store,
            clock: &self.clock,
            settings: self.recordings,
        }
    }

    /// Invalid link tokens, per client address.
    pub fn link_failures(&self) -> &FailureLimiter {
        &self.link_failures
    }

    /// Wrong operator tokens and agent keys, per client network.
    pub fn credential_failures(&self) -> &FailureLimiter {
        &self.credential_failures
    }

    /// The last replacement or removal of an agent key the database
    /// records; agent loops check their key when it changes.
    pub fn agent_keys_changed(&self) -> &tokio::sync::watch::Sender<i64> {
        &self.agent_keys_changed
    }

    /// Wakes the outbox worker: emails were queued.
    pub fn wake_outbox(&self) {
        self.outbox_wakeup.notify_one();
    }

    /// Completes when [`Broker::wake_outbox`] is called.
    pub fn outbox_queued(&self) -> tokio::sync::futures::Notified<'_> {
        self.outbox_wakeup.notified()
    }

    /// Serialises "check the limits, then create the request", so that two
    /// simultaneous connects cannot both slip under a limit; held until
    /// the guard is dropped.
    pub async fn admission(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.admission.lock().await
    }
}
