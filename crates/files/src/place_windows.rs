//! Where an operator's file operations land on a Windows computer: the
//! roots the owner offers (`[services] files`), and a path resolved inside
//! one of them. The same interface as Unix's `place`, which the rest of the
//! crate uses without knowing which it has.
//!
//! **Confinement is check-then-open here.** Windows has no `openat2`, and
//! this crate calls no system function outside std (it uses no `unsafe`),
//! so each path is checked before it is opened by name: every component
//! beneath the shared folder must be a name Windows reads as itself
//! ([`crate::windows_names`]: no `..`, drive, stream, device, reserved
//! character), and is looked at with `symlink_metadata` on the way down; a
//! reparse point (a symbolic link, a junction, a mount point) at any
//! component is refused, never followed. A file to read is then opened
//! without following a reparse point (`FILE_FLAG_OPEN_REPARSE_POINT`) and
//! checked again on its handle; a new file is created under a fresh name
//! (`CREATE_NEW`, which follows nothing).
//!
//! What this leaves open, unlike Linux: someone who can write inside the
//! shared folder could swap a folder on a path for a junction leading out
//! between the check and the open, and the open would follow it. That is
//! accepted for now: it takes a local user with write access to the folder
//! the owner shares, winning a race against a copy the recipients approved
//! and whose every file the audit trail names. A walk without the race
//! (each folder opened from the one before, by handle) needs
//! `NtCreateFile`, and so `unsafe`; it is to come.
//!
//! Every reparse point is refused, not only links: Windows's std gives its
//! attributes, not its kind, so OneDrive's files (reparse points too, when
//! Files On-Demand keeps them) cannot be copied from a shared folder kept by
//! OneDrive.
//!
//! Paths: the operator's are bytes on the wire, and must be UTF-8 here;
//! `/` and `\` both separate names (write `/`: the operator's side names
//! what comes back by its last `/`). `~` is `USERPROFILE`. The shared
//! folder's part of a path compares without case, as Windows does, and
//! resolves to the folder as the owner wrote it.
//!
//! Files are written under a temporary name in their directory and renamed
//! over the final name once complete (`std::fs::rename`, which replaces);
//! a copy that fails or is dropped leaves nothing under the final name.
//! Windows has no modes: `-p` keeps modification times only, and a file
//! sent from here says 0644 (0444 when read-only), a folder 0755. With
//! `--resume`, each file starts afresh and a cut copy leaves no part: std
//! cannot tell here whether a part file has other names (hard links), and
//! resuming one linked to a file outside would read and write that file.

pub use crate::metadata::{Entry, Kept, Metadata};
use crate::windows_names::{NameProblem, check_component};
use std::ffi::{OsStr, OsString};
use std::fs::{File, OpenOptions};
use std::os::windows::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Component, Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

#[path = "place_windows/roots.rs"]
mod roots;
pub use roots::Roots;

/// `FILE_ATTRIBUTE_REPARSE_POINT`: a symbolic link, a junction, a mount
/// point, or another file system filter's (OneDrive's) file.
const REPARSE_POINT: u32 = 0x400;
/// `FILE_FLAG_OPEN_REPARSE_POINT`: a reparse point is opened itself, never
/// what it leads to.
const OPEN_REPARSE_POINT: u32 = 0x0020_0000;
/// `FILE_FLAG_BACKUP_SEMANTICS`: what opening a directory takes.
const BACKUP_SEMANTICS: u32 = 0x0200_0000;
/// `FILE_WRITE_ATTRIBUTES`: enough to set a directory's times.
const WRITE_ATTRIBUTES: u32 = 0x100;

/// Why a path cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum PlaceError {
    #[error("{path} is outside the folders this computer shares")]
    OutsideRoots { path: String },
    #[error("this computer shares no folders")]
    NoRoots,
    #[error("{path} is not one of the folders this computer shares")]
    NotShared { path: String },
    #[error("\"{name}\" is not a plain relative path")]
    NotRelative { name: String },
    #[error("\"{name}\" is not UTF-8, which names on this computer are")]
    NotUtf8 { name: String },
    #[error("\"{name}\" cannot be a name on this computer: {problem}")]
    BadName { name: String, problem: NameProblem },
    #[error("{path} is a link or junction (a reparse point), which copies do not follow")]
    Link { path: String },
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

impl PlaceError {
    fn io(path: &Path, error: impl Into<std::io::Error>) -> Self {
        PlaceError::Io {
            path: shown(path.as_os_str()),
            source: error.into(),
        }
    }

    /// The system's error behind this one, if any.
    pub fn io_kind(&self) -> Option<std::io::ErrorKind> {
        match self {
            PlaceError::Io { source, .. } => Some(source.kind()),
            _ => None,
        }
    }
}

/// A name as people read it: every byte that is not printable ASCII
/// escaped, so that a newline cannot forge a line.
pub fn shown(name: &OsStr) -> String {
    name.as_encoded_bytes().escape_ascii().to_string()
}

/// A name or path as the wire carries it (bytes), as this system's: UTF-8,
/// or refused.
pub fn os_str(bytes: &[u8]) -> Result<&OsStr, PlaceError> {
    utf8(bytes).map(OsStr::new)
}

/// `bytes` as UTF-8, which names here are; refused otherwise.
fn utf8(bytes: &[u8]) -> Result<&str, PlaceError> {
    std::str::from_utf8(bytes).map_err(|_| PlaceError::NotUtf8 {
        name: bytes.escape_ascii().to_string(),
    })
}

/// What an open file is now (to tell whether it changed while read).
pub fn file_metadata(file: &File) -> std::io::Result<Metadata> {
    Ok(metadata(&file.metadata()?))
}

/// What a copy tells of `found`.
fn metadata(found: &std::fs::Metadata) -> Metadata {
    let (mtime_secs, mtime_nanos) = found.modified().map_or((0, 0), since_epoch);
    let mode = if found.is_dir() {
        0o755
    } else if found.permissions().readonly() {
        0o444
    } else {
        0o644
    };
    Metadata {
        dir: found.is_dir(),
        len: found.len(),
        mode,
        mtime_secs,
        mtime_nanos,
        id: None,
    }
}

/// `time` as whole seconds since the epoch (rounded down, also before it)
/// and nanoseconds past that second.
fn since_epoch(time: SystemTime) -> (i64, i64) {
    match time.duration_since(UNIX_EPOCH) {
        Ok(after) => (
            i64::try_from(after.as_secs()).unwrap_or(i64::MAX),
            i64::from(after.subsec_nanos()),
        ),
        Err(before) => {
            let before = before.duration();
            let secs = i64::try_from(before.as_secs()).unwrap_or(i64::MAX);
            match before.subsec_nanos() {
                0 => (-secs, 0),
                nanos => (-secs - 1, 1_000_000_000 - i64::from(nanos)),
            }
        }
    }
}

/// Access and modification times both `secs` since the epoch.
fn times(secs: i64) -> std::fs::FileTimes {
    let offset = Duration::from_secs(secs.unsigned_abs());
    let time = if secs >= 0 {
        UNIX_EPOCH.checked_add(offset)
    } else {
        UNIX_EPOCH.checked_sub(offset)
    };
    let time = time.unwrap_or(UNIX_EPOCH);
    std::fs::FileTimes::new()
        .set_accessed(time)
        .set_modified(time)
}

/// Refuses what `found` at `path` says is a reparse point.
fn refuse_link(path: &Path, found: &std::fs::Metadata) -> Result<(), PlaceError> {
    if found.file_attributes() & REPARSE_POINT != 0 {
        return Err(PlaceError::Link {
            path: shown(path.as_os_str()),
        });
    }
    Ok(())
}

/// A path inside one of the roots: the root, and the path beneath it
/// (empty for the root itself), whose every component is a plain name.
#[derive(Clone, Debug)]
pub struct Place {
    root: PathBuf,
    beneath: PathBuf,
}

/// Refuses `name` unless Windows reads it as a plain name.
fn check_name(name: &OsStr) -> Result<(), PlaceError> {
    let text = name
        .to_str()
        .ok_or_else(|| PlaceError::NotUtf8 { name: shown(name) })?;
    check_component(text).map_err(|problem| PlaceError::BadName {
        name: shown(name),
        problem,
    })
}

impl Place {
    /// The whole path, for messages and the audit trail.
    pub fn path(&self) -> PathBuf {
        self.root.join(&self.beneath)
    }

    /// The path as people read it.
    pub fn shown(&self) -> String {
        shown(self.path().as_os_str())
    }

    /// This place's last component; `None` for a root.
    pub fn name(&self) -> Option<&OsStr> {
        self.beneath.file_name()
    }

    /// The name a copy of this place takes: its last component, a root's
    /// included.
    pub fn base_name(&self) -> OsString {
        self.path()
            .file_name()
            .map_or_else(|| OsString::from("root"), OsStr::to_os_string)
    }

    /// The place `name` inside this one; `name` must be one plain
    /// component that Windows reads as itself.
    pub fn child(&self, name: &OsStr) -> Result<Place, PlaceError> {
        let mut components = Path::new(name).components();
        let single = matches!(
            (components.next(), components.next()),
            (Some(Component::Normal(_)), None)
        );
        if !single {
            return Err(PlaceError::OutsideRoots {
                path: shown(self.path().join(name).as_os_str()),
            });
        }
        check_name(name)?;
        Ok(Place {
            root: self.root.clone(),
            beneath: self.beneath.join(name),
        })
    }

    /// The directory this place is in (the root's is the root).
    fn parent(&self) -> Place {
        Place {
            root: self.root.clone(),
            beneath: self
                .beneath
                .parent()
                .map(Path::to_path_buf)
                .unwrap_or_default(),
        }
    }

    /// This place's path, looked at component by component beneath the
    /// root (the root itself as the owner named it, a link there followed,
    /// as on Unix): each folder on the way there and no reparse point, and
    /// the last component no reparse point either; with what is there
    /// (`None` when nothing is).
    fn walk(&self) -> Result<(PathBuf, Option<std::fs::Metadata>), PlaceError> {
        let mut path = self.root.clone();
        let parts: Vec<Component<'_>> = self.beneath.components().collect();
        let Some((last, on_the_way)) = parts.split_last() else {
            let found = look(&path, std::fs::metadata(&path))?;
            return Ok((path, found));
        };
        for part in on_the_way {
            path.push(part);
            let found = std::fs::symlink_metadata(&path).map_err(|e| PlaceError::io(&path, e))?;
            refuse_link(&path, &found)?;
        }
        path.push(last);
        let found = look(&path, std::fs::symlink_metadata(&path))?;
        if let Some(found) = &found {
            refuse_link(&path, found)?;
        }
        Ok((path, found))
    }

    /// What is there: `None` when nothing is.
    pub fn stat(&self) -> Result<Option<Metadata>, PlaceError> {
        match self.walk() {
            Ok((_, found)) => Ok(found.as_ref().map(metadata)),
            Err(error) if error.io_kind() == Some(std::io::ErrorKind::NotFound) => Ok(None),
            Err(error) => Err(error),
        }
    }

    /// Whether a directory is there.
    pub fn is_dir(&self) -> Result<bool, PlaceError> {
        Ok(self.stat()?.is_some_and(|found| found.dir))
    }

    /// Opens a file to read, with what it was when opened.
    pub fn open_file(&self) -> Result<(File, Metadata), PlaceError> {
        let (path, found) = self.walk()?;
        let not_regular = || PlaceError::io(&path, std::io::Error::other("not a regular file"));
        if found.as_ref().is_some_and(|found| !found.is_file()) {
            return Err(not_regular());
        }
        // The file itself, never what a reparse point swapped in since
        // would lead to; checked again on its handle.
        let file = OpenOptions::new()
            .read(true)
            .custom_flags(OPEN_REPARSE_POINT)
            .open(&path)
            .map_err(|e| PlaceError::io(&path, e))?;
        let opened = file.metadata().map_err(|e| PlaceError::io(&path, e))?;
        refuse_link(&path, &opened)?;
        if !opened.is_file() {
            return Err(not_regular());
        }
        Ok((file, metadata(&opened)))
    }

    /// The names in this directory, sorted, without `.` and `..`.
    pub fn list(&self) -> Result<Vec<OsString>, PlaceError> {
        let (path, _) = self.walk()?;
        let mut names = Vec::new();
        for entry in std::fs::read_dir(&path).map_err(|e| PlaceError::io(&path, e))? {
            let entry = entry.map_err(|e| PlaceError::io(&path, e))?;
            names.push(entry.file_name());
        }
        names.sort();
        Ok(names)
    }

    /// What this directory holds, directories first, then by name, for a
    /// listing. A reparse point (a link, a junction) shows as itself, no
    /// directory: a copy would refuse it. A name gone since it was read is
    /// left out.
    pub fn entries(&self) -> Result<Vec<Entry>, PlaceError> {
        let names = self.list()?;
        let dir = self.path();
        let mut entries = Vec::with_capacity(names.len());
        for name in names {
            let Ok(found) = std::fs::symlink_metadata(dir.join(&name)) else {
                continue;
            };
            let link = found.file_attributes() & REPARSE_POINT != 0;
            entries.push(Entry {
                dir: found.is_dir() && !link,
                size: found.len(),
                mtime: metadata(&found).mtime_secs,
                name,
            });
        }
        entries.sort_by(|a, b| b.dir.cmp(&a.dir).then_with(|| a.name.cmp(&b.name)));
        Ok(entries)
    }

    /// Makes this directory; one that is there already is fine.
    pub fn make_dir(&self) -> Result<(), PlaceError> {
        self.replaceable_name()?;
        let (path, _) = self.walk()?;
        match std::fs::create_dir(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && self.is_dir()? => Ok(()),
            Err(e) => Err(PlaceError::io(&path, e)),
        }
    }

    /// Gives the directory here `kept`'s modification time.
    pub fn keep(&self, kept: Kept) -> Result<(), PlaceError> {
        let (path, _) = self.walk()?;
        let dir = OpenOptions::new()
            .access_mode(WRITE_ATTRIBUTES)
            .custom_flags(BACKUP_SEMANTICS | OPEN_REPARSE_POINT)
            .open(&path)
            .map_err(|e| PlaceError::io(&path, e))?;
        dir.set_times(times(kept.mtime_secs))
            .map_err(|e| PlaceError::io(&path, e))
    }

    /// This place's name, which a file may be written under: a shared
    /// folder itself cannot be replaced.
    fn replaceable_name(&self) -> Result<&OsStr, PlaceError> {
        self.name().ok_or_else(|| {
            PlaceError::io(
                &self.path(),
                std::io::Error::other("a shared folder itself cannot be replaced"),
            )
        })
    }

    /// Starts writing a file to be this place: under a temporary name in
    /// the same directory until [`NewFile::commit`].
    pub fn create_file(&self) -> Result<NewFile, PlaceError> {
        let name = self.replaceable_name()?;
        let (dir, _) = self.parent().walk()?;
        let temp = dir.join(crate::temporary::name(name));
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .custom_flags(OPEN_REPARSE_POINT)
            .open(&temp)
            .map_err(|e| PlaceError::io(&self.path(), e))?;
        Ok(NewFile {
            file: Some(file),
            temp,
            path: self.path(),
        })
    }

    /// [`Place::create_file`] for a copy with `--resume`: here each file
    /// starts afresh (nothing of it is here, the length is 0), and a copy
    /// cut short leaves no part (see this module's note).
    pub fn resume_file(&self) -> Result<(NewFile, u64), PlaceError> {
        Ok((self.create_file()?, 0))
    }
}

/// What was found at `path`: `None` when nothing is.
fn look(
    path: &Path,
    looked: std::io::Result<std::fs::Metadata>,
) -> Result<Option<std::fs::Metadata>, PlaceError> {
    match looked {
        Ok(found) => Ok(Some(found)),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(error) => Err(PlaceError::io(path, error)),
    }
}

/// A file being written under a temporary name; dropped uncommitted, it is
/// removed.
#[derive(Debug)]
pub struct NewFile {
    file: Option<File>,
    /// The temporary file's whole path; empty once renamed.
    temp: PathBuf,
    path: PathBuf,
}

impl NewFile {
    /// The file to write to.
    pub fn file(&mut self) -> Option<&mut File> {
        self.file.as_mut()
    }

    /// Gives the file `kept`'s modification time (Windows keeps no mode,
    /// and has no umask: a new file takes its folder's access list), and
    /// renames it over its name, replacing a file there.
    pub fn commit(mut self, kept: Option<Kept>, _umask: u32) -> Result<(), PlaceError> {
        let path = self.path.clone();
        let file = self
            .file
            .take()
            .ok_or_else(|| PlaceError::io(&path, std::io::Error::other("the file was lost")))?;
        if let Some(kept) = kept {
            file.set_times(times(kept.mtime_secs))
                .map_err(|e| PlaceError::io(&path, e))?;
        }
        // Closed before the rename, which Windows may refuse for a file
        // open without sharing its deletion.
        drop(file);
        std::fs::rename(&self.temp, &path).map_err(|e| PlaceError::io(&path, e))?;
        // Renamed: nothing left to remove.
        self.temp = PathBuf::new();
        Ok(())
    }

    /// Removes the file: what it holds is not to be resumed.
    pub fn discard(self) {}
}

impl Drop for NewFile {
    fn drop(&mut self) {
        // Closed first: a file still open is only marked for deletion.
        self.file = None;
        if !self.temp.as_os_str().is_empty() {
            let _ = std::fs::remove_file(&self.temp);
        }
    }
}
