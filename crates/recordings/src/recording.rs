//! Recording shell sessions as they are relayed: a [`Tap`] on each side of
//! the relay shows the bytes to a [`cast::Cast`], whose compressed chunks a
//! writer task stores as they fill (and at each heartbeat), so that a
//! session cut short — or a server that dies — leaves what was recorded
//! until then. When the session ends, the recording's size, duration and
//! SHA-256 go to its row and the audit trail.

use crate::Recordings;
use crate::cast::{self, Cast, Direction, Screen};
use doorman_runtime::clock::Clock;
use doorman_store::Store;
use doorman_store::recordings::{RecordingEnd, RecordingOf};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Instant;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::mpsc;

/// Uncompressed bytes after which a chunk is stored without waiting for the
/// heartbeat.
const CHUNK_SIZE: usize = 256 * 1024;

/// What recording needs of the server: where recordings are stored, its
/// clock, and the limits they keep to; lent by whoever holds them.
#[derive(Clone, Copy, Debug)]
pub struct Recorder<'a> {
    pub store: &'a Store,
    pub clock: &'a Clock,
    pub settings: Recordings,
}

impl Recorder<'_> {
    /// Deletes the oldest finished recordings until all of them together
    /// fit within `--recordings-max-total-bytes`.
    pub async fn keep_within_total(&self) {
        let max = self.settings.max_total_bytes;
        match self
            .store
            .prune_recordings_beyond(
                i64::try_from(max).unwrap_or(i64::MAX),
                self.clock.now_millis(),
            )
            .await
        {
            Ok(0) => {}
            Ok(pruned) => tracing::info!(
                pruned,
                max_total_bytes = max,
                "oldest session recordings deleted to stay within their total size"
            ),
            Err(error) => tracing::warn!(%error, "cannot prune session recordings"),
        }
    }
}

/// A recording in progress.
pub struct Recording {
    session_id: i64,
    started: Instant,
    started_at: i64,
    shared: Arc<Mutex<Shared>>,
    writer: tokio::task::JoinHandle<()>,
}

/// What the recording and its taps share; both emptied when it finishes,
/// so that a tap outliving it records nothing and holds up no one.
struct Shared {
    cast: Option<Cast>,
    /// To the writer task, which ends when this is dropped.
    chunks: Option<mpsc::UnboundedSender<Vec<u8>>>,
}

impl Shared {
    fn store(&mut self, chunk: Option<Vec<u8>>) {
        if let (Some(chunk), Some(chunks)) = (chunk, &self.chunks) {
            let _ = chunks.send(chunk);
        }
    }
}

/// What the audit trail says of a finished recording.
pub struct Recorded {
    pub detail: String,
}

impl Recording {
    /// Starts recording session `session_id`, whose screen is `screen`.
    pub async fn start(
        recorder: &Recorder<'_>,
        session_id: i64,
        of: &RecordingOf<'_>,
        screen: Screen,
    ) -> Result<Recording, doorman_store::StoreError> {
        let started_at = recorder.clock.now_millis();
        recorder
            .store
            .start_recording(session_id, of, started_at)
            .await?;
        let (chunks, mut receiver) = mpsc::unbounded_channel::<Vec<u8>>();
        let store = recorder.store.clone();
        let writer = tokio::spawn(async move {
            let mut seq = 0;
            while let Some(chunk) = receiver.recv().await {
                // A chunk that could not be stored is lost, but leaves no gap
                // in the numbering: playback goes on past it.
                match store.append_recording(session_id, seq, &chunk).await {
                    Ok(()) => seq += 1,
                    Err(error) => {
                        tracing::error!(%error, session = session_id, "cannot store part of a session recording")
                    }
                }
            }
        });
        Ok(Recording {
            session_id,
            started: Instant::now(),
            started_at,
            shared: Arc::new(Mutex::new(Shared {
                cast: Some(Cast::new(&screen, recorder.settings.max_bytes)),
                chunks: Some(chunks),
            })),
            writer,
        })
    }

    /// A stream that shows what passes through it to this recording.
    pub fn tap<S>(&self, inner: S, direction: Direction) -> Tap<S> {
        Tap {
            inner,
            direction,
            shared: Arc::clone(&self.shared),
            started: self.started,
        }
    }

    /// Shows bytes that went `direction` before the taps were in place.
    pub fn observe(&self, direction: Direction, bytes: &[u8]) {
        observe(&self.shared, self.started, direction, bytes);
    }

    /// Stores what was recorded so far.
    pub fn flush(&self) {
        let mut shared = lock(&self.shared);
        let chunk = shared.cast.as_mut().and_then(Cast::take_chunk);
        shared.store(chunk);
    }

    /// Ends the recording: stores its last chunk and what it measured.
    pub async fn finish(
        self,
        recorder: &Recorder<'_>,
    ) -> Result<Recorded, doorman_store::StoreError> {
        let elapsed = self.started.elapsed();
        let summary = {
            let mut shared = lock(&self.shared);
            let cast = shared.cast.take();
            let summary = cast.map(|cast| {
                let (chunk, summary) = cast.finish(elapsed);
                shared.store(chunk);
                summary
            });
            shared.chunks = None;
            summary
        };
        let summary = summary.unwrap_or(cast::Summary {
            size: 0,
            sha256: String::new(),
            truncated: false,
        });
        let _ = self.writer.await;
        let duration_ms = i64::try_from(elapsed.as_millis()).unwrap_or(i64::MAX);
        recorder
            .store
            .finish_recording(
                self.session_id,
                &RecordingEnd {
                    ended_at: self.started_at + duration_ms,
                    duration_ms,
                    size: summary.size,
                    sha256: &summary.sha256,
                },
            )
            .await?;
        recorder.keep_within_total().await;
        Ok(Recorded {
            detail: format!(
                "recording {}: {} bytes, {:.1} s, sha256 {}{}",
                self.session_id,
                summary.size,
                elapsed.as_secs_f64(),
                summary.sha256,
                if summary.truncated {
                    ", truncated at the size limit (--recording-max-bytes)"
                } else {
                    ""
                }
            ),
        })
    }
}

fn lock(shared: &Mutex<Shared>) -> std::sync::MutexGuard<'_, Shared> {
    shared
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn observe(shared: &Mutex<Shared>, started: Instant, direction: Direction, bytes: &[u8]) {
    let mut shared = lock(shared);
    let Some(cast) = shared.cast.as_mut() else {
        return;
    };
    cast.observe(direction, bytes, started.elapsed());
    let chunk = if cast.buffered() >= CHUNK_SIZE {
        cast.take_chunk()
    } else {
        None
    };
    shared.store(chunk);
}

/// A stream whose incoming bytes a recording sees; writes pass untouched.
pub struct Tap<S> {
    inner: S,
    /// Where the bytes read from `inner` are going.
    direction: Direction,
    shared: Arc<Mutex<Shared>>,
    started: Instant,
}

impl<S: AsyncRead + Unpin> AsyncRead for Tap<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = polled {
            let new = &buf.filled()[before..];
            if !new.is_empty() {
                observe(&self.shared, self.started, self.direction, new);
            }
        }
        polled
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Tap<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
