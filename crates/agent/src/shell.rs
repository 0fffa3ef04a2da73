//! An interactive shell session: the user's login shell in a pseudo-terminal,
//! the operator's keystrokes in, the screen out, window-size changes applied.

use crate::error::SessionError;
use crate::recording::SealedRecording;
use bytes::Bytes;
use doorman_cast::Screen;
use doorman_wire::connection::{Connection, FrameWriter, decode_message};
use doorman_wire::frame::Frame;
use doorman_wire::message::{SessionEnd, SessionMessage};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Why this build offers no interactive shells: it does, here.
pub fn not_offered() -> Option<&'static str> {
    None
}

/// The shell to start: `$SHELL`, else `/bin/sh`.
fn login_shell() -> String {
    std::env::var("SHELL")
        .ok()
        .filter(|shell| !shell.is_empty())
        .unwrap_or_else(|| "/bin/sh".into())
}

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

/// A pseudo-terminal of this size.
fn open_pty(rows: u16, cols: u16) -> Result<(pty_process::Pty, pty_process::Pts), SessionError> {
    let (pty, pts) = pty_process::open().map_err(|e| SessionError::Pty(e.to_string()))?;
    pty.resize(pty_process::Size::new(rows.max(1), cols.max(1)))
        .map_err(|e| SessionError::Pty(format!("cannot size it: {e}")))?;
    Ok((pty, pts))
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
    let (pty, mut child) = spawn_shell(&mut writer, &term, rows, cols).await?;
    let (mut pty_out, mut pty_in) = pty.into_split();
    let mut buffer = vec![0u8; 32 * 1024];
    let mut output_done = false;
    let mut input_open = true;
    let status = loop {
        tokio::select! {
            read = pty_out.read(&mut buffer), if !output_done => match read {
                Ok(n) if n > 0 => {
                    let frame = Frame::Stdout(Bytes::copy_from_slice(&buffer[..n]));
                    if writer.write_frame(&frame).await.is_err() {
                        let _ = child.start_kill();
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
                    let _ = pty_in.write_all(&data).await;
                }
                Ok(Some(Frame::Message(payload))) => match decode_message(&payload) {
                    Ok(SessionMessage::Resize { rows, cols }) => {
                        let _ = pty_in.resize(pty_process::Size::new(rows.max(1), cols.max(1)));
                        if let Some(recording) = &mut recording {
                            recording.resized(rows, cols);
                        }
                    }
                    Ok(SessionMessage::StdinEof) => {
                        // Ctrl-D as a terminal would send it.
                        let _ = pty_in.write_all(&[4]).await;
                    }
                    _ => {}
                },
                Ok(Some(_)) => {}
                Ok(None) | Err(_) => {
                    input_open = false;
                    let _ = child.start_kill();
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
    let signal = std::os::unix::process::ExitStatusExt::signal(&status);
    let _ = writer
        .write_message(&SessionMessage::Exit {
            code: status.code(),
            signal,
        })
        .await;
    let _ = writer.shutdown().await;
    Ok(SessionEnd::of(status))
}

/// The login shell in a new pseudo-terminal of `rows` × `cols`: the
/// terminal and the shell's process. The operator hears why, on the
/// session's connection, as of a program that could not start.
async fn spawn_shell<W: AsyncWrite + Unpin>(
    writer: &mut FrameWriter<W>,
    term: &str,
    rows: u16,
    cols: u16,
) -> Result<(pty_process::Pty, tokio::process::Child), SessionError> {
    let (pty, pts) = match open_pty(rows, cols) {
        Ok(opened) => opened,
        Err(error) => {
            crate::command::report_start_failure(writer, error.to_string()).await;
            return Err(error);
        }
    };
    let shell = login_shell();
    let mut command = pty_process::Command::new(&shell)
        .arg("-l")
        .env("TERM", sanitize_term(term))
        .kill_on_drop(true);
    if let Some(home) = std::env::var_os("HOME") {
        command = command.current_dir(home);
    }
    match command.spawn(pts) {
        Ok(child) => Ok((pty, child)),
        Err(error) => {
            let message = format!("cannot start {shell}: {error}");
            let message = crate::command::report_start_failure(writer, message).await;
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
