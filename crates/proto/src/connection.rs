//! Buffered frame I/O over any byte stream: read whole frames, write frames,
//! and (de)serialize messages, with every size bounded by [`crate::frame`].

use crate::frame::{Frame, FrameError};
use bytes::{Bytes, BytesMut};
use serde::Serialize;
use serde::de::DeserializeOwned;
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
            ConnectionError::Frame(_) | ConnectionError::Message(_) => false,
        }
    }
}

/// Reads frames from a byte stream.
#[derive(Debug)]
pub struct FrameReader<R> {
    io: R,
    buffer: BytesMut,
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
        }
    }

    /// The next frame, or `None` at a clean end of stream.
    pub async fn read_frame(&mut self) -> Result<Option<Frame>, ConnectionError> {
        loop {
            if let Some(frame) = Frame::decode(&mut self.buffer)? {
                return Ok(Some(frame));
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
    pub fn into_parts(self) -> (R, BytesMut) {
        (self.io, self.buffer)
    }
}

/// Parses a message payload.
pub fn decode_message<T: DeserializeOwned>(payload: &[u8]) -> Result<T, ConnectionError> {
    serde_json::from_slice(payload).map_err(|e| ConnectionError::Message(e.to_string()))
}

/// Writes frames to a byte stream.
#[derive(Debug)]
pub struct FrameWriter<W> {
    io: W,
    buffer: BytesMut,
}

impl<W: AsyncWrite + Unpin> FrameWriter<W> {
    pub fn new(io: W) -> Self {
        Self {
            io,
            buffer: BytesMut::new(),
        }
    }

    pub async fn write_frame(&mut self, frame: &Frame) -> Result<(), ConnectionError> {
        self.buffer.clear();
        frame.encode(&mut self.buffer)?;
        self.io.write_all(&self.buffer).await?;
        self.io.flush().await?;
        Ok(())
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
#[derive(Debug)]
pub struct Connection<T> {
    reader: FrameReader<T>,
    write_buffer: BytesMut,
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
        }
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
        let buffer = &mut self.write_buffer;
        buffer.clear();
        frame.encode(buffer)?;
        let io = &mut self.reader.io;
        io.write_all(buffer).await?;
        io.flush().await?;
        Ok(())
    }

    /// The stream and the bytes already read past the last whole frame, for
    /// handing the connection over to a byte relay.
    pub fn into_parts(self) -> (T, BytesMut) {
        self.reader.into_parts()
    }

    /// Splits into a reader and a writer that can run in separate tasks. Bytes
    /// already buffered stay with the reader.
    pub fn split(self) -> (FrameReader<ReadHalf<T>>, FrameWriter<WriteHalf<T>>) {
        let (io, buffer) = self.reader.into_parts();
        let (read, write) = tokio::io::split(io);
        (FrameReader { io: read, buffer }, FrameWriter::new(write))
    }
}
