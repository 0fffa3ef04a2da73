//! An operator's connection: the connect request, the agent's answer, the
//! authorization request with its emails, the pushed outcome, and then the
//! byte relay between operator and agent.

use crate::broker::{Applied, Broker, OfferError, Witness};
use crate::clock::now_millis;
use crate::secrets;
use crate::store::{AuditEvent, NewRequest, StoreError};
use doorman_core::Outcome;
use doorman_core::access::permits;
use doorman_core::authorization::{Event, seconds_left};
use doorman_core::limits::{
    MAX_COMMAND_ARGS, MAX_COMMAND_BYTES, MAX_FORWARD_TARGETS, MAX_RECIPIENTS, MAX_TIMEOUT_SECS,
    MIN_TIMEOUT_SECS,
};
use doorman_core::mask::mask_address;
use doorman_core::names::{validate_name, validate_reason};
use doorman_core::settings::{validate_forward_target, validate_recipient};
use doorman_core::{AuditKind, CancelCause, Revoked};
use doorman_proto::connection::Connection;
use doorman_proto::dial::Upgraded;
use doorman_proto::message::{
    OfferReply, OperatorMessage, Refusal, ServerToAgent, ServerToOperator, Service,
};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::broadcast;

/// How long an operator has to send its connect message.
const CONNECT_MESSAGE_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the agent has to open the session connection once allowed.
const SESSION_OPEN_TIMEOUT: Duration = Duration::from_secs(15);

#[derive(Debug, thiserror::Error)]
enum OperatorError {
    #[error(transparent)]
    Connection(#[from] doorman_proto::ConnectionError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Random(#[from] secrets::RandomError),
}

/// Serves one operator connection to its end.
pub async fn serve(
    broker: Arc<Broker>,
    io: Upgraded,
    operator: String,
    token_hash: [u8; 32],
    ip: IpAddr,
) {
    let connection = Connection::new(io);
    if let Err(error) = serve_connection(&broker, connection, &operator, token_hash, ip).await {
        tracing::warn!(%operator, %error, "operator connection failed");
    }
}

struct Ask<'a> {
    operator: &'a str,
    /// The hash of the token this connection was opened with.
    token_hash: [u8; 32],
    ip: String,
    computer: String,
    reason: String,
    service: Service,
    /// The computer's session time limit in seconds (0: none), once it said.
    max_session_seconds: u32,
}

async fn refuse(
    connection: &mut Connection<Upgraded>,
    reason: Refusal,
    message: impl Into<String>,
) -> Result<(), OperatorError> {
    let message = message.into();
    connection
        .write_message(&ServerToOperator::Refused { reason, message })
        .await?;
    Ok(())
}

fn validate_ask(computer: &str, reason: &str, service: &Service) -> Result<(), String> {
    validate_name(computer).map_err(|e| format!("computer name {e}"))?;
    validate_reason(reason).map_err(|e| format!("reason {e}"))?;
    match service {
        Service::Command { argv } => {
            if argv.is_empty() || argv[0].is_empty() {
                return Err("command must not be empty".into());
            }
            if argv.len() > MAX_COMMAND_ARGS {
                return Err(format!(
                    "command has more than {MAX_COMMAND_ARGS} arguments"
                ));
            }
            if argv.iter().map(String::len).sum::<usize>() > MAX_COMMAND_BYTES {
                return Err(format!("command is longer than {MAX_COMMAND_BYTES} bytes"));
            }
            if argv.iter().any(|arg| arg.contains('\0')) {
                return Err("command contains a NUL byte".into());
            }
        }
        Service::Shell { term, .. } => {
            if term.len() > 64 || term.chars().any(|c| c.is_control()) {
                return Err("terminal name must be one short line".into());
            }
        }
        Service::Forward { targets } => {
            if targets.is_empty() || targets.len() > MAX_FORWARD_TARGETS {
                return Err(format!(
                    "between 1 and {MAX_FORWARD_TARGETS} forward targets"
                ));
            }
            for target in targets {
                validate_forward_target(target)?;
            }
        }
    }
    Ok(())
}

async fn serve_connection(
    broker: &Arc<Broker>,
    mut connection: Connection<Upgraded>,
    operator: &str,
    token_hash: [u8; 32],
    ip: IpAddr,
) -> Result<(), OperatorError> {
    let first = match tokio::time::timeout(
        CONNECT_MESSAGE_TIMEOUT,
        connection.read_message::<OperatorMessage>(),
    )
    .await
    {
        Ok(Ok(Some(message))) => message,
        Ok(Ok(None)) | Err(_) => return Ok(()),
        Ok(Err(error)) => {
            return refuse(&mut connection, Refusal::InvalidRequest, error.to_string()).await;
        }
    };
    let (computer, reason, service) = match first {
        OperatorMessage::Connect {
            computer,
            reason,
            service,
        } => (computer, reason, service),
        OperatorMessage::Resume { request_id } => {
            return resume(broker, connection, operator, token_hash, ip, request_id).await;
        }
        OperatorMessage::Cancel => {
            return refuse(
                &mut connection,
                Refusal::InvalidRequest,
                "expected a connect message",
            )
            .await;
        }
    };
    if let Err(message) = validate_ask(&computer, &reason, &service) {
        return refuse(&mut connection, Refusal::InvalidRequest, message).await;
    }
    let mut ask = Ask {
        operator,
        token_hash,
        ip: ip.to_string(),
        computer,
        reason,
        service,
        max_session_seconds: 0,
    };
    // An unknown computer and a forbidden one look the same, so that names
    // cannot be probed; only the audit trail tells them apart.
    let known = broker.store.agent_key_hash(&ask.computer).await?.is_some();
    if !known || !permitted(broker, &ask).await? {
        if known {
            let detail = format!("no grant for {} on this computer", ask.service.kind());
            broker
                .store
                .record(&audit(&ask, AuditKind::RefusedAccess, None, Some(detail)))
                .await?;
        }
        return refuse(
            &mut connection,
            Refusal::UnknownComputer,
            format!("unknown computer or not permitted: {:?}", ask.computer),
        )
        .await;
    }
    if let Some(message) = check_limits(broker, &ask).await? {
        return refuse(&mut connection, Refusal::Limited, message).await;
    }
    let request_id = secrets::new_id()?;
    // Registered before the agent hears of the request, so that its session
    // connection always finds the slot.
    let expected = broker.expect_session(&request_id, &ask.computer);
    let offer = ServerToAgent::Offer {
        request_id: request_id.clone(),
        operator: ask.operator.to_string(),
        operator_ip: ask.ip.clone(),
        reason: ask.reason.clone(),
        service: ask.service.clone(),
    };
    let reply = match broker.offer(&ask.computer, &request_id, offer).await {
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
            broker
                .store
                .record(&audit(
                    &ask,
                    AuditKind::Refused,
                    Some(&request_id),
                    Some(message.clone()),
                ))
                .await?;
            refuse(&mut connection, Refusal::NotOffered, message).await
        }
        OfferReply::ReasonRequired => {
            let message = format!(
                "computer {:?} requires a reason: connect again with --reason TEXT",
                ask.computer
            );
            broker
                .store
                .record(&audit(
                    &ask,
                    AuditKind::Refused,
                    Some(&request_id),
                    Some("no reason given; this computer requires one".into()),
                ))
                .await?;
            refuse(&mut connection, Refusal::InvalidRequest, message).await
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
        } => {
            ask.max_session_seconds = max_session_seconds;
            if let Err(message) =
                validate_agent_answer(&recipients, timeout_secs, required_approvals)
            {
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
            let own = broker.store.operator_email(ask.operator).await?;
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
                broker
                    .store
                    .record(&audit(
                        &ask,
                        AuditKind::Refused,
                        Some(&request_id),
                        Some(message.clone()),
                    ))
                    .await?;
                return refuse(&mut connection, Refusal::NotOffered, message).await;
            }
            let watch = broker.watch_request(&request_id);
            let now = now_millis();
            let expires_at = now + i64::from(timeout_secs) * 1000;
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
            connection
                .write_message(&ServerToOperator::Pending {
                    request_id: request_id.clone(),
                    expires_in: u64::from(timeout_secs),
                    recipients: recipients.iter().map(|r| mask_address(r)).collect(),
                    heartbeat_ms: broker.heartbeat_ms(),
                })
                .await?;
            conclude(broker, connection, &ask, &request_id, None, watch, expected).await
        }
    }
}

/// The earlier request `id` if its approval still lets this operator in
/// for this service (same kind; a forward only to targets it covered).
async fn reusable(
    broker: &Broker,
    ask: &Ask<'_>,
    id: &str,
    now: i64,
) -> Result<Option<crate::store::RequestRow>, OperatorError> {
    let Some(earlier) = broker
        .store
        .reusable_approval(id, ask.operator, &ask.computer, now)
        .await?
    else {
        return Ok(None);
    };
    let service = earlier
        .service_json
        .as_deref()
        .and_then(|json| serde_json::from_str::<Service>(json).ok());
    let covered = match (&ask.service, service) {
        (Service::Forward { targets }, Some(Service::Forward { targets: approved })) => {
            targets.iter().all(|t| approved.contains(t))
        }
        (asked, Some(approved)) => asked.kind() == approved.kind(),
        (_, None) => false,
    };
    Ok(covered.then_some(earlier))
}

/// Lets the request in on an earlier approval: settles it through the state
/// machine (audited as a reuse of that request), tells the operator, and
/// relays the session.
async fn reuse_approval(
    broker: &Arc<Broker>,
    mut connection: Connection<Upgraded>,
    ask: &Ask<'_>,
    request_id: &str,
    earlier: &crate::store::RequestRow,
    watch: crate::broker::RequestWatch,
    expected: crate::broker::ExpectedSession,
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
    let outcome = match broker.apply(request_id, reuse, witness).await? {
        Applied::Settled(outcome) | Applied::AlreadySettled(outcome) => outcome,
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
    if let Outcome::Allowed { .. } = outcome {
        connection
            .write_message(&ServerToOperator::ApprovedEarlier {
                request_id: earlier.id.clone(),
                by,
                valid_for: seconds_left(earlier.reusable_until.unwrap_or(now), now),
            })
            .await?;
    }
    conclude(
        broker,
        connection,
        ask,
        request_id,
        Some(outcome),
        watch,
        expected,
    )
    .await
}

/// Waits for the request's outcome (unless it is already known), tells the
/// operator, and on `allowed` relays the session.
async fn conclude(
    broker: &Arc<Broker>,
    mut connection: Connection<Upgraded>,
    ask: &Ask<'_>,
    request_id: &str,
    known: Option<Outcome>,
    mut watch: crate::broker::RequestWatch,
    mut expected: crate::broker::ExpectedSession,
) -> Result<(), OperatorError> {
    let outcome = match known {
        Some(outcome) => outcome,
        None => match wait_for_outcome(
            broker,
            &mut connection,
            ask,
            request_id,
            &mut watch,
            &mut expected.superseded,
        )
        .await?
        {
            Some(outcome) => outcome,
            None => return Ok(()),
        },
    };
    // A cancellation the operator did not ask for says why.
    if let Outcome::Cancelled { cause, .. } = &outcome
        && let Some((reason, message)) = cancel_refusal(cause, &ask.computer)
    {
        return refuse(&mut connection, reason, message).await;
    }
    connection.write_message(&outcome_message(&outcome)).await?;
    if matches!(outcome, Outcome::Allowed { .. }) {
        relay_session(
            broker,
            connection,
            ask,
            request_id,
            Some(request_id),
            expected,
        )
        .await
    } else {
        Ok(())
    }
}

/// An operator reconnecting (after losing its connection, e.g. to a server
/// restart) to a request it made: picks it up where it is.
async fn resume(
    broker: &Arc<Broker>,
    mut connection: Connection<Upgraded>,
    operator: &str,
    token_hash: [u8; 32],
    ip: IpAddr,
    request_id: String,
) -> Result<(), OperatorError> {
    let unknown = "no such request of yours to resume";
    let Some(row) = broker
        .store
        .request(&request_id)
        .await?
        .filter(|row| row.operator == operator)
    else {
        return refuse(&mut connection, Refusal::InvalidRequest, unknown).await;
    };
    let Some(service) = row
        .service_json
        .as_deref()
        .and_then(|json| serde_json::from_str::<Service>(json).ok())
    else {
        return refuse(&mut connection, Refusal::InvalidRequest, unknown).await;
    };
    let ask = Ask {
        operator,
        token_hash,
        ip: ip.to_string(),
        computer: row.computer.clone(),
        reason: row.reason.clone(),
        service,
        max_session_seconds: row.max_session_seconds,
    };
    let expected = broker.expect_session(&request_id, &ask.computer);
    let watch = broker.watch_request(&request_id);
    // Read again now that the watch is registered: nothing can slip between.
    let Some(row) = broker.store.request(&request_id).await? else {
        return refuse(&mut connection, Refusal::InvalidRequest, unknown).await;
    };
    let known = row.outcome();
    if matches!(known, Some(Outcome::Allowed { .. }))
        && broker.store.session_started(&request_id).await?
    {
        // Its one session began on the connection the operator lost.
        return refuse(
            &mut connection,
            Refusal::SessionFailed,
            "the session started while the connection to the server was lost, and has ended; connect again for a new approval",
        )
        .await;
    }
    if known.is_none() {
        let recipients = broker.store.recipients_of(&request_id).await?;
        connection
            .write_message(&ServerToOperator::Pending {
                request_id: request_id.clone(),
                expires_in: seconds_left(row.expires_at, now_millis()),
                recipients: recipients.iter().map(|r| mask_address(r)).collect(),
                heartbeat_ms: broker.heartbeat_ms(),
            })
            .await?;
        // The approvals counted while it was away.
        let approvals = broker.store.approvals_of(&request_id).await?;
        for (count, approval) in approvals.iter().enumerate() {
            connection
                .write_message(&ServerToOperator::Approval {
                    approvals: u32::try_from(count + 1).unwrap_or(u32::MAX),
                    required: row.required_approvals,
                    by: mask_address(&approval.by),
                })
                .await?;
        }
    }
    conclude(
        broker,
        connection,
        &ask,
        &request_id,
        known,
        watch,
        expected,
    )
    .await
}

/// Why this operator may not ask this computer now, if a limit says so;
/// a refusal is recorded in the audit trail.
async fn check_limits(broker: &Broker, ask: &Ask<'_>) -> Result<Option<String>, OperatorError> {
    let refusal = over_limit(broker, ask).await?;
    if let Some(message) = &refusal {
        broker
            .store
            .record(&audit(
                ask,
                AuditKind::RefusedLimit,
                None,
                Some(message.clone()),
            ))
            .await?;
    }
    Ok(refusal)
}

async fn over_limit(broker: &Broker, ask: &Ask<'_>) -> Result<Option<String>, OperatorError> {
    let now = now_millis();
    let limits = broker.limits;
    if let Some(until) = broker
        .store
        .blocked_until(ask.operator, &ask.computer, now)
        .await?
    {
        return Ok(Some(format!(
            "a recipient of {:?} did not expect your last request; you may ask again after {}",
            ask.computer,
            crate::clock::format_time(until)
        )));
    }
    let pending = broker.store.pending_of_operator(ask.operator, now).await?;
    if pending >= i64::from(limits.max_pending_per_operator) {
        return Ok(Some(format!(
            "you already have {pending} requests waiting for authorization (limit {})",
            limits.max_pending_per_operator
        )));
    }
    // Counted per operator: one operator's requests (cancelled at once,
    // say) never lock the others out of the computer.
    let recent = broker
        .store
        .requests_by_operator_since(ask.operator, &ask.computer, now - 3_600_000)
        .await?;
    if recent >= i64::from(limits.max_requests_per_hour) {
        return Ok(Some(format!(
            "you asked computer {:?} {recent} times in the last hour (limit {}); try again later",
            ask.computer, limits.max_requests_per_hour
        )));
    }
    Ok(None)
}

fn validate_agent_answer(
    recipients: &[String],
    timeout_secs: u32,
    required_approvals: u32,
) -> Result<(), String> {
    if recipients.is_empty() || recipients.len() > MAX_RECIPIENTS {
        return Err(format!(
            "between 1 and {MAX_RECIPIENTS} recipients are required"
        ));
    }
    for recipient in recipients {
        validate_recipient(recipient)?;
    }
    if !(MIN_TIMEOUT_SECS..=MAX_TIMEOUT_SECS).contains(&timeout_secs) {
        return Err(format!(
            "timeout must be {MIN_TIMEOUT_SECS}-{MAX_TIMEOUT_SECS} seconds"
        ));
    }
    if required_approvals == 0 || required_approvals as usize > recipients.len() {
        return Err("required approvals must be between 1 and the number of recipients".into());
    }
    Ok(())
}

/// Whether two recipient entries name the same mailbox (`Name <a@x>` and
/// `a@x` do), ignoring case.
fn same_mailbox(a: &str, b: &str) -> bool {
    let address = |text: &str| {
        text.parse::<lettre::message::Mailbox>()
            .map(|mailbox| mailbox.email.to_string().to_ascii_lowercase())
            .unwrap_or_else(|_| text.trim().to_ascii_lowercase())
    };
    address(a) == address(b)
}

/// What the operator is told when its request was cancelled by something
/// other than its own wish; `None` for its own.
fn cancel_refusal(cause: &CancelCause, computer: &str) -> Option<(Refusal, String)> {
    Some(match cause {
        CancelCause::Operator => return None,
        CancelCause::Undeliverable { error } => (
            Refusal::DeliveryFailed,
            format!("no authorization email could be delivered: {error}"),
        ),
        CancelCause::ComputerGone => (
            Refusal::ComputerWentOffline,
            format!("computer {computer:?} went offline while waiting for authorization"),
        ),
        CancelCause::Revoked {
            what: Revoked::OperatorToken,
        } => (
            Refusal::TokenRevoked,
            "your operator token was replaced or removed".into(),
        ),
        CancelCause::Revoked {
            what: Revoked::Computer,
        } => (
            Refusal::ComputerWentOffline,
            format!("computer {computer:?} was removed from the server"),
        ),
        CancelCause::Revoked {
            what: Revoked::Access,
        } => (
            Refusal::UnknownComputer,
            format!("unknown computer or not permitted: {computer:?} (your access was revoked)"),
        ),
    })
}

/// Waits for the request to settle; cancels it if the operator gives up or
/// goes away. `None` when the server is shutting down.
async fn wait_for_outcome(
    broker: &Arc<Broker>,
    connection: &mut Connection<Upgraded>,
    ask: &Ask<'_>,
    request_id: &str,
    watch: &mut crate::broker::RequestWatch,
    superseded: &mut tokio::sync::oneshot::Receiver<()>,
) -> Result<Option<Outcome>, OperatorError> {
    let mut shutdown = broker.shutdown.clone();
    let mut operator_gone = false;
    let mut settled_elsewhere = false;
    let mut heartbeat = broker.heartbeat_ticks();
    loop {
        let outcome = watch.receiver.borrow_and_update().clone();
        if let Some(outcome) = outcome {
            // News reported before the outcome (e.g. the last failed email
            // that ended the request) reaches the operator before it.
            loop {
                match watch.news.try_recv() {
                    Ok(news) => connection.write_message(&news).await?,
                    Err(broadcast::error::TryRecvError::Lagged(_)) => continue,
                    Err(_) => break,
                }
            }
            return Ok(Some(outcome));
        }
        tokio::select! {
            changed = watch.receiver.changed() => {
                if changed.is_err() {
                    return Ok(None);
                }
            }
            Ok(news) = watch.news.recv() => {
                connection.write_message(&news).await?;
            }
            // Keeps proxies and NATs from closing the quiet wait, and lets
            // the operator tell a dead connection from a slow decision.
            _ = heartbeat.tick(), if !operator_gone => {
                connection.write_message(&ServerToOperator::Ping).await?;
                // Settled where this process's watch cannot see it
                // (`doorman admin` revoking a secret cancels in the
                // database). Seen on two ticks running, so that a decision
                // of this process, whose watch fires a moment after its
                // database write, keeps its own path (and its cause).
                // A revoked token's requests were cancelled with it.
                let stored = broker.store.request(request_id).await?;
                let revoked = still_permitted(broker, ask).await.is_some();
                match stored.and_then(|row| row.outcome()) {
                    Some(outcome) if settled_elsewhere || revoked => return Ok(Some(outcome)),
                    Some(_) => settled_elsewhere = true,
                    None if revoked => return Ok(None),
                    None => {}
                }
            }
            message = connection.read_message::<OperatorMessage>(), if !operator_gone => {
                // A cancel, a closed connection or garbage all end the wait.
                let detail = match message {
                    Ok(Some(OperatorMessage::Cancel)) => "cancelled by the operator",
                    Ok(Some(_)) => "operator sent an unexpected message",
                    Ok(None) | Err(_) => "operator disconnected",
                };
                operator_gone = true;
                let cancel = Event::Cancel { cause: CancelCause::Operator, at: now_millis() };
                let witness = Witness {
                    actor: Some(ask.operator.to_string()),
                    address: Some(ask.ip.clone()),
                    user_agent: None,
                    detail: Some(detail.into()),
                };
                broker.apply(request_id, cancel, witness).await?;
            }
            // The operator resumed on another connection: this one is dead.
            _ = &mut *superseded => return Ok(None),
            _ = crate::broker::stopping(&mut shutdown) => return Ok(None),
        }
    }
}

/// Whether the operator's grants let it reach this computer for this service.
async fn permitted(broker: &Broker, ask: &Ask<'_>) -> Result<bool, StoreError> {
    let grants = broker.store.grants_of(ask.operator).await?;
    Ok(permits(&grants, &ask.computer, ask.service.kind()))
}

/// What ended the operator's right to this connection, if anything did:
/// its token was replaced or removed (`doorman admin operator
/// rotate|remove`), or its grant revoked (`doorman admin access revoke`).
/// A database that cannot answer revokes nothing.
async fn still_permitted(broker: &Broker, ask: &Ask<'_>) -> Option<Revoked> {
    let checked = async {
        let name = broker.store.operator_by_token_hash(&ask.token_hash).await?;
        if name.as_deref() != Some(ask.operator) {
            return Ok(Some(Revoked::OperatorToken));
        }
        Ok::<_, StoreError>((!permitted(broker, ask).await?).then_some(Revoked::Access))
    };
    match checked.await {
        Ok(revoked) => revoked,
        Err(error) => {
            tracing::error!(%error, "cannot check an operator's token and grants");
            None
        }
    }
}

fn outcome_message(outcome: &Outcome) -> ServerToOperator {
    match outcome.clone() {
        Outcome::Allowed { by, at, .. } => ServerToOperator::Allowed { by, at },
        Outcome::Denied { by, at } => ServerToOperator::Denied { by, at },
        Outcome::Expired { at } => ServerToOperator::Expired { at },
        Outcome::Cancelled { at, .. } => ServerToOperator::Cancelled { at },
    }
}

fn audit(
    ask: &Ask<'_>,
    event: AuditKind,
    request_id: Option<&str>,
    detail: Option<String>,
) -> AuditEvent {
    AuditEvent {
        at: now_millis(),
        event,
        request_id: request_id.map(String::from),
        computer: Some(ask.computer.clone()),
        actor: Some(ask.operator.to_string()),
        address: Some(ask.ip.clone()),
        user_agent: None,
        detail,
    }
}

/// Waits for the agent's session connection, then relays bytes both ways
/// until either side closes.
async fn relay_session(
    broker: &Arc<Broker>,
    mut connection: Connection<Upgraded>,
    ask: &Ask<'_>,
    session_key: &str,
    request_id: Option<&str>,
    mut expected: crate::broker::ExpectedSession,
) -> Result<(), OperatorError> {
    let opened = tokio::select! {
        opened = tokio::time::timeout(SESSION_OPEN_TIMEOUT, &mut expected.receiver) => opened,
        _ = &mut expected.superseded => return Ok(()),
    };
    let Ok(Ok(agent_io)) = opened else {
        return refuse(
            &mut connection,
            Refusal::SessionFailed,
            "the computer did not open the session",
        )
        .await;
    };
    let session_id = match broker
        .store
        .start_session(request_id, &ask.computer, ask.operator, now_millis())
        .await
    {
        Ok(id) => id,
        Err(StoreError::SessionAlreadyStarted) => {
            return refuse(
                &mut connection,
                Refusal::SessionFailed,
                "this approval was already used",
            )
            .await;
        }
        Err(e) => return Err(e.into()),
    };
    broker
        .store
        .record(&audit(ask, AuditKind::SessionStarted, request_id, None))
        .await?;
    let limit = ask.max_session_seconds;
    connection
        .write_message(&ServerToOperator::SessionStarted {
            request_id: session_key.to_string(),
            time_limit_secs: (limit > 0).then_some(u64::from(limit)),
        })
        .await?;
    let time_up = async {
        if limit > 0 {
            tokio::time::sleep(Duration::from_secs(u64::from(limit))).await;
        } else {
            std::future::pending::<()>().await;
        }
    };
    tokio::pin!(time_up);
    // Tunnels of a forward session are accepted while the session lasts.
    let _grant = match &ask.service {
        Service::Forward { targets } => {
            Some(broker.grant_forwarding(session_key, ask.operator, &ask.computer, targets.clone()))
        }
        _ => None,
    };

    // Bytes the operator sent right behind its last message belong to the agent.
    let (operator_io, early) = connection.into_parts();
    let mut shutdown = broker.shutdown.clone();
    let relayed = crate::relay::relay(operator_io, &early, agent_io);
    tokio::pin!(relayed);
    let mut check = broker.heartbeat_ticks();
    let detail = loop {
        tokio::select! {
            result = &mut relayed => break match result {
                Ok((up, down)) => format!("{up} bytes to the computer, {down} bytes back"),
                Err(e) => format!("ended by a connection error: {e}"),
            },
            _ = check.tick() => match still_permitted(broker, ask).await {
                Some(Revoked::Access) => break "ended: the operator's access to this computer was revoked".to_string(),
                Some(_) => break "ended: the operator's token was replaced or removed".to_string(),
                None => {}
            },
            // Relaying to a connection the operator has given up for dead
            // would keep the session running for nobody.
            _ = &mut expected.superseded => break "ended: the operator resumed on another connection".to_string(),
            _ = &mut time_up => break "ended: time limit".to_string(),
            _ = crate::broker::stopping(&mut shutdown) => break "ended by server shutdown".to_string(),
        }
    };
    broker.store.end_session(session_id, now_millis()).await?;
    broker
        .store
        .record(&audit(
            ask,
            AuditKind::SessionEnded,
            request_id,
            Some(detail),
        ))
        .await?;
    Ok(())
}
