//! An operator's connection on `/v1/connect`, one module per step, as the
//! flow runs: `offer` (a connect: checks, access rules, limits, the
//! agent's answer), `authorization` (the request with its emails or a
//! reused approval), `wait` (the pushed outcome, the operator's Ctrl-C, revocations),
//! `resume` (an operator back on a new connection) and `session` (the
//! session relayed between operator and agent, and how it ended, which the
//! operator is told in the server's words when the server ended it).
//! `admission` holds the checks they share.

mod admission;
mod authorization;
mod offer;
mod resume;
mod session;
mod wait;

use crate::broker::Broker;
use crate::relay::OperatorStream;
use doorman_core::AuditKind;
use doorman_runtime::secrets;
use doorman_store::{AuditEvent, ComputerId, OperatorId, OperatorIdentity, StoreError};
use doorman_wire::connection::Connection;
use doorman_wire::message::{OperatorMessage, Refusal, ServerToOperator, Service, write_deadline};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;
use tracing::Instrument;

/// How long an operator has to send its connect message.
const CONNECT_MESSAGE_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
enum OperatorError {
    #[error(transparent)]
    Connection(#[from] doorman_wire::ConnectionError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Random(#[from] secrets::RandomError),
}

/// Where an operator's connection comes from, as the audit trail says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Via {
    /// `doorman connect` (or any client of the wire protocol).
    Client,
    /// The web console, bridged from its WebSocket.
    Console,
}

/// Serves one operator connection to its end: `operator` is who the token
/// (whose hash is `token_hash`) belonged to when the connection opened.
pub async fn serve(
    broker: Arc<Broker>,
    io: OperatorStream,
    operator: OperatorIdentity,
    token_hash: [u8; 32],
    ip: IpAddr,
    via: Via,
) {
    let mut connection = Connection::new(io);
    // An operator that stops reading is dropped, not waited on; the
    // session's bytes, which go at its program's pace, are not held to it.
    connection.set_write_deadline(Some(write_deadline(broker.heartbeat())));
    let who = Who {
        operator: &operator.name,
        operator_id: operator.id,
        token_hash,
        ip,
        via,
    };
    // The log's lines about this connection carry who and what as span
    // fields; `computer` and `request` are filled in once known.
    let span = tracing::info_span!(
        "operator",
        operator = %operator.name,
        computer = tracing::field::Empty,
        request = tracing::field::Empty,
    );
    async {
        match serve_connection(&broker, connection, who).await {
            Ok(()) => {}
            // An operator that goes away (Ctrl-C, a closed laptop) is an
            // ordinary end.
            Err(OperatorError::Connection(error)) if error.is_hang_up() => {
                tracing::info!("operator hung up (Ctrl-C, or its network went away)");
            }
            Err(OperatorError::Connection(error @ doorman_wire::ConnectionError::Io(_))) => {
                tracing::info!(%error, "operator connection lost");
            }
            Err(OperatorError::Connection(
                error @ doorman_wire::ConnectionError::WriteStalled(_),
            )) => {
                tracing::info!(%error, "operator stopped reading; its connection was dropped");
            }
            Err(error) => tracing::warn!(%error, "operator connection failed"),
        }
    }
    .instrument(span)
    .await;
}

/// The operator behind a connection.
#[derive(Clone, Copy)]
struct Who<'a> {
    operator: &'a str,
    /// Who the operator is: its requests, grants and blocks are this id's.
    operator_id: OperatorId,
    /// The hash of the token this connection was opened with.
    token_hash: [u8; 32],
    ip: IpAddr,
    via: Via,
}

/// What an operator asks of a computer (both known to exist when it was
/// made), as the steps of a connection carry it.
struct Ask<'a> {
    operator: &'a str,
    operator_id: OperatorId,
    via: Via,
    /// The hash of the token this connection was opened with.
    token_hash: [u8; 32],
    ip: String,
    computer: String,
    /// Who the computer is: a computer removed and added again under the
    /// same name is another one.
    computer_id: ComputerId,
    reason: String,
    service: Service,
    /// The computer's session time limit in seconds (0: none), once it said.
    max_session_seconds: u32,
    /// The operator asked for a session sealed end to end: the server
    /// records none of it.
    sealed: bool,
}

async fn refuse(
    connection: &mut Connection<OperatorStream>,
    reason: Refusal,
    message: impl Into<String>,
) -> Result<(), OperatorError> {
    let message = message.into();
    connection
        .write_message(&ServerToOperator::Refused { reason, message })
        .await?;
    Ok(())
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
    let event = audit(
        broker,
        ask,
        AuditKind::Refused,
        Some(request_id),
        Some(detail),
    );
    broker.store().record(&event).await?;
    refuse(&mut connection, reason, message).await
}

/// The audit event of `event` for what `ask` asks, now by the broker's
/// clock.
fn audit(
    broker: &Broker,
    ask: &Ask<'_>,
    event: AuditKind,
    request_id: Option<&str>,
    detail: Option<String>,
) -> AuditEvent {
    AuditEvent {
        at: broker.now_millis(),
        event,
        request_id: request_id.map(String::from),
        computer: Some(ask.computer.clone()),
        actor: Some(ask.operator.to_string()),
        address: Some(ask.ip.clone()),
        user_agent: (ask.via == Via::Console).then(|| "via console".to_string()),
        detail,
        count: 1,
    }
}

/// Reads the operator's first message and hands the connection to its verb.
async fn serve_connection(
    broker: &Arc<Broker>,
    mut connection: Connection<OperatorStream>,
    who: Who<'_>,
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
    match first {
        OperatorMessage::Connect {
            computer,
            reason,
            service,
            e2e,
        } => {
            tracing::Span::current().record("computer", computer.as_str());
            offer::connect(broker, connection, who, computer, reason, service, e2e).await
        }
        OperatorMessage::Resume { request_id } => {
            tracing::Span::current().record("request", request_id.as_str());
            resume::resume(broker, connection, who, request_id).await
        }
        OperatorMessage::Cancel => {
            refuse(
                &mut connection,
                Refusal::InvalidRequest,
                "expected a connect message",
            )
            .await
        }
    }
}
