//! The operator's side of a command session: the remote program's output to
//! our stdout and stderr, our stdin to it, and its exit status back.

use crate::{ConnectError, Terminal};
use bytes::Bytes;
use doorman_proto::connection::{Connection, ConnectionError, FrameWriter, decode_message};
use doorman_proto::dial::Upgraded;
use doorman_proto::frame::{Frame, MAX_PAYLOAD_LEN};
use doorman_proto::message::SessionMessage;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, WriteHalf};

/// Runs a command or shell session until the remote program exits; returns
/// its status. `shell` puts the local terminal in raw mode (when it is one)
/// and sends window-size changes.
pub async fn run_stream(
    connection: Connection<Upgraded>,
    terminal: Terminal,
    interrupt: Pin<&mut impl Future<Output = ()>>,
    shell: bool,
) -> Result<i32, ConnectError> {
    let Terminal {
        stdin,
        mut stdout,
        mut stderr,
        is_tty,
    } = terminal;
    let raw = if shell && is_tty {
        Some(crate::tty::RawMode::enable().map_err(|e| {
            ConnectError::SessionFailed(format!("cannot put the terminal in raw mode: {e}"))
        })?)
    } else {
        None
    };
    let (mut reader, writer) = connection.split();
    let writer = Arc::new(tokio::sync::Mutex::new(writer));
    let input = tokio::spawn(forward_input(stdin, writer.clone()));
    let resize = (shell && is_tty).then(|| tokio::spawn(forward_resizes(writer.clone())));
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
                Ok(SessionMessage::StdinEof | SessionMessage::Resize { .. }) => {}
                Err(error) => break Err(ConnectError::SessionFailed(error.to_string())),
            },
            Ok(Some(Frame::Stdin(_))) => {}
            // A reset says the same as an end here: relays pass a computer's
            // crash on as a reset.
            Ok(None) | Err(ConnectionError::Io(_) | ConnectionError::Truncated) => {
                break Err(ConnectError::SessionFailed(
                    "the connection to the computer closed before the command finished".into(),
                ));
            }
            Err(error) => break Err(ConnectError::SessionFailed(error.to_string())),
        }
    };
    input.abort();
    if let Some(resize) = resize {
        resize.abort();
    }
    let _ = stdout.flush().await;
    let _ = stderr.flush().await;
    drop(raw);
    result
}

/// Runs a forward session until interrupted (status 0) or until the computer
/// or server ends it.
pub async fn run_forward(
    connection: Connection<Upgraded>,
    listeners: Vec<(tokio::net::TcpListener, String)>,
    dialer: doorman_proto::Dialer,
    auth: hyper::header::HeaderValue,
    session: String,
    terminal: Terminal,
    interrupt: Pin<&mut impl Future<Output = ()>>,
) -> Result<i32, ConnectError> {
    let Terminal { mut stderr, .. } = terminal;
    let (errors, mut failures) = tokio::sync::mpsc::unbounded_channel();
    let acceptors = crate::forward::serve(listeners, dialer, auth, session, errors);
    let (mut io, _) = connection.into_parts();
    let mut interrupt = interrupt;
    let mut sink = [0u8; 256];
    let result = loop {
        tokio::select! {
            () = &mut interrupt => break Ok(0),
            Some(message) = failures.recv() => {
                write_out(&mut stderr, format!("doorman: {message}\n").as_bytes()).await;
            }
            read = io.read(&mut sink) => match read {
                Ok(0) | Err(_) => break Err(ConnectError::SessionFailed("the computer ended the forward session".into())),
                Ok(_) => {}
            },
        }
    };
    for acceptor in acceptors {
        acceptor.abort();
    }
    result
}

async fn write_out(out: &mut (dyn AsyncWrite + Send + Unpin), data: &[u8]) {
    // A closed stdout (e.g. `| head`) must not stop the session.
    if out.write_all(data).await.is_ok() {
        let _ = out.flush().await;
    }
}

type SharedWriter = Arc<tokio::sync::Mutex<FrameWriter<WriteHalf<Upgraded>>>>;

/// Sends the terminal's size whenever it changes (SIGWINCH).
async fn forward_resizes(writer: SharedWriter) {
    let Ok(mut changes) =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::window_change())
    else {
        return;
    };
    while changes.recv().await.is_some() {
        let (rows, cols) = crate::tty::size();
        if writer
            .lock()
            .await
            .write_message(&SessionMessage::Resize { rows, cols })
            .await
            .is_err()
        {
            return;
        }
    }
}

async fn forward_input(mut stdin: Box<dyn AsyncRead + Send + Unpin>, writer: SharedWriter) {
    let mut buffer = vec![0u8; 32 * 1024.min(MAX_PAYLOAD_LEN)];
    loop {
        match stdin.read(&mut buffer).await {
            Ok(0) | Err(_) => {
                let _ = writer
                    .lock()
                    .await
                    .write_message(&SessionMessage::StdinEof)
                    .await;
                return;
            }
            Ok(n) => {
                let frame = Frame::Stdin(Bytes::copy_from_slice(&buffer[..n]));
                if writer.lock().await.write_frame(&frame).await.is_err() {
                    return;
                }
            }
        }
    }
}
