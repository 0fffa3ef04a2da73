//! Waiting for a request's outcome: pushed news and the outcome reach the
//! operator; its Ctrl-C or disappearance cancels the request; a revoked
//! token or grant, or a decision made by another process, ends the wait;
//! past the deadline the wait expires the request itself, should the
//! expiry timer not have. An allowed request goes on to its session.

use super::admission::still_permitted;
use super::session::relay_session;
use super::{Ask, OperatorError, refuse};
use crate::broker::{Applied, Broker, ExpectedSession, RequestWatch, Witness};
use crate::relay::OperatorStream;
use doorman_core::authorization::Event;
use doorman_core::{CancelCause, Outcome, Revoked};
use doorman_runtime::clock::Ticks;
use doorman_store::Millis;
use doorman_wire::connection::Connection;
use doorman_wire::message::{OperatorMessage, Refusal, ServerToOperator};
use std::sync::Arc;
use tokio::sync::broadcast;

/// How long after the deadline the wait first applies the expiry itself
/// (the expiry timer normally has by then), and then how often until it
/// lands, in milliseconds by the server's clock: well inside the client's
/// grace (`doorman_client::EXPIRY_GRACE`), whatever the heartbeat.
const OVERDUE_EVERY_MS: Millis = 1_000;

/// Where a request stands when its operator starts waiting on it.
pub(super) enum Standing {
    /// Settled: its outcome.
    Settled(Outcome),
    /// Pending.
    Pending(Waiting),
}

/// A pending request's wait.
pub(super) struct Waiting {
    /// When the request expires.
    pub expires_at: Millis,
    /// The wait's heartbeat, made before the operator was told the request
    /// is pending (see `Broker::heartbeat_ticks`).
    pub heartbeat: Ticks,
}

/// Waits for the request's outcome (unless it is already known), tells the
/// operator, and on `allowed` relays the session.
pub(super) async fn conclude(
    broker: &Arc<Broker>,
    mut connection: Connection<OperatorStream>,
    ask: &Ask<'_>,
    request_id: &str,
    standing: Standing,
    mut watch: RequestWatch,
    mut expected: ExpectedSession,
) -> Result<(), OperatorError> {
    let outcome = match standing {
        Standing::Settled(outcome) => outcome,
        Standing::Pending(waiting) => match wait_for_outcome(
            broker,
            &mut connection,
            ask,
            request_id,
            waiting,
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

/// Waits for the request (which expires at `expires_at`) to settle, with a
/// heartbeat;
/// cancels it if the operator gives up or goes away, expires it if it is
/// overdue. `None` when the server is shutting down.
async fn wait_for_outcome(
    broker: &Arc<Broker>,
    connection: &mut Connection<OperatorStream>,
    ask: &Ask<'_>,
    request_id: &str,
    Waiting {
        expires_at,
        mut heartbeat,
    }: Waiting,
    watch: &mut RequestWatch,
    superseded: &mut tokio::sync::oneshot::Receiver<()>,
) -> Result<Option<Outcome>, OperatorError> {
    let mut operator_gone = false;
    let mut overdue_at = expires_at.saturating_add(OVERDUE_EVERY_MS);
    loop {
        let outcome = watch.receiver.borrow_and_update().clone();
        if let Some(outcome) = outcome {
            pass_on_news(connection, watch).await?;
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
            () = heartbeat.tick(), if !operator_gone => {
                connection.write_message(&ServerToOperator::Ping).await?;
                // Settled where this process's watch cannot see it
                // (`doorman admin` revoking a secret or a grant cancels in
                // the database); the stored outcome carries its cause. A
                // database that cannot answer ends no wait.
                let stored = match broker.store().request(request_id).await {
                    Ok(stored) => stored.and_then(|row| row.outcome()),
                    Err(error) => {
                        tracing::warn!(%error, "cannot read the awaited request's state");
                        None
                    }
                };
                if let Some(outcome) = stored {
                    pass_on_news(connection, watch).await?;
                    return Ok(Some(outcome));
                }
                if still_permitted(broker, ask).await.is_some() {
                    return Ok(None);
                }
            }
            // The expiry timer's backstop: past the deadline the wait
            // expires the request itself, until that lands.
            () = broker.clock().sleep_until(overdue_at) => {
                overdue_at = broker.now_millis().saturating_add(OVERDUE_EVERY_MS);
                match broker.expire(request_id).await {
                    Ok(Applied::Settled(outcome) | Applied::AlreadySettled(outcome)) => {
                        pass_on_news(connection, watch).await?;
                        return Ok(Some(outcome));
                    }
                    Ok(_) => {}
                    Err(error) => tracing::warn!(%error, "cannot expire the overdue request yet"),
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
                let cancel = Event::Cancel { cause: CancelCause::Operator, at: broker.now_millis() };
                let witness = Witness {
                    assertion: None,
                    actor: Some(ask.operator.to_string()),
                    address: Some(ask.ip.clone()),
                    user_agent: None,
                    detail: Some(detail.into()),
                };
                broker.apply(request_id, cancel, witness).await?;
            }
            // The operator resumed on another connection: this one is dead.
            _ = &mut *superseded => return Ok(None),
            _ = broker.lifecycle().stopping() => return Ok(None),
        }
    }
}

/// News reported before the outcome (e.g. the last failed email that ended
/// the request) reaches the operator before it.
async fn pass_on_news(
    connection: &mut Connection<OperatorStream>,
    watch: &mut RequestWatch,
) -> Result<(), OperatorError> {
    loop {
        match watch.news.try_recv() {
            Ok(news) => connection.write_message(&news).await?,
            Err(broadcast::error::TryRecvError::Lagged(_)) => continue,
            Err(_) => return Ok(()),
        }
    }
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
        CancelCause::RefusedByComputer { reason } => (
            Refusal::SessionFailed,
            format!("the computer refused the approval: {reason}"),
        ),
    })
}

fn outcome_message(outcome: &Outcome) -> ServerToOperator {
    match outcome.clone() {
        Outcome::Allowed { by, at, .. } => ServerToOperator::Allowed { by, at },
        Outcome::Denied { by, at } => ServerToOperator::Denied { by, at },
        Outcome::Expired { at } => ServerToOperator::Expired { at },
        Outcome::Cancelled { at, .. } => ServerToOperator::Cancelled { at },
    }
}
