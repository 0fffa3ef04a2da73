//! A connect: the request is checked (its shape, the operator's access to
//! the computer and service, the limits), offered to the agent, and then
//! refused, admitted, or handed to [`super::authorization`] to wait for
//! the recipients (or be let in on an earlier approval).

use super::admission::{check_limits, permitted, validate_ask};
use super::authorization::{Policy, require_authorization};
use super::session::relay_session;
use super::{Ask, OperatorError, Who, audit, refuse, refuse_audited};
use crate::broker::{Broker, ExpectedSession, OfferError};
use crate::relay::OperatorStream;
use doorman_core::AuditKind;
use doorman_e2e::OperatorHello;
use doorman_runtime::secrets;
use doorman_wire::connection::Connection;
use doorman_wire::message::{OfferReply, Refusal, ServerToAgent, ServerToOperator, Service};
use std::sync::Arc;

/// A connect: checks it, asks the agent, and goes on as the agent answers.
pub(super) async fn connect(
    broker: &Arc<Broker>,
    mut connection: Connection<OperatorStream>,
    who: Who<'_>,
    computer: String,
    reason: String,
    service: Service,
    e2e: Option<OperatorHello>,
) -> Result<(), OperatorError> {
    // A hello of the wrong shape (or size) goes no further: the agent
    // would refuse it, and an oversized one would not fit in the offer.
    if let Some(Err(error)) = e2e.as_ref().map(doorman_e2e::handshake::check_hello) {
        let message = format!("the end-to-end hello is not one: {error}");
        return refuse(&mut connection, Refusal::InvalidRequest, message).await;
    }
    let checked = checked_ask(broker, &mut connection, who, computer, reason, service).await?;
    let Some(mut ask) = checked else {
        return Ok(());
    };
    let request_id = secrets::new_id()?;
    tracing::Span::current().record("request", request_id.as_str());
    ask.sealed = e2e.is_some();
    // Registered before the agent hears of the request, so that its session
    // connection always finds the slot.
    let expected = broker.sessions().expect(&request_id, &ask.computer);
    let reply = match offer(broker, &ask, &request_id, e2e).await {
        Ok(reply) => reply,
        Err(OfferError::Offline | OfferError::NoAnswer) => {
            let message = format!("computer {:?} is offline", ask.computer);
            return refuse(&mut connection, Refusal::ComputerOffline, message).await;
        }
    };
    answered(broker, connection, ask, request_id, expected, reply).await
}

/// The ask, once its shape, the operator's access and the limits allow
/// it; none once it is refused.
async fn checked_ask<'a>(
    broker: &Broker,
    connection: &mut Connection<OperatorStream>,
    who: Who<'a>,
    computer: String,
    reason: String,
    service: Service,
) -> Result<Option<Ask<'a>>, OperatorError> {
    if let Err(message) = validate_ask(&computer, &reason, &service) {
        return refuse(connection, Refusal::InvalidRequest, message)
            .await
            .map(|()| None);
    }
    // An unknown computer and a forbidden one look the same, so that names
    // cannot be probed; only the audit trail tells them apart.
    let unknown = format!("unknown computer or not permitted: {computer:?}");
    let Some(computer_id) = broker.store().computer_id(&computer).await? else {
        return refuse(connection, Refusal::UnknownComputer, unknown)
            .await
            .map(|()| None);
    };
    let ask = Ask {
        operator: who.operator,
        operator_id: who.operator_id,
        via: who.via,
        token_hash: who.token_hash,
        ip: who.ip.to_string(),
        computer,
        computer_id,
        reason,
        service,
        max_session_seconds: 0,
        sealed: false,
    };
    if !permitted(broker, &ask).await? {
        let detail = format!("no grant for {} on this computer", ask.service.kind());
        broker
            .store()
            .record(&audit(
                broker,
                &ask,
                AuditKind::RefusedAccess,
                None,
                Some(detail),
            ))
            .await?;
        return refuse(connection, Refusal::UnknownComputer, unknown)
            .await
            .map(|()| None);
    }
    if let Some(message) = check_limits(broker, &ask).await? {
        return refuse(connection, Refusal::Limited, message)
            .await
            .map(|()| None);
    }
    Ok(Some(ask))
}

/// Offers the request to the computer's agent: its answer, or why there
/// is none.
async fn offer(
    broker: &Broker,
    ask: &Ask<'_>,
    request_id: &str,
    e2e: Option<OperatorHello>,
) -> Result<OfferReply, OfferError> {
    let offer = ServerToAgent::Offer {
        request_id: request_id.to_string(),
        operator: ask.operator.to_string(),
        operator_ip: ask.ip.clone(),
        reason: ask.reason.clone(),
        service: ask.service.clone(),
        e2e,
    };
    broker
        .agents()
        .offer(&ask.computer, request_id, offer)
        .await
}

/// Goes on as the agent answered: refused, admitted at once, or email
/// authorization.
async fn answered(
    broker: &Arc<Broker>,
    connection: Connection<OperatorStream>,
    ask: Ask<'_>,
    request_id: String,
    expected: ExpectedSession,
    reply: OfferReply,
) -> Result<(), OperatorError> {
    match reply {
        OfferReply::Refuse { message } => {
            let detail = message.clone();
            let refusal = (Refusal::NotOffered, message);
            refuse_audited(broker, connection, &ask, &request_id, refusal, detail).await
        }
        OfferReply::ReasonRequired => {
            let message = format!(
                "computer {:?} requires a reason: connect again with --reason TEXT",
                ask.computer
            );
            let detail = "no reason given; this computer requires one".to_string();
            let refusal = (Refusal::InvalidRequest, message);
            refuse_audited(broker, connection, &ask, &request_id, refusal, detail).await
        }
        OfferReply::Admit {
            max_session_seconds,
        } => {
            admit(
                broker,
                connection,
                ask,
                &request_id,
                max_session_seconds,
                expected,
            )
            .await
        }
        OfferReply::RequireAuthorization {
            recipients,
            timeout_secs,
            required_approvals,
            approval_valid_for,
            max_session_seconds,
            reuse,
            local_consent,
            passkey,
            identity,
        } => {
            let policy = Policy {
                recipients,
                timeout_secs,
                required_approvals,
                approval_valid_for,
                max_session_seconds,
                reuse,
                local_consent,
                passkey,
                identity: identity
                    .as_deref()
                    .and_then(doorman_e2e::Fingerprint::parse),
            };
            require_authorization(broker, connection, ask, request_id, expected, policy).await
        }
    }
}

/// Email authorization is off on the computer: the operator is let in at
/// once, and the session relayed.
async fn admit(
    broker: &Arc<Broker>,
    mut connection: Connection<OperatorStream>,
    mut ask: Ask<'_>,
    request_id: &str,
    max_session_seconds: u32,
    expected: ExpectedSession,
) -> Result<(), OperatorError> {
    ask.max_session_seconds = max_session_seconds;
    let detail = "email authorization is off on this computer".into();
    broker
        .store()
        .record(&audit(
            broker,
            &ask,
            AuditKind::Admitted,
            Some(request_id),
            Some(detail),
        ))
        .await?;
    connection
        .write_message(&ServerToOperator::Admitted)
        .await?;
    relay_session(broker, connection, &ask, request_id, None, expected).await
}
