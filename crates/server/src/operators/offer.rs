//! A connect: the request is checked (its shape, the operator's access to
//! the computer and service, the limits), offered to the agent, and then
//! refused, admitted, let in on an earlier approval, or written with its
//! emails to wait for the recipients.

use super::admission::{
    check_limits, permitted, same_mailbox, validate_agent_answer, validate_ask,
};
use super::session::relay_session;
use super::wait::{Standing, conclude};
use super::{Ask, OperatorError, Who, audit, refuse};
use crate::broker::{Applied, Broker, ExpectedSession, OfferError, RequestWatch, Witness};
use crate::clock::now_millis;
use crate::relay::OperatorStream;
use crate::secrets;
use crate::store::{NewRequest, RequestRow};
use doorman_core::authorization::{Event, seconds_left};
use doorman_core::mask::mask_address;
use doorman_core::{AuditKind, LocalConsent, Outcome};
use doorman_proto::connection::Connection;
use doorman_proto::message::{OfferReply, Refusal, ServerToAgent, ServerToOperator, Service};
use std::sync::Arc;

/// A connect: checks it, asks the agent, and goes on as the agent answers.
pub(super) async fn connect(
    broker: &Arc<Broker>,
    mut connection: Connection<OperatorStream>,
    who: Who<'_>,
    computer: String,
    reason: String,
    service: Service,
) -> Result<(), OperatorError> {
    if let Err(message) = validate_ask(&computer, &reason, &service) {
        return refuse(&mut connection, Refusal::InvalidRequest, message).await;
    }
    // An unknown computer and a forbidden one look the same, so that names
    // cannot be probed; only the audit trail tells them apart.
    let unknown = format!("unknown computer or not permitted: {computer:?}");
    let Some(computer_id) = broker.store.computer_id(&computer).await? else {
        return refuse(&mut connection, Refusal::UnknownComputer, unknown).await;
    };
    let mut ask = Ask {
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
    };
    if !permitted(broker, &ask).await? {
        let detail = format!("no grant for {} on this computer", ask.service.kind());
        broker
            .store
            .record(&audit(&ask, AuditKind::RefusedAccess, None, Some(detail)))
            .await?;
        return refuse(&mut connection, Refusal::UnknownComputer, unknown).await;
    }
    if let Some(message) = check_limits(broker, &ask).await? {
        return refuse(&mut connection, Refusal::Limited, message).await;
    }
    let request_id = secrets::new_id()?;
    tracing::Span::current().record("request", request_id.as_str());
    // Registered before the agent hears of the request, so that its session
    // connection always finds the slot.
    let expected = broker.sessions.expect(&request_id, &ask.computer);
    let offer = ServerToAgent::Offer {
        request_id: request_id.clone(),
        operator: ask.operator.to_string(),
        operator_ip: ask.ip.clone(),
        reason: ask.reason.clone(),
        service: ask.service.clone(),
    };
    let reply = match broker.agents.offer(&ask.computer, &request_id, offer).await {
        Ok(reply) => reply,
        Err(OfferError::Offline | OfferError::NoAnswer) => {
            return refuse(
                &mut connection,
                Refusal::ComputerOffline,
                format!("computer {:?} is offline", ask.computer),
            )
            .await;
        }
    };
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
            ask.max_session_seconds = max_session_seconds;
            broker
                .store
                .record(&audit(
                    &ask,
                    AuditKind::Admitted,
                    Some(&request_id),
                    Some("email authorization is off on this computer".into()),
                ))
                .await?;
            connection
                .write_message(&ServerToOperator::Admitted)
                .await?;
            relay_session(broker, connection, &ask, &request_id, None, expected).await
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
            };
            require_authorization(broker, connection, ask, request_id, expected, policy).await
        }
    }
}

/// Refuses the request after the agent saw it, and records why.
async fn refuse_audited(
    broker: &Broker,
    mut connection: Connection<OperatorStream>,
    ask: &Ask<'_>,
    request_id: &str,
    (reason, message): (Refusal, String),
    detail: String,
) -> Result<(), OperatorError> {
    let event = audit(ask, AuditKind::Refused, Some(request_id), Some(detail));
    broker.store.record(&event).await?;
    refuse(&mut connection, reason, message).await
}

/// What the agent asks for when email authorization is on.
struct Policy {
    recipients: Vec<String>,
    timeout_secs: u32,
    required_approvals: u32,
    approval_valid_for: u32,
    max_session_seconds: u32,
    reuse: Option<String>,
    local_consent: LocalConsent,
    passkey: Option<doorman_proto::message::PasskeyRequirement>,
}

/// Email authorization: drops the operator's own address from the
/// recipients, then either lets the request in on an earlier approval or
/// writes it with its emails and waits for the outcome.
async fn require_authorization(
    broker: &Arc<Broker>,
    mut connection: Connection<OperatorStream>,
    mut ask: Ask<'_>,
    request_id: String,
    expected: ExpectedSession,
    policy: Policy,
) -> Result<(), OperatorError> {
    let Policy {
        recipients,
        timeout_secs,
        required_approvals,
        approval_valid_for,
        max_session_seconds,
        reuse,
        local_consent,
        passkey,
    } = policy;
    ask.max_session_seconds = max_session_seconds;
    if let Err(message) = validate_agent_answer(&recipients, timeout_secs, required_approvals) {
        tracing::warn!(computer = %ask.computer, %message, "agent sent unusable settings");
        return refuse(
            &mut connection,
            Refusal::SessionFailed,
            format!("the computer's settings are unusable: {message}"),
        )
        .await;
    }
    // An operator never approves its own request: its own address
    // gets no email and cannot count.
    let own = broker.store.operator_email(ask.operator_id).await?;
    let recipients: Vec<String> = recipients
        .into_iter()
        .filter(|r| !own.as_deref().is_some_and(|own| same_mailbox(r, own)))
        .collect();
    let eligible = u32::try_from(recipients.len()).unwrap_or(u32::MAX);
    if eligible < required_approvals {
        let message = format!(
            "computer {:?} needs {required_approvals} approvals but only {eligible} of its recipients may approve your requests (your own address cannot)",
            ask.computer
        );
        let detail = message.clone();
        let refusal = (Refusal::NotOffered, message);
        return refuse_audited(broker, connection, &ask, &request_id, refusal, detail).await;
    }
    let watch = broker.waiters.watch(&request_id);
    let now = now_millis();
    // A computer that requires passkeys set the deadline itself: it is
    // part of what the approvals sign (a clock a minute off is tolerated).
    let expires_at = match &passkey {
        Some(passkey) => passkey
            .expires_at
            .clamp(now, now + i64::from(timeout_secs) * 1000 + 60_000),
        None => now + i64::from(timeout_secs) * 1000,
    };
    // An earlier approval the agent offers to reuse, if the server's
    // records agree: then no emails.
    let earlier = match &reuse {
        Some(id) if approval_valid_for > 0 => reusable(broker, &ask, id, now).await?,
        _ => None,
    };
    let recipients = if earlier.is_some() {
        Vec::new()
    } else {
        recipients
    };
    let new_request = NewRequest {
        id: request_id.clone(),
        computer: ask.computer.clone(),
        operator: ask.operator.to_string(),
        operator_id: ask.operator_id,
        computer_id: ask.computer_id,
        operator_ip: ask.ip.clone(),
        reason: ask.reason.clone(),
        service: ask.service.describe(),
        service_json: serde_json::to_string(&ask.service).unwrap_or_default(),
        created_at: now,
        expires_at,
        required_approvals,
        approval_valid_for,
        max_session_seconds,
        local_consent,
        recipients: recipients
            .iter()
            .enumerate()
            .map(|(position, address)| {
                let position = i64::try_from(position).unwrap_or(i64::MAX);
                let token = broker.key.link_token(&request_id, position);
                (address.clone(), secrets::hash(&token))
            })
            .collect(),
        passkey: passkey.as_ref().and_then(|p| serde_json::to_string(p).ok()),
    };
    if let Some(earlier) = earlier {
        broker.store.create_request(&new_request).await?;
        return reuse_approval(
            broker,
            connection,
            &ask,
            &request_id,
            &earlier,
            watch,
            expected,
        )
        .await;
    }
    {
        // Checked again under the lock, now that the request is about
        // to exist: two simultaneous connects cannot both slip under.
        let _admission = broker.admission.lock().await;
        if let Some(message) = check_limits(broker, &ask).await? {
            return refuse(&mut connection, Refusal::Limited, message).await;
        }
        broker.store.create_request(&new_request).await?;
    }
    broker.schedule_expiry(request_id.clone(), expires_at);
    broker.outbox_wakeup.notify_one();
    tracing::info!(
        recipients = recipients.len(),
        timeout_secs,
        "authorization requested"
    );
    connection
        .write_message(&ServerToOperator::Pending {
            request_id: request_id.clone(),
            expires_in: u64::from(timeout_secs),
            recipients: recipients.iter().map(|r| mask_address(r)).collect(),
            heartbeat_ms: broker.heartbeat_ms(),
        })
        .await?;
    let standing = Standing::Pending { expires_at };
    conclude(
        broker,
        connection,
        &ask,
        &request_id,
        standing,
        watch,
        expected,
    )
    .await
}

/// The earlier request `id` if its approval still lets this operator in
/// for this service (same kind; a forward only to targets it covered).
async fn reusable(
    broker: &Broker,
    ask: &Ask<'_>,
    id: &str,
    now: i64,
) -> Result<Option<RequestRow>, OperatorError> {
    let Some(earlier) = broker
        .store
        .reusable_approval(id, ask.operator_id, ask.computer_id, now)
        .await?
    else {
        return Ok(None);
    };
    let service = earlier
        .service_json
        .as_deref()
        .and_then(|json| serde_json::from_str::<Service>(json).ok());
    let covered = service.is_some_and(|approved| ask.service.covered_by(&approved));
    Ok(covered.then_some(earlier))
}

/// Lets the request in on an earlier approval: settles it through the state
/// machine (audited as a reuse of that request), tells the operator, and
/// relays the session. Where the computer requires its local Allow, the
/// reuse stands in for the recipients only: the request waits for the
/// person at the computer, without emails.
async fn reuse_approval(
    broker: &Arc<Broker>,
    mut connection: Connection<OperatorStream>,
    ask: &Ask<'_>,
    request_id: &str,
    earlier: &RequestRow,
    watch: RequestWatch,
    expected: ExpectedSession,
) -> Result<(), OperatorError> {
    let now = now_millis();
    let by = earlier.decided_by.clone().unwrap_or_default();
    let reuse = Event::Reuse {
        request_id: earlier.id.clone(),
        by: by.clone(),
        at: now,
    };
    let witness = Witness {
        actor: Some(ask.operator.to_string()),
        address: Some(ask.ip.clone()),
        ..Witness::default()
    };
    let approved_earlier = ServerToOperator::ApprovedEarlier {
        request_id: earlier.id.clone(),
        by,
        valid_for: seconds_left(earlier.reusable_until.unwrap_or(now), now),
    };
    let standing = match broker.apply(request_id, reuse, witness).await? {
        Applied::Settled(outcome) | Applied::AlreadySettled(outcome) => {
            if let Outcome::Allowed { .. } = outcome {
                connection.write_message(&approved_earlier).await?;
            }
            Standing::Settled(outcome)
        }
        // The computer requires its local Allow as well: no emails; the
        // request waits for the person at the computer, or expires.
        Applied::Approved { .. } => {
            let expires_at = broker
                .store
                .request(request_id)
                .await?
                .map_or(now, |row| row.expires_at);
            broker.schedule_expiry(request_id.to_string(), expires_at);
            connection.write_message(&approved_earlier).await?;
            connection
                .write_message(&ServerToOperator::Pending {
                    request_id: request_id.to_string(),
                    expires_in: seconds_left(expires_at, now_millis()),
                    recipients: Vec::new(),
                    heartbeat_ms: broker.heartbeat_ms(),
                })
                .await?;
            Standing::Pending { expires_at }
        }
        other => {
            tracing::error!(?other, "a reuse did not settle its request");
            return refuse(
                &mut connection,
                Refusal::SessionFailed,
                "the earlier approval could not be used",
            )
            .await;
        }
    };
    conclude(
        broker, connection, ask, request_id, standing, watch, expected,
    )
    .await
}
