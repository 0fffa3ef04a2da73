//! A session: waits for the agent's session connection (`open`), records
//! its start, then relays it (`relay`) until either side ends it or the
//! server does: the time limit passes, the operator's token or grant or the
//! computer is revoked, the operator resumes elsewhere, or the server
//! stops. How it ended (`end`) goes to the audit trail and, when the
//! server ended it, to the operator in words, as the session connection's
//! last frame.

mod copied;
mod end;
mod open;
mod relay;

use super::admission::still_permitted;
use super::{Ask, OperatorError, audit, refuse};
use crate::broker::{Broker, ExpectedSession, ForwardingGuard};
use crate::relay::OperatorStream;
use doorman_core::AuditKind;
use doorman_recordings::cast::{Direction, Screen};
use doorman_recordings::{Recorded, Recording};
use doorman_runtime::clock::Ticks;
use doorman_store::recordings::RecordingOf;
use doorman_store::{Millis, StoreError};
use doorman_wire::connection::Connection;
use doorman_wire::dial::Upgraded;
use doorman_wire::message::{Refusal, ServerToOperator, Service};
use end::{Ending, Stop};
use relay::FrameRelay;
use std::future::Future;
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::oneshot;

/// Waits for the agent's session connection, then relays the session to
/// its end and records how it ended.
pub(super) async fn relay_session(
    broker: &Arc<Broker>,
    mut connection: Connection<OperatorStream>,
    ask: &Ask<'_>,
    session_key: &str,
    request_id: Option<&str>,
    mut expected: ExpectedSession,
) -> Result<(), OperatorError> {
    let opened =
        open::agent_connection(broker, &mut connection, ask, request_id, &mut expected).await?;
    let Some(agent) = opened else {
        return Ok(());
    };
    let Some(session_id) = begin(broker, &mut connection, ask, request_id).await? else {
        return Ok(());
    };
    // Tunnels of a forward session are accepted while the session lasts,
    // from before the operator hears that it started.
    let _grant = forward_grant(broker, ask, session_key);
    let limit = ask.max_session_seconds;
    // The time limit runs from the moment the operator is told, by the
    // server's clock.
    let ends_at = (limit > 0).then(|| {
        broker
            .clock()
            .now_millis()
            .saturating_add(i64::from(limit) * 1000)
    });
    // Made before the operator hears of the session (see heartbeat_ticks).
    let check = broker.heartbeat_ticks();
    connection
        .write_message(&ServerToOperator::SessionStarted {
            request_id: session_key.to_string(),
            time_limit_secs: (limit > 0).then_some(u64::from(limit)),
        })
        .await?;
    let _active = broker.metrics().session_active(&ask.service);
    let recording = record(broker, session_id, request_id, ask).await;
    let stop = watch_for_stop(
        broker,
        ask,
        ends_at,
        check,
        recording.as_ref(),
        &mut expected.superseded,
    );
    let recorder = match &recording {
        Some(recording) => Recorder::Server(recording),
        // Only a shell's screen is recorded, by the server or the computer.
        None if ask.sealed
            && broker.recorder().settings.enabled
            && matches!(ask.service, Service::Shell { .. }) =>
        {
            Recorder::Computer(session_id)
        }
        None => Recorder::Nobody,
    };
    let (detail, sealed) = run(broker, connection, agent, ask, request_id, recorder, stop).await;
    finish(
        broker,
        ask,
        request_id,
        session_id,
        (recording, sealed),
        detail,
    )
    .await
}

/// Who records a session: the server, through taps on its relay (a
/// session it can read: the web console's); the computer, which records a
/// session sealed end to end itself and sends it sealed for the server to
/// keep (recording `session_id`); or nobody (recording is off).
enum Recorder<'r> {
    Server(&'r Recording),
    Computer(i64),
    Nobody,
}

/// Records that the session starts; `None` when this approval may not
/// start one, and the operator was told why.
async fn begin(
    broker: &Broker,
    connection: &mut Connection<OperatorStream>,
    ask: &Ask<'_>,
    request_id: Option<&str>,
) -> Result<Option<i64>, OperatorError> {
    let event = audit(broker, ask, AuditKind::SessionStarted, request_id, None);
    let started = broker
        .store()
        .start_session(
            request_id,
            &ask.computer,
            ask.operator,
            event.at,
            Some(&event),
        )
        .await;
    let refusal = match started {
        Ok(id) => return Ok(Some(id)),
        Err(StoreError::SessionAlreadyStarted) => "this approval was already used",
        Err(StoreError::NoLongerAllowed) => "the approval ended before the session started",
        Err(e) => return Err(e.into()),
    };
    refuse(connection, Refusal::SessionFailed, refusal).await?;
    Ok(None)
}

/// Lets the operator of a forward session open tunnels while the guard lives.
fn forward_grant(broker: &Broker, ask: &Ask<'_>, session_key: &str) -> Option<ForwardingGuard> {
    let Service::Forward { targets } = &ask.service else {
        return None;
    };
    Some(
        broker
            .forwards()
            .grant(session_key, ask.operator_id, &ask.computer, targets.clone()),
    )
}

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
    // A session sealed end to end is not the server's to read: only the
    // computer may record it.
    if !broker.recorder().settings.enabled || ask.sealed {
        return None;
    }
    let screen = Screen {
        term: term.clone(),
        cols: *cols,
        rows: *rows,
        timestamp: broker.now_millis() / 1000,
    };
    let of = recording_of(ask, request_id);
    match Recording::start(&broker.recorder(), session_id, &of, screen).await {
        Ok(recording) => Some(recording),
        Err(error) => {
            tracing::error!(%error, "cannot record the session; it goes on unrecorded");
            None
        }
    }
}

/// Whose session a recording is of.
fn recording_of<'a>(ask: &'a Ask<'_>, request_id: Option<&'a str>) -> RecordingOf<'a> {
    RecordingOf {
        request_id,
        computer: &ask.computer,
        computer_id: ask.computer_id,
        operator: ask.operator,
        operator_id: ask.operator_id,
        sealed: false,
    }
}

/// Completes with the server's reason to end the session: its time limit
/// (at `ends_at`, by the server's clock), a revocation (checked every
/// `check` tick, when the recording is stored too), the operator resuming
/// elsewhere (relaying to a connection it has given up for dead would keep
/// the session running for nobody), or the server stopping.
async fn watch_for_stop(
    broker: &Broker,
    ask: &Ask<'_>,
    ends_at: Option<Millis>,
    mut check: Ticks,
    recording: Option<&Recording>,
    superseded: &mut oneshot::Receiver<()>,
) -> Stop {
    let secs = ask.max_session_seconds;
    let time_up = async {
        match ends_at {
            None => std::future::pending().await,
            Some(at) => broker.clock().sleep_until(at).await,
        }
    };
    tokio::pin!(time_up);
    loop {
        tokio::select! {
            () = check.tick() => {
                if let Some(recording) = recording {
                    recording.flush();
                }
                if let Some(revoked) = still_permitted(broker, ask).await {
                    return Stop::Revoked(revoked);
                }
            }
            _ = &mut *superseded => return Stop::Superseded,
            () = &mut time_up => return Stop::TimeLimit { secs },
            () = broker.lifecycle().stopping() => return Stop::ServerStopping,
        }
    }
}

/// Relays the session, through the recording's taps when the server
/// records it, until it ends; returns the audit trail's detail of how,
/// and of the computer's recording if it sent one.
async fn run(
    broker: &Broker,
    connection: Connection<OperatorStream>,
    agent: Upgraded,
    ask: &Ask<'_>,
    request_id: Option<&str>,
    recorder: Recorder<'_>,
    stop: impl Future<Output = Stop>,
) -> (String, Option<Recorded>) {
    // Bytes the operator sent right behind its last message belong to the agent.
    let (operator, early) = connection.into_parts();
    match recorder {
        Recorder::Server(recording) => {
            recording.observe(Direction::ToComputer, &early);
            let operator = recording.tap(operator, Direction::ToComputer);
            let agent = recording.tap(agent, Direction::ToOperator);
            let relay = FrameRelay::new(operator, &early, agent);
            let detail = relay_to_the_end(broker, relay, ask, request_id, stop).await;
            (detail, None)
        }
        Recorder::Computer(session_id) => {
            let mut relay = FrameRelay::new(operator, &early, agent);
            let log = relay.keep_sealed_recording(broker.recorder().settings.max_bytes);
            let relaying = async {
                let detail = relay_to_the_end(broker, relay, ask, request_id, stop).await;
                log.close();
                detail
            };
            let of = recording_of(ask, request_id);
            let recorder = broker.recorder();
            let storing = log.store(&recorder, session_id, &of);
            tokio::join!(relaying, storing)
        }
        Recorder::Nobody => {
            let relay = FrameRelay::new(operator, &early, agent);
            let detail = relay_to_the_end(broker, relay, ask, request_id, stop).await;
            (detail, None)
        }
    }
}

/// Runs `relay` until the session ends, counts its bytes, gives the
/// operator the server's last word if it is owed one, and closes it.
async fn relay_to_the_end<O, A>(
    broker: &Broker,
    mut relay: FrameRelay<O, A>,
    ask: &Ask<'_>,
    request_id: Option<&str>,
    stop: impl Future<Output = Stop>,
) -> String
where
    O: AsyncRead + AsyncWrite + Unpin,
    A: AsyncRead + AsyncWrite + Unpin,
{
    // The files a copy moved are recorded as they come, and all of them
    // before the session's end is.
    let copied = relay.copied();
    let relaying = async {
        let relayed = relay.run(stop).await;
        copied.close();
        relayed
    };
    let (relayed, ()) = tokio::join!(
        relaying,
        copied::record_as_they_come(broker, ask, request_id, &copied)
    );
    let moved = relay.moved();
    broker.metrics().relayed(moved.0, moved.1);
    let end = relay.end(end::left(&ask.service));
    let ending = Ending::of(relayed, end, &ask.service, &ask.computer, moved);
    relay.close(ending.last_word).await;
    ending.detail
}

/// Records the session's end, and its recording's.
async fn finish(
    broker: &Arc<Broker>,
    ask: &Ask<'_>,
    request_id: Option<&str>,
    session_id: i64,
    (recording, sealed): (Option<Recording>, Option<Recorded>),
    detail: String,
) -> Result<(), OperatorError> {
    let ended_at = broker.now_millis();
    let recorded = match recording {
        Some(recording) => Some(recording.finish(&broker.recorder()).await?),
        None => sealed,
    };
    // The end and its audit events in one write: the recording's first,
    // as it was made during the session.
    let mut events = Vec::with_capacity(2);
    if let Some(recorded) = recorded {
        events.push(audit(
            broker,
            ask,
            AuditKind::SessionRecorded,
            request_id,
            Some(recorded.detail),
        ));
    }
    events.push(audit(
        broker,
        ask,
        AuditKind::SessionEnded,
        request_id,
        Some(detail),
    ));
    broker
        .store()
        .end_session(session_id, ended_at, &events)
        .await?;
    Ok(())
}
