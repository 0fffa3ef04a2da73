//! The way to the server: dialing `/v1/connect` with the operator's token,
//! asking for a connection, and picking a request up again on a new
//! connection when the old one is lost (or telling the server of a Ctrl-C
//! made while it was out of reach).

use crate::ConnectError;
use doorman_core::Secret;
use doorman_e2e::OperatorHello;
use doorman_wire::connection::Connection;
use doorman_wire::dial::Upgraded;
use doorman_wire::message::{DEFAULT_WRITE_DEADLINE, OperatorMessage, ServerToOperator, Service};
use doorman_wire::{CONNECT_PATH, DialError, Dialer};
use hyper::StatusCode;
use hyper::header::{AUTHORIZATION, HeaderValue};
use std::future::Future;
use std::pin::Pin;
use std::time::{Duration, Instant};

/// How long to wait for the server to confirm a cancellation.
pub(crate) const CANCEL_CONFIRM_TIMEOUT: Duration = Duration::from_secs(5);

/// The server and the operator's credentials for it.
#[derive(Clone)]
pub(crate) struct Server {
    pub(crate) dialer: Dialer,
    pub(crate) auth: HeaderValue,
}

impl Server {
    /// The server at `url`, trusting the certificates in `ca` (else the
    /// system's), with `token`.
    pub(crate) fn new(
        url: &str,
        ca: Option<&std::path::Path>,
        token: &Secret,
    ) -> Result<Server, ConnectError> {
        let dialer = Dialer::new(url, ca).map_err(|e| ConnectError::Server(e.to_string()))?;
        let mut auth = HeaderValue::from_str(&format!("Bearer {}", token.expose()))
            .map_err(|_| ConnectError::BadToken)?;
        auth.set_sensitive(true);
        Ok(Server { dialer, auth })
    }

    /// Opens an operator connection; a token the server does not take is
    /// [`ConnectError::BadToken`].
    pub(crate) async fn dial(&self) -> Result<Upgraded, ConnectError> {
        match self
            .dialer
            .dial(CONNECT_PATH, &[(AUTHORIZATION, self.auth.clone())])
            .await
        {
            Ok(io) => Ok(io),
            Err(DialError::Refused { status, .. }) if status == StatusCode::UNAUTHORIZED => {
                Err(ConnectError::BadToken)
            }
            Err(error) => Err(ConnectError::Server(error.to_string())),
        }
    }

    /// Asks for a connection to `computer` for `service`.
    pub(crate) async fn ask(
        &self,
        computer: &str,
        reason: &str,
        service: Service,
        hello: Option<OperatorHello>,
    ) -> Result<Connection<Upgraded>, ConnectError> {
        let mut connection = operator_connection(self.dial().await?);
        connection
            .write_message(&OperatorMessage::Connect {
                computer: computer.to_string(),
                reason: reason.to_string(),
                service,
                e2e: hello,
            })
            .await
            .map_err(|e| ConnectError::Server(e.to_string()))?;
        Ok(connection)
    }

    /// A connection that has resumed `request_id`, if the server answers;
    /// `Ok(None)` to try again later. A token the server no longer takes
    /// (it was replaced or removed meanwhile) is final.
    pub(crate) async fn resume(
        &self,
        request_id: &str,
    ) -> Result<Option<Connection<Upgraded>>, ConnectError> {
        let io = match self.dial().await {
            Ok(io) => io,
            Err(ConnectError::BadToken) => return Err(ConnectError::BadToken),
            Err(_) => return Ok(None),
        };
        let mut connection = operator_connection(io);
        let resume = OperatorMessage::Resume {
            request_id: request_id.to_string(),
        };
        Ok(connection
            .write_message(&resume)
            .await
            .ok()
            .map(|()| connection))
    }

    /// Dials the server again and resumes `request_id`, with growing
    /// pauses, until `until` (`Ok(None)`) or an interrupt.
    pub(crate) async fn reconnect(
        &self,
        request_id: &str,
        until: Instant,
        mut interrupt: Pin<&mut impl Future<Output = ()>>,
    ) -> Result<Option<Connection<Upgraded>>, ConnectError> {
        let mut pauses = doubling(Duration::from_millis(200), Duration::from_secs(2));
        loop {
            let pause = pauses.next().unwrap_or(Duration::from_secs(2));
            let attempt = async {
                tokio::time::sleep(pause).await;
                self.resume(request_id).await
            };
            tokio::select! {
                resumed = attempt => if let Some(connection) = resumed? {
                    return Ok(Some(connection));
                },
                () = tokio::time::sleep_until(until.into()) => return Ok(None),
                () = interrupt.as_mut() => {
                    self.cancel_after_loss(request_id).await;
                    return Err(ConnectError::Cancelled);
                }
            }
        }
    }

    /// Ctrl-C while the server is out of reach: keeps trying to tell it for
    /// a few seconds, so that the links say "cancelled" now rather than the
    /// request waiting out its timeout.
    async fn cancel_after_loss(&self, request_id: &str) {
        let tell = async {
            let mut pauses = doubling(Duration::from_millis(100), Duration::from_secs(1));
            loop {
                if let Ok(Some(mut connection)) = self.resume(request_id).await
                    && connection
                        .write_message(&OperatorMessage::Cancel)
                        .await
                        .is_ok()
                {
                    until_settled(&mut connection).await;
                    return;
                }
                tokio::time::sleep(pauses.next().unwrap_or(Duration::from_secs(1))).await;
            }
        };
        let _ = tokio::time::timeout(CANCEL_CONFIRM_TIMEOUT, tell).await;
    }
}

/// Pauses that double from `first` up to `cap`, for ever.
fn doubling(first: Duration, cap: Duration) -> impl Iterator<Item = Duration> {
    use backon::BackoffBuilder;
    backon::ExponentialBuilder::default()
        .with_min_delay(first)
        .with_max_delay(cap)
        .without_max_times()
        .build()
}

/// Reads until the server confirms a cancellation, or says how the request
/// ended.
async fn until_settled(connection: &mut Connection<Upgraded>) {
    while let Ok(Some(message)) = connection.read_message::<ServerToOperator>().await {
        if !matches!(
            message,
            ServerToOperator::Pending { .. }
                | ServerToOperator::Delivery { .. }
                | ServerToOperator::Ping
                | ServerToOperator::Admitted
        ) {
            return;
        }
    }
}

/// The framed connection of an operator's wait: a server that takes
/// nothing for the write deadline is given up (and dialed again, while a
/// request is pending), not waited on. The session that may follow lifts
/// the deadline: its bytes go at the pace of the remote program.
fn operator_connection(io: Upgraded) -> Connection<Upgraded> {
    let mut connection = Connection::new(io);
    connection.set_write_deadline(Some(DEFAULT_WRITE_DEADLINE));
    connection
}
