//! The data directory: one server process a SQLite data directory (its
//! lock), and whether a file given is one of its own.

use crate::ServerError;
use doorman_store::private;

/// Whether two paths name one file (the same path, or one that exists under
/// both names).
pub(crate) fn same_file(a: &std::path::Path, b: &std::path::Path) -> bool {
    match (std::fs::canonicalize(a), std::fs::canonicalize(b)) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    }
}

/// Locks `DATA_DIR/server.lock` for this process: two servers on one SQLite
/// database would each believe their in-process state (agents, waits) is
/// the whole truth. The operating system releases it when the process ends,
/// however it ends.
pub(crate) fn lock_data_dir(dir: &std::path::Path) -> Result<std::fs::File, ServerError> {
    let path = dir.join("server.lock");
    let file = private::open_file(&path).map_err(|source| ServerError::DataDir {
        path: dir.to_path_buf(),
        source,
    })?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(ServerError::AlreadyRunning(path)),
        Err(std::fs::TryLockError::Error(source)) => Err(ServerError::DataDir {
            path: dir.to_path_buf(),
            source,
        }),
    }
}
