//! The checkpoints of a SQLite file's write-ahead log ([`Checkpoints`]),
//! on a thread of their own, for the store's connections, which make none
//! ([`crate::lite`]).

use crate::database::BUSY_TIMEOUT;
use std::sync::Arc;

/// How long the log waits for writes to stop before its checkpoint.
const CHECKPOINT_QUIET: std::time::Duration = std::time::Duration::from_millis(250);

/// Writes after which the log is checkpointed even while writes go on.
const CHECKPOINT_WRITES: u64 = 512;

/// Pages in the log past which a checkpoint makes sure it starts over:
/// checkpoints made beside writes that never stop could leave it growing.
const LOG_RESTART_PAGES: i64 = 10_000;

/// The checkpoints of a SQLite file's write-ahead log, on a thread of
/// their own with a connection of their own: a checkpoint writes pages
/// into the database file and syncs it, which is not work for the
/// runtime's threads, where the store's connections run (they make no
/// checkpoints of their own). A passive checkpoint, which waits for
/// nobody, once writes pause for [`CHECKPOINT_QUIET`] or
/// [`CHECKPOINT_WRITES`] were made; a restarting one when the log has
/// grown past [`LOG_RESTART_PAGES`]; a last one when the store is closed.
/// The thread sleeps while nothing is written.
pub(crate) struct Checkpoints {
    pub(crate) writes: Arc<Writes>,
}

/// The writer's writes since the last checkpoint, and how it wakes the
/// checkpoints' thread (dropped with the writer: the thread ends).
pub(crate) struct Writes {
    count: std::sync::atomic::AtomicU64,
    wake: std::sync::mpsc::Sender<()>,
}

impl Writes {
    pub(crate) fn made(&self) {
        if self
            .count
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            == 0
        {
            let _ = self.wake.send(());
        }
    }
}

impl Checkpoints {
    pub(crate) fn start(path: &std::path::Path) -> Result<Self, sqlx::Error> {
        let conn = rusqlite::Connection::open(path).map_err(crate::lite::error)?;
        conn.busy_timeout(BUSY_TIMEOUT)
            .map_err(crate::lite::error)?;
        let (wake, woken) = std::sync::mpsc::channel::<()>();
        let writes = Arc::new(Writes {
            count: std::sync::atomic::AtomicU64::new(0),
            wake,
        });
        let counted = Arc::clone(&writes);
        std::thread::Builder::new()
            .name("doorman-checkpoints".into())
            .spawn(move || {
                use std::sync::atomic::Ordering::Relaxed;
                use std::sync::mpsc::RecvTimeoutError;
                // Woken by a first write; then until writes pause or
                // enough were made.
                while woken.recv().is_ok() {
                    let mut seen = 0;
                    let closed = loop {
                        match woken.recv_timeout(CHECKPOINT_QUIET) {
                            Err(RecvTimeoutError::Disconnected) => break true,
                            Ok(()) | Err(RecvTimeoutError::Timeout) => {}
                        }
                        let now = counted.count.load(Relaxed);
                        if now == seen || now >= CHECKPOINT_WRITES {
                            break false;
                        }
                        seen = now;
                    };
                    counted.count.store(0, Relaxed);
                    checkpoint(&conn);
                    if closed {
                        return;
                    }
                }
                checkpoint(&conn);
            })
            .map_err(sqlx::Error::Io)?;
        Ok(Checkpoints { writes })
    }
}

/// A passive checkpoint, and a restarting one if the log has grown long.
fn checkpoint(conn: &rusqlite::Connection) {
    let pages = |mode: &str| {
        conn.query_row(&format!("PRAGMA wal_checkpoint({mode})"), [], |row| {
            row.get::<_, i64>(1)
        })
    };
    let made = pages("PASSIVE").and_then(|log| {
        if log > LOG_RESTART_PAGES {
            pages("RESTART")?;
        }
        Ok(())
    });
    if let Err(error) = made {
        tracing::warn!(%error, "cannot checkpoint the database's write-ahead log");
    }
}
