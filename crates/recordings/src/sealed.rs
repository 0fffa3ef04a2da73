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
//! piece. Pieces are joined as they wait, and stored [`WRITE`] bytes at a
//! time, so that many small pieces are not as many writes; once the
//! session ended, what is left has [`FINISH_WITHIN`] to be stored.

use crate::{Recorded, Recorder};
use bytes::{Bytes, BytesMut};
use doorman_store::recordings::{RecordingEnd, RecordingOf};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};
use tokio::sync::Notify;

/// The most bytes one stored chunk holds.
const WRITE: usize = 1 << 20;
/// How long what is left of a recording may take to be stored once its
/// session ended (a database that stalls does not hold the session's end
/// for longer).
const FINISH_WITHIN: Duration = Duration::from_secs(30);

/// What the computer said its recording's text measured.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Measured {
    pub size: u64,
    pub sha256: String,
    pub truncated: bool,
}

/// Stores `piece` as chunk `seq` of recording `session_id` (of `of`,
/// started at `started_at`), making its row first if there is none yet
/// (`row`).
async fn write(
    recorder: &Recorder<'_>,
    (session_id, of, started_at): (i64, &RecordingOf<'_>, i64),
    row: &mut bool,
    seq: i64,
    piece: &[u8],
) -> Result<(), doorman_store::StoreError> {
    if !*row {
        let sealed = RecordingOf {
            sealed: true,
            ..of.clone()
        };
        recorder
            .store
            .start_recording(session_id, &sealed, started_at)
            .await?;
        *row = true;
    }
    recorder
        .store
        .append_recording(session_id, seq, piece)
        .await
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
    /// The pieces not yet stored, joined.
    pending: BytesMut,
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
    pub fn piece(&self, bytes: &Bytes) {
        if bytes.is_empty() {
            return;
        }
        let mut pieces = self.lock();
        let taken = pieces.taken.saturating_add(bytes.len() as u64);
        if pieces.over || taken > self.max_bytes {
            pieces.over = true;
            return;
        }
        pieces.taken = taken;
        pieces.pending.extend_from_slice(bytes);
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
        let mut deadline = None;
        loop {
            let notified = self.news.notified();
            let (pending, closed) = {
                let mut pieces = self.lock();
                let end = pieces.pending.len().min(WRITE);
                (pieces.pending.split_to(end).freeze(), pieces.closed)
            };
            if closed && deadline.is_none() {
                deadline = Some(tokio::time::Instant::now() + FINISH_WITHIN);
            }
            if !pending.is_empty() {
                let place = (session_id, of, started_at);
                let write = write(recorder, place, &mut row, seq, &pending);
                let written = match deadline {
                    Some(at) => tokio::time::timeout_at(at, write).await,
                    None => Ok(write.await),
                };
                match written {
                    Ok(Ok(())) => seq += 1,
                    Ok(Err(error)) => {
                        tracing::error!(%error, session = session_id, "cannot store part of a sealed session recording");
                    }
                    Err(_) => {
                        tracing::error!(
                            session = session_id,
                            "the database took too long to store the end of a sealed session recording; the rest is dropped"
                        );
                        break;
                    }
                }
                continue;
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

#[cfg(test)]
mod tests {
    use super::*;
    use doorman_runtime::clock::Clock;
    use doorman_store::{ComputerId, OperatorId, Store};

    async fn store(dir: &std::path::Path) -> Store {
        Store::open(&format!("sqlite://{}", dir.join("doorman.db").display()))
            .await
            .unwrap()
    }

    fn recorder<'a>(store: &'a Store, clock: &'a Clock, max_bytes: u64) -> Recorder<'a> {
        Recorder {
            store,
            clock,
            settings: crate::Recordings {
                max_bytes,
                ..Default::default()
            },
        }
    }

    fn of() -> RecordingOf<'static> {
        RecordingOf {
            request_id: None,
            computer: "pc",
            computer_id: ComputerId(1),
            operator: "alice",
            operator_id: OperatorId(1),
            sealed: false,
        }
    }

    /// An agent that sends its recording in many tiny pieces (or empty
    /// ones) makes a few writes, not one a piece, and no more than the
    /// limit is kept.
    #[tokio::test]
    async fn many_small_pieces_are_stored_together_and_the_limit_holds() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(dir.path()).await;
        let clock = Clock::system();
        let recorder = recorder(&store, &clock, 1000);
        let log = SealedLog::new(recorder.settings.max_bytes);
        for _ in 0..100_000 {
            log.piece(&Bytes::new());
        }
        for _ in 0..2000 {
            log.piece(&Bytes::from_static(b"x"));
        }
        log.measured(Measured {
            size: 5,
            sha256: "a".repeat(64),
            truncated: false,
        });
        log.close();
        let recorded = log.store(&recorder, 7, &of()).await.unwrap();
        assert!(
            recorded.detail.contains("sealed on the computer"),
            "{}",
            recorded.detail
        );
        assert!(
            recorded.detail.contains("cut at the server's size limit"),
            "{}",
            recorded.detail
        );
        let (row, stored) = store.recording(7).await.unwrap().unwrap();
        assert!(row.sealed);
        assert_eq!(stored.len(), 1000);
        assert_eq!(
            store.recording_chunk(7, 1).await.unwrap(),
            None,
            "one write"
        );
    }

    #[tokio::test]
    async fn a_session_that_sent_nothing_leaves_no_recording() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(dir.path()).await;
        let clock = Clock::system();
        let recorder = recorder(&store, &clock, 1 << 20);
        let log = SealedLog::new(recorder.settings.max_bytes);
        log.close();
        assert!(log.store(&recorder, 8, &of()).await.is_none());
        assert!(store.recording(8).await.unwrap().is_none());
    }
}
