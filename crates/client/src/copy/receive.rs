//! Receiving a copy from the computer: each directory is made, each file
//! written under a temporary name beside its final one and renamed into
//! place once its bytes are all there and their SHA-256 matches. The
//! computer's names are checked: each must be a plain relative path, so
//! that no name lands outside the destination, start with the name of a
//! source asked for, so that a computer asked for `report.pdf` cannot
//! write `.bashrc` beside it, and have no folders in it without `-r`.

use super::part::PartFile;
use super::plan::LocalSide;
use doorman_wire::copying::{hash_all, hex};
use doorman_wire::message::{CopyJob, FileMessage, WirePath};
use std::ffi::{OsStr, OsString};
use std::io::Write;
use std::path::{Component, Path, PathBuf};

/// The mode bits a copy keeps (`-p`): the permissions and the sticky bit,
/// not set-user-ID or set-group-ID, whatever the computer says.
const KEPT_BITS: u32 = 0o1777;

/// Where the files land, and the file being written.
pub(super) struct Receiver {
    dest: PathBuf,
    into_dir: bool,
    keep: bool,
    resume: bool,
    recursive: bool,
    /// Into a directory: the names the computer may send files under.
    expected: Expected,
    current: Option<Incoming>,
}

/// The first component each name of a copy into a directory may have:
/// the name of a source asked for (`~/Shared/reports` comes back as
/// `reports/…`, as the computer's `Place::base_name` makes it).
struct Expected {
    names: Vec<OsString>,
    /// Sources whose name only the computer knows (`~`, its home's): each
    /// may bring one name, the first the computer sends that is not known.
    unknown: usize,
}

impl Expected {
    fn of(sources: &[WirePath]) -> Self {
        let mut expected = Expected {
            names: Vec::new(),
            unknown: 0,
        };
        for source in sources {
            match Path::new(source.as_os()).components().next_back() {
                Some(Component::Normal(name)) if name != OsStr::new("~") => {
                    expected.names.push(name.to_os_string());
                }
                Some(Component::RootDir) => expected.names.push(OsString::from("root")),
                _ => expected.unknown += 1,
            }
        }
        expected
    }

    /// Whether a name may start with `first`.
    fn admit(&mut self, first: &OsStr) -> bool {
        if self.names.iter().any(|name| name.as_os_str() == first) {
            return true;
        }
        if self.unknown == 0 {
            return false;
        }
        self.unknown -= 1;
        self.names.push(first.to_os_string());
        true
    }
}

struct Incoming {
    name: WirePath,
    path: PathBuf,
    file: PartFile,
    size: u64,
    received: u64,
    hash: ring::digest::Context,
    mode: u32,
    mtime: i64,
    /// With `--resume`: the length of what was here, until the computer
    /// says where its data starts.
    had: Option<u64>,
}

/// What became of a message.
pub(super) enum Received {
    Nothing,
    /// A file is expected: its name as shown, and size; with `--resume`,
    /// the answer to send the computer.
    Expecting(String, u64, Option<FileMessage>),
    /// The computer resumes the file (shown) at this offset.
    Resumed(String, u64),
    /// A file was stored whole, at this path: its size and SHA-256.
    Stored(PathBuf, u64, String),
    /// This could not be stored here, for this reason.
    Failed(WirePath, String),
    /// This file cannot be stored here, for this reason; with `--resume`,
    /// the answer the computer waits for (nothing is here: it sends the
    /// file from its start, and its bytes are dropped).
    Refused(WirePath, String, Option<FileMessage>),
}

impl Receiver {
    pub(super) fn new(local: &LocalSide, job: &CopyJob) -> Option<Self> {
        match local {
            LocalSide::Receive { dest, into_dir } => Some(Self {
                dest: dest.clone(),
                into_dir: *into_dir,
                keep: job.keep,
                resume: job.resume,
                recursive: job.recursive,
                expected: Expected::of(&job.paths),
                current: None,
            }),
            LocalSide::Send(_) => None,
        }
    }

    /// Where `name` lands: inside the destination when it is a directory,
    /// else the one source is the destination. Refused: a name that is
    /// not a plain relative path, one inside a folder in a copy without
    /// `-r`, and, into a directory, one under no source's name.
    fn path_of(&mut self, name: &WirePath) -> Result<PathBuf, String> {
        let path = Path::new(name.as_os());
        let shown = name.shown();
        let plain = !path.as_os_str().is_empty()
            && path.components().all(|c| matches!(c, Component::Normal(_)));
        if !plain {
            return Err(format!(
                "the computer sent a name that is not a relative path: {shown}"
            ));
        }
        let mut components = path.components();
        let first = components
            .next()
            .map_or(OsStr::new(""), Component::as_os_str);
        if !self.recursive && components.next().is_some() {
            return Err(format!(
                "the computer sent a name inside a folder, in a copy without -r: {shown}"
            ));
        }
        if self.into_dir && !self.expected.admit(first) {
            return Err(format!(
                "the computer sent a name that was not asked for: {shown}"
            ));
        }
        let mut components = path.components();
        if !self.into_dir {
            // The one source's own name is replaced by the destination's.
            components.next();
        }
        Ok(components.fold(self.dest.clone(), |path, c| path.join(c)))
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
                Ok((incoming, have)) => {
                    let shown = incoming.path.display().to_string();
                    self.current = Some(incoming);
                    Received::Expecting(shown, size, have)
                }
                Err(why) => {
                    self.current = None;
                    let nothing = FileMessage::Have {
                        offset: 0,
                        sha256: String::new(),
                    };
                    Received::Refused(name, why, self.resume.then_some(nothing))
                }
            },
            FileMessage::FileEnd { sha256 } => match self.current.take() {
                Some(incoming) => self.finish(incoming, &sha256),
                None => Received::Nothing,
            },
            FileMessage::Resume { offset } => match self.current.as_mut() {
                Some(incoming) => match resume(incoming, offset) {
                    Ok(0) => Received::Nothing,
                    Ok(offset) => Received::Resumed(incoming.path.display().to_string(), offset),
                    Err(error) => {
                        let incoming = self.current.take().map(|i| (i.name, i.path));
                        let (name, path) = incoming.unwrap_or_default();
                        Received::Failed(name, format!("{}: {error}", path.display()))
                    }
                },
                None => Received::Nothing,
            },
            // The computer counts (and says) its own failure; what arrived
            // is no start of anything.
            FileMessage::FileAbandoned { .. } => {
                if let Some(incoming) = self.current.take() {
                    incoming.file.discard();
                }
                Received::Nothing
            }
            // Answers, and a browsing session's words, have no place here.
            FileMessage::Copied { .. }
            | FileMessage::Failed { .. }
            | FileMessage::CopyEnd
            | FileMessage::Have { .. }
            | FileMessage::List { .. }
            | FileMessage::Listing { .. }
            | FileMessage::Get { .. }
            | FileMessage::Put { .. } => Received::Nothing,
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
            incoming.file.file().write_all(data)
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

    fn make_dir(&mut self, name: WirePath, mode: u32, mtime: i64) -> Received {
        if !self.recursive {
            let why = format!(
                "the computer sent a folder, in a copy without -r: {}",
                name.shown()
            );
            return Received::Failed(name, why);
        }
        let path = match self.path_of(&name) {
            Ok(path) => path,
            Err(why) => return Received::Failed(name, why),
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
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode & KEPT_BITS))?;
                set_mtime(&std::fs::File::open(&path)?, mtime)?;
            }
            Ok(())
        });
        match kept {
            Ok(()) => Received::Nothing,
            Err(error) => Received::Failed(name, format!("{}: {error}", path.display())),
        }
    }

    fn start(
        &mut self,
        name: &WirePath,
        size: u64,
        mode: u32,
        mtime: i64,
    ) -> Result<(Incoming, Option<FileMessage>), String> {
        let path = self.path_of(name)?;
        if path.is_dir() {
            return Err(format!("{} is a directory", path.display()));
        }
        let (mut file, had) = PartFile::open(&path, self.resume)
            .map_err(|error| format!("{}: {error}", path.display()))?;
        let mut hash = ring::digest::Context::new(&ring::digest::SHA256);
        if self.resume {
            hash_all(file.file(), &mut hash).map_err(|e| format!("{}: {e}", path.display()))?;
        }
        let have = self.resume.then(|| FileMessage::Have {
            offset: had,
            sha256: hex(hash.clone().finish().as_ref()),
        });
        let incoming = Incoming {
            name: name.clone(),
            path,
            file,
            size,
            received: 0,
            hash,
            mode,
            mtime,
            had: self.resume.then_some(had),
        };
        Ok((incoming, have))
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
            ..
        } = incoming;
        let mut file = file;
        let shown = path.display();
        if received != size {
            file.discard();
            return Received::Failed(name, format!("{shown}: {received} of {size} bytes arrived"));
        }
        let ours = hex(hash.finish().as_ref());
        if !ours.eq_ignore_ascii_case(sha256) {
            file.discard();
            let why = format!("{shown}: the bytes that arrived do not match their SHA-256");
            return Received::Failed(name, why);
        }
        let mode = if self.keep {
            mode & KEPT_BITS
        } else {
            0o666 & !super::umask()
        };
        let stored = (|| {
            use std::os::unix::fs::PermissionsExt;
            file.file()
                .set_permissions(std::fs::Permissions::from_mode(mode))?;
            if self.keep {
                set_mtime(file.file(), mtime)?;
            }
            // No fsync, as the computer's side (the files crate's `place`) explains.
            file.persist(&path)?;
            Ok::<(), std::io::Error>(())
        })();
        match stored {
            Ok(()) => Received::Stored(path, size, ours),
            Err(error) => Received::Failed(name, format!("{shown}: {error}")),
        }
    }
}

/// The computer's data starts at `offset`: after what is here when that
/// is what was here, else afresh. Where it starts.
fn resume(incoming: &mut Incoming, offset: u64) -> std::io::Result<u64> {
    let had = incoming.had.take().unwrap_or(0);
    if offset > 0 && offset == had {
        incoming.received = offset;
        return Ok(offset);
    }
    let file = incoming.file.file();
    file.set_len(0)?;
    std::io::Seek::seek(file, std::io::SeekFrom::Start(0))?;
    incoming.hash = ring::digest::Context::new(&ring::digest::SHA256);
    incoming.received = 0;
    Ok(0)
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

#[cfg(test)]
mod tests {
    use super::*;
    use doorman_wire::message::CopyDirection;

    fn receiving(dest: &Path, sources: &[&str], recursive: bool) -> Receiver {
        let job = CopyJob {
            direction: CopyDirection::FromComputer,
            paths: sources
                .iter()
                .map(|s| WirePath(s.as_bytes().to_vec()))
                .collect(),
            files: 0,
            bytes: 0,
            dirs: 0,
            sources: 1,
            recursive,
            keep: false,
            resume: false,
        };
        let local = LocalSide::Receive {
            dest: dest.to_path_buf(),
            into_dir: true,
        };
        Receiver::new(&local, &job).unwrap()
    }

    fn file(name: &str) -> FileMessage {
        FileMessage::File {
            name: WirePath(name.as_bytes().to_vec()),
            size: 0,
            mode: 0o644,
            mtime: 0,
        }
    }

    fn folder(name: &str) -> FileMessage {
        FileMessage::Dir {
            name: WirePath(name.as_bytes().to_vec()),
            mode: 0o755,
            mtime: 0,
        }
    }

    fn names(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    /// As scp's CVE-2019-6111: a computer asked for `report.pdf` sends
    /// `.bashrc` (or `.ssh/authorized_keys`) to land beside it instead.
    #[test]
    fn a_computer_writes_only_under_the_names_it_was_asked_for() {
        let dir = tempfile::tempdir().unwrap();
        let mut receiver = receiving(dir.path(), &["~/Shared/report.pdf"], false);
        for bad in [
            file(".bashrc"),
            folder(".ssh"),
            file("report.pdf/x"),
            file("../x"),
            file(""),
        ] {
            let received = receiver.message(bad);
            assert!(
                matches!(received, Received::Failed(..) | Received::Refused(..)),
                "taken"
            );
        }
        assert!(matches!(
            receiver.message(file("report.pdf")),
            Received::Expecting(..)
        ));
        let empty = hex(ring::digest::digest(&ring::digest::SHA256, b"").as_ref());
        assert!(matches!(
            receiver.message(FileMessage::FileEnd { sha256: empty }),
            Received::Stored(..)
        ));
        assert_eq!(names(dir.path()), ["report.pdf"]);

        // With -r, a tree under a source's name; the home's name only the
        // computer knows, so it may bring one name: the first it sends.
        let dir = tempfile::tempdir().unwrap();
        let mut receiver = receiving(dir.path(), &["~/Shared/reports/", "~"], true);
        for good in [folder("reports"), folder("reports/sub"), folder("owner")] {
            assert!(matches!(receiver.message(good), Received::Nothing));
        }
        for bad in [folder(".config"), file(".profile")] {
            let received = receiver.message(bad);
            assert!(
                matches!(received, Received::Failed(..) | Received::Refused(..)),
                "taken"
            );
        }
        assert_eq!(names(dir.path()), ["owner", "reports"]);
    }
}
