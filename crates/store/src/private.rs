//! What the server creates on disk, private to its user whatever the umask:
//! directories 0700, files 0600. The data directory holds live approval
//! links (the outbox), the server key and the database.

use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::Path;

/// Creates `dir` and any missing parents, each 0700. An existing directory
/// is left as the administrator made it.
pub fn create_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

/// Opens `path` for writing, creating it 0600 if missing.
pub fn open_file(path: &Path) -> std::io::Result<std::fs::File> {
    std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .open(path)
}

/// Writes `bytes` to `path` whole or not at all (a temporary file beside it,
/// synced, then renamed), 0600: a reader never sees half a file.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut file = tempfile::NamedTempFile::new_in(dir)?;
    file.write_all(bytes)?;
    file.as_file().sync_all()?;
    file.persist(path).map_err(|error| error.error)?;
    Ok(())
}

/// Creates the SQLite file a `sqlite:` URL names, 0600, if it is missing
/// and the URL lets SQLite create it: SQLite would create it 0644 under the
/// usual umask, and gives its `-wal` and `-shm` files the database's mode.
pub fn create_sqlite_file(database_url: &str) -> std::io::Result<()> {
    let Some(file) = crate::sqlite_file(database_url) else {
        return Ok(());
    };
    if database_url.contains("mode=") {
        return Ok(());
    }
    match open_file(&file) {
        Ok(_) => Ok(()),
        // A missing directory: SQLite will name the problem itself.
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(error) => Err(error),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn directories_files_and_databases_are_private() {
        let dir = tempfile::tempdir().unwrap();
        let nested = dir.path().join("a/b");
        create_dir(&nested).unwrap();
        assert_eq!(mode(&dir.path().join("a")), 0o700);
        assert_eq!(mode(&nested), 0o700);
        let file = nested.join("f");
        open_file(&file).unwrap();
        assert_eq!(mode(&file), 0o600);
        let db = nested.join("doorman.db");
        create_sqlite_file(&format!("sqlite://{}", db.display())).unwrap();
        assert_eq!(mode(&db), 0o600);
        let memory = nested.join("never");
        create_sqlite_file(&format!("sqlite://{}?mode=ro", memory.display())).unwrap();
        assert!(!memory.exists());
        create_sqlite_file("sqlite::memory:").unwrap();
    }
}
