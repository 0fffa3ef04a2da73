//! An interactive shell session: the shell in this system's terminal
//! (`terminal`), the operator's keystrokes in, the screen out, window-size
//! changes applied, and a sealed session's screen recorded.

use crate::error::SessionError;
use crate::recording::SealedRecording;
use crate::terminal::{ShellProcess, TerminalInput, TerminalOutput};
use bytes::Bytes;
use doorman_cast::Screen;
use doorman_wire::connection::{Connection, FrameWriter, decode_message};
use doorman_wire::frame::Frame;
use doorman_wire::message::{SessionEnd, SessionMessage};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite};

/// A terminal name that is safe to put in the environment.
fn sanitize_term(term: &str) -> String {
    let ok = !term.is_empty()
        && term.len() <= 64
        && term
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'+');
    if ok {
        term.to_string()
    } else {
        "xterm-256color".into()
    }
}

fn unix_seconds() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// Runs the shell on `connection`; a session sealed end to end is
/// recorded here, sealed to `recordings_to` (none: not recorded).
pub async fn run<T>(
    connection: Connection<T>,
    term: String,
    rows: u16,
    cols: u16,
    recordings_to: &[String],
) -> Result<SessionEnd, SessionError>
where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut reader, mut writer) = connection.split();
    let mut recording = start_recording(&mut writer, recordings_to, (&term, rows, cols)).await?;
    let (mut pty_out, mut pty_in, mut child) = spawn_shell(&mut writer, &term, rows, cols).await?;
    let mut buffer = vec![0u8; 32 * 1024];
    let mut output_done = false;
    let mut input_open = true;
    let status = loop {
        tokio::select! {
            read = pty_out.read(&mut buffer), if !output_done => match read {
                Ok(n) if n > 0 => {
                    let frame = Frame::Stdout(Bytes::copy_from_slice(&buffer[..n]));
                    if writer.write_frame(&frame).await.is_err() {
                        child.kill();
                    }
                    if let Some(recording) = &mut recording {
                        recording.output(&buffer[..n]);
                        if let Some(sealed) = recording.ready() {
                            let _ = writer.write_frame(&sealed).await;
                        }
                    }
                }
                // EIO once the shell and its children have closed the terminal.
                _ => output_done = true,
            },
            frame = reader.read_frame(), if input_open => match frame {
                Ok(Some(Frame::Stdin(data))) => {
                    let _ = pty_in.write(&data).await;
                }
                Ok(Some(Frame::Message(payload))) => match decode_message(&payload) {
                    Ok(SessionMessage::Resize { rows, cols }) => {
                        pty_in.resize(rows, cols);
                        if let Some(recording) = &mut recording {
                            recording.resized(rows, cols);
                        }
                    }
                    Ok(SessionMessage::StdinEof) => pty_in.end_input().await,
                    _ => {}
                },
                Ok(Some(_)) => {}
                Ok(None) | Err(_) => {
                    input_open = false;
                    child.kill();
                }
            },
            status = child.wait() => break status.map_err(SessionError::Wait)?,
        }
    };
    if !output_done {
        drain(&mut pty_out, &mut writer, &mut recording).await;
    }
    // The recording's end goes first: the server keeps the session's
    // record once the exit status ends it.
    for frame in recording.map(SealedRecording::finish).unwrap_or_default() {
        let _ = writer.write_frame(&frame).await;
    }
    let signal = crate::command::signal_of(&status);
    let _ = writer
        .write_message(&SessionMessage::Exit {
            code: status.code(),
            signal,
        })
        .await;
    let _ = writer.shutdown().await;
    Ok(SessionEnd::of(status))
}

/// The shell in a new terminal of `rows` × `cols`. The operator hears
/// why, on the session's connection, as of a program that could not start.
async fn spawn_shell<W: AsyncWrite + Unpin>(
    writer: &mut FrameWriter<W>,
    term: &str,
    rows: u16,
    cols: u16,
) -> Result<(TerminalOutput, TerminalInput, ShellProcess), SessionError> {
    match crate::terminal::spawn(&sanitize_term(term), rows, cols) {
        Ok(spawned) => Ok(spawned),
        Err(why) => {
            let message = crate::command::report_start_failure(writer, why).await;
            Err(SessionError::NotStarted(message))
        }
    }
}

/// Starts recording a screen of `term`, `rows` × `cols`, sealed to
/// `recordings_to` (none: no recording). A recording the owner asked for
/// that cannot be made: no session, rather than one unrecorded (the
/// operator hears why).
async fn start_recording<W: AsyncWrite + Unpin>(
    writer: &mut FrameWriter<W>,
    recordings_to: &[String],
    (term, rows, cols): (&str, u16, u16),
) -> Result<Option<SealedRecording>, SessionError> {
    let screen = Screen {
        term: term.to_string(),
        cols,
        rows,
        timestamp: unix_seconds(),
    };
    match SealedRecording::start(recordings_to, &screen) {
        Ok(recording) => Ok(recording),
        Err(error) => {
            let message = crate::command::report_start_failure(writer, error.to_string()).await;
            Err(SessionError::NotStarted(message))
        }
    }
}

/// Sends (and records) what the shell printed last, once it exited.
async fn drain<R, W>(
    pty_out: &mut R,
    writer: &mut FrameWriter<W>,
    recording: &mut Option<SealedRecording>,
) where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut buffer = vec![0u8; 32 * 1024];
    let pause = std::time::Duration::from_millis(200);
    while let Ok(Ok(n)) = tokio::time::timeout(pause, pty_out.read(&mut buffer)).await {
        if n == 0 {
            return;
        }
        let _ = writer
            .write_frame(&Frame::Stdout(Bytes::copy_from_slice(&buffer[..n])))
            .await;
        if let Some(recording) = recording {
            recording.output(&buffer[..n]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::sanitize_term;

    #[test]
    fn terminal_names_are_sanitized() {
        assert_eq!(sanitize_term("xterm-256color"), "xterm-256color");
        assert_eq!(sanitize_term("screen.xterm"), "screen.xterm");
        assert_eq!(sanitize_term("x\ny"), "xterm-256color");
        assert_eq!(sanitize_term(""), "xterm-256color");
    }
}
