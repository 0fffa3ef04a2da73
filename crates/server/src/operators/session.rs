//! A session: waits for the agent's session connection, then relays bytes
//! both ways until either side closes, the time limit passes, the
//! operator's token or grant is revoked, the operator resumes elsewhere, or
//! the server stops; records how it ended.

use super::admission::still_permitted;
use super::{Ask, OperatorError, audit, refuse};
use crate::broker::{AgentConnection, Broker, ExpectedSession};
use crate::clock::now_millis;
use crate::recording::Recording;
use crate::recording::cast::Screen;
use crate::relay::OperatorStream;
use crate::store::StoreError;
use crate::store::recordings::RecordingOf;
use doorman_core::{AuditKind, Revoked};
use doorman_proto::connection::Connection;
use doorman_proto::message::{Refusal, ServerToOperator, Service, SessionEnd};
use std::sync::Arc;
use std::time::Duration;

/// A relay under way.
type Relaying<'a> = std::pin::Pin<
    Box<dyn Future<Output = Result<(u64, u64), doorman_proto::relay::RelayError>> + Send + 'a>,
>;

/// How long the agent's report of a session's end may trail its last bytes.
const END_REPORT_WAIT: Duration = Duration::from_secs(5);

/// How long the agent has to open the session connection once allowed.
const SESSION_OPEN_TIMEOUT: Duration = Duration::from_secs(15);

/// Starts recording a shell session, when the server records them. A
/// recording that cannot start is logged and the session goes on: refusing
/// it would make the database a way to lock everyone out.
async fn record(
    broker: &Arc<Broker>,
    session_id: i64,
    request_id: Option<&str>,
    ask: &Ask<'_>,
) -> Option<Recording> {
    let Service::Shell { term, rows, cols } = &ask.service else {
        return None;
    };
    if !broker.recordings.enabled {
        return None;
    }
    let screen = Screen {
        term: term.clone(),
        cols: *cols,
        rows: *rows,
        timestamp: now_millis() / 1000,
    };
    let of = RecordingOf {
        request_id,
        computer: &ask.computer,
        computer_id: ask.computer_id,
        operator: ask.operator,
        operator_id: ask.operator_id,
    };
    let started = Recording::start(broker, session_id, &of, screen).await;
    match started {
        Ok(recording) => Some(recording),
        Err(error) => {
            tracing::error!(%error, "cannot record the session; it goes on unrecorded");
            None
        }
    }
}

/// Whether the computer's refusal ended this request (and was audited as
/// it arrived).
async fn refused_by_the_computer(broker: &Broker, request_id: Option<&str>) -> bool {
    let Some(id) = request_id else {
        return false;
    };
    matches!(
        broker.store.load(id).await,
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

/// Waits for the agent's session connection, then relays bytes both ways
/// until either side closes.
pub(super) async fn relay_session(
    broker: &Arc<Broker>,
    mut connection: Connection<OperatorStream>,
    ask: &Ask<'_>,
    session_key: &str,
    request_id: Option<&str>,
    mut expected: ExpectedSession,
) -> Result<(), OperatorError> {
    // The agent's report of the end may come first: a short session can
    // end before its connection reaches this task. It is kept, since the
    // report can be read only once.
    let mut reported = None;
    let deadline = tokio::time::Instant::now() + SESSION_OPEN_TIMEOUT;
    let opened = loop {
        tokio::select! {
            opened = tokio::time::timeout_at(deadline, &mut expected.receiver) => break opened,
            end = &mut expected.end, if reported.is_none() => match end {
                // The computer refused before opening anything (an approval
                // its own checks do not accept): the operator hears its
                // words.
                Ok(SessionEnd::Failed { message }) => {
                    // Unless the session did open (its connection is here,
                    // not yet taken): then it failed, as sessions do.
                    if let Ok(agent) = expected.receiver.try_recv() {
                        reported = Some(Ok(SessionEnd::Failed { message }));
                        break Ok(Ok(agent));
                    }
                    // Only the computer's own refusal (`AgentToServer::Refused`,
                    // recorded as it arrives) ends the request; a session that
                    // failed to open (a network error, say) leaves it as it is.
                    if !refused_by_the_computer(broker, request_id).await {
                        let failed = audit(ask, AuditKind::Refused, request_id, Some(message.clone()));
                        broker.store.record(&failed).await?;
                    }
                    return refuse(&mut connection, Refusal::SessionFailed, message).await;
                }
                other => reported = Some(other),
            },
            _ = &mut expected.superseded => return Ok(()),
        }
    };
    let Ok(Ok(AgentConnection { io: agent_io, .. })) = opened else {
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
        Err(StoreError::NoLongerAllowed) => {
            return refuse(
                &mut connection,
                Refusal::SessionFailed,
                "the approval ended before the session started",
            )
            .await;
        }
        Err(e) => return Err(e.into()),
    };
    broker
        .store
        .record(&audit(ask, AuditKind::SessionStarted, request_id, None))
        .await?;
    // Tunnels of a forward session are accepted while the session lasts,
    // from before the operator hears that it started.
    let _grant = match &ask.service {
        Service::Forward { targets } => Some(broker.forwards.grant(
            session_key,
            ask.operator_id,
            &ask.computer,
            targets.clone(),
        )),
        _ => None,
    };
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

    // Bytes the operator sent right behind its last message belong to the agent.
    let (operator_io, early) = connection.into_parts();
    let _active = broker.metrics.session_active(&ask.service);
    let recording = record(broker, session_id, request_id, ask).await;
    let relayed: Relaying<'_> = match &recording {
        Some(recording) => Box::pin(crate::relay::relay_recorded(
            operator_io,
            &early,
            agent_io,
            recording,
        )),
        None => Box::pin(crate::relay::relay(operator_io, &early, agent_io)),
    };
    let mut relayed = relayed;
    let mut check = broker.heartbeat_ticks();
    let detail = loop {
        tokio::select! {
            result = &mut relayed => {
                let (up, down) = match &result {
                    Ok(moved) => *moved,
                    Err(error) => error.moved,
                };
                broker.metrics.relayed(up, down);
                // The report follows the session's last bytes closely.
                let end = match reported.take() {
                    Some(end) => Ok(end),
                    None => tokio::time::timeout(END_REPORT_WAIT, &mut expected.end).await,
                };
                break match (end, result) {
                    (Ok(Ok(end)), _) => format!("ended: {end}"),
                    (_, Ok((up, down))) => format!(
                        "ended: the connection closed without word from the computer ({up} bytes to the computer, {down} bytes back)"
                    ),
                    (_, Err(e)) => format!("ended: the connection to the computer was lost ({e})"),
                };
            }
            _ = check.tick() => {
                if let Some(recording) = &recording {
                    recording.flush();
                }
                match still_permitted(broker, ask).await {
                Some(Revoked::Access) => break "ended: the operator's access to this computer was revoked".to_string(),
                Some(Revoked::Computer) => break "ended: the computer was removed".to_string(),
                Some(Revoked::OperatorToken) => break "ended: the operator's token was replaced or removed".to_string(),
                None => {}
            }},
            // Relaying to a connection the operator has given up for dead
            // would keep the session running for nobody.
            _ = &mut expected.superseded => break "ended: the operator resumed on another connection".to_string(),
            _ = &mut time_up => break "ended: time limit".to_string(),
            _ = broker.lifecycle.stopping() => break "ended by server shutdown".to_string(),
        }
    };
    drop(relayed);
    broker.store.end_session(session_id, now_millis()).await?;
    if let Some(recording) = recording {
        let recorded = recording.finish(broker).await?;
        broker
            .store
            .record(&audit(
                ask,
                AuditKind::SessionRecorded,
                request_id,
                Some(recorded.detail),
            ))
            .await?;
    }
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
