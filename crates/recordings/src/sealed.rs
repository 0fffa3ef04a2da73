//! Recordings the computer sealed: a session sealed end to end is recorded
//! by the agent, which seals it with age and sends the age file a piece at
//! a time ([`doorman_wire::Frame::Recording`]), then what the text inside
//! measured ([`doorman_wire::message::SessionMessage::Recorded`]). The
//! relay notes both in a [`SealedLog`]; [`SealedLog::store`] writes the
//! pieces as they come, so that a server that stops mid-session keeps
//! what came until then. The server cannot open what it stores.
//!
//! Bounded: past the recording's size limit (`--recording-max-bytes`,
//! counted in stored bytes here) pieces are dropped and the recording
//! marked truncated; an age file cut short opens up to its last whole
//! piece.

use crate::{Recorded, Recorder};
use bytes::Bytes;
use doorman_store::recordings::{RecordingEnd, RecordingOf};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Instant;
use tokio::sync::Notify;

/// What the computer said its recording's text measured.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Measured {
    pub size: u64,
    pub sha256: String,
    pub truncated: bool,
}

/// What the relay noted of a sealed recording, and the store has not yet.
#[derive(Debug)]
pub struct SealedLog {
    state: Mutex<Pieces>,
    news: Notify,
    max_bytes: u64,
}

#[derive(Debug, Default)]
struct Pieces {
    pending: Vec<Bytes>,
    /// Bytes taken so far, stored or pending.
    taken: u64,
    /// Pieces came past the limit, and were dropped.
    over: bool,
    measured: Option<Measured>,
    /// The relay ended: nothing more comes.
    closed: bool,
}

impl SealedLog {
    /// A log that keeps at most `max_bytes` of a recording.
    pub fn new(max_bytes: u64) -> Self {
        SealedLog {
            state: Mutex::default(),
            news: Notify::new(),
            max_bytes,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Pieces> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A piece of the age file.
    pub fn piece(&self, bytes: Bytes) {
        let mut pieces = self.lock();
        let taken = pieces.taken.saturating_add(bytes.len() as u64);
        if pieces.over || taken > self.max_bytes {
            pieces.over = true;
            return;
        }
        pieces.taken = taken;
        pieces.pending.push(bytes);
        drop(pieces);
        self.news.notify_one();
    }

    /// What the text inside measured (a SHA-256 that is not 64 hex
    /// digits is not kept).
    pub fn measured(&self, mut measured: Measured) {
        let sha256 = &measured.sha256;
        if sha256.len() != 64 || !sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
            measured.sha256 = "(not a SHA-256)".into();
        }
        self.lock().measured = Some(measured);
    }

    /// The relay ended.
    pub fn close(&self) {
        self.lock().closed = true;
        self.news.notify_one();
    }

    /// Stores the pieces as the relay notes them, until it is closed, as
    /// recording `session_id` of `of`; what the audit trail says of it, if
    /// anything came.
    pub async fn store(
        &self,
        recorder: &Recorder<'_>,
        session_id: i64,
        of: &RecordingOf<'_>,
    ) -> Option<Recorded> {
        let started = Instant::now();
        let started_at = recorder.clock.now_millis();
        let mut row = false;
        let mut seq = 0;
        loop {
            let notified = self.news.notified();
            let (pending, closed) = {
                let mut pieces = self.lock();
                (std::mem::take(&mut pieces.pending), pieces.closed)
            };
            for piece in pending {
                if !row {
                    let sealed = RecordingOf {
                        sealed: true,
                        ..of.clone()
                    };
                    match recorder
                        .store
                        .start_recording(session_id, &sealed, started_at)
                        .await
                    {
                        Ok(()) => row = true,
                        Err(error) => {
                            tracing::error!(%error, "cannot keep the computer's recording of the session");
                            continue;
                        }
                    }
                }
                match recorder
                    .store
                    .append_recording(session_id, seq, &piece)
                    .await
                {
                    Ok(()) => seq += 1,
                    Err(error) => {
                        tracing::error!(%error, session = session_id, "cannot store part of a sealed session recording");
                    }
                }
            }
            if closed {
                break;
            }
            notified.await;
        }
        if !row {
            return None;
        }
        let (measured, over) = {
            let pieces = self.lock();
            (pieces.measured.clone(), pieces.over)
        };
        let elapsed = started.elapsed();
        let duration_ms = i64::try_from(elapsed.as_millis()).unwrap_or(i64::MAX);
        let measured = measured.unwrap_or(Measured {
            size: 0,
            sha256: String::new(),
            truncated: true,
        });
        let end = RecordingEnd {
            ended_at: started_at + duration_ms,
            duration_ms,
            size: measured.size,
            sha256: &measured.sha256,
        };
        if let Err(error) = recorder.store.finish_recording(session_id, &end).await {
            tracing::error!(%error, "cannot record the end of a sealed session recording");
        }
        recorder.keep_within_total().await;
        let cut = if over {
            ", cut at the server's size limit (--recording-max-bytes)"
        } else if measured.truncated {
            ", truncated"
        } else {
            ""
        };
        Some(Recorded {
            detail: format!(
                "recording {session_id}, sealed on the computer: {} bytes of text, {:.1} s, sha256 {}{cut}",
                measured.size,
                elapsed.as_secs_f64(),
                measured.sha256,
            ),
        })
    }
}
