//! Running one command for the operator: its standard streams carried as
//! frames, its exit status (or why it could not start) reported at the end.

use crate::error::{LinkError, SessionError};
use bytes::Bytes;
use doorman_wire::connection::{Connection, FrameWriter, decode_message};
use doorman_wire::frame::Frame;
use doorman_wire::message::{SessionEnd, SessionMessage};
use std::process::Stdio;
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::process::Command;
use tokio::sync::Mutex;

type SharedWriter<W> = Arc<Mutex<FrameWriter<W>>>;

pub async fn run<T>(
    connection: Connection<T>,
    argv: Vec<String>,
) -> Result<SessionEnd, SessionError>
where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut reader, mut writer) = connection.split();
    // The server refuses an empty command; the agent does not rely on it.
    let Some((program, args)) = argv.split_first() else {
        let message = report_start_failure(&mut writer, "the command is empty".into()).await;
        return Err(SessionError::NotStarted(message));
    };
    let writer: SharedWriter<_> = Arc::new(Mutex::new(writer));
    let mut command = Command::new(program);
    command
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    if let Some(home) = std::env::var_os("HOME") {
        command.current_dir(home);
    }
    let mut child = match command.spawn() {
        Ok(child) => child,
        Err(error) => {
            let message = format!("cannot run {:?}: {error}", argv[0]);
            let message = report_start_failure(&mut *writer.lock().await, message).await;
            return Err(SessionError::NotStarted(message));
        }
    };
    let stdout = child
        .stdout
        .take()
        .map(|out| tokio::spawn(pump(out, writer.clone(), Frame::Stdout)));
    let stderr = child
        .stderr
        .take()
        .map(|err| tokio::spawn(pump(err, writer.clone(), Frame::Stderr)));
    let mut stdin = child.stdin.take();

    // Feed the operator's input until it ends; a closed connection means the
    // operator is gone, and the program is stopped.
    let exit = loop {
        tokio::select! {
            frame = reader.read_frame() => match frame {
                Ok(Some(Frame::Stdin(data))) => {
                    if let Some(input) = stdin.as_mut()
                        && input.write_all(&data).await.is_err()
                    {
                        stdin = None;
                    }
                }
                Ok(Some(Frame::Message(payload))) => {
                    if let Ok(SessionMessage::StdinEof) = decode_message(&payload) {
                        stdin = None;
                    }
                }
                Ok(Some(_)) => {}
                Ok(None) | Err(_) => {
                    let _ = child.start_kill();
                    let _ = child.wait().await;
                    return Ok(SessionEnd::OperatorLeft);
                }
            },
            status = child.wait() => break status.map_err(SessionError::Wait)?,
        }
    };
    drop(stdin);
    // All output is sent before the exit status.
    for pump in [stdout, stderr].into_iter().flatten() {
        let _ = pump.await;
    }
    let signal = signal_of(&exit);
    let mut writer = writer.lock().await;
    writer
        .write_message(&SessionMessage::Exit {
            code: exit.code(),
            signal,
        })
        .await
        .map_err(LinkError::from)?;
    let _ = writer.shutdown().await;
    Ok(SessionEnd::of(exit))
}

/// The signal that ended a process, where the system has signals.
pub fn signal_of(status: &std::process::ExitStatus) -> Option<i32> {
    #[cfg(unix)]
    return std::os::unix::process::ExitStatusExt::signal(status);
    #[cfg(not(unix))]
    return {
        let _ = status;
        None
    };
}

/// Tells the operator the program could not start (status 127, as a shell
/// would say) and returns the message.
pub async fn report_start_failure<W: AsyncWrite + Unpin>(
    writer: &mut FrameWriter<W>,
    message: String,
) -> String {
    let _ = writer
        .write_message(&SessionMessage::Error {
            message: message.clone(),
        })
        .await;
    let _ = writer
        .write_message(&SessionMessage::Exit {
            code: Some(127),
            signal: None,
        })
        .await;
    let _ = writer.shutdown().await;
    message
}

async fn pump<R, W>(mut source: R, writer: SharedWriter<W>, frame: fn(Bytes) -> Frame)
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut buffer = vec![0u8; 32 * 1024];
    loop {
        match source.read(&mut buffer).await {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                let data = Bytes::copy_from_slice(&buffer[..n]);
                if writer.lock().await.write_frame(&frame(data)).await.is_err() {
                    return;
                }
            }
        }
    }
}
