//! Buffered frame I/O over any byte stream: read whole frames, write frames,
//! and (de)serialize messages, with every size bounded by [`crate::frame`].
//! A writer may have a write deadline: a peer that takes no frame for that
//! long is stuck (or gone), and the connection is given up rather than
//! waited on (see [`Connection::set_write_deadline`]).

use crate::frame::{Frame, FrameError};
use crate::sealing;
use bytes::{Bytes, BytesMut};
use doorman_e2e::{FrameOpener, FrameSealer};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadHalf, WriteHalf};

/// Why a frame could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum ConnectionError {
    #[error("connection error: {0}")]
    Io(#[from] std::io::Error),
    #[error("bad frame: {0}")]
    Frame(#[from] FrameError),
    #[error("bad message: {0}")]
    Message(String),
    #[error("connection closed in the middle of a frame")]
    Truncated,
    /// A frame sealed end to end that did not open, or could not be sealed.
    #[error("end-to-end seal: {0}")]
    Sealed(String),
    /// A frame waited longer than the write deadline for the peer to take
    /// it: the peer stopped reading, or vanished with data unacknowledged.
    /// Half a frame may have gone out, so the writer writes nothing more.
    #[error("the peer took no data for {0:?}; giving the connection up")]
    WriteStalled(Duration),
}

impl ConnectionError {
    /// The peer went away without closing the connection: a stopped
    /// process, a lost network, or a TLS peer that skipped close_notify. An
    /// ordinary end for long-lived connections, not a protocol error.
    pub fn is_hang_up(&self) -> bool {
        match self {
            ConnectionError::Truncated => true,
            ConnectionError::Io(error) => matches!(
                error.kind(),
                std::io::ErrorKind::UnexpectedEof
                    | std::io::ErrorKind::ConnectionReset
                    | std::io::ErrorKind::ConnectionAborted
                    | std::io::ErrorKind::BrokenPipe
            ),
            ConnectionError::Frame(_)
            | ConnectionError::Sealed(_)
            | ConnectionError::Message(_)
            | ConnectionError::WriteStalled(_) => false,
        }
    }
}

/// Reads frames from a byte stream.
#[derive(Debug)]
pub struct FrameReader<R> {
    io: R,
    buffer: BytesMut,
    /// Set once the session is sealed end to end (`crate::sealing`);
    /// boxed, as the keys are large and most connections never hold them.
    opener: Option<Box<FrameOpener>>,
}

/// What an idle reader holds while it waits: enough for the messages of a
/// quiet connection (pings, offers), so that ten thousand idle agents cost
/// the server little; a longer frame gets room for all of it at once when
/// its length arrives.
const IDLE_READ: usize = 512;

impl<R: AsyncRead + Unpin> FrameReader<R> {
    pub fn new(io: R) -> Self {
        Self::with_buffered(io, &[])
    }

    /// A reader whose stream's first bytes were already read (by the HTTP
    /// layer, past an upgrade).
    pub fn with_buffered(io: R, buffered: &[u8]) -> Self {
        Self {
            io,
            buffer: BytesMut::from(buffered),
            opener: None,
        }
    }

    /// The next frame, or `None` at a clean end of stream.
    pub async fn read_frame(&mut self) -> Result<Option<Frame>, ConnectionError> {
        loop {
            if let Some(frame) = Frame::decode(&mut self.buffer)? {
                let Some(opener) = &mut self.opener else {
                    return Ok(Some(frame));
                };
                match frame {
                    Frame::Sealed(payload) => return sealing::open(opener, &payload).map(Some),
                    frame if sealing::from_the_server(&frame) => return Ok(Some(frame)),
                    _ => continue,
                }
            }
            // (A partial frame's decode reserved room for all of it.)
            self.buffer.reserve(IDLE_READ);
            if self.io.read_buf(&mut self.buffer).await? == 0 {
                return if self.buffer.is_empty() {
                    Ok(None)
                } else {
                    Err(ConnectionError::Truncated)
                };
            }
        }
    }

    /// The next message; any other frame kind is an error.
    pub async fn read_message<T: DeserializeOwned>(
        &mut self,
    ) -> Result<Option<T>, ConnectionError> {
        match self.read_frame().await? {
            None => Ok(None),
            Some(Frame::Message(payload)) => decode_message(&payload).map(Some),
            Some(_) => Err(ConnectionError::Message(
                "expected a message frame, got data".into(),
            )),
        }
    }

    /// The stream and whatever was read past the last whole frame.
    /// From now on, opens the other end's sealed frames and skips the
    /// plain ones but the server's last word.
    pub fn open_with(&mut self, opener: FrameOpener) {
        self.opener = Some(Box::new(opener));
    }

    pub fn into_parts(self) -> (R, BytesMut) {
        (self.io, self.buffer)
    }
}

/// Parses a message payload.
pub fn decode_message<T: DeserializeOwned>(payload: &[u8]) -> Result<T, ConnectionError> {
    serde_json::from_slice(payload).map_err(|e| ConnectionError::Message(e.to_string()))
}

/// How long one frame may take to write, and whether one took longer.
#[derive(Clone, Copy, Debug, Default)]
struct WriteDeadline {
    /// None: as long as it takes (a session's bytes go at the pace of the
    /// program that reads them).
    limit: Option<Duration>,
    /// A write missed the deadline: the stream may end in half a frame.
    missed: bool,
}

impl WriteDeadline {
    /// Writes and flushes `bytes` to `io` within the deadline. Once one
    /// write missed it, every later one fails at once.
    async fn write<W: AsyncWrite + Unpin>(
        &mut self,
        io: &mut W,
        bytes: &[u8],
    ) -> Result<(), ConnectionError> {
        if self.missed {
            let limit = self.limit.unwrap_or_default();
            return Err(ConnectionError::WriteStalled(limit));
        }
        let write = async {
            io.write_all(bytes).await?;
            io.flush().await
        };
        let Some(limit) = self.limit else {
            return Ok(write.await?);
        };
        match tokio::time::timeout(limit, write).await {
            Ok(written) => Ok(written?),
            Err(_) => {
                self.missed = true;
                Err(ConnectionError::WriteStalled(limit))
            }
        }
    }
}

/// Writes frames to a byte stream.
#[derive(Debug)]
pub struct FrameWriter<W> {
    io: W,
    buffer: BytesMut,
    deadline: WriteDeadline,
    /// Set once the session is sealed end to end (`crate::sealing`).
    sealer: Option<Box<FrameSealer>>,
}

impl<W: AsyncWrite + Unpin> FrameWriter<W> {
    pub fn new(io: W) -> Self {
        Self {
            io,
            buffer: BytesMut::new(),
            deadline: WriteDeadline::default(),
            sealer: None,
        }
    }

    /// See [`Connection::set_write_deadline`].
    pub fn set_write_deadline(&mut self, limit: Option<Duration>) {
        self.deadline.limit = limit;
    }

    pub async fn write_frame(&mut self, frame: &Frame) -> Result<(), ConnectionError> {
        encode(&mut self.buffer, &mut self.sealer, frame)?;
        self.deadline.write(&mut self.io, &self.buffer).await
    }

    /// From now on, seals every frame (see `crate::sealing`).
    pub fn seal_with(&mut self, sealer: FrameSealer) {
        self.sealer = Some(Box::new(sealer));
    }

    pub async fn write_message<T: Serialize>(
        &mut self,
        message: &T,
    ) -> Result<(), ConnectionError> {
        let payload =
            serde_json::to_vec(message).map_err(|e| ConnectionError::Message(e.to_string()))?;
        self.write_frame(&Frame::Message(Bytes::from(payload)))
            .await
    }

    pub async fn shutdown(&mut self) -> Result<(), ConnectionError> {
        self.io.shutdown().await?;
        Ok(())
    }

    pub fn into_inner(self) -> W {
        self.io
    }
}

/// A framed connection used one step at a time; split it for concurrent
/// reading and writing.
/// Puts `frame` in `buffer` as it goes on the wire: sealed when `sealer`
/// is set, after a plain copy when the server must hear it too, plain
/// when it is for the server alone (see `sealing::audience`).
fn encode(
    buffer: &mut BytesMut,
    sealer: &mut Option<Box<FrameSealer>>,
    frame: &Frame,
) -> Result<(), ConnectionError> {
    buffer.clear();
    let Some(sealer) = sealer else {
        frame.encode(buffer)?;
        return Ok(());
    };
    let audience = sealing::audience(frame);
    if audience != sealing::Audience::Peer {
        frame.encode(buffer)?;
    }
    if audience != sealing::Audience::Server {
        sealing::seal(sealer, frame)?.encode(buffer)?;
    }
    Ok(())
}

#[derive(Debug)]
pub struct Connection<T> {
    reader: FrameReader<T>,
    write_buffer: BytesMut,
    write_deadline: WriteDeadline,
    sealer: Option<Box<FrameSealer>>,
}

impl<T: AsyncRead + AsyncWrite + Unpin> Connection<T> {
    pub fn new(io: T) -> Self {
        Self::with_buffered(io, &[])
    }

    /// A connection whose stream's first bytes were already read.
    pub fn with_buffered(io: T, buffered: &[u8]) -> Self {
        Self {
            reader: FrameReader::with_buffered(io, buffered),
            write_buffer: BytesMut::new(),
            write_deadline: WriteDeadline::default(),
            sealer: None,
        }
    }

    /// How long each frame may take to write (None: as long as it takes,
    /// the default), like [`std::net::TcpStream::set_write_timeout`]. A
    /// frame that takes longer fails with
    /// [`ConnectionError::WriteStalled`], and so does every write after
    /// it: the peer is stuck, and the connection is to be dropped. A
    /// writer split off later keeps the deadline.
    pub fn set_write_deadline(&mut self, limit: Option<Duration>) {
        self.write_deadline.limit = limit;
    }

    pub async fn read_frame(&mut self) -> Result<Option<Frame>, ConnectionError> {
        self.reader.read_frame().await
    }

    pub async fn read_message<M: DeserializeOwned>(
        &mut self,
    ) -> Result<Option<M>, ConnectionError> {
        self.reader.read_message().await
    }

    pub async fn write_message<M: Serialize>(
        &mut self,
        message: &M,
    ) -> Result<(), ConnectionError> {
        let payload =
            serde_json::to_vec(message).map_err(|e| ConnectionError::Message(e.to_string()))?;
        self.write_frame(&Frame::Message(Bytes::from(payload)))
            .await
    }

    pub async fn write_frame(&mut self, frame: &Frame) -> Result<(), ConnectionError> {
        encode(&mut self.write_buffer, &mut self.sealer, frame)?;
        let buffer = &self.write_buffer;
        self.write_deadline.write(&mut self.reader.io, buffer).await
    }

    /// Whether the connection is sealed end to end.
    pub fn is_sealed(&self) -> bool {
        self.sealer.is_some()
    }

    /// From now on, the connection is sealed end to end with `sealer` and
    /// `opener` (see `crate::sealing`).
    pub fn seal(&mut self, sealer: FrameSealer, opener: FrameOpener) {
        self.sealer = Some(Box::new(sealer));
        self.reader.open_with(opener);
    }

    /// The stream and the bytes already read past the last whole frame, for
    /// handing the connection over to a byte relay.
    pub fn into_parts(self) -> (T, BytesMut) {
        self.reader.into_parts()
    }

    /// Splits into a reader and a writer that can run in separate tasks. Bytes
    /// already buffered stay with the reader; the write deadline goes with
    /// the writer.
    pub fn split(self) -> (FrameReader<ReadHalf<T>>, FrameWriter<WriteHalf<T>>) {
        let deadline = self.write_deadline;
        let FrameReader { io, buffer, opener } = self.reader;
        let (read, write) = tokio::io::split(io);
        let mut writer = FrameWriter::new(write);
        writer.deadline = deadline;
        writer.sealer = self.sealer;
        (
            FrameReader {
                io: read,
                buffer,
                opener,
            },
            writer,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::{Connection, ConnectionError, FrameReader};
    use crate::frame::Frame;
    use bytes::Bytes;
    use std::time::Duration;

    const DEADLINE: Duration = Duration::from_millis(50);

    /// More than the 64-byte pipes below hold.
    fn too_big_for_the_pipe() -> Frame {
        Frame::Stdout(Bytes::from(vec![0; 1024]))
    }

    #[tokio::test]
    async fn a_frame_the_peer_never_takes_misses_the_deadline_and_the_writer_writes_no_more() {
        let (near, _far_never_read) = tokio::io::duplex(64);
        let mut connection = Connection::new(near);
        connection.set_write_deadline(Some(DEADLINE));
        let stalled = connection.write_frame(&too_big_for_the_pipe()).await;
        assert!(
            matches!(stalled, Err(ConnectionError::WriteStalled(limit)) if limit == DEADLINE),
            "{stalled:?}"
        );
        // Half a frame may have gone out: nothing may follow it.
        let small = Frame::Stdout(Bytes::from_static(b"x"));
        let after = connection.write_frame(&small).await;
        assert!(
            matches!(after, Err(ConnectionError::WriteStalled(_))),
            "{after:?}"
        );
    }

    #[tokio::test]
    async fn a_split_writer_keeps_the_deadline_and_what_it_wrote_before_arrives_whole() {
        let (near, far) = tokio::io::duplex(64);
        let mut connection = Connection::new(near);
        connection.set_write_deadline(Some(DEADLINE));
        let (_reader, mut writer) = connection.split();
        writer
            .write_message(&"fits")
            .await
            .expect("a frame that fits in the pipe is written");
        let stalled = writer.write_frame(&too_big_for_the_pipe()).await;
        assert!(
            matches!(stalled, Err(ConnectionError::WriteStalled(_))),
            "{stalled:?}"
        );
        let mut far = FrameReader::new(far);
        let first: Option<String> = far.read_message().await.expect("a whole frame");
        assert_eq!(first.as_deref(), Some("fits"));
    }
}
