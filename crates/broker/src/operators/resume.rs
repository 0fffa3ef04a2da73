//! An operator back on a new connection (its old one died, or the server
//! restarted) picks up a request it made, where it is.

use super::wait::{Standing, Waiting, conclude};
use super::{Ask, OperatorError, Who, refuse};
use crate::broker::Broker;
use crate::relay::OperatorStream;
use doorman_core::Outcome;
use doorman_core::authorization::seconds_left;
use doorman_core::mask::mask_address;
use doorman_wire::connection::Connection;
use doorman_wire::message::{Refusal, ServerToOperator, Service};
use std::sync::Arc;

/// An operator reconnecting (after losing its connection, e.g. to a server
/// restart) to a request it made: picks it up where it is.
pub(super) async fn resume(
    broker: &Arc<Broker>,
    mut connection: Connection<OperatorStream>,
    who: Who<'_>,
    request_id: String,
) -> Result<(), OperatorError> {
    let unknown = "no such request of yours to resume";
    // Yours: made by this operator, not by an earlier one of the same name,
    // to a computer the server still knows by id.
    let Some((row, computer_id)) = broker
        .store()
        .request(&request_id)
        .await?
        .filter(|row| row.operator_id == Some(who.operator_id))
        .and_then(|row| row.computer_id.map(|computer_id| (row, computer_id)))
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
        operator: who.operator,
        operator_id: who.operator_id,
        via: who.via,
        token_hash: who.token_hash,
        ip: who.ip.to_string(),
        computer: row.computer.clone(),
        computer_id,
        reason: row.reason.clone(),
        service,
        max_session_seconds: row.max_session_seconds,
        // As asked when the request was made, whatever this connection says.
        sealed: row.sealed,
    };
    let expected = broker.sessions().expect(&request_id, &ask.computer);
    let watch = broker.waiters().watch(&request_id);
    // Read again now that the watch is registered: nothing can slip between.
    let Some(row) = broker.store().request(&request_id).await? else {
        return refuse(&mut connection, Refusal::InvalidRequest, unknown).await;
    };
    let known = row.outcome();
    let heartbeat = broker.heartbeat_ticks();
    if matches!(known, Some(Outcome::Allowed { .. }))
        && broker.store().session_started(&request_id).await?
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
        let recipients = broker.store().recipients_of(&request_id).await?;
        connection
            .write_message(&ServerToOperator::Pending {
                request_id: request_id.clone(),
                expires_in: seconds_left(row.expires_at, broker.now_millis()),
                recipients: recipients.iter().map(|r| mask_address(r)).collect(),
                heartbeat_ms: broker.heartbeat_ms(),
            })
            .await?;
        // The approvals counted while it was away.
        let approvals = broker.store().approvals_of(&request_id).await?;
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
    let standing = match known {
        Some(outcome) => Standing::Settled(outcome),
        None => Standing::Pending(Waiting {
            expires_at: row.expires_at,
            heartbeat,
        }),
    };
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
