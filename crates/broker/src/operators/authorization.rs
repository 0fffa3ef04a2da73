//! Email authorization of a connect: the recipients who may approve, the
//! request written with a link for each (or let in on an earlier approval
//! the server's records agree on), and the wait for the outcome.

use super::admission::{check_limits, same_mailbox, validate_agent_answer};
use super::wait::{Standing, Waiting, conclude};
use super::{Ask, OperatorError, refuse, refuse_audited};
use crate::broker::{Applied, Broker, ExpectedSession, RequestWatch, Witness};
use crate::relay::OperatorStream;
use doorman_core::authorization::{Event, seconds_left};
use doorman_core::display::counted;
use doorman_core::mask::mask_address;
use doorman_core::{CancelCause, LocalConsent, Outcome};
use doorman_runtime::secrets;
use doorman_store::{Millis, NewRequest, RequestRow};
use doorman_wire::connection::Connection;
use doorman_wire::message::{
    PasskeyRequirement, Refusal, ServerToAgent, ServerToOperator, Service,
};
use std::sync::Arc;

/// What the agent asks for when email authorization is on.
pub(super) struct Policy {
    pub(super) recipients: Vec<String>,
    pub(super) timeout_secs: u32,
    pub(super) required_approvals: u32,
    pub(super) approval_valid_for: u32,
    pub(super) max_session_seconds: u32,
    pub(super) reuse: Option<String>,
    pub(super) local_consent: LocalConsent,
    pub(super) passkey: Option<PasskeyRequirement>,
    /// The computer's identity fingerprint, when it said a well-formed one.
    pub(super) identity: Option<doorman_e2e::Fingerprint>,
}

/// Email authorization: drops the operator's own address from the
/// recipients, refusing a request too few of them may then approve, and
/// makes the request.
pub(super) async fn require_authorization(
    broker: &Arc<Broker>,
    mut connection: Connection<OperatorStream>,
    mut ask: Ask<'_>,
    request_id: String,
    expected: ExpectedSession,
    mut policy: Policy,
) -> Result<(), OperatorError> {
    ask.max_session_seconds = policy.max_session_seconds;
    let (timeout_secs, required) = (policy.timeout_secs, policy.required_approvals);
    if let Err(message) = validate_agent_answer(&policy.recipients, timeout_secs, required) {
        tracing::warn!(computer = %ask.computer, problem = ?message, "agent sent unusable settings");
        let message = format!("the computer's settings are unusable: {message}");
        withdraw(broker, &ask, &request_id);
        return refuse(&mut connection, Refusal::SessionFailed, message).await;
    }
    // The policy's own list is replaced by those who may approve.
    let recipients =
        eligible_recipients(broker, &ask, std::mem::take(&mut policy.recipients)).await?;
    let eligible = u32::try_from(recipients.len()).unwrap_or(u32::MAX);
    if eligible < required {
        let message = format!(
            "computer {:?} needs {} but only {eligible} of its recipients may approve your requests (your own address cannot)",
            ask.computer,
            counted(required, "approval", "approvals")
        );
        let refusal = (Refusal::NotOffered, message.clone());
        withdraw(broker, &ask, &request_id);
        return refuse_audited(broker, connection, &ask, &request_id, refusal, message).await;
    }
    make_request(
        broker, connection, ask, request_id, expected, policy, recipients,
    )
    .await
}

/// Makes the request: lets it in on an earlier approval the server's
/// records agree on, or asks the `recipients`.
async fn make_request(
    broker: &Arc<Broker>,
    connection: Connection<OperatorStream>,
    ask: Ask<'_>,
    request_id: String,
    expected: ExpectedSession,
    policy: Policy,
    recipients: Vec<String>,
) -> Result<(), OperatorError> {
    let watch = broker.waiters().watch(&request_id);
    let now = broker.now_millis();
    let expires_at = deadline(policy.passkey.as_ref(), policy.timeout_secs, now);
    // An earlier approval the agent offers to reuse, if the server's
    // records agree: then no emails.
    let earlier = match &policy.reuse {
        Some(id) if policy.approval_valid_for > 0 => reusable(broker, &ask, id, now).await?,
        _ => None,
    };
    let recipients = if earlier.is_some() {
        Vec::new()
    } else {
        recipients
    };
    let request = new_request(
        broker,
        &ask,
        &request_id,
        &policy,
        &recipients,
        now,
        expires_at,
    );
    if let Some(earlier) = earlier {
        broker.store().create_request(&request).await?;
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
    ask_recipients(
        broker,
        connection,
        &ask,
        request,
        policy.timeout_secs,
        watch,
        expected,
    )
    .await
}

/// Tells the computer that a request it answered will not be made (the
/// server refused it after the agent's answer), so that the agent forgets
/// it now rather than hold it in its bounded memory until it expires.
fn withdraw(broker: &Broker, ask: &Ask<'_>, request_id: &str) {
    let withdrawn = ServerToAgent::Settled {
        request_id: request_id.to_string(),
        outcome: Outcome::Cancelled {
            at: broker.now_millis(),
            cause: CancelCause::Operator,
        },
        assertions: Vec::new(),
    };
    broker.agents().send(&ask.computer, withdrawn);
}

/// Writes the request with its emails (unless the limits now refuse it),
/// tells the operator it is pending, and waits for the outcome.
async fn ask_recipients(
    broker: &Arc<Broker>,
    mut connection: Connection<OperatorStream>,
    ask: &Ask<'_>,
    request: NewRequest,
    timeout_secs: u32,
    watch: RequestWatch,
    expected: ExpectedSession,
) -> Result<(), OperatorError> {
    if !create_within_limits(broker, &mut connection, ask, &request).await? {
        withdraw(broker, ask, &request.id);
        return Ok(());
    }
    broker.schedule_expiry(request.id.clone(), request.expires_at);
    broker.wake_outbox();
    let heartbeat = broker.heartbeat_ticks();
    tell_pending(broker, &mut connection, &request, timeout_secs).await?;
    let standing = Standing::Pending(Waiting {
        expires_at: request.expires_at,
        heartbeat,
    });
    conclude(
        broker,
        connection,
        ask,
        &request.id,
        standing,
        watch,
        expected,
    )
    .await
}

/// Tells the operator the request waits for its recipients (their
/// addresses masked) for `timeout_secs`.
async fn tell_pending(
    broker: &Broker,
    connection: &mut Connection<OperatorStream>,
    request: &NewRequest,
    timeout_secs: u32,
) -> Result<(), OperatorError> {
    let recipients = &request.recipients;
    tracing::info!(
        recipients = recipients.len(),
        timeout_secs,
        "authorization requested"
    );
    let pending = ServerToOperator::Pending {
        request_id: request.id.clone(),
        // The request's own deadline, which a computer requiring passkeys
        // set by its clock: the operator's countdown (and give-up) follows
        // it, not the timeout.
        expires_in: seconds_left(request.expires_at, broker.now_millis()),
        recipients: recipients
            .iter()
            .map(|(address, _)| mask_address(address))
            .collect(),
        heartbeat_ms: broker.heartbeat_ms(),
    };
    connection.write_message(&pending).await?;
    Ok(())
}

/// The recipients who may approve the operator's request: an operator
/// never approves its own request, so its own address gets no email and
/// cannot count.
async fn eligible_recipients(
    broker: &Broker,
    ask: &Ask<'_>,
    recipients: Vec<String>,
) -> Result<Vec<String>, OperatorError> {
    let own = broker.store().operator_email(ask.operator_id).await?;
    Ok(recipients
        .into_iter()
        .filter(|r| !own.as_deref().is_some_and(|own| same_mailbox(r, own)))
        .collect())
}

/// When a request made at `now` expires. A computer that requires passkeys
/// set the deadline itself: it is part of what the approvals sign (a clock
/// a minute off is tolerated).
fn deadline(passkey: Option<&PasskeyRequirement>, timeout_secs: u32, now: Millis) -> Millis {
    match passkey {
        Some(passkey) => passkey
            .expires_at
            .clamp(now, now + i64::from(timeout_secs) * 1000 + 60_000),
        None => now + i64::from(timeout_secs) * 1000,
    }
}

/// The request as it is written, made at `now` and expiring at
/// `expires_at`, with the hash of each recipient's link token.
fn new_request(
    broker: &Broker,
    ask: &Ask<'_>,
    request_id: &str,
    policy: &Policy,
    recipients: &[String],
    now: Millis,
    expires_at: Millis,
) -> NewRequest {
    NewRequest {
        id: request_id.to_string(),
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
        required_approvals: policy.required_approvals,
        approval_valid_for: policy.approval_valid_for,
        max_session_seconds: policy.max_session_seconds,
        local_consent: policy.local_consent,
        recipients: recipients
            .iter()
            .enumerate()
            .map(|(position, address)| {
                let position = i64::try_from(position).unwrap_or(i64::MAX);
                let token = broker.key().link_token(request_id, position);
                (address.clone(), secrets::hash(&token))
            })
            .collect(),
        passkey: policy
            .passkey
            .as_ref()
            .and_then(|p| serde_json::to_string(p).ok()),
        computer_identity: policy.identity.as_ref().map(ToString::to_string),
        sealed: ask.sealed,
    }
}

/// Writes the request, checking the limits again under the admission
/// lock now that it is about to exist: two simultaneous connects cannot
/// both slip under. False once the limits refused it.
async fn create_within_limits(
    broker: &Broker,
    connection: &mut Connection<OperatorStream>,
    ask: &Ask<'_>,
    request: &NewRequest,
) -> Result<bool, OperatorError> {
    let _admission = broker.admission().await;
    if let Some(message) = check_limits(broker, ask).await? {
        refuse(connection, Refusal::Limited, message).await?;
        return Ok(false);
    }
    broker.store().create_request(request).await?;
    Ok(true)
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
        .store()
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
    let now = broker.now_millis();
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
            let heartbeat = broker.heartbeat_ticks();
            let waiting =
                await_local_allow(broker, &mut connection, request_id, &approved_earlier, now);
            Standing::Pending(Waiting {
                expires_at: waiting.await?,
                heartbeat,
            })
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

/// A reused approval stands in for the recipients, and the computer
/// requires its local Allow as well: tells the operator the request waits
/// for it, and returns when the request expires.
async fn await_local_allow(
    broker: &Arc<Broker>,
    connection: &mut Connection<OperatorStream>,
    request_id: &str,
    approved_earlier: &ServerToOperator,
    now: Millis,
) -> Result<Millis, OperatorError> {
    let expires_at = broker
        .store()
        .request(request_id)
        .await?
        .map_or(now, |row| row.expires_at);
    broker.schedule_expiry(request_id.to_string(), expires_at);
    connection.write_message(approved_earlier).await?;
    connection
        .write_message(&ServerToOperator::Pending {
            request_id: request_id.to_string(),
            expires_in: seconds_left(expires_at, broker.now_millis()),
            recipients: Vec::new(),
            heartbeat_ms: broker.heartbeat_ms(),
        })
        .await?;
    Ok(expires_at)
}
