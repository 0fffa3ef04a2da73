//! The files a copy moves, as the agent says them (`FileMessage::Copied`),
//! on their way from the relay to the audit trail: the relay notes each
//! one in a [`CopiedLog`], and [`record_as_they_come`] writes them while
//! the copy runs, so that a server that stops mid-copy has recorded what
//! was copied until then. Bounded: past [`MAX_LISTED`] files, or
//! [`MAX_PENDING_BYTES`] of paths waiting for a slow database, files are
//! only counted, so that an agent cannot fill the server's memory or its
//! audit trail.

use super::super::{Ask, audit};
use crate::broker::Broker;
use doorman_core::AuditKind;
use doorman_wire::message::{CopyDirection, Service, WirePath};
use std::sync::Mutex;
use tokio::sync::Notify;

/// The most files of one copy the audit trail lists one by one.
const MAX_LISTED: usize = 100_000;
/// The most bytes of paths waiting to be recorded (a path is up to 4 KiB).
const MAX_PENDING_BYTES: usize = 16 << 20;

/// One file a copy moved whole: its path on the computer, size and
/// SHA-256, and which way it went when the agent said (browsing).
#[derive(Debug)]
pub(super) struct CopiedFile {
    pub(super) path: WirePath,
    pub(super) size: u64,
    pub(super) sha256: String,
    pub(super) direction: Option<CopyDirection>,
}

/// What the relay noted and the audit trail has not yet.
#[derive(Debug, Default)]
pub(super) struct CopiedLog {
    state: Mutex<Noted>,
    news: Notify,
}

#[derive(Debug, Default)]
struct Noted {
    pending: Vec<CopiedFile>,
    pending_bytes: usize,
    /// Files listed so far, recorded or pending.
    listed: usize,
    /// Files only counted.
    more: u64,
    /// The relay ended: nothing more comes.
    closed: bool,
}

impl CopiedLog {
    /// Notes a file the agent says it copied.
    pub(super) fn note(&self, file: CopiedFile) {
        let Ok(mut noted) = self.state.lock() else {
            return;
        };
        let bytes = noted.pending_bytes.saturating_add(file.path.0.len());
        if noted.listed >= MAX_LISTED || bytes > MAX_PENDING_BYTES {
            noted.more += 1;
            return;
        }
        // A SHA-256 is 64 hex digits; anything else an agent says (up to a
        // frame's worth) is not kept.
        let sha256 = &file.sha256;
        let sha256 = if sha256.len() == 64 && sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
            file.sha256
        } else {
            "(not a SHA-256)".to_string()
        };
        noted.pending_bytes = bytes;
        noted.listed += 1;
        noted.pending.push(CopiedFile { sha256, ..file });
        drop(noted);
        self.news.notify_one();
    }

    /// The relay ended: what is pending is the last.
    pub(super) fn close(&self) {
        if let Ok(mut noted) = self.state.lock() {
            noted.closed = true;
        }
        self.news.notify_one();
    }

    /// The files pending, and once closed, how many were only counted;
    /// `None` when closed and nothing is left.
    fn take(&self) -> Option<(Vec<CopiedFile>, u64)> {
        let mut noted = self.state.lock().ok()?;
        let pending = std::mem::take(&mut noted.pending);
        noted.pending_bytes = 0;
        let more = if noted.closed {
            std::mem::take(&mut noted.more)
        } else {
            0
        };
        (!noted.closed || !pending.is_empty() || more > 0).then_some((pending, more))
    }
}

/// Records the files of the copy `ask` asks for as the relay notes them,
/// until it is closed and all are recorded: for each its direction, path
/// on the computer, size and SHA-256.
pub(super) async fn record_as_they_come(
    broker: &Broker,
    ask: &Ask<'_>,
    request_id: Option<&str>,
    log: &CopiedLog,
) {
    let Service::Files(job) = &ask.service else {
        return;
    };
    loop {
        // Registered before looking, so that a note made meanwhile wakes it.
        let news = log.news.notified();
        let Some((files, more)) = log.take() else {
            return;
        };
        let details = files.iter().map(|file| {
            // Browsing, each file says which way it went.
            let direction = words(file.direction.unwrap_or(job.direction));
            format!(
                "{direction}: {} ({} bytes, sha256 {})",
                file.path.shown(),
                file.size,
                file.sha256
            )
        });
        let direction = words(job.direction);
        let more = (more > 0).then(|| format!("{direction}: {more} more files, not listed"));
        for detail in details.chain(more) {
            let event = audit(broker, ask, AuditKind::FileCopied, request_id, Some(detail));
            if let Err(error) = broker.store().record(&event).await {
                tracing::error!(%error, "cannot record a copied file in the audit trail");
            }
        }
        if files.is_empty() {
            news.await;
        }
    }
}

fn words(direction: CopyDirection) -> &'static str {
    match direction {
        CopyDirection::ToComputer => "to the computer",
        CopyDirection::FromComputer => "from the computer",
        CopyDirection::Browse => "browsing",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_agent_cannot_fill_memory_or_the_audit_trail_with_what_it_copied() {
        let log = CopiedLog::default();
        let long = WirePath(vec![b'a'; 4096]);
        for _ in 0..(MAX_PENDING_BYTES / 4096 + 10) {
            log.note(CopiedFile {
                path: long.clone(),
                size: 1,
                sha256: "z".repeat(1_000),
                direction: None,
            });
        }
        log.close();
        let (kept, more) = log.take().unwrap();
        assert_eq!(kept.len(), MAX_PENDING_BYTES / 4096);
        assert_eq!(more, 10);
        assert_eq!(kept[0].sha256, "(not a SHA-256)");
        assert!(log.take().is_none(), "all taken once closed");
    }
}
