//! The checkpoints of a SQLite file's write-ahead log ([`Checkpoints`]),
//! on a thread of their own, for the store's connections, which make none
//! ([`crate::lite`]).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::mpsc::RecvTimeoutError;

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
/// checkpoints' thread. The thread ends once every holder of this (the
/// writer and the store's connections) is dropped: it holds only the count.
pub(crate) struct Writes {
    count: Arc<AtomicU64>,
    wake: std::sync::mpsc::Sender<()>,
}

impl Writes {
    pub(crate) fn made(&self) {
        if self.count.fetch_add(1, Relaxed) == 0 {
            let _ = self.wake.send(());
        }
    }
}

impl Checkpoints {
    pub(crate) fn start(path: &std::path::Path) -> Result<Self, sqlx::Error> {
        let conn = rusqlite::Connection::open(path).map_err(crate::lite::error)?;
        // A restarting checkpoint that finds a reader in the way gives up
        // at once (and tries again next round), rather than hold the write
        // lock while it waits, which this process's writes would wait for.
        conn.busy_timeout(std::time::Duration::ZERO)
            .map_err(crate::lite::error)?;
        let (wake, woken) = std::sync::mpsc::channel::<()>();
        let count = Arc::new(AtomicU64::new(0));
        let counted = Arc::clone(&count);
        std::thread::Builder::new()
            .name("doorman-checkpoints".into())
            .spawn(move || {
                let mut owed = false;
                // Woken by a first write (or owing one that did not finish);
                // then until writes pause or enough were made.
                while owed || woken.recv().is_ok() {
                    let mut seen = 0;
                    let closed = loop {
                        match woken.recv_timeout(CHECKPOINT_QUIET) {
                            Err(RecvTimeoutError::Disconnected) => break true,
                            Ok(()) | Err(RecvTimeoutError::Timeout) => {}
                        }
                        let now = counted.load(Relaxed);
                        if now == seen || now >= CHECKPOINT_WRITES {
                            break false;
                        }
                        seen = now;
                    };
                    counted.store(0, Relaxed);
                    owed = checkpoint(&conn) == Checkpoint::Partial;
                    if closed {
                        return;
                    }
                }
                checkpoint(&conn);
            })
            .map_err(sqlx::Error::Io)?;
        Ok(Checkpoints {
            writes: Arc::new(Writes { count, wake }),
        })
    }
}

/// How far a checkpoint went.
#[derive(PartialEq, Eq)]
enum Checkpoint {
    /// The log is in the database file (or the checkpoint failed, which is
    /// logged; the next write tries again).
    Done,
    /// A reader kept some of it: the next round tries again.
    Partial,
}

/// A passive checkpoint, and a restarting one if the log has grown long.
fn checkpoint(conn: &rusqlite::Connection) -> Checkpoint {
    let run = |mode: &str| {
        conn.query_row(&format!("PRAGMA wal_checkpoint({mode})"), [], |row| {
            Ok((
                row.get::<_, i64>(0)?,
                row.get::<_, i64>(1)?,
                row.get::<_, i64>(2)?,
            ))
        })
    };
    let made = run("PASSIVE").and_then(|(busy, log, done)| {
        if log > LOG_RESTART_PAGES {
            return run("RESTART");
        }
        Ok((busy, log, done))
    });
    match made {
        Ok((0, log, done)) if done >= log => Checkpoint::Done,
        Ok(_) => Checkpoint::Partial,
        Err(error) => {
            tracing::warn!(%error, "cannot checkpoint the database's write-ahead log");
            Checkpoint::Done
        }
    }
}
