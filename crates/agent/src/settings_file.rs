//! The agent's settings file on disk: loading it with every problem named,
//! and changing it atomically (a temporary file in the same directory, synced,
//! then renamed over the old one), so a crash leaves the old or the new file,
//! never half of one; and writing a new one ([`NewFile`]), which never
//! replaces what is there.

use doorman_core::settings::{AgentSettings, SettingsChange, SettingsError};
use std::io::Write;
use std::path::{Path, PathBuf};

/// A settings file that cannot be read, parsed or written.
#[derive(Debug, thiserror::Error)]
pub enum SettingsFileError {
    #[error("cannot read settings file {path}: {source} (pass --config FILE)")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid settings file {path}: {error}")]
    Invalid { path: PathBuf, error: SettingsError },
    #[error("nothing was written to {path}: {error}")]
    Refused { path: PathBuf, error: SettingsError },
    #[error("settings file {path}: ca = {ca:?} does not exist")]
    MissingCa { path: PathBuf, ca: PathBuf },
    #[error("cannot write settings file {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "nothing to change: give at least one of the settings (see `doorman settings set --help`)"
    )]
    NoChange,
    #[error(
        "{path} already exists: nothing was written; pass --config for another file, or move it away first"
    )]
    Exists { path: PathBuf },
}

/// Reads and validates the settings file.
pub fn load(path: &Path) -> Result<AgentSettings, SettingsFileError> {
    let text = std::fs::read_to_string(path).map_err(|source| SettingsFileError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let settings = AgentSettings::parse(&text).map_err(|error| SettingsFileError::Invalid {
        path: path.to_path_buf(),
        error,
    })?;
    let settings = resolved(path, settings);
    if let Some(ca) = &settings.ca
        && !ca.exists()
    {
        return Err(SettingsFileError::MissingCa {
            path: path.to_path_buf(),
            ca: ca.clone(),
        });
    }
    Ok(settings)
}

/// `settings` as the agent uses them: a relative `ca` is relative to the
/// settings file at `path`, not to the working directory.
fn resolved(path: &Path, mut settings: AgentSettings) -> AgentSettings {
    if let (Some(ca), Some(dir)) = (&settings.ca, path.parent())
        && ca.is_relative()
    {
        settings.ca = Some(dir.join(ca));
    }
    settings
}

/// Applies a change to the file, keeping its comments; an invalid change
/// leaves the file untouched. Returns the settings as [`load`] reads them
/// (so that `settings set` prints `ca` as `settings show` does).
pub fn apply(path: &Path, change: &SettingsChange) -> Result<AgentSettings, SettingsFileError> {
    if change.is_empty() {
        return Err(SettingsFileError::NoChange);
    }
    let text = std::fs::read_to_string(path).map_err(|source| SettingsFileError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let (new_text, settings) =
        change
            .apply_to(&text)
            .map_err(|error| SettingsFileError::Refused {
                path: path.to_path_buf(),
                error,
            })?;
    write_atomically(path, new_text.as_bytes()).map_err(|source| SettingsFileError::Write {
        path: path.to_path_buf(),
        source,
    })?;
    Ok(resolved(path, settings))
}

/// Replaces `path` with `bytes` atomically, keeping the file's permissions
/// (it holds the agent key; a new file is 0600): written to a temporary file
/// beside it, synced, renamed over it, and the rename synced too.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = directory_of(path);
    let mut file = tempfile::NamedTempFile::new_in(&dir)?;
    file.write_all(bytes)?;
    if let Ok(metadata) = std::fs::metadata(path) {
        file.as_file().set_permissions(metadata.permissions())?;
    }
    file.as_file().sync_all()?;
    file.persist(path).map_err(|error| error.error)?;
    sync_directory(&dir)
}

/// Makes a rename in `dir` durable. Windows opens no directory as a file
/// (it needs `FILE_FLAG_BACKUP_SEMANTICS`), and its rename needs no sync
/// of the directory: there, nothing to do.
fn sync_directory(dir: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    std::fs::File::open(dir)?.sync_all()?;
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

/// The directory `path` is in (`.` for a bare file name).
fn directory_of(path: &Path) -> PathBuf {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// A file that must not exist yet, being written: reserved by a temporary
/// file beside it (so that a directory that cannot be written is found out
/// before anything else happens), then written, synced, given mode 0600
/// and put in place only if its path is still free. Dropped unwritten, it
/// leaves nothing behind.
#[derive(Debug)]
pub struct NewFile {
    path: PathBuf,
    temporary: tempfile::NamedTempFile,
}

impl NewFile {
    /// Reserves `path`, which must not exist; its directory is made (0700)
    /// if need be.
    pub fn reserve(path: &Path) -> Result<Self, SettingsFileError> {
        let error = |source| SettingsFileError::Write {
            path: path.to_path_buf(),
            source,
        };
        // A dangling symbolic link is something there too.
        if std::fs::symlink_metadata(path).is_ok() {
            return Err(SettingsFileError::Exists {
                path: path.to_path_buf(),
            });
        }
        let dir = directory_of(path);
        let mut builder = std::fs::DirBuilder::new();
        builder.recursive(true);
        #[cfg(unix)]
        std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
        builder.create(&dir).map_err(error)?;
        let temporary = tempfile::NamedTempFile::new_in(&dir).map_err(error)?;
        Ok(Self {
            path: path.to_path_buf(),
            temporary,
        })
    }

    /// Where the file goes.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes `bytes` and puts the file in place (mode 0600), unless
    /// something took its path meanwhile.
    pub fn write(mut self, bytes: &[u8]) -> Result<(), SettingsFileError> {
        let path = self.path;
        let error = |source| SettingsFileError::Write {
            path: path.clone(),
            source,
        };
        self.temporary.write_all(bytes).map_err(error)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let private = std::fs::Permissions::from_mode(0o600);
            self.temporary
                .as_file()
                .set_permissions(private)
                .map_err(error)?;
        }
        self.temporary.as_file().sync_all().map_err(error)?;
        match self.temporary.persist_noclobber(&path) {
            Ok(_) => {}
            Err(persist) if persist.error.kind() == std::io::ErrorKind::AlreadyExists => {
                return Err(SettingsFileError::Exists { path: path.clone() });
            }
            Err(persist) => return Err(error(persist.error)),
        }
        sync_directory(&directory_of(&path)).map_err(error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "# mine\nserver = \"http://127.0.0.1:9\"\nname = \"pc\"\nkey = \"dak_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\"\n";

    #[test]
    fn invalid_change_leaves_the_file_untouched() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("agent.toml");
        std::fs::write(&path, TEXT).unwrap();
        let change = SettingsChange {
            require_email_authorization: Some(true),
            ..SettingsChange::default()
        };
        let err = apply(&path, &change).unwrap_err().to_string();
        assert!(err.contains("desktop_sharing.recipients"), "{err}");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), TEXT);
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            1,
            "no temporary file left"
        );
    }

    #[cfg(unix)]
    #[test]
    fn a_new_file_is_private_and_never_replaces_one() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/agent.toml");
        let unwritten = NewFile::reserve(&path).unwrap();
        drop(unwritten);
        assert_eq!(
            std::fs::read_dir(dir.path().join("sub")).unwrap().count(),
            0
        );
        NewFile::reserve(&path)
            .unwrap()
            .write(TEXT.as_bytes())
            .unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), TEXT);
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let error = NewFile::reserve(&path).unwrap_err();
        assert!(matches!(error, SettingsFileError::Exists { .. }), "{error}");
        // Taken between the reservation and the write: left as it is.
        let other = dir.path().join("other.toml");
        let late = NewFile::reserve(&other).unwrap();
        std::fs::write(&other, "mine").unwrap();
        let error = late.write(TEXT.as_bytes()).unwrap_err();
        assert!(error.to_string().contains("already exists"), "{error}");
        assert_eq!(std::fs::read_to_string(&other).unwrap(), "mine");
    }

    #[cfg(unix)]
    #[test]
    fn change_keeps_permissions_and_comments() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("agent.toml");
        std::fs::write(&path, TEXT).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
        let change = SettingsChange {
            email_authorization_timeout: Some(60),
            ..SettingsChange::default()
        };
        let settings = apply(&path, &change).unwrap();
        assert_eq!(settings.desktop_sharing.email_authorization_timeout, 60);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.starts_with("# mine\n"));
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o640);
    }
}
