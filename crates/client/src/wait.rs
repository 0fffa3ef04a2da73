//! Before the session: the server's answer to the ask, the live countdown
//! while a request waits for its decision, the request picked up again over
//! a new connection when this one is lost, and a Ctrl-C that cancels it.
//! Ends with the session started, or why there is none.

use crate::server::{CANCEL_CONFIRM_TIMEOUT, Server};
use crate::{ConnectError, Progress};
use doorman_wire::connection::Connection;
use doorman_wire::dial::Upgraded;
use doorman_wire::message::{
    DEFAULT_WRITE_DEADLINE, OperatorMessage, Refusal, ServerToOperator, silence_limit,
    write_deadline,
};
use std::future::Future;
use std::pin::Pin;
use std::time::{Duration, Instant};

/// Where a connect stands with the server before its session.
enum Phase {
    /// Asked; the server has not said it holds a request (or it admitted
    /// the operator without one).
    Asking,
    /// A request waits for its decision, then for its session: counted
    /// down, resumed over a new connection if this one is lost, cancelled
    /// on Ctrl-C. While undecided the server pings; a connection silent for
    /// `silence` is dead even if no error says so (a NAT or proxy dropped
    /// it). Undecided past `deadline` plus the grace, the server has not
    /// confirmed the expiry: the wait ends.
    Waiting {
        request_id: String,
        deadline: Instant,
        silence: Option<Duration>,
        /// Allowed: the session follows; the deadline no longer holds.
        decided: bool,
    },
    /// Ctrl-C sent the cancel; the server's word is awaited a little while.
    Cancelling { since: Instant, deadline: Instant },
}

/// The session the server started.
pub(crate) struct Started {
    /// From the next byte on, relayed to the computer.
    pub(crate) connection: Connection<Upgraded>,
    /// The session's id: its request's, or the admission's.
    pub(crate) request_id: String,
    /// The computer's time limit, if it has one.
    pub(crate) time_limit_secs: Option<u64>,
    /// The secret of the session's tunnels, once it is sealed end to end.
    pub(crate) tunnels: Option<doorman_e2e::tunnel::TunnelSecret>,
}

/// What the wait heard next.
enum Heard {
    Message(ServerToOperator),
    /// The connection closed (`None`), broke, or fell silent.
    Lost(Option<String>),
}

/// A connect waiting for its session.
pub(crate) struct Wait<'a> {
    server: &'a Server,
    /// The computer asked for, as the operator named it.
    computer: &'a str,
    /// How long past an undecided request's deadline the server's word on
    /// its expiry is awaited.
    grace: Duration,
    connection: Connection<Upgraded>,
    phase: Phase,
    ticker: tokio::time::Interval,
    last_heard: Instant,
    /// When this connection asked (or resumed).
    asked_at: Instant,
    /// When the request was allowed, if it was.
    allowed_at: Option<Instant>,
}

/// How long the server may take to answer the ask: the computer's answer
/// to the offer (10 s at the server) and the request written.
const ANSWER_LIMIT: Duration = Duration::from_secs(40);
/// How long after the Allow the session may take to start (the server
/// waits 15 s for the computer's session connection).
const START_LIMIT: Duration = Duration::from_secs(30);

impl<'a> Wait<'a> {
    /// A wait on `connection`, which has just asked for `computer`.
    pub(crate) fn new(
        server: &'a Server,
        computer: &'a str,
        grace: Duration,
        connection: Connection<Upgraded>,
    ) -> Self {
        Wait {
            server,
            computer,
            grace,
            connection,
            phase: Phase::Asking,
            ticker: tokio::time::interval(Duration::from_secs(1)),
            last_heard: Instant::now(),
            asked_at: Instant::now(),
            allowed_at: None,
        }
    }

    /// Until the session starts; `interrupt` completing (Ctrl-C) cancels
    /// the request.
    pub(crate) async fn run(
        mut self,
        progress: &mut Progress,
        mut interrupt: Pin<&mut impl Future<Output = ()>>,
    ) -> Result<Started, ConnectError> {
        loop {
            match self.next(progress, interrupt.as_mut()).await? {
                Heard::Message(message) => {
                    self.last_heard = Instant::now();
                    if let Some((request_id, time_limit_secs)) =
                        self.on_message(message, progress)?
                    {
                        return Ok(Started {
                            connection: self.connection,
                            request_id,
                            time_limit_secs,
                            tunnels: None,
                        });
                    }
                }
                Heard::Lost(error) => self.on_lost(error, progress, interrupt.as_mut()).await?,
            }
        }
    }

    /// The next message, or the connection's loss; meanwhile the countdown
    /// ticks and a Ctrl-C is passed on.
    async fn next(
        &mut self,
        progress: &mut Progress,
        mut interrupt: Pin<&mut impl Future<Output = ()>>,
    ) -> Result<Heard, ConnectError> {
        loop {
            let give_up = self.give_up_at();
            let stalls_at = self.stalls_at();
            let ticking = !matches!(self.phase, Phase::Asking);
            let cancelling = matches!(self.phase, Phase::Cancelling { .. });
            tokio::select! {
                message = self.connection.read_message::<ServerToOperator>() => {
                    return Ok(match message {
                        Ok(Some(message)) => Heard::Message(message),
                        Ok(None) => Heard::Lost(None),
                        Err(error) => Heard::Lost(Some(error.to_string())),
                    });
                }
                () = sleep_until(give_up) => return Err(expiry_unconfirmed(progress, self.grace)),
                () = sleep_until(stalls_at) => return Err(self.stalled()),
                _ = self.ticker.tick(), if ticking => {
                    if self.on_tick(progress)? {
                        // As if the connection had closed: reconnect and resume.
                        return Ok(Heard::Lost(None));
                    }
                }
                () = interrupt.as_mut(), if !cancelling => self.on_interrupt(progress).await?,
            }
        }
    }

    /// Undecided past the deadline and the grace: the server has not
    /// confirmed the expiry, and will not be waited on any longer.
    fn give_up_at(&self) -> Option<Instant> {
        match &self.phase {
            Phase::Waiting {
                deadline,
                decided: false,
                ..
            } => Some(*deadline + self.grace),
            _ => None,
        }
    }

    /// When the server, silent about what it owes this connection, is not
    /// waited on any longer: an answer to the ask, the session after an
    /// Allow. (While undecided, pings and the deadline bound the wait.)
    fn stalls_at(&self) -> Option<Instant> {
        match (&self.phase, self.allowed_at) {
            (Phase::Asking, _) => Some(self.asked_at + ANSWER_LIMIT),
            (Phase::Waiting { decided: true, .. }, Some(at)) => Some(at + START_LIMIT),
            _ => None,
        }
    }

    /// What the operator is told when [`Wait::stalls_at`] passed.
    fn stalled(&self) -> ConnectError {
        match self.phase {
            Phase::Asking => ConnectError::Server(format!(
                "the server did not answer within {} s",
                ANSWER_LIMIT.as_secs()
            )),
            _ => ConnectError::SessionFailed(format!(
                "the session did not start within {} s of the approval",
                START_LIMIT.as_secs()
            )),
        }
    }

    /// A second passed: the countdown moves on. Whether the connection has
    /// been silent for too long.
    fn on_tick(&mut self, progress: &mut Progress) -> Result<bool, ConnectError> {
        match &self.phase {
            Phase::Waiting {
                deadline, silence, ..
            } => {
                progress.tick(deadline.saturating_duration_since(Instant::now()));
                Ok(silence.is_some_and(|silence| self.last_heard.elapsed() > silence))
            }
            Phase::Cancelling { since, deadline } => {
                progress.tick(deadline.saturating_duration_since(Instant::now()));
                if since.elapsed() > CANCEL_CONFIRM_TIMEOUT {
                    progress.cancelled();
                    return Err(ConnectError::Cancelled);
                }
                Ok(false)
            }
            Phase::Asking => Ok(false),
        }
    }

    /// Ctrl-C: a waiting request is cancelled (the server settles the
    /// cancellation and says so; the links then say so too); before there
    /// is one, the connect just ends.
    async fn on_interrupt(&mut self, progress: &mut Progress) -> Result<(), ConnectError> {
        let Phase::Waiting { deadline, .. } = &self.phase else {
            return Err(ConnectError::Cancelled);
        };
        let deadline = *deadline;
        self.phase = Phase::Cancelling {
            since: Instant::now(),
            deadline,
        };
        let told = self
            .connection
            .write_message(&OperatorMessage::Cancel)
            .await;
        if told.is_err() {
            progress.cancelled();
            return Err(ConnectError::Cancelled);
        }
        Ok(())
    }

    /// The connection closed, broke (`error`) or fell silent. A request
    /// lives on in the server's database: reconnect and pick it up (a
    /// server restart, a network blip).
    async fn on_lost(
        &mut self,
        error: Option<String>,
        progress: &mut Progress,
        interrupt: Pin<&mut impl Future<Output = ()>>,
    ) -> Result<(), ConnectError> {
        let (request_id, deadline, decided) = match (&self.phase, error) {
            (
                Phase::Waiting {
                    request_id,
                    deadline,
                    decided,
                    ..
                },
                _,
            ) => (request_id.clone(), *deadline, *decided),
            (Phase::Cancelling { .. }, None) => {
                progress.cancelled();
                return Err(ConnectError::Cancelled);
            }
            (Phase::Asking | Phase::Cancelling { .. }, error) => {
                let error = error.unwrap_or_else(|| "the server closed the connection".into());
                return Err(ConnectError::Server(error));
            }
        };
        progress.reconnecting();
        // Undecided, the server's word on the expiry is awaited for the grace.
        let until = if decided {
            deadline
        } else {
            deadline + self.grace
        };
        let resumed = self.server.reconnect(&request_id, until, interrupt).await;
        self.last_heard = Instant::now();
        self.connection = match resumed {
            Ok(Some(connection)) => connection,
            Ok(None) if decided => {
                return Err(ConnectError::Server(
                    "lost the server and could not reach it again before the request expired"
                        .into(),
                ));
            }
            Ok(None) => return Err(expiry_unconfirmed(progress, self.grace)),
            Err(ConnectError::Cancelled) => {
                progress.cancelled();
                return Err(ConnectError::Cancelled);
            }
            Err(error) => return Err(error),
        };
        Ok(())
    }

    /// What the server said, shown; the session's id and time limit once
    /// it starts, or why there will be no session.
    fn on_message(
        &mut self,
        message: ServerToOperator,
        progress: &mut Progress,
    ) -> Result<Option<(String, Option<u64>)>, ConnectError> {
        match message {
            ServerToOperator::Ping => {}
            ServerToOperator::Pending {
                request_id,
                expires_in,
                recipients,
                heartbeat_ms,
            } => {
                progress.pending(&request_id, expires_in, &recipients);
                self.on_pending(request_id, expires_in, heartbeat_ms);
            }
            // No request to wait on: the session follows.
            ServerToOperator::Admitted => progress.admitted(),
            ServerToOperator::Delivery {
                recipient,
                state,
                detail,
            } => progress.delivery(&recipient, state, detail.as_deref()),
            ServerToOperator::Approval {
                approvals,
                required,
                by,
            } => progress.approval(approvals, required, &by),
            ServerToOperator::ApprovedEarlier {
                request_id,
                by,
                valid_for,
            } => progress.approved_earlier(&request_id, &by, valid_for),
            ServerToOperator::Allowed { by, at } => {
                // The pings stop with the decision; the session follows.
                if let Phase::Waiting {
                    silence, decided, ..
                } = &mut self.phase
                {
                    *silence = None;
                    *decided = true;
                    self.allowed_at = Some(Instant::now());
                }
                progress.allowed(&by, at);
            }
            ServerToOperator::SessionStarted {
                request_id,
                time_limit_secs,
            } => return Ok(Some((request_id, time_limit_secs))),
            settled => return Err(self.no_session(settled, progress)),
        }
        Ok(None)
    }

    /// The request (`request_id`, `expires_in` seconds left) is pending,
    /// with pings every `heartbeat_ms`: counted down from now on.
    fn on_pending(&mut self, request_id: String, expires_in: u64, heartbeat_ms: Option<u64>) {
        let heartbeat = heartbeat_ms.map(Duration::from_millis);
        self.connection.set_write_deadline(Some(
            heartbeat.map_or(DEFAULT_WRITE_DEADLINE, write_deadline),
        ));
        self.ticker.reset();
        if matches!(self.phase, Phase::Cancelling { .. }) {
            return;
        }
        let mut deadline = Instant::now() + Duration::from_secs(expires_in);
        // Picked up again after a reconnect: the deadline is the one first
        // given (the server rounds up to whole seconds), so that the grace
        // does not start over.
        if let Phase::Waiting {
            request_id: waited,
            deadline: first,
            ..
        } = &self.phase
            && *waited == request_id
        {
            deadline = deadline.min(*first);
        }
        self.phase = Phase::Waiting {
            request_id,
            deadline,
            silence: heartbeat.map(silence_limit),
            decided: false,
        };
    }

    /// Why there is no session, from the server's last message: the
    /// decision, the expiry, a cancellation or a refusal.
    fn no_session(&self, message: ServerToOperator, progress: &mut Progress) -> ConnectError {
        match message {
            ServerToOperator::Denied { by, at } => {
                progress.denied(&by, at);
                ConnectError::Denied { by }
            }
            ServerToOperator::Expired { at } => {
                progress.expired(at);
                ConnectError::Expired
            }
            ServerToOperator::Refused { reason, message } => {
                progress.clear_line();
                refusal(reason, message, self.computer)
            }
            // A cancellation; the other messages are handled before.
            _ => {
                progress.cancelled();
                ConnectError::Cancelled
            }
        }
    }
}

/// The server's refusal, as the error `connect` ends with.
fn refusal(reason: Refusal, message: String, computer: &str) -> ConnectError {
    match reason {
        Refusal::UnknownComputer => ConnectError::UnknownComputer(computer.to_string()),
        Refusal::ComputerWentOffline => ConnectError::WentOffline(message),
        Refusal::TokenRevoked => ConnectError::TokenRevoked,
        Refusal::ComputerOffline => ConnectError::Offline(computer.to_string()),
        Refusal::NotOffered => ConnectError::NotOffered(message),
        Refusal::InvalidRequest => ConnectError::InvalidRequest(message),
        Refusal::SessionFailed => ConnectError::SessionFailed(message),
        Refusal::Limited => ConnectError::Limited(message),
        Refusal::DeliveryFailed => ConnectError::Undeliverable(message),
    }
}

/// Completes at `deadline`; never without one.
async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline.into()).await,
        None => std::future::pending().await,
    }
}

/// The server did not confirm the expiry within `grace` of the deadline;
/// whole seconds, rounded up, as the operator is told.
fn expiry_unconfirmed(progress: &mut Progress, grace: Duration) -> ConnectError {
    let grace_secs = grace.as_secs() + u64::from(grace.subsec_nanos() > 0);
    progress.expiry_unconfirmed(grace_secs);
    ConnectError::ExpiryUnconfirmed { grace_secs }
}
