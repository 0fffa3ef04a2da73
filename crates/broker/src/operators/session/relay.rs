//! A session connection, relayed by the server: the agent's frames reach
//! the operator whole, one at a time, and the operator's bytes reach the
//! agent as they come. Reading the agent's side as frames tells the server
//! how the session ended (the program's exit status travels on this
//! connection, not beside it), and lets the server end a session with a
//! last word of its own that starts on a frame boundary
//! ([`FrameRelay::close`]).
//!
//! A session's bytes go at a program's or a person's pace, so tokio's
//! buffered I/O carries them; the bulk of forwarding goes through tunnels,
//! which `crate::relay` carries byte for byte.

use super::copied::{CopiedFile, CopiedLog};
use doorman_recordings::{Measured, SealedLog};
use doorman_wire::ConnectionError;
use doorman_wire::connection::{FrameReader, FrameWriter, decode_message};
use doorman_wire::frame::Frame;
use doorman_wire::message::{FileMessage, SessionEnd, SessionMessage};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadHalf, WriteHalf};

/// Bytes read from the operator at a time.
const UP_BUFFER: usize = 32 * 1024;

/// How long the server's last word and the closes after it may take: an
/// operator (or agent) that takes nothing more is not waited on.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);
/// How long the computer's side may take to end once the operator left.
const LINGER_AFTER_OPERATOR: Duration = Duration::from_secs(10);

/// Why a relay stopped.
#[derive(Debug)]
pub(super) enum RelayEnd<S> {
    /// The server ended the session, for this reason.
    Stopped(S),
    /// The computer's side closed cleanly, after its last whole frame.
    ComputerClosed,
    /// The computer's side broke: a reset, a truncated frame, bytes that
    /// are not frames.
    ComputerBroke(ConnectionError),
    /// The operator's side broke, or took no more frames.
    OperatorGone,
}

/// The two sides of a session and what passed between them.
pub(super) struct FrameRelay<O, A> {
    up: Up<O, A>,
    down: Down<A, O>,
    /// The operator's side ended cleanly: it has left, and the agent was
    /// told so by the end of its input.
    operator_left: bool,
    /// How long the computer's side may take to end once the operator left.
    linger: Duration,
}

impl<O, A> FrameRelay<O, A>
where
    O: AsyncRead + AsyncWrite + Unpin,
    A: AsyncRead + AsyncWrite + Unpin,
{
    /// A relay of `operator` and `agent`; `early` are bytes already read
    /// from the operator, which go to the agent first.
    pub(super) fn new(operator: O, early: &[u8], agent: A) -> Self {
        let (from_operator, to_operator) = tokio::io::split(operator);
        let (from_agent, to_agent) = tokio::io::split(agent);
        FrameRelay {
            up: Up {
                from_operator,
                to_agent,
                early: early.to_vec(),
                buffer: vec![0; UP_BUFFER],
                moved: 0,
            },
            down: Down {
                from_agent: FrameReader::new(from_agent),
                to_operator: FrameWriter::new(to_operator),
                writing: false,
                end: None,
                moved: 0,
                files: Arc::new(CopiedLog::default()),
                sealed: None,
            },
            operator_left: false,
            linger: LINGER_AFTER_OPERATOR,
        }
    }

    /// Relays until the computer's side ends, the operator's side breaks,
    /// or `stop` completes.
    pub(super) async fn run<S>(&mut self, stop: impl Future<Output = S>) -> RelayEnd<S> {
        let FrameRelay {
            up,
            down,
            operator_left,
            linger: linger_for,
        } = self;
        let up = up.pump();
        let down = down.pump::<S>();
        tokio::pin!(up, down, stop);
        let mut up_done = false;
        // Once the operator left, the computer's side has a while to end
        // (the agent stops the program and says how it ended), not for
        // ever: a computer that vanished would hold the session open.
        let linger = tokio::time::sleep(Duration::from_secs(3600 * 24 * 365));
        tokio::pin!(linger);
        loop {
            tokio::select! {
                ended = &mut down => return ended,
                () = &mut linger, if *operator_left => return RelayEnd::ComputerClosed,
                pumped = &mut up, if !up_done => {
                    up_done = true;
                    match pumped {
                        // The computer's side ends next, as the agent stops
                        // the program.
                        UpEnd::OperatorClosed => {
                            *operator_left = true;
                            linger
                                .as_mut()
                                .reset(tokio::time::Instant::now() + *linger_for);
                        }
                        // Its reading side went first: its frames say how.
                        UpEnd::AgentGone => {}
                        UpEnd::OperatorBroke => return RelayEnd::OperatorGone,
                    }
                }
                stop = &mut stop => return RelayEnd::Stopped(stop),
            }
        }
    }

    /// The program's end as the agent sent it (or why it could not run),
    /// else `left` if the operator left first.
    pub(super) fn end(&self, left: SessionEnd) -> Option<SessionEnd> {
        self.down
            .end
            .clone()
            .or_else(|| self.operator_left.then_some(left))
    }

    /// The files a copy moved, as the agent says them.
    pub(super) fn copied(&self) -> Arc<CopiedLog> {
        Arc::clone(&self.down.files)
    }

    /// Keeps the recording the computer sealed, at most `max_bytes` of it;
    /// without this its pieces are dropped.
    pub(super) fn keep_sealed_recording(&mut self, max_bytes: u64) -> Arc<SealedLog> {
        let log = Arc::new(SealedLog::new(max_bytes));
        self.down.sealed = Some(Arc::clone(&log));
        log
    }

    /// The bytes relayed to the computer and back.
    pub(super) fn moved(&self) -> (u64, u64) {
        (self.up.moved, self.down.moved)
    }

    /// Says `last_word` to the operator as the connection's last frame,
    /// if there is one and the operator's side stands on a frame boundary
    /// (else a frame would be cut in two), and closes both sides; within
    /// [`CLOSE_TIMEOUT`].
    pub(super) async fn close(mut self, last_word: Option<SessionMessage>) {
        let close = async {
            if let Some(word) = last_word
                && !self.down.writing
            {
                let _ = self.down.to_operator.write_message(&word).await;
            }
            let _ = self.down.to_operator.shutdown().await;
            if !self.operator_left {
                let _ = self.up.to_agent.shutdown().await;
            }
        };
        let _ = tokio::time::timeout(CLOSE_TIMEOUT, close).await;
    }
}

/// The operator's side to the agent's: bytes as they come.
struct Up<O, A> {
    from_operator: ReadHalf<O>,
    to_agent: WriteHalf<A>,
    /// Read from the operator before the relay began; sent first.
    early: Vec<u8>,
    buffer: Vec<u8>,
    moved: u64,
}

/// How the operator's side to the agent's ended.
enum UpEnd {
    /// The operator's side ended cleanly: passed on to the agent as the end
    /// of its input.
    OperatorClosed,
    /// The operator's side broke.
    OperatorBroke,
    /// The agent's side takes nothing more.
    AgentGone,
}

impl<O, A> Up<O, A>
where
    O: AsyncRead + AsyncWrite + Unpin,
    A: AsyncRead + AsyncWrite + Unpin,
{
    async fn pump(&mut self) -> UpEnd {
        if !self.early.is_empty() {
            let early = std::mem::take(&mut self.early);
            if self.to_agent.write_all(&early).await.is_err()
                || self.to_agent.flush().await.is_err()
            {
                return UpEnd::AgentGone;
            }
            self.moved += early.len() as u64;
        }
        loop {
            let n = match self.from_operator.read(&mut self.buffer).await {
                Ok(0) => {
                    let _ = self.to_agent.shutdown().await;
                    return UpEnd::OperatorClosed;
                }
                Ok(n) => n,
                Err(_) => return UpEnd::OperatorBroke,
            };
            if self.to_agent.write_all(&self.buffer[..n]).await.is_err()
                || self.to_agent.flush().await.is_err()
            {
                return UpEnd::AgentGone;
            }
            self.moved += n as u64;
        }
    }
}

/// The agent's side to the operator's: whole frames.
struct Down<A, O> {
    from_agent: FrameReader<ReadHalf<A>>,
    to_operator: FrameWriter<WriteHalf<O>>,
    /// A frame is on its way to the operator: its side is not on a frame
    /// boundary (until the write completes; for good if it never does).
    writing: bool,
    /// The program's end, as the agent said it.
    end: Option<SessionEnd>,
    moved: u64,
    /// The files a copy moved, as the agent said them.
    files: Arc<CopiedLog>,
    /// Where the computer's sealed recording goes, if the server keeps it.
    sealed: Option<Arc<SealedLog>>,
}

impl<A, O> Down<A, O>
where
    A: AsyncRead + AsyncWrite + Unpin,
    O: AsyncRead + AsyncWrite + Unpin,
{
    /// Until the computer's side ends or the operator's takes no more;
    /// never [`RelayEnd::Stopped`].
    async fn pump<S>(&mut self) -> RelayEnd<S> {
        loop {
            let frame = match self.from_agent.read_frame().await {
                Ok(Some(frame)) => frame,
                Ok(None) => return RelayEnd::ComputerClosed,
                Err(error) => return RelayEnd::ComputerBroke(error),
            };
            if !self.note(&frame) {
                continue;
            }
            self.writing = true;
            if self.to_operator.write_frame(&frame).await.is_err() {
                return RelayEnd::OperatorGone;
            }
            self.writing = false;
            self.moved += frame_len(&frame);
        }
    }

    /// Keeps the program's end as the agent states it (its exit status, or
    /// why it could not run); whether the frame goes on to the operator: an
    /// end in the server's name never does when the agent sends it, nor
    /// the computer's recording, which is the server's to keep.
    fn note(&mut self, frame: &Frame) -> bool {
        let payload = match frame {
            Frame::Message(payload) => payload,
            Frame::Recording(piece) => {
                if let Some(log) = &self.sealed {
                    log.piece(piece);
                }
                return false;
            }
            _ => return true,
        };
        let end = match decode_message::<SessionMessage>(payload) {
            Ok(SessionMessage::Ended { .. }) => return false,
            Ok(SessionMessage::Recorded {
                size,
                sha256,
                truncated,
            }) => {
                if let Some(log) = &self.sealed {
                    log.measured(Measured {
                        size,
                        sha256,
                        truncated,
                    });
                }
                return false;
            }
            Ok(SessionMessage::Exit {
                code: Some(code), ..
            }) => SessionEnd::Exited { code },
            Ok(SessionMessage::Exit {
                code: None,
                signal: Some(signal),
            }) => SessionEnd::Signalled { signal },
            Ok(SessionMessage::Exit {
                code: None,
                signal: None,
            }) => SessionEnd::Exited { code: -1 },
            Ok(SessionMessage::Error { message }) => SessionEnd::Failed { message },
            Ok(SessionMessage::Copied {
                files,
                bytes,
                failed,
            }) => SessionEnd::Copied {
                files,
                bytes,
                failed,
            },
            Ok(_) => return true,
            Err(_) => {
                if let Ok(FileMessage::Copied {
                    path,
                    size,
                    sha256,
                    direction,
                }) = decode_message(payload)
                {
                    self.files.note(CopiedFile {
                        path,
                        size,
                        sha256,
                        direction,
                    });
                }
                return true;
            }
        };
        self.end.get_or_insert(end);
        true
    }
}

/// A frame's length on the wire.
fn frame_len(frame: &Frame) -> u64 {
    let (Frame::Message(payload)
    | Frame::Stdout(payload)
    | Frame::Stderr(payload)
    | Frame::Stdin(payload)
    | Frame::Sealed(payload)
    | Frame::Recording(payload)) = frame;
    // The length prefix and the kind byte.
    payload.len() as u64 + 5
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use doorman_wire::connection::Connection;
    use doorman_wire::message::EndCause;

    /// A relay between two pipes, and the far ends: the operator's and the
    /// agent's.
    fn relay() -> (
        FrameRelay<tokio::io::DuplexStream, tokio::io::DuplexStream>,
        Connection<tokio::io::DuplexStream>,
        Connection<tokio::io::DuplexStream>,
    ) {
        let (operator_near, operator_far) = tokio::io::duplex(64 * 1024);
        let (agent_near, agent_far) = tokio::io::duplex(64 * 1024);
        (
            FrameRelay::new(operator_near, b"", agent_near),
            Connection::new(operator_far),
            Connection::new(agent_far),
        )
    }

    fn word() -> SessionMessage {
        SessionMessage::Ended {
            cause: EndCause::TimeLimit,
            message: "the session reached office-pc's time limit of 1 s".into(),
        }
    }

    #[tokio::test]
    async fn the_programs_exit_status_passes_and_is_kept() {
        let (mut relay, mut operator, agent) = relay();
        let (_, mut to_operator) = agent.split();
        to_operator
            .write_frame(&Frame::Stdout(Bytes::from_static(b"hi\n")))
            .await
            .unwrap();
        to_operator
            .write_message(&SessionMessage::Exit {
                code: Some(3),
                signal: None,
            })
            .await
            .unwrap();
        to_operator.shutdown().await.unwrap();
        drop(to_operator);
        let ended = relay.run(std::future::pending::<()>()).await;
        assert!(matches!(ended, RelayEnd::ComputerClosed), "{ended:?}");
        assert_eq!(
            relay.end(SessionEnd::OperatorLeft),
            Some(SessionEnd::Exited { code: 3 })
        );
        relay.close(None).await;
        assert_eq!(
            operator.read_frame().await.unwrap(),
            Some(Frame::Stdout(Bytes::from_static(b"hi\n")))
        );
        let exit: Option<SessionMessage> = operator.read_message().await.unwrap();
        assert!(matches!(
            exit,
            Some(SessionMessage::Exit { code: Some(3), .. })
        ));
        assert!(operator.read_frame().await.unwrap().is_none());
    }

    #[tokio::test]
    async fn a_stopped_relay_ends_with_the_servers_word_on_a_frame_boundary() {
        let (mut relay, mut operator, mut agent) = relay();
        agent
            .write_frame(&Frame::Stdout(Bytes::from_static(b"working\n")))
            .await
            .unwrap();
        let stop = async {
            // After the frame above has passed.
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        let ended = relay.run(stop).await;
        assert!(matches!(ended, RelayEnd::Stopped(())), "{ended:?}");
        relay.close(Some(word())).await;
        assert_eq!(
            operator.read_frame().await.unwrap(),
            Some(Frame::Stdout(Bytes::from_static(b"working\n")))
        );
        let last: Option<SessionMessage> = operator.read_message().await.unwrap();
        assert_eq!(last, Some(word()));
        assert!(operator.read_frame().await.unwrap().is_none());
        // The agent's side is closed too.
        assert!(agent.read_frame().await.unwrap().is_none());
    }

    #[tokio::test]
    async fn an_end_in_the_servers_name_from_the_agent_is_dropped() {
        let (mut relay, mut operator, agent) = relay();
        let (_, mut to_operator) = agent.split();
        to_operator.write_message(&word()).await.unwrap();
        to_operator.shutdown().await.unwrap();
        drop(to_operator);
        let ended = relay.run(std::future::pending::<()>()).await;
        assert!(matches!(ended, RelayEnd::ComputerClosed), "{ended:?}");
        assert_eq!(relay.end(SessionEnd::OperatorLeft), None);
        relay.close(None).await;
        assert!(operator.read_frame().await.unwrap().is_none());
    }

    #[tokio::test]
    async fn the_operators_bytes_reach_the_agent_and_its_leaving_ends_the_agents_input() {
        let (operator_near, operator_far) = tokio::io::duplex(64 * 1024);
        let (agent_near, agent_far) = tokio::io::duplex(64 * 1024);
        let mut relay = FrameRelay::new(operator_near, b"early", agent_near);
        let mut operator_far = operator_far;
        operator_far.write_all(b" and later").await.unwrap();
        operator_far.shutdown().await.unwrap();
        let mut agent_far = agent_far;
        let reading = tokio::spawn(async move {
            let mut got = Vec::new();
            agent_far.read_to_end(&mut got).await.unwrap();
            // The agent stops the program and closes.
            drop(agent_far);
            got
        });
        let ended = relay.run(std::future::pending::<()>()).await;
        assert_eq!(reading.await.unwrap(), b"early and later");
        assert!(matches!(ended, RelayEnd::ComputerClosed), "{ended:?}");
        assert_eq!(
            relay.end(SessionEnd::OperatorLeft),
            Some(SessionEnd::OperatorLeft)
        );
        assert_eq!(relay.moved(), (15, 0));
    }

    /// A computer that says nothing more once the operator left does not
    /// hold the session for ever.
    #[tokio::test]
    async fn once_the_operator_left_a_silent_computer_is_waited_for_a_while() {
        let (mut relay, operator, _agent) = relay();
        relay.linger = Duration::from_millis(50);
        let (_, mut to_agent) = operator.split();
        to_agent.shutdown().await.unwrap();
        drop(to_agent);
        let ended = relay.run(std::future::pending::<()>()).await;
        assert!(matches!(ended, RelayEnd::ComputerClosed), "{ended:?}");
        assert_eq!(
            relay.end(SessionEnd::OperatorLeft),
            Some(SessionEnd::OperatorLeft)
        );
    }
}
