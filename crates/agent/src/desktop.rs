//! The desktop for the web console's viewer: a connection to the VNC server
//! the settings name (`[services] desktop`), its bytes carried as the
//! session's output frames and the operator's input frames written to it,
//! until either side closes. The viewer speaks RFB with the VNC server
//! itself; the agent only carries the bytes.

use crate::error::{LinkError, SessionError};
use bytes::Bytes;
use doorman_wire::connection::{Connection, decode_message};
use doorman_wire::frame::Frame;
use doorman_wire::message::{SessionEnd, SessionMessage};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Carries the desktop session to its end.
pub async fn run<T>(connection: Connection<T>, target: String) -> Result<SessionEnd, SessionError>
where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut reader, mut writer) = connection.split();
    let vnc = match tokio::net::TcpStream::connect(&target).await {
        Ok(vnc) => vnc,
        Err(error) => {
            // The operator sees these words in the console, as `connect -L`
            // shows a refused forward: what the computer could not reach, and why.
            let message = format!(
                "the computer cannot reach its VNC server at {target}: {}",
                plain(&error)
            );
            let message = crate::command::report_start_failure(&mut writer, message).await;
            return Err(SessionError::NotStarted(message));
        }
    };
    let _ = vnc.set_nodelay(true);
    let (mut from_vnc, mut to_vnc) = vnc.into_split();
    let mut buffer = vec![0u8; 64 * 1024];
    let end = loop {
        tokio::select! {
            read = from_vnc.read(&mut buffer) => match read {
                Ok(0) | Err(_) => break SessionEnd::Exited { code: 0 },
                Ok(n) => {
                    let frame = Frame::Stdout(Bytes::copy_from_slice(&buffer[..n]));
                    if writer.write_frame(&frame).await.is_err() {
                        return Ok(SessionEnd::OperatorLeft);
                    }
                }
            },
            frame = reader.read_frame() => match frame {
                Ok(Some(Frame::Stdin(data))) => {
                    if to_vnc.write_all(&data).await.is_err() {
                        break SessionEnd::Exited { code: 0 };
                    }
                }
                Ok(Some(Frame::Message(payload))) => {
                    if let Ok(SessionMessage::StdinEof) = decode_message(&payload) {
                        let _ = to_vnc.shutdown().await;
                    }
                }
                Ok(Some(_)) => {}
                Ok(None) | Err(_) => return Ok(SessionEnd::OperatorLeft),
            },
        }
    };
    // The VNC server closed: the viewer hears that the session is over.
    writer
        .write_message(&SessionMessage::Exit {
            code: Some(0),
            signal: None,
        })
        .await
        .map_err(LinkError::from)?;
    let _ = writer.shutdown().await;
    Ok(end)
}

/// A connection's failure in plain words: "connection refused" rather than
/// "Connection refused (os error 111)" for the common cases, the system's
/// own words for the rest (a name that does not resolve, …).
fn plain(error: &std::io::Error) -> String {
    use std::io::ErrorKind;
    match error.kind() {
        ErrorKind::ConnectionRefused
        | ErrorKind::TimedOut
        | ErrorKind::HostUnreachable
        | ErrorKind::NetworkUnreachable
        | ErrorKind::ConnectionReset => error.kind().to_string(),
        _ => error.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refused_connection_is_said_in_plain_words() {
        let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        assert_eq!(plain(&refused), "connection refused");
        let other = std::io::Error::other("failed to lookup address information");
        assert_eq!(plain(&other), "failed to lookup address information");
    }
}
