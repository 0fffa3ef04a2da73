//! Frames: pure encoding and decoding, no I/O, so the decoder can be fuzzed.
//!
//! A frame is a 4-byte big-endian length `n`, then `n` bytes: one kind byte and
//! `n - 1` bytes of payload. `n` is at most [`MAX_FRAME_LEN`].

use bytes::{Buf, BufMut, Bytes, BytesMut};

/// Largest frame body (kind byte plus payload).
pub const MAX_FRAME_LEN: usize = 256 * 1024;
/// Largest payload of one frame.
pub const MAX_PAYLOAD_LEN: usize = MAX_FRAME_LEN - 1;
/// Largest data a frame may carry to be sealed end to end: what fits in a
/// [`Frame::Sealed`] with its own frame header and the seal's tag.
pub const MAX_DATA_LEN: usize = MAX_PAYLOAD_LEN - 5 - doorman_e2e::seal::OVERHEAD;

/// One frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Frame {
    /// A JSON-encoded [`crate::message`] value.
    Message(Bytes),
    /// Bytes from the remote program's standard output.
    Stdout(Bytes),
    /// Bytes from the remote program's standard error.
    Stderr(Bytes),
    /// Bytes for the remote program's standard input.
    Stdin(Bytes),
    /// Another frame, sealed end to end between `connect` and the agent
    /// (see [`crate::sealing`]): the server relays it unopened.
    Sealed(Bytes),
    /// A piece of the session's recording, sealed on the computer with age
    /// to the owner's recipients: for the server to keep, not to pass on.
    Recording(Bytes),
}

const KIND_MESSAGE: u8 = 1;
const KIND_STDOUT: u8 = 2;
const KIND_STDERR: u8 = 3;
const KIND_STDIN: u8 = 4;
const KIND_SEALED: u8 = 5;
const KIND_RECORDING: u8 = 6;

/// A byte sequence that is not a frame.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("frame of {0} bytes exceeds the limit of {MAX_FRAME_LEN}")]
    TooLong(usize),
    #[error("empty frame")]
    Empty,
    #[error("unknown frame kind {0}")]
    UnknownKind(u8),
}

impl Frame {
    fn kind_and_payload(&self) -> (u8, &Bytes) {
        match self {
            Frame::Message(payload) => (KIND_MESSAGE, payload),
            Frame::Stdout(payload) => (KIND_STDOUT, payload),
            Frame::Stderr(payload) => (KIND_STDERR, payload),
            Frame::Stdin(payload) => (KIND_STDIN, payload),
            Frame::Sealed(payload) => (KIND_SEALED, payload),
            Frame::Recording(payload) => (KIND_RECORDING, payload),
        }
    }

    /// Appends the encoded frame to `dst`.
    pub fn encode(&self, dst: &mut BytesMut) -> Result<(), FrameError> {
        let (kind, payload) = self.kind_and_payload();
        let body_len = payload.len() + 1;
        if body_len > MAX_FRAME_LEN {
            return Err(FrameError::TooLong(body_len));
        }
        let len = u32::try_from(body_len).map_err(|_| FrameError::TooLong(body_len))?;
        dst.reserve(4 + body_len);
        dst.put_u32(len);
        dst.put_u8(kind);
        dst.put_slice(payload);
        Ok(())
    }

    /// Takes one whole frame off the front of `src`, or returns `Ok(None)` and
    /// leaves `src` as it was when more bytes are needed.
    pub fn decode(src: &mut BytesMut) -> Result<Option<Frame>, FrameError> {
        if src.len() < 4 {
            return Ok(None);
        }
        let len_bytes: [u8; 4] = [src[0], src[1], src[2], src[3]];
        let len = usize::try_from(u32::from_be_bytes(len_bytes))
            .map_err(|_| FrameError::TooLong(usize::MAX))?;
        if len == 0 {
            return Err(FrameError::Empty);
        }
        if len > MAX_FRAME_LEN {
            return Err(FrameError::TooLong(len));
        }
        if src.len() < 4 + len {
            src.reserve(4 + len - src.len());
            return Ok(None);
        }
        let kind = src[4];
        let frame = match kind {
            KIND_MESSAGE | KIND_STDOUT | KIND_STDERR | KIND_STDIN | KIND_SEALED
            | KIND_RECORDING => {
                src.advance(5);
                let payload = src.split_to(len - 1).freeze();
                match kind {
                    KIND_MESSAGE => Frame::Message(payload),
                    KIND_STDOUT => Frame::Stdout(payload),
                    KIND_STDERR => Frame::Stderr(payload),
                    KIND_STDIN => Frame::Stdin(payload),
                    KIND_SEALED => Frame::Sealed(payload),
                    _ => Frame::Recording(payload),
                }
            }
            other => return Err(FrameError::UnknownKind(other)),
        };
        Ok(Some(frame))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn partial_input_waits_for_more() {
        let mut buf = BytesMut::new();
        Frame::Stdout(Bytes::from_static(b"hello"))
            .encode(&mut buf)
            .unwrap();
        let mut partial = BytesMut::from(&buf[..7]);
        assert_eq!(Frame::decode(&mut partial), Ok(None));
        assert_eq!(partial.len(), 7);
    }

    #[test]
    fn oversized_and_unknown_frames_are_refused() {
        let mut huge = BytesMut::from(&[0xff, 0xff, 0xff, 0xff, 1][..]);
        assert!(matches!(
            Frame::decode(&mut huge),
            Err(FrameError::TooLong(_))
        ));
        let mut unknown = BytesMut::from(&[0, 0, 0, 1, 9][..]);
        assert_eq!(Frame::decode(&mut unknown), Err(FrameError::UnknownKind(9)));
        let mut empty = BytesMut::from(&[0, 0, 0, 0][..]);
        assert_eq!(Frame::decode(&mut empty), Err(FrameError::Empty));
        let too_big = Frame::Stdin(Bytes::from(vec![0; MAX_PAYLOAD_LEN + 1]));
        assert!(too_big.encode(&mut BytesMut::new()).is_err());
    }

    fn frame() -> impl Strategy<Value = Frame> {
        (0u8..6, proptest::collection::vec(any::<u8>(), 0..600)).prop_map(|(kind, data)| {
            let data = Bytes::from(data);
            match kind {
                0 => Frame::Message(data),
                1 => Frame::Stdout(data),
                2 => Frame::Stderr(data),
                3 => Frame::Stdin(data),
                4 => Frame::Sealed(data),
                _ => Frame::Recording(data),
            }
        })
    }

    proptest! {
        #[test]
        fn frames_round_trip_whatever_the_split(frames in proptest::collection::vec(frame(), 1..6), cut in 0usize..4000) {
            let mut wire = BytesMut::new();
            for frame in &frames {
                frame.encode(&mut wire).unwrap();
            }
            let cut = cut.min(wire.len());
            let mut buf = BytesMut::from(&wire[..cut]);
            let mut decoded = Vec::new();
            while let Some(frame) = Frame::decode(&mut buf).unwrap() {
                decoded.push(frame);
            }
            buf.extend_from_slice(&wire[cut..]);
            while let Some(frame) = Frame::decode(&mut buf).unwrap() {
                decoded.push(frame);
            }
            prop_assert_eq!(decoded, frames);
            prop_assert!(buf.is_empty());
        }

        #[test]
        fn decoding_arbitrary_bytes_never_panics(data in proptest::collection::vec(any::<u8>(), 0..64)) {
            let mut buf = BytesMut::from(&data[..]);
            while let Ok(Some(_)) = Frame::decode(&mut buf) {}
        }
    }
}
