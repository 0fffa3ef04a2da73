//! Receiving a copy from the computer: each directory is made, each file
//! written under a temporary name beside its final one and renamed into
//! place once its bytes are all there and their SHA-256 matches. The
//! computer's names are checked: each must be a plain relative path, so
//! that no name lands outside the destination.

use super::hex;
use super::plan::LocalSide;
use doorman_proto::message::{FileMessage, WirePath};
use std::io::Write;
use std::path::{Component, Path, PathBuf};

/// Where the files land, and the file being written.
pub(super) struct Receiver {
    dest: PathBuf,
    into_dir: bool,
    keep: bool,
    current: Option<Incoming>,
}

struct Incoming {
    name: WirePath,
    path: PathBuf,
    file: tempfile::NamedTempFile,
    size: u64,
    received: u64,
    hash: ring::digest::Context,
    mode: u32,
    mtime: i64,
}

/// What became of a message.
pub(super) enum Received {
    Nothing,
    /// A file is expected: its name as shown, and size.
    Expecting(String, u64),
    /// A file was stored whole, at this path: its size and SHA-256.
    Stored(PathBuf, u64, String),
    /// This could not be stored here, for this reason.
    Failed(WirePath, String),
}

impl Receiver {
    pub(super) fn new(local: &LocalSide, keep: bool) -> Option<Self> {
        match local {
            LocalSide::Receive { dest, into_dir } => Some(Self {
                dest: dest.clone(),
                into_dir: *into_dir,
                keep,
                current: None,
            }),
            LocalSide::Send(_) => None,
        }
    }

    /// Where `name` lands: inside the destination when it is a directory,
    /// else the one source is the destination. `None` for a name that is
    /// not a plain relative path.
    fn path_of(&self, name: &WirePath) -> Option<PathBuf> {
        let path = Path::new(name.as_os());
        if path.as_os_str().is_empty()
            || !path.components().all(|c| matches!(c, Component::Normal(_)))
        {
            return None;
        }
        let mut components = path.components();
        if !self.into_dir {
            components.next();
        }
        Some(components.fold(self.dest.clone(), |path, c| path.join(c)))
    }

    /// Acts on one of the computer's messages.
    pub(super) fn message(&mut self, message: FileMessage) -> Received {
        match message {
            FileMessage::Dir { name, mode, mtime } => {
                self.current = None;
                self.make_dir(name, mode, mtime)
            }
            FileMessage::File {
                name,
                size,
                mode,
                mtime,
            } => match self.start(&name, size, mode, mtime) {
                Ok(incoming) => {
                    let shown = incoming.path.display().to_string();
                    self.current = Some(incoming);
                    Received::Expecting(shown, size)
                }
                Err(why) => {
                    self.current = None;
                    Received::Failed(name, why)
                }
            },
            FileMessage::FileEnd { sha256 } => match self.current.take() {
                Some(incoming) => self.finish(incoming, &sha256),
                None => Received::Nothing,
            },
            // The computer counts (and says) its own failure.
            FileMessage::FileAbandoned { .. } => {
                self.current = None;
                Received::Nothing
            }
            FileMessage::Copied { .. } | FileMessage::Failed { .. } | FileMessage::CopyEnd => {
                Received::Nothing
            }
        }
    }

    /// Writes `data` to the current file; a failure gives the file up.
    pub(super) fn data(&mut self, data: &[u8]) -> Option<Received> {
        let incoming = self.current.as_mut()?;
        let received = incoming.received.saturating_add(data.len() as u64);
        let written = if received > incoming.size {
            Err(std::io::Error::other(format!(
                "more than the {} bytes announced arrived",
                incoming.size
            )))
        } else {
            incoming.file.write_all(data)
        };
        match written {
            Ok(()) => {
                incoming.received = received;
                incoming.hash.update(data);
                None
            }
            Err(error) => {
                let incoming = self.current.take()?;
                let why = format!("{}: {error}", incoming.path.display());
                Some(Received::Failed(incoming.name, why))
            }
        }
    }

    fn make_dir(&self, name: WirePath, mode: u32, mtime: i64) -> Received {
        let Some(path) = self.path_of(&name) else {
            let why = format!(
                "the computer sent a name that is not a relative path: {}",
                name.shown()
            );
            return Received::Failed(name, why);
        };
        let made = match std::fs::create_dir(&path) {
            Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists && path.is_dir() => {
                Ok(())
            }
            made => made,
        };
        let kept = made.and_then(|()| {
            if self.keep {
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode & 0o7777))?;
                set_mtime(&std::fs::File::open(&path)?, mtime)?;
            }
            Ok(())
        });
        match kept {
            Ok(()) => Received::Nothing,
            Err(error) => Received::Failed(name, format!("{}: {error}", path.display())),
        }
    }

    fn start(&self, name: &WirePath, size: u64, mode: u32, mtime: i64) -> Result<Incoming, String> {
        let path = self.path_of(name).ok_or_else(|| {
            format!(
                "the computer sent a name that is not a relative path: {}",
                name.shown()
            )
        })?;
        if path.is_dir() {
            return Err(format!("{} is a directory", path.display()));
        }
        let dir = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let mut prefix = std::ffi::OsString::from(".");
        prefix.push(path.file_name().unwrap_or_default());
        prefix.push(".doorman-");
        let file = tempfile::Builder::new()
            .prefix(&prefix)
            .suffix(".part")
            .tempfile_in(dir)
            .map_err(|error| format!("{}: {error}", path.display()))?;
        Ok(Incoming {
            name: name.clone(),
            path,
            file,
            size,
            received: 0,
            hash: ring::digest::Context::new(&ring::digest::SHA256),
            mode,
            mtime,
        })
    }

    fn finish(&self, incoming: Incoming, sha256: &str) -> Received {
        let Incoming {
            name,
            path,
            file,
            size,
            received,
            hash,
            mode,
            mtime,
        } = incoming;
        let shown = path.display();
        if received != size {
            return Received::Failed(name, format!("{shown}: {received} of {size} bytes arrived"));
        }
        let ours = hex(hash.finish().as_ref());
        if !ours.eq_ignore_ascii_case(sha256) {
            let why = format!("{shown}: the bytes that arrived do not match their SHA-256");
            return Received::Failed(name, why);
        }
        let mode = if self.keep {
            mode & 0o7777
        } else {
            0o666 & !super::umask()
        };
        let stored = (|| {
            use std::os::unix::fs::PermissionsExt;
            file.as_file()
                .set_permissions(std::fs::Permissions::from_mode(mode))?;
            if self.keep {
                set_mtime(file.as_file(), mtime)?;
            }
            // No fsync, as the computer's side (files::place) explains.
            file.persist(&path).map_err(|e| e.error)?;
            Ok::<(), std::io::Error>(())
        })();
        match stored {
            Ok(()) => Received::Stored(path, size, ours),
            Err(error) => Received::Failed(name, format!("{shown}: {error}")),
        }
    }
}

/// Sets a file's access and modification times to `secs`.
fn set_mtime(file: &std::fs::File, secs: i64) -> std::io::Result<()> {
    let time = rustix::fs::Timespec {
        tv_sec: secs,
        tv_nsec: 0,
    };
    let times = rustix::fs::Timestamps {
        last_access: time,
        last_modification: time,
    };
    rustix::fs::futimens(file, &times).map_err(std::io::Error::from)
}
