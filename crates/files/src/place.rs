//! Where an operator's file operations land on this computer: the roots
//! the owner offers (`[services] files`), and a path resolved inside one of
//! them. Every open goes through `openat2` with `RESOLVE_BENEATH` from the
//! root's own descriptor, so no `..`, absolute symlink or symlink leading
//! out of the root is followed, at any component, even one swapped in
//! while a copy runs: the kernel resolves each open atomically.
//!
//! Files are written under a temporary name in their directory and renamed
//! over the final name only once complete ([`NewFile::commit`]); a copy
//! that fails or is dropped leaves nothing under the final name.
//!
//! This is Unix's; Windows has `place_windows.rs`, with the same interface.

pub use crate::metadata::{Entry, Kept, Metadata};
use rustix::fs::{AtFlags, Mode, OFlags, ResolveFlags, Timestamps};
use std::ffi::{OsStr, OsString};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Component, Path, PathBuf};

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

/// A name as people read it: every byte that is not printable UTF-8
/// escaped, so that a newline or invalid UTF-8 shows and cannot forge a
/// line.
pub fn shown(name: &OsStr) -> String {
    name.as_bytes().escape_ascii().to_string()
}

/// A name or path as the wire carries it (bytes), as this system's: on
/// Unix, any bytes are.
pub fn os_str(bytes: &[u8]) -> Result<&OsStr, PlaceError> {
    Ok(OsStr::from_bytes(bytes))
}

/// What an open file is now (to tell whether it changed while read).
pub fn file_metadata(file: &std::fs::File) -> std::io::Result<Metadata> {
    Ok(metadata(&rustix::fs::fstat(file)?))
}

/// What a copy tells of `stat`.
fn metadata(stat: &rustix::fs::Stat) -> Metadata {
    Metadata {
        dir: rustix::fs::FileType::from_raw_mode(stat.st_mode) == rustix::fs::FileType::Directory,
        len: u64::try_from(stat.st_size).unwrap_or(0),
        mode: stat.st_mode & 0o7777,
        mtime_secs: stat.st_mtime,
        mtime_nanos: i64::try_from(stat.st_mtime_nsec).unwrap_or(0),
        id: Some((stat.st_dev, stat.st_ino)),
    }
}

/// The folders the owner shares, as configured (`~/` expanded).
#[derive(Clone, Debug)]
pub struct Roots {
    roots: Vec<PathBuf>,
    home: PathBuf,
}

/// A path inside one of the roots: the root, and the path beneath it
/// (empty for the root itself), which has no `..` in it.
#[derive(Clone, Debug)]
pub struct Place {
    root: PathBuf,
    beneath: PathBuf,
}

impl Roots {
    /// The roots as the settings name them; `~/` is `home`.
    pub fn new(configured: &[String], home: &Path) -> Self {
        let roots = configured
            .iter()
            .map(|root| expand(OsStr::new(root), home))
            .collect();
        Self {
            roots,
            home: home.to_path_buf(),
        }
    }

    /// Resolves `remote` (absolute, `~/…`, or relative to the home
    /// directory, as scp reads it) to a place inside a root. Refused: a
    /// `..` anywhere, and a path under no root.
    pub fn resolve(&self, remote: &[u8]) -> Result<Place, PlaceError> {
        if self.roots.is_empty() {
            return Err(PlaceError::NoRoots);
        }
        let path = expand(OsStr::from_bytes(remote), &self.home);
        let outside = || PlaceError::OutsideRoots {
            path: shown(OsStr::from_bytes(remote)),
        };
        if path.components().any(|c| c == Component::ParentDir) {
            return Err(outside());
        }
        // The longest root that holds it (roots may nest).
        let (root, beneath) = self
            .roots
            .iter()
            .filter_map(|root| Some((root, path.strip_prefix(root).ok()?)))
            .max_by_key(|(root, _)| root.as_os_str().len())
            .ok_or_else(outside)?;
        let beneath: PathBuf = beneath
            .components()
            .filter(|c| matches!(c, Component::Normal(_)))
            .collect();
        Ok(Place {
            root: root.clone(),
            beneath,
        })
    }

    /// The roots among these that `paths` name, each exactly: what a
    /// browsing session (the console's Files view) may reach. A path
    /// inside a root is refused as well as one outside: a root is opened
    /// by its path, which a folder inside one (perhaps a symbolic link,
    /// swapped in at any time) must never be.
    pub fn only<'a>(&self, paths: impl IntoIterator<Item = &'a [u8]>) -> Result<Roots, PlaceError> {
        let mut roots = Vec::new();
        for path in paths {
            let place = self.resolve(path)?;
            if place.name().is_some() {
                return Err(PlaceError::NotShared {
                    path: shown(OsStr::from_bytes(path)),
                });
            }
            roots.push(place.root);
        }
        if roots.is_empty() {
            return Err(PlaceError::NoRoots);
        }
        Ok(Roots {
            roots,
            home: self.home.clone(),
        })
    }
}

/// `~` and `~/…` under `home`; anything else not absolute is relative to
/// `home` as well.
fn expand(path: &OsStr, home: &Path) -> PathBuf {
    let bytes = path.as_bytes();
    if bytes == b"~" {
        return home.to_path_buf();
    }
    if let Some(rest) = bytes.strip_prefix(b"~/") {
        return home.join(OsStr::from_bytes(rest));
    }
    let path = Path::new(path);
    if path.is_absolute() {
        path.to_path_buf()
    } else {
        home.join(path)
    }
}

const BENEATH: ResolveFlags = ResolveFlags::BENEATH.union(ResolveFlags::NO_MAGICLINKS);

/// The mode bits a copy keeps (`-p`): the permissions and the sticky bit,
/// not set-user-ID or set-group-ID: a file from elsewhere does not become
/// a program that runs as this computer's user (the agent may run as root).
const KEPT_BITS: u32 = 0o1777;

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

    /// Gives the directory here `kept`'s mode and modification time.
    pub fn keep(&self, kept: Kept) -> Result<(), PlaceError> {
        let fd = self.open(OFlags::RDONLY | OFlags::DIRECTORY)?;
        rustix::fs::fchmod(&fd, Mode::from_raw_mode(kept.mode & KEPT_BITS))
            .map_err(|e| PlaceError::io(&self.path(), e))?;
        rustix::fs::futimens(&fd, &times(kept.mtime_secs))
            .map_err(|e| PlaceError::io(&self.path(), e))
    }

    /// The place `name` inside this one; `name` must be one plain
    /// component.
    pub fn child(&self, name: &OsStr) -> Result<Place, PlaceError> {
        let single = Path::new(name).components().count() == 1
            && matches!(
                Path::new(name).components().next(),
                Some(Component::Normal(_))
            );
        if !single {
            return Err(PlaceError::OutsideRoots {
                path: shown(self.path().join(name).as_os_str()),
            });
        }
        Ok(Place {
            root: self.root.clone(),
            beneath: self.beneath.join(name),
        })
    }

    /// Opens the place with `flags`, beneath its root.
    fn open(&self, flags: OFlags) -> Result<OwnedFd, PlaceError> {
        let root = rustix::fs::open(
            &self.root,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| PlaceError::io(&self.root, e))?;
        let beneath: &Path = if self.beneath.as_os_str().is_empty() {
            Path::new(".")
        } else {
            &self.beneath
        };
        // openat2 refuses O_PATH with flags O_PATH ignores, such as O_NOCTTY.
        let flags = if flags.contains(OFlags::PATH) {
            flags | OFlags::CLOEXEC
        } else {
            flags | OFlags::CLOEXEC | OFlags::NOCTTY
        };
        rustix::fs::openat2(&root, beneath, flags, Mode::empty(), BENEATH)
            .map_err(|e| PlaceError::io(&self.path(), e))
    }

    /// What is there: `None` when nothing is.
    pub fn stat(&self) -> Result<Option<Metadata>, PlaceError> {
        Ok(self.raw_stat()?.as_ref().map(metadata))
    }

    /// What is there, as the system says it: `None` when nothing is.
    fn raw_stat(&self) -> Result<Option<rustix::fs::Stat>, PlaceError> {
        match self.open(OFlags::PATH) {
            Ok(fd) => rustix::fs::fstat(&fd)
                .map(Some)
                .map_err(|e| PlaceError::io(&self.path(), e)),
            Err(error) if error.io_kind() == Some(std::io::ErrorKind::NotFound) => Ok(None),
            Err(error) => Err(error),
        }
    }

    /// Opens a file to read, with what it was when opened.
    pub fn open_file(&self) -> Result<(std::fs::File, Metadata), PlaceError> {
        // Without waiting: a FIFO in a shared folder would otherwise hold
        // the open (and the thread it runs on) until some writer came. It,
        // or a device, is refused below; a regular file then reads as
        // usual, without the flag.
        let fd = self.open(OFlags::RDONLY | OFlags::NONBLOCK)?;
        let stat = rustix::fs::fstat(&fd).map_err(|e| PlaceError::io(&self.path(), e))?;
        if rustix::fs::FileType::from_raw_mode(stat.st_mode) != rustix::fs::FileType::RegularFile {
            return Err(PlaceError::io(
                &self.path(),
                std::io::Error::other("not a regular file"),
            ));
        }
        rustix::fs::fcntl_setfl(&fd, OFlags::empty())
            .map_err(|e| PlaceError::io(&self.path(), e))?;
        Ok((std::fs::File::from(fd), metadata(&stat)))
    }

    /// The names in this directory, sorted, without `.` and `..`.
    pub fn list(&self) -> Result<Vec<OsString>, PlaceError> {
        let fd = self.open(OFlags::RDONLY | OFlags::DIRECTORY)?;
        let dir = rustix::fs::Dir::new(fd).map_err(|e| PlaceError::io(&self.path(), e))?;
        let mut names = Vec::new();
        for entry in dir {
            let entry = entry.map_err(|e| PlaceError::io(&self.path(), e))?;
            let name = entry.file_name().to_bytes();
            if name != b"." && name != b".." {
                names.push(OsString::from_vec(name.to_vec()));
            }
        }
        names.sort();
        Ok(names)
    }

    /// What this directory holds, directories first, then by name, for
    /// a listing. A symbolic link shows as what it leads to when that is
    /// inside the root (the way [`Place::open`] would follow it), else as
    /// itself; a name gone since it was read is left out.
    pub fn entries(&self) -> Result<Vec<Entry>, PlaceError> {
        use rustix::fs::FileType;
        let names = self.list()?;
        let dir = self.open(OFlags::PATH | OFlags::DIRECTORY)?;
        let mut entries = Vec::with_capacity(names.len());
        for name in names {
            let Ok(stat) = rustix::fs::statat(&dir, name.as_os_str(), AtFlags::SYMLINK_NOFOLLOW)
            else {
                continue;
            };
            let stat = if FileType::from_raw_mode(stat.st_mode) == FileType::Symlink {
                match self.child(&name).and_then(|child| child.raw_stat()) {
                    Ok(Some(target)) => target,
                    _ => stat,
                }
            } else {
                stat
            };
            entries.push(Entry {
                dir: FileType::from_raw_mode(stat.st_mode) == FileType::Directory,
                size: u64::try_from(stat.st_size).unwrap_or(0),
                mtime: stat.st_mtime,
                name,
            });
        }
        entries.sort_by(|a, b| b.dir.cmp(&a.dir).then_with(|| a.name.cmp(&b.name)));
        Ok(entries)
    }

    /// Makes this directory (mode 0755 less the umask); one that is there
    /// already is fine.
    pub fn make_dir(&self) -> Result<(), PlaceError> {
        let (parent, name) = self.parent_and_name()?;
        match rustix::fs::mkdirat(&parent, name, Mode::from_raw_mode(0o755)) {
            Ok(()) => Ok(()),
            Err(rustix::io::Errno::EXIST) if self.is_dir()? => Ok(()),
            Err(e) => Err(PlaceError::io(&self.path(), e)),
        }
    }

    /// Whether a directory is there.
    pub fn is_dir(&self) -> Result<bool, PlaceError> {
        Ok(self.stat()?.is_some_and(|stat| stat.dir))
    }

    /// The parent directory, opened beneath the root, and this place's name.
    fn parent_and_name(&self) -> Result<(OwnedFd, &OsStr), PlaceError> {
        let name = self.name().ok_or_else(|| {
            PlaceError::io(
                &self.path(),
                std::io::Error::other("a shared folder itself cannot be replaced"),
            )
        })?;
        let parent = Place {
            root: self.root.clone(),
            beneath: self
                .beneath
                .parent()
                .map(Path::to_path_buf)
                .unwrap_or_default(),
        };
        let fd = parent.open(OFlags::PATH | OFlags::DIRECTORY)?;
        Ok((fd, name))
    }

    /// Starts writing a file to be this place: under a temporary name in
    /// the same directory until [`NewFile::commit`].
    pub fn create_file(&self) -> Result<NewFile, PlaceError> {
        let (dir, name) = self.parent_and_name()?;
        let temp = crate::temporary::name(name);
        let fd = rustix::fs::openat(
            &dir,
            &temp,
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o600),
        )
        .map_err(|e| PlaceError::io(&self.path(), e))?;
        Ok(NewFile {
            file: Some(std::fs::File::from(fd)),
            dir,
            temp,
            name: name.to_os_string(),
            path: self.path(),
            kept_if_cut: false,
        })
    }

    /// [`Place::create_file`] for a copy with `--resume`: under
    /// `.NAME.doorman.part`, continuing what a copy cut short left there
    /// (its length is the file's), and left there again if this one is cut
    /// short too.
    pub fn resume_file(&self) -> Result<(NewFile, u64), PlaceError> {
        let (dir, name) = self.parent_and_name()?;
        let mut temp = OsString::from(".");
        temp.push(name);
        temp.push(".doorman.part");
        let fd = rustix::fs::openat(
            &dir,
            &temp,
            OFlags::RDWR | OFlags::CREATE | OFlags::NOFOLLOW | OFlags::NOCTTY | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o600),
        )
        .map_err(|e| PlaceError::io(&self.path(), e))?;
        let stat = rustix::fs::fstat(&fd).map_err(|e| PlaceError::io(&self.path(), e))?;
        if rustix::fs::FileType::from_raw_mode(stat.st_mode) != rustix::fs::FileType::RegularFile {
            let error = std::io::Error::other("its .doorman.part is not a regular file");
            return Err(PlaceError::io(&self.path(), error));
        }
        // A part with another name (a hard link) is some other file: its
        // SHA-256 would tell the operator of that file, and resuming would
        // truncate and write it.
        if stat.st_nlink != 1 {
            let error = std::io::Error::other("its .doorman.part has other names (hard links)");
            return Err(PlaceError::io(&self.path(), error));
        }
        let file = NewFile {
            file: Some(std::fs::File::from(fd)),
            dir,
            temp,
            name: name.to_os_string(),
            path: self.path(),
            kept_if_cut: true,
        };
        Ok((file, u64::try_from(stat.st_size).unwrap_or(0)))
    }
}

/// Access and modification times both `secs`.
fn times(secs: i64) -> Timestamps {
    let time = rustix::fs::Timespec {
        tv_sec: secs,
        tv_nsec: 0,
    };
    Timestamps {
        last_access: time,
        last_modification: time,
    }
}

/// A file being written under a temporary name; dropped uncommitted, it is
/// removed.
#[derive(Debug)]
pub struct NewFile {
    file: Option<std::fs::File>,
    dir: OwnedFd,
    temp: OsString,
    name: OsString,
    path: PathBuf,
    /// Left where it is when dropped (a copy with `--resume` cut short).
    kept_if_cut: bool,
}

impl NewFile {
    /// The file to write to.
    pub fn file(&mut self) -> Option<&mut std::fs::File> {
        self.file.as_mut()
    }

    /// Gives the file `kept`'s mode and time (else 0644 less the umask,
    /// as a new file), and renames it over its name.
    pub fn commit(mut self, kept: Option<Kept>, umask: u32) -> Result<(), PlaceError> {
        let path = self.path.clone();
        let file = self
            .file
            .take()
            .ok_or_else(|| PlaceError::io(&path, std::io::Error::other("the file was lost")))?;
        let mode = kept.map_or(0o644 & !umask, |kept| kept.mode & KEPT_BITS);
        rustix::fs::fchmod(&file, Mode::from_raw_mode(mode))
            .map_err(|e| PlaceError::io(&path, e))?;
        if let Some(kept) = kept {
            rustix::fs::futimens(&file, &times(kept.mtime_secs))
                .map_err(|e| PlaceError::io(&path, e))?;
        }
        // No fsync, as cp, scp, rsync and tar do not: a tree of small files
        // would wait on the disk for each. The rename still shows the file
        // whole or not at all to anyone reading while the computer runs.
        drop(file);
        rustix::fs::renameat(&self.dir, &self.temp, &self.dir, &self.name)
            .map_err(|e| PlaceError::io(&path, e))?;
        // Renamed: nothing left to remove.
        self.temp.clear();
        Ok(())
    }
}

impl NewFile {
    /// Removes the file: what it holds is not to be resumed.
    pub fn discard(mut self) {
        self.kept_if_cut = false;
    }
}

impl Drop for NewFile {
    fn drop(&mut self) {
        if !self.temp.is_empty() && !self.kept_if_cut {
            let _ = rustix::fs::unlinkat(self.dir.as_fd(), &self.temp, AtFlags::empty());
        }
    }
}
