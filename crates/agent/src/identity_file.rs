//! The computer's end-to-end identity key on disk (`identity_key` in the
//! settings, `identity.key` beside them by default): read at start, or
//! made the first time, mode 0600, never over a file already there.

use crate::settings_file::{NewFile, SettingsFileError};
use doorman_e2e::Identity;
use std::path::{Path, PathBuf};

/// Why the identity key cannot be had. The agent does not start without
/// it: a new key would make every operator's `connect` refuse the computer
/// as changed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IdentityFileError {
    #[error("cannot read the identity key {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "the identity key {path} is not one: {error} (restore it from a backup, or remove it to make a new one, which operators must then accept with `doorman known remove`)"
    )]
    Invalid {
        path: PathBuf,
        error: doorman_e2e::IdentityError,
    },
    #[error(
        "the identity key {path} may be read by other users (mode {mode:o}): run `chmod 600 {path}`"
    )]
    Exposed { path: PathBuf, mode: u32 },
    #[error("cannot make the identity key: {0}")]
    Make(String),
}

/// Where the key is for the settings file at `config`.
pub fn path(config: &Path, configured: Option<&Path>) -> PathBuf {
    let dir = config.parent().unwrap_or(Path::new("."));
    match configured {
        Some(path) => dir.join(path),
        None => dir.join("identity.key"),
    }
}

/// The key at `path`, made there if there is none yet.
pub fn load_or_create(path: &Path) -> Result<Identity, IdentityFileError> {
    match read(path) {
        Err(IdentityFileError::Read { source, .. })
            if source.kind() == std::io::ErrorKind::NotFound => {}
        read => return read,
    }
    let identity = Identity::generate().map_err(|e| IdentityFileError::Make(e.to_string()))?;
    match NewFile::reserve(path).and_then(|file| file.write(identity.to_pem().as_bytes())) {
        Ok(()) => {
            tracing::info!(path = %path.display(), fingerprint = %identity.public().fingerprint(), "made this computer's end-to-end identity");
            Ok(identity)
        }
        // Another agent made it first: its key is the one.
        Err(SettingsFileError::Exists { .. }) => read(path),
        Err(error) => Err(IdentityFileError::Make(error.to_string())),
    }
}

/// The fingerprint of the key at `path`, if there is one that reads (the
/// settings window shows it; it makes none).
pub fn fingerprint(path: &Path) -> Option<String> {
    read(path)
        .ok()
        .map(|identity| identity.public().fingerprint().to_string())
}

fn read(path: &Path) -> Result<Identity, IdentityFileError> {
    let text = std::fs::read_to_string(path).map_err(|source| IdentityFileError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(path)
            .map_err(|source| IdentityFileError::Read {
                path: path.to_path_buf(),
                source,
            })?
            .permissions()
            .mode()
            & 0o777;
        if mode & 0o077 != 0 {
            return Err(IdentityFileError::Exposed {
                path: path.to_path_buf(),
                mode,
            });
        }
    }
    Identity::from_pem(&text).map_err(|error| IdentityFileError::Invalid {
        path: path.to_path_buf(),
        error,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_start_makes_a_private_key_and_later_ones_read_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = path(&dir.path().join("agent.toml"), None);
        assert_eq!(path, dir.path().join("identity.key"));
        let made = load_or_create(&path).unwrap();
        let again = load_or_create(&path).unwrap();
        assert_eq!(made.public(), again.public());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
            let exposed = load_or_create(&path).unwrap_err().to_string();
            assert!(exposed.contains("chmod 600"), "{exposed}");
        }
    }

    #[test]
    fn a_damaged_key_is_never_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("identity.key");
        std::fs::write(&path, "not a key").unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        }
        let error = load_or_create(&path).unwrap_err().to_string();
        assert!(error.contains("is not one"), "{error}");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "not a key");
    }
}
