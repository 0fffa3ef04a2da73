//! An interactive shell where this agent has no terminal for it yet
//! (Windows: ConPTY is to come): the operator hears why, as of a program
//! that could not start. Commands run everywhere (`command`).

use crate::error::SessionError;
use doorman_wire::connection::Connection;
use doorman_wire::message::SessionEnd;
use tokio::io::{AsyncRead, AsyncWrite};

/// Why this build offers no interactive shells: a request for one is
/// refused before any email (`answer`).
pub fn not_offered() -> Option<&'static str> {
    Some(NOT_HERE)
}

const NOT_HERE: &str = "interactive shells are not offered on this computer yet (no terminal on this system); run a command instead";

pub async fn run<T>(
    connection: Connection<T>,
    _term: String,
    _rows: u16,
    _cols: u16,
    _recordings_to: &[String],
) -> Result<SessionEnd, SessionError>
where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (_, mut writer) = connection.split();
    crate::command::report_start_failure(&mut writer, NOT_HERE.to_string()).await;
    Err(SessionError::NotStarted(NOT_HERE.to_string()))
}
