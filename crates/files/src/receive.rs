//! A copy to this computer: the operator sends directories and files, and
//! each lands inside the shared folders under a temporary name, renamed
//! into place only once its bytes are all there and their SHA-256 matches.
//! A file that cannot be written (a full disk, a permission) fails alone:
//! the copy goes on with the next, and ends "partly copied". No more
//! files, bytes or directories are taken than the approval counted
//! ([`Allowance`]): what the recipients read in the email is what may
//! arrive.

use crate::ending::Tally;
use crate::error::FilesError;
use crate::place::{Kept, Place, PlaceError, Roots};
use doorman_wire::connection::{FrameReader, FrameWriter, decode_message};
use doorman_wire::copying::{hash_all, hex};
use doorman_wire::frame::Frame;
use doorman_wire::message::files::{human_size, plural};
use doorman_wire::message::{CopyJob, FileMessage, SessionEnd, WirePath};
use std::io::Write;
use std::path::Component;
use tokio::io::{AsyncRead, AsyncWrite};

/// The file being received.
pub(super) enum Current {
    /// None, or one given up: its bytes are read and dropped.
    Skipping,
    Writing(Box<Incoming>),
}

pub(super) struct Incoming {
    name: WirePath,
    place: Place,
    file: crate::place::NewFile,
    size: u64,
    received: u64,
    hash: ring::digest::Context,
    kept: Option<Kept>,
    /// With `--resume`: the length of what was here, until the sender says
    /// where its data starts.
    had: Option<u64>,
}

impl Incoming {
    /// The file's name, as the sender gave it.
    pub(super) fn name(&self) -> &WirePath {
        &self.name
    }
}

/// Where the copy's names land: inside `dest` when it is a directory,
/// else the one source becomes `dest`.
struct Target {
    dest: Place,
    into_dir: bool,
}

impl Target {
    /// Where `name` lands; refused unless it is a plain relative path (not
    /// empty, no `/` first, no `.` or `..`), as the operator's side sends.
    fn place_of(&self, name: &WirePath) -> Result<Place, PlaceError> {
        let path = std::path::Path::new(crate::place::os_str(&name.0)?);
        let plain = !path.as_os_str().is_empty()
            && path.components().all(|c| matches!(c, Component::Normal(_)));
        if !plain {
            return Err(PlaceError::NotRelative { name: name.shown() });
        }
        let mut components = path.components();
        if !self.into_dir {
            // The source's own name is replaced by the destination's.
            components.next();
        }
        let mut place = self.dest.clone();
        for component in components {
            place = place.child(component.as_os_str())?;
        }
        Ok(place)
    }
}

/// What the approval lets the operator send: no more files, bytes or
/// directories than the copy it asked for counted, which the email told
/// the recipients of; an operator that sends more has each one past the
/// allowance refused (it cannot fill the disk, or the audit trail, on an
/// approval of one small file).
struct Allowance {
    files: u64,
    bytes: u64,
    dirs: u64,
    /// What was approved, as the email said it (`3 files (64.0 MiB)`).
    approved: String,
}

impl Allowance {
    fn of(job: &CopyJob) -> Self {
        Allowance {
            files: job.files,
            bytes: job.bytes,
            dirs: if job.recursive { job.dirs } else { 0 },
            approved: format!("{} ({})", plural(job.files, "file"), human_size(job.bytes)),
        }
    }

    /// Takes a file of `size` bytes from the allowance.
    fn file(&mut self, name: &WirePath, size: u64) -> Result<(), FileMessage> {
        if self.files == 0 || size > self.bytes {
            let why = format!(
                "{}: more than the {} approved (it may have grown since the copy was asked for)",
                name.shown(),
                self.approved
            );
            return Err(failed(name, why));
        }
        self.files -= 1;
        self.bytes -= size;
        Ok(())
    }

    /// Takes a directory from the allowance.
    fn dir(&mut self, name: &WirePath) -> Result<(), FileMessage> {
        if self.dirs == 0 {
            let why = format!(
                "{}: a directory the copy did not count (or one without -r)",
                name.shown()
            );
            return Err(failed(name, why));
        }
        self.dirs -= 1;
        Ok(())
    }
}

/// Receives the copy `job` into the shared folders `roots`.
pub(super) async fn run<R, W>(
    reader: &mut FrameReader<R>,
    writer: &mut FrameWriter<W>,
    job: &CopyJob,
    roots: &Roots,
) -> Result<SessionEnd, FilesError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let target = match target(job, roots) {
        Ok(target) => target,
        Err(message) => return crate::ending::cannot_start(writer, message).await,
    };
    let mut receiving = Receiving {
        target,
        job,
        allowance: Allowance::of(job),
        umask: crate::host::umask(),
        current: Current::Skipping,
    };
    let mut tally = Tally::default();
    loop {
        let said: Vec<FileMessage> = match reader.read_frame().await {
            Ok(Some(Frame::Stdin(data))) => {
                write(&mut receiving.current, &data).into_iter().collect()
            }
            Ok(Some(Frame::Message(payload))) => match decode_message::<FileMessage>(&payload) {
                Ok(FileMessage::CopyEnd) => break,
                Ok(message) => receiving.on(message),
                Err(_) => Vec::new(),
            },
            Ok(Some(_)) => Vec::new(),
            // The operator left: an unfinished file is removed with
            // `current` (or kept to resume).
            Ok(None) | Err(_) => return Ok(SessionEnd::OperatorLeft),
        };
        for said in said {
            match &said {
                FileMessage::Copied { size, .. } => {
                    tally.files += 1;
                    tally.bytes += size;
                }
                FileMessage::Have { .. } => {}
                _ => tally.failed += 1,
            }
            writer.write_message(&said).await?;
        }
    }
    crate::ending::finish(writer, tally).await
}

/// A copy being received: where it goes, what may still come, and the
/// file on its way.
struct Receiving<'a> {
    target: Target,
    job: &'a CopyJob,
    allowance: Allowance,
    umask: u32,
    current: Current,
}

impl Receiving<'_> {
    /// Acts on one of the operator's messages; what to answer.
    fn on(&mut self, message: FileMessage) -> Vec<FileMessage> {
        let keep = self.job.keep;
        let keep = move |mode, mtime_secs| keep.then_some(Kept { mode, mtime_secs });
        match message {
            FileMessage::Dir { name, mode, mtime } => {
                self.current = Current::Skipping;
                let made = self
                    .allowance
                    .dir(&name)
                    .and_then(|()| make_dir(&self.target, &name, keep(mode, mtime)));
                made.err().into_iter().collect()
            }
            FileMessage::File {
                name,
                size,
                mode,
                mtime,
            } => {
                let kept = keep(mode, mtime);
                let started = self
                    .allowance
                    .file(&name, size)
                    .and_then(|()| start(&self.target, name, size, kept, self.job.resume));
                match started {
                    Ok((incoming, have)) => {
                        self.current = Current::Writing(Box::new(incoming));
                        have.into_iter().collect()
                    }
                    Err(failed) => {
                        self.current = Current::Skipping;
                        // With `--resume` the sender waits for an answer to
                        // each file: nothing is here, so it sends the file
                        // from its start, and its bytes are dropped.
                        let nothing = FileMessage::Have {
                            offset: 0,
                            sha256: String::new(),
                        };
                        std::iter::once(failed)
                            .chain(self.job.resume.then_some(nothing))
                            .collect()
                    }
                }
            }
            FileMessage::FileEnd { sha256 } => {
                match std::mem::replace(&mut self.current, Current::Skipping) {
                    Current::Writing(incoming) => vec![finish(*incoming, &sha256, self.umask)],
                    Current::Skipping => Vec::new(),
                }
            }
            FileMessage::Resume { offset } => {
                let Current::Writing(incoming) = &mut self.current else {
                    return Vec::new();
                };
                let Err(error) = resume(incoming, offset) else {
                    return Vec::new();
                };
                let message = failed(&incoming.name, error);
                self.current = Current::Skipping;
                vec![message]
            }
            FileMessage::FileAbandoned { .. } => {
                // The operator counts its own failure; what arrived is no
                // start of anything.
                if let Current::Writing(incoming) =
                    std::mem::replace(&mut self.current, Current::Skipping)
                {
                    incoming.file.discard();
                }
                Vec::new()
            }
            // Answers, a browsing session's requests, and the end (which
            // the caller takes), have no answer.
            FileMessage::CopyEnd
            | FileMessage::Copied { .. }
            | FileMessage::Failed { .. }
            | FileMessage::Have { .. }
            | FileMessage::List { .. }
            | FileMessage::Listing { .. }
            | FileMessage::Get { .. }
            | FileMessage::Put { .. } => Vec::new(),
        }
    }
}

/// Where the copy goes; why it cannot go there.
fn target(job: &CopyJob, roots: &Roots) -> Result<Target, String> {
    let [dest] = job.paths.as_slice() else {
        return Err("a copy to the computer names one destination".into());
    };
    let dest = roots.resolve(&dest.0).map_err(|e| e.to_string())?;
    let into_dir = dest.is_dir().map_err(|e| e.to_string())?;
    if !into_dir && (job.sources > 1) {
        return Err(format!("{} is not a directory", dest.shown()));
    }
    Ok(Target { dest, into_dir })
}

pub(super) fn failed(name: &WirePath, error: impl std::fmt::Display) -> FileMessage {
    FileMessage::Failed {
        name: name.clone(),
        message: error.to_string(),
    }
}

fn make_dir(target: &Target, name: &WirePath, kept: Option<Kept>) -> Result<(), FileMessage> {
    let made = target.place_of(name).and_then(|place| {
        place.make_dir()?;
        if let Some(kept) = kept {
            place.keep(kept)?;
        }
        Ok(())
    });
    made.map_err(|error| failed(name, error))
}

/// Starts receiving a file; with `resume`, also what is here of it
/// already, to tell the sender.
fn start(
    target: &Target,
    name: WirePath,
    size: u64,
    kept: Option<Kept>,
    resume: bool,
) -> Result<(Incoming, Option<FileMessage>), FileMessage> {
    let place = target.place_of(&name).map_err(|e| failed(&name, e))?;
    start_at(place, name, size, kept, resume)
}

/// Starts receiving the file `name` into `place`; with `resume`, also
/// what is here of it already.
pub(super) fn start_at(
    place: Place,
    name: WirePath,
    size: u64,
    kept: Option<Kept>,
    resume: bool,
) -> Result<(Incoming, Option<FileMessage>), FileMessage> {
    if place.is_dir().map_err(|e| failed(&name, e))? {
        return Err(failed(&name, format!("{} is a directory", place.shown())));
    }
    let mut hash = ring::digest::Context::new(&ring::digest::SHA256);
    let (mut file, had) = if resume {
        let (file, had) = place.resume_file().map_err(|e| failed(&name, e))?;
        (file, Some(had))
    } else {
        (place.create_file().map_err(|e| failed(&name, e))?, None)
    };
    if had.is_some() {
        let shown = place.shown();
        let read = file
            .file()
            .ok_or_else(|| std::io::Error::other("the file was lost"));
        read.and_then(|file| hash_all(file, &mut hash))
            .map_err(|e| failed(&name, format!("{shown}: {e}")))?;
    }
    let have = had.map(|offset| FileMessage::Have {
        offset,
        sha256: hex(hash.clone().finish().as_ref()),
    });
    let incoming = Incoming {
        name,
        place,
        file,
        size,
        received: 0,
        hash,
        kept,
        had,
    };
    Ok((incoming, have))
}

/// The sender's data starts at `offset`: after what is here when that is
/// what was here, else afresh.
fn resume(incoming: &mut Incoming, offset: u64) -> std::io::Result<()> {
    let had = incoming.had.take().unwrap_or(0);
    if offset > 0 && offset == had {
        incoming.received = offset;
        return Ok(());
    }
    let file = incoming
        .file
        .file()
        .ok_or_else(|| std::io::Error::other("the file was lost"))?;
    file.set_len(0)?;
    std::io::Seek::seek(file, std::io::SeekFrom::Start(0))?;
    incoming.hash = ring::digest::Context::new(&ring::digest::SHA256);
    incoming.received = 0;
    Ok(())
}

/// Writes `data` to the current file; a failure gives the file up (its
/// temporary file goes) and says so.
pub(super) fn write(current: &mut Current, data: &[u8]) -> Option<FileMessage> {
    let Current::Writing(incoming) = current else {
        return None;
    };
    let received = incoming.received.saturating_add(data.len() as u64);
    let result = if received > incoming.size {
        Err(std::io::Error::other(format!(
            "more than the {} bytes announced arrived",
            incoming.size
        )))
    } else {
        incoming
            .file
            .file()
            .ok_or_else(|| std::io::Error::other("the file was lost"))
            .and_then(|file| file.write_all(data))
    };
    match result {
        Ok(()) => {
            incoming.received = received;
            incoming.hash.update(data);
            None
        }
        Err(error) => {
            let message = failed(
                &incoming.name,
                format!("{}: {error}", incoming.place.shown()),
            );
            *current = Current::Skipping;
            Some(message)
        }
    }
}

/// The file's bytes are all sent: stored under its name if they are all
/// there and match `sha256`.
pub(super) fn finish(incoming: Incoming, sha256: &str, umask: u32) -> FileMessage {
    let Incoming {
        name,
        place,
        file,
        size,
        received,
        hash,
        kept,
        ..
    } = incoming;
    if received != size {
        file.discard();
        return failed(
            &name,
            format!("{}: {received} of {size} bytes arrived", place.shown()),
        );
    }
    let ours = hex(hash.finish().as_ref());
    if !ours.eq_ignore_ascii_case(sha256) {
        file.discard();
        return failed(
            &name,
            format!(
                "{}: the bytes that arrived do not match their SHA-256",
                place.shown()
            ),
        );
    }
    match file.commit(kept, umask) {
        Ok(()) => FileMessage::Copied {
            path: WirePath::from_os(place.path().as_os_str()),
            size,
            sha256: ours,
            direction: None,
        },
        Err(error) => failed(&name, error),
    }
}
