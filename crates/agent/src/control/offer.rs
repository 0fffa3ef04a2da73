//! Answering an offer from the settings as they are now (read afresh, so
//! that changes apply without a restart): a request that needs
//! authorization is remembered until its deadline and, with local consent
//! on, put to the person at the computer; an admitted one starts.

use super::Acting;
use crate::memory::{AwaitedOffer, Full, Memory};
use crate::notify::Visitor;
use crate::session::Allowed;
use crate::settings_file;
use doorman_core::LocalConsent;
use doorman_e2e::OperatorHello;
use doorman_wire::message::{OfferReply, Service};
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

impl Acting<'_> {
    /// An offer: answers it from the settings as they are now, remembers a
    /// request it asks authorization for until its deadline (refusing it
    /// when the memory is full of requests still awaited), and starts an
    /// admitted session.
    pub(super) fn offered(
        &self,
        config: &Path,
        memory: &mut Memory,
        request_id: &str,
        visitor: Visitor,
        service: Service,
        hello: Option<OperatorHello>,
    ) -> OfferReply {
        let settings = match settings_file::load(config) {
            Ok(settings) => Arc::new(settings),
            Err(error) => return crate::answer::refuse_unreadable_settings(&error, &visitor),
        };
        if let Some(Err(error)) = hello.as_ref().map(doorman_e2e::handshake::check_hello) {
            return OfferReply::Refuse {
                message: format!("the connection's end-to-end hello is not one: {error}"),
            };
        }
        let now = Instant::now();
        let mut reply = crate::answer::answer_offer(&settings, &visitor, &service, memory, now);
        if let OfferReply::RequireAuthorization { identity, .. } = &mut reply {
            *identity = Some(self.shared.identity.public().fingerprint().to_string());
        }
        match &reply {
            OfferReply::RequireAuthorization {
                reuse,
                max_session_seconds,
                local_consent,
                timeout_secs,
                passkey,
                ..
            } => {
                let offer = AwaitedOffer {
                    visitor: visitor.clone(),
                    service,
                    reuse_of: reuse.clone(),
                    limit: *max_session_seconds,
                    local_consent: *local_consent,
                    settings,
                    passkey: passkey.clone(),
                    hello,
                };
                let awaited = self.await_authorization(
                    memory,
                    request_id,
                    &visitor,
                    offer,
                    *timeout_secs,
                    now,
                );
                if awaited.is_err() {
                    return no_room(request_id);
                }
            }
            OfferReply::Admit {
                max_session_seconds,
            } => {
                self.start(
                    settings,
                    Allowed {
                        request_id: request_id.to_string(),
                        visitor,
                        service,
                        limit: *max_session_seconds,
                        hello,
                    },
                );
            }
            OfferReply::Refuse { .. } | OfferReply::ReasonRequired => {}
        }
        reply
    }

    /// Remembers `offer` until its deadline (only a request remembered can
    /// start a session), and asks the person at the computer when its
    /// local consent is on; [`Full`] when there is no room to remember it.
    fn await_authorization(
        &self,
        memory: &mut Memory,
        request_id: &str,
        visitor: &Visitor,
        offer: AwaitedOffer,
        timeout_secs: u32,
        now: Instant,
    ) -> Result<(), Full> {
        let local_consent = offer.local_consent;
        let until = crate::memory::remember_until(now, timeout_secs);
        memory
            .awaited
            .remember(request_id.to_string(), offer, until, now)?;
        // Also when a reuse is offered: a reused approval still needs a
        // required local Allow, and the server may decline the reuse and
        // ask the recipients.
        if local_consent != LocalConsent::Off {
            self.board
                .add(request_id, visitor, local_consent, timeout_secs);
            crate::consent::ask_on_desktop(self.board, request_id, visitor, timeout_secs);
        }
        Ok(())
    }
}

/// The refusal of a request there is no room to remember.
fn no_room(request_id: &str) -> OfferReply {
    // `answer_offer` made room; nothing came in between.
    tracing::error!(request = %request_id, "no room to remember a request; refusing it");
    OfferReply::Refuse {
        message: "this computer cannot take another request now".into(),
    }
}
