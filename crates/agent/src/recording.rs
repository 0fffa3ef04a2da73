//! The recording of a shell session sealed end to end, made where only the
//! computer sees the screen: asciicast text (`doorman-cast`), sealed with
//! age to the owner's `recordings_to` as it is written, and sent to the
//! server a piece at a time in [`Frame::Recording`] frames. The server
//! keeps the ciphertext; `doorman admin play --identity` and standard age
//! tools open it.
//!
//! age seals 64 KiB of (compressed) text at a time, so the server holds
//! the recording up to its last whole 64 KiB while the session goes on,
//! and all of it once the session ends.

use bytes::Bytes;
use doorman_cast::{Cast, Screen};
use doorman_wire::frame::Frame;
use doorman_wire::message::SessionMessage;
use std::io::Write;
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The most asciicast text one session's recording holds (the server's
/// own recordings keep to the same).
const MAX_TEXT: u64 = 64 << 20;
/// Text gathered before it is compressed and sealed.
const CHUNK_TEXT: usize = 64 * 1024;

/// Where age writes the ciphertext, until it is sent.
#[derive(Clone, Default)]
struct Sealed(Arc<Mutex<Vec<u8>>>);

impl Sealed {
    fn take(&self) -> Vec<u8> {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

impl Write for Sealed {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A recording in progress.
pub struct SealedRecording {
    cast: Cast,
    writer: age::stream::StreamWriter<Sealed>,
    sealed: Sealed,
    started: Instant,
}

/// Why a recording could not start.
#[derive(Debug, thiserror::Error)]
#[error("cannot record the session: {0}")]
pub struct RecordingError(String);

impl SealedRecording {
    /// A recording of `screen` sealed to `recipients`; none without any.
    pub fn start(recipients: &[String], screen: &Screen) -> Result<Option<Self>, RecordingError> {
        if recipients.is_empty() {
            return Ok(None);
        }
        // Classic X25519 recipients: what `age-keygen` of the age packaged
        // in Debian (1.1) makes and every age tool opens; age 0.13 marks
        // them deprecated in favour of post-quantum ones (`age1pq1…`),
        // which those tools cannot open yet.
        #[allow(deprecated)]
        let parsed = recipients
            .iter()
            .map(|text| {
                age::x25519::Recipient::from_str(text)
                    .map_err(|e| RecordingError(format!("recordings_to {text:?}: {e}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let encryptor = age::Encryptor::with_recipients(
            parsed
                .iter()
                .map(|recipient| recipient as &dyn age::Recipient),
        )
        .map_err(|e| RecordingError(e.to_string()))?;
        let sealed = Sealed::default();
        let writer = encryptor
            .wrap_output(sealed.clone())
            .map_err(|e| RecordingError(e.to_string()))?;
        Ok(Some(SealedRecording {
            cast: Cast::new(screen, MAX_TEXT),
            writer,
            sealed,
            started: Instant::now(),
        }))
    }

    fn at(&self) -> Duration {
        self.started.elapsed()
    }

    /// What the shell printed.
    pub fn output(&mut self, data: &[u8]) {
        let at = self.at();
        self.cast.output(data, at);
    }

    /// The operator's terminal resized.
    pub fn resized(&mut self, rows: u16, cols: u16) {
        let at = self.at();
        self.cast.resized(rows, cols, at);
    }

    /// The sealed bytes ready for the server, once enough text gathered.
    pub fn ready(&mut self) -> Option<Frame> {
        if self.cast.buffered() < CHUNK_TEXT {
            return None;
        }
        let chunk = self.cast.take_chunk()?;
        // Writing into memory fails only if age itself does.
        if let Err(error) = self.writer.write_all(&chunk) {
            tracing::warn!(%error, "cannot seal part of a recording");
        }
        self.pending()
    }

    fn pending(&self) -> Option<Frame> {
        let bytes = self.sealed.take();
        (!bytes.is_empty()).then(|| Frame::Recording(Bytes::from(bytes)))
    }

    /// The rest of the recording, sealed, and what the whole measured:
    /// the frames that end it, for the server.
    pub fn finish(self) -> Vec<Frame> {
        let at = self.at();
        let SealedRecording {
            cast,
            mut writer,
            sealed,
            ..
        } = self;
        let (chunk, summary) = cast.finish(at);
        if let Some(chunk) = chunk
            && let Err(error) = writer.write_all(&chunk)
        {
            tracing::warn!(%error, "cannot seal the end of a recording");
        }
        if let Err(error) = writer.finish() {
            tracing::warn!(%error, "cannot seal the end of a recording");
        }
        let rest = sealed.take();
        let mut frames: Vec<Frame> = Vec::new();
        if !rest.is_empty() {
            frames.push(Frame::Recording(Bytes::from(rest)));
        }
        let recorded = SessionMessage::Recorded {
            size: summary.size,
            sha256: summary.sha256,
            truncated: summary.truncated,
        };
        if let Ok(json) = serde_json::to_vec(&recorded) {
            frames.push(Frame::Message(Bytes::from(json)));
        }
        frames
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    #[allow(deprecated)]
    fn a_recording_opens_with_the_recipients_key_only() {
        let key = age::x25519::Identity::generate();
        let screen = Screen {
            term: "xterm".into(),
            cols: 80,
            rows: 24,
            timestamp: 0,
        };
        let mut recording = SealedRecording::start(&[key.to_public().to_string()], &screen)
            .unwrap()
            .unwrap();
        recording.output(b"secret screen\r\n");
        let mut sealed = Vec::new();
        // Enough to seal a first part before the end.
        for _ in 0..2000 {
            recording.output(&[b'x'; 64]);
            if let Some(Frame::Recording(bytes)) = recording.ready() {
                sealed.extend_from_slice(&bytes);
            }
        }
        assert!(!sealed.is_empty(), "a part is sealed as the session goes");
        let frames = recording.finish();
        for frame in &frames {
            if let Frame::Recording(bytes) = frame {
                sealed.extend_from_slice(bytes);
            }
        }
        let Some(Frame::Message(summary)) = frames.last() else {
            panic!("no summary: {frames:?}");
        };
        assert!(String::from_utf8_lossy(summary).contains("\"recorded\""));
        assert!(!sealed.windows(6).any(|w| w == b"secret"));
        let decryptor = age::Decryptor::new(&sealed[..]).unwrap();
        let mut gzip = Vec::new();
        decryptor
            .decrypt(std::iter::once(&key as &dyn age::Identity))
            .unwrap()
            .read_to_end(&mut gzip)
            .unwrap();
        let (header, events) = doorman_cast::decode(&gzip).unwrap();
        assert_eq!(header["width"], 80);
        assert_eq!(events[0].text, "secret screen\r\n");
        let other = age::x25519::Identity::generate();
        let decryptor = age::Decryptor::new(&sealed[..]).unwrap();
        assert!(
            decryptor
                .decrypt(std::iter::once(&other as &dyn age::Identity))
                .is_err()
        );
    }

    #[test]
    fn no_recipients_no_recording_and_a_bad_one_is_named() {
        let screen = Screen {
            term: "xterm".into(),
            cols: 80,
            rows: 24,
            timestamp: 0,
        };
        assert!(SealedRecording::start(&[], &screen).unwrap().is_none());
        let error = SealedRecording::start(&["age1nope".into()], &screen)
            .err()
            .unwrap();
        assert!(error.to_string().contains("age1nope"), "{error}");
    }
}
