//! The outbox worker's view of the server ([`doorman_mail::PostOffice`]):
//! the broker's store, clock and links, the operator told how each email is
//! doing, and a request none of whose emails arrived ended.

use crate::broker::{Broker, Witness};
use doorman_core::CancelCause;
use doorman_core::authorization::Event;
use doorman_mail::{Permanence, PostOffice};
use doorman_store::{Millis, Store};
use doorman_wire::message::DeliveryState;
use std::future::Future;

impl PostOffice for Broker {
    fn store(&self) -> &Store {
        Broker::store(self)
    }

    fn now_millis(&self) -> Millis {
        Broker::now_millis(self)
    }

    fn sleep_until(&self, at: Millis) -> impl Future<Output = ()> + Send + '_ {
        self.clock().sleep_until(at)
    }

    fn stopping(&self) -> impl Future<Output = ()> + Send + '_ {
        self.lifecycle().stopping()
    }

    fn queued(&self) -> impl Future<Output = ()> + Send + '_ {
        self.outbox_queued()
    }

    fn link_token(&self, request_id: &str, position: i64) -> String {
        self.key().link_token(request_id, position)
    }

    fn report_delivery(
        &self,
        request_id: &str,
        address: &str,
        state: DeliveryState,
        detail: Option<String>,
    ) {
        Broker::report_delivery(self, request_id, address, state, detail);
    }

    fn count(&self, sent: Result<(), Permanence>) {
        match sent {
            Ok(()) => self.metrics().email_sent(),
            Err(permanence) => self
                .metrics()
                .email_failed(permanence == Permanence::GivenUp),
        }
    }

    async fn end_undeliverable(&self, request_id: &str, error: String) {
        let cancel = Event::Cancel {
            cause: CancelCause::Undeliverable { error },
            at: self.clock().now_millis(),
        };
        if let Err(error) = self.apply(request_id, cancel, Witness::default()).await {
            tracing::error!(%error, "cannot end an undeliverable request");
        }
    }
}
