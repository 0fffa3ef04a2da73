//! Before a session runs: the agent's session connection awaited, or the
//! computer's word that there will be none (it refused the approval, or
//! could not open the connection), which the operator then hears.

use super::super::{Ask, OperatorError, audit, refuse};
use crate::broker::{AgentConnection, Broker, ExpectedSession};
use crate::relay::OperatorStream;
use doorman_core::AuditKind;
use doorman_wire::connection::Connection;
use doorman_wire::dial::Upgraded;
use doorman_wire::message::{Refusal, SessionEnd};
use std::time::Duration;

/// How long the agent has to open the session connection once allowed.
const SESSION_OPEN_TIMEOUT: Duration = Duration::from_secs(15);

/// Waits for the agent's session connection. `None` when there will be
/// none: the operator was told why, or resumed on another connection.
pub(super) async fn agent_connection(
    broker: &Broker,
    connection: &mut Connection<OperatorStream>,
    ask: &Ask<'_>,
    request_id: Option<&str>,
    expected: &mut ExpectedSession,
) -> Result<Option<Upgraded>, OperatorError> {
    let deadline = tokio::time::Instant::now() + SESSION_OPEN_TIMEOUT;
    let mut reported = false;
    let opened = loop {
        tokio::select! {
            opened = tokio::time::timeout_at(deadline, &mut expected.receiver) => break opened,
            // The computer refused before opening anything (an approval its
            // own checks do not accept), or could not open the connection.
            end = &mut expected.end, if !reported => {
                reported = true;
                let Ok(SessionEnd::Failed { message }) = end else {
                    continue;
                };
                // Unless the session did open (its connection is here, not
                // yet taken): then its failure travels on it.
                if let Ok(AgentConnection { io, .. }) = expected.receiver.try_recv() {
                    return Ok(Some(io));
                }
                failed(broker, connection, ask, request_id, message).await?;
                return Ok(None);
            }
            _ = &mut expected.superseded => return Ok(None),
        }
    };
    let Ok(Ok(AgentConnection { io, .. })) = opened else {
        refuse(
            connection,
            Refusal::SessionFailed,
            "the computer did not open the session",
        )
        .await?;
        return Ok(None);
    };
    Ok(Some(io))
}

/// The computer will not run the session: the operator hears its words.
/// Only the computer's own refusal (`AgentToServer::Refused`, audited as it
/// arrived) ends the request; a session that failed to open (a network
/// error, say) leaves it as it is, and is audited here.
async fn failed(
    broker: &Broker,
    connection: &mut Connection<OperatorStream>,
    ask: &Ask<'_>,
    request_id: Option<&str>,
    message: String,
) -> Result<(), OperatorError> {
    if !refused_by_the_computer(broker, request_id).await {
        let failed = audit(
            broker,
            ask,
            AuditKind::Refused,
            request_id,
            Some(message.clone()),
        );
        broker.store().record(&failed).await?;
    }
    refuse(connection, Refusal::SessionFailed, message).await
}

/// Whether the computer's refusal ended this request (and was audited as
/// it arrived).
async fn refused_by_the_computer(broker: &Broker, request_id: Option<&str>) -> bool {
    let Some(id) = request_id else {
        return false;
    };
    matches!(
        broker.store().load(id).await,
        Ok(Some((_, doorman_core::Request::Settled(settled))))
            if matches!(
                settled.outcome(),
                doorman_core::Outcome::Cancelled {
                    cause: doorman_core::CancelCause::RefusedByComputer { .. },
                    ..
                }
            )
    )
}
