//! The operator's side of a command session: the remote program's output to
//! our stdout and stderr, our stdin to it, and its exit status back.

use crate::{ConnectError, Terminal};
use bytes::Bytes;
use doorman_proto::connection::{Connection, FrameWriter, decode_message};
use doorman_proto::dial::Upgraded;
use doorman_proto::frame::{Frame, MAX_PAYLOAD_LEN};
use doorman_proto::message::SessionMessage;
use std::future::Future;
use std::pin::Pin;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, WriteHalf};

/// Runs until the remote program exits; returns its status.
pub async fn run_command(
    connection: Connection<Upgraded>,
    terminal: Terminal,
    interrupt: Pin<&mut impl Future<Output = ()>>,
) -> Result<i32, ConnectError> {
    let Terminal {
        stdin,
        mut stdout,
        mut stderr,
    } = terminal;
    let (mut reader, writer) = connection.split();
    let input = tokio::spawn(forward_input(stdin, writer));
    let mut interrupt = interrupt;
    let result = loop {
        let frame = tokio::select! {
            frame = reader.read_frame() => frame,
            () = &mut interrupt => break Err(ConnectError::Cancelled),
        };
        match frame {
            Ok(Some(Frame::Stdout(data))) => write_out(&mut stdout, &data).await,
            Ok(Some(Frame::Stderr(data))) => write_out(&mut stderr, &data).await,
            Ok(Some(Frame::Message(payload))) => match decode_message::<SessionMessage>(&payload) {
                Ok(SessionMessage::Exit { code, signal }) => {
                    break Ok(code.unwrap_or_else(|| 128 + signal.unwrap_or(0)));
                }
                Ok(SessionMessage::Error { message }) => {
                    write_out(&mut stderr, format!("doorman: {message}\n").as_bytes()).await;
                }
                Ok(SessionMessage::StdinEof) => {}
                Err(error) => break Err(ConnectError::SessionFailed(error.to_string())),
            },
            Ok(Some(Frame::Stdin(_))) => {}
            Ok(None) => {
                break Err(ConnectError::SessionFailed(
                    "the connection to the computer closed before the command finished".into(),
                ));
            }
            Err(error) => break Err(ConnectError::SessionFailed(error.to_string())),
        }
    };
    input.abort();
    let _ = stdout.flush().await;
    let _ = stderr.flush().await;
    result
}

async fn write_out(out: &mut (dyn AsyncWrite + Send + Unpin), data: &[u8]) {
    // A closed stdout (e.g. `| head`) must not stop the session.
    if out.write_all(data).await.is_ok() {
        let _ = out.flush().await;
    }
}

async fn forward_input(
    mut stdin: Box<dyn AsyncRead + Send + Unpin>,
    mut writer: FrameWriter<WriteHalf<Upgraded>>,
) {
    let mut buffer = vec![0u8; 32 * 1024.min(MAX_PAYLOAD_LEN)];
    loop {
        match stdin.read(&mut buffer).await {
            Ok(0) | Err(_) => {
                let _ = writer.write_message(&SessionMessage::StdinEof).await;
                return;
            }
            Ok(n) => {
                let frame = Frame::Stdin(Bytes::copy_from_slice(&buffer[..n]));
                if writer.write_frame(&frame).await.is_err() {
                    return;
                }
            }
        }
    }
}
