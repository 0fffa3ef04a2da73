//! Who waits on which request: the operators' connections, each with the
//! outcome to await and the news (deliveries, approvals) to pass on.

use super::lock;
use doorman_core::Outcome;
use doorman_wire::message::ServerToOperator;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::sync::{broadcast, watch};

/// What operators' connections wait on. Several may wait on one request
/// (an operator reconnecting while its old connection is being torn down).
#[derive(Debug)]
struct Waiter {
    outcome: watch::Sender<Option<Outcome>>,
    news: broadcast::Sender<ServerToOperator>,
    watchers: usize,
}

/// The requests someone waits on, by request id.
#[derive(Debug, Default)]
pub struct Waiters {
    waiting: Mutex<HashMap<String, Waiter>>,
}

impl Waiters {
    /// Starts watching a request's outcome; the registration ends when the
    /// returned guard is dropped.
    pub fn watch(self: &Arc<Self>, request_id: &str) -> RequestWatch {
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
            waiters: Arc::clone(self),
            request_id: request_id.to_string(),
            receiver: waiter.outcome.subscribe(),
            news: waiter.news.subscribe(),
        }
    }

    /// Sends news to the operators waiting on a request, if any.
    pub fn tell(&self, request_id: &str, news: ServerToOperator) {
        if let Some(waiting) = lock(&self.waiting).get(request_id) {
            let _ = waiting.news.send(news);
        }
    }

    /// Wakes the operators waiting on a request with its outcome.
    pub fn settle(&self, request_id: &str, outcome: &Outcome) {
        if let Some(waiting) = lock(&self.waiting).get(request_id) {
            waiting.outcome.send_replace(Some(outcome.clone()));
        }
    }
}

/// A registration for a request's outcome; unregisters on drop.
#[derive(Debug)]
pub struct RequestWatch {
    waiters: Arc<Waiters>,
    request_id: String,
    pub receiver: watch::Receiver<Option<Outcome>>,
    pub news: broadcast::Receiver<ServerToOperator>,
}

impl Drop for RequestWatch {
    fn drop(&mut self) {
        let mut waiting = lock(&self.waiters.waiting);
        if let Some(waiter) = waiting.get_mut(&self.request_id) {
            waiter.watchers = waiter.watchers.saturating_sub(1);
            if waiter.watchers == 0 {
                waiting.remove(&self.request_id);
            }
        }
    }
}
