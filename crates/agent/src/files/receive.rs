//! A copy to this computer: the operator sends directories and files, and
//! each lands inside the shared folders under a temporary name, renamed
//! into place only once its bytes are all there and their SHA-256 matches.
//! A file that cannot be written (a full disk, a permission) fails alone:
//! the copy goes on with the next, and ends "partly copied".

use super::Tally;
use super::place::{Kept, Place, PlaceError, Roots};
use crate::error::{LinkError, SessionError};
use doorman_proto::connection::{FrameReader, FrameWriter, decode_message};
use doorman_proto::copying::{hash_all, hex};
use doorman_proto::frame::Frame;
use doorman_proto::message::{CopyJob, FileMessage, SessionEnd, WirePath};
use std::io::Write;
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
    file: super::place::NewFile,
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
    fn place_of(&self, name: &WirePath) -> Result<Place, PlaceError> {
        let mut components = std::path::Path::new(name.as_os()).components();
        let mut place = if self.into_dir {
            self.dest.clone()
        } else {
            // The source's own name is replaced by the destination's.
            components.next();
            self.dest.clone()
        };
        for component in components {
            place = place.child(component.as_os_str())?;
        }
        Ok(place)
    }
}

/// Receives the copy `job` into the shared folders `roots`.
pub(super) async fn run<R, W>(
    reader: &mut FrameReader<R>,
    writer: &mut FrameWriter<W>,
    job: &CopyJob,
    roots: &Roots,
) -> Result<SessionEnd, SessionError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let target = match target(job, roots) {
        Ok(target) => target,
        Err(message) => return super::cannot_start(writer, message).await,
    };
    let umask = super::umask();
    let mut tally = Tally::default();
    let mut current = Current::Skipping;
    loop {
        let frame = match reader.read_frame().await {
            Ok(Some(frame)) => frame,
            // The operator left: an unfinished file is removed with `current`.
            Ok(None) | Err(_) => return Ok(SessionEnd::OperatorLeft),
        };
        let message = match frame {
            Frame::Stdin(data) => {
                if let Some(failed) = write(&mut current, &data) {
                    tally.failed += 1;
                    writer
                        .write_message(&failed)
                        .await
                        .map_err(LinkError::from)?;
                }
                continue;
            }
            Frame::Message(payload) => match decode_message::<FileMessage>(&payload) {
                Ok(message) => message,
                Err(_) => continue,
            },
            _ => continue,
        };
        if matches!(message, FileMessage::CopyEnd) {
            break;
        }
        let said = answer(message, &mut current, &target, job, umask);
        match said {
            Some(message @ FileMessage::Copied { size, .. }) => {
                tally.files += 1;
                tally.bytes += size;
                writer
                    .write_message(&message)
                    .await
                    .map_err(LinkError::from)?;
            }
            Some(message @ FileMessage::Have { .. }) => {
                writer
                    .write_message(&message)
                    .await
                    .map_err(LinkError::from)?;
            }
            Some(message) => {
                tally.failed += 1;
                writer
                    .write_message(&message)
                    .await
                    .map_err(LinkError::from)?;
            }
            None => {}
        }
    }
    super::finish(writer, tally).await
}

/// What the receiver makes of one message of the sender's (all but the
/// end of the copy): the file or directory it starts, ends or gives up,
/// and what it answers, if anything.
fn answer(
    message: FileMessage,
    current: &mut Current,
    target: &Target,
    job: &CopyJob,
    umask: u32,
) -> Option<FileMessage> {
    match message {
        FileMessage::Dir { name, mode, mtime } => {
            *current = Current::Skipping;
            make_dir(
                target,
                &name,
                job.keep.then_some(Kept {
                    mode,
                    mtime_secs: mtime,
                }),
            )
        }
        FileMessage::File {
            name,
            size,
            mode,
            mtime,
        } => {
            let kept = job.keep.then_some(Kept {
                mode,
                mtime_secs: mtime,
            });
            match start(target, name, size, kept, job.resume) {
                Ok((incoming, have)) => {
                    *current = Current::Writing(Box::new(incoming));
                    have
                }
                Err(failed) => {
                    *current = Current::Skipping;
                    Some(failed)
                }
            }
        }
        FileMessage::FileEnd { sha256 } => {
            let done = std::mem::replace(current, Current::Skipping);
            match done {
                Current::Writing(incoming) => Some(finish(*incoming, &sha256, umask)),
                Current::Skipping => None,
            }
        }
        FileMessage::Resume { offset } => {
            if let Current::Writing(incoming) = current
                && let Err(error) = resume(incoming, offset)
            {
                let message = failed(&incoming.name, error);
                *current = Current::Skipping;
                Some(message)
            } else {
                None
            }
        }
        FileMessage::FileAbandoned { .. } => {
            // The operator counts its own failure; what arrived is no
            // start of anything.
            if let Current::Writing(incoming) = std::mem::replace(current, Current::Skipping) {
                incoming.file.discard();
            }
            None
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
        | FileMessage::Put { .. } => None,
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

fn make_dir(target: &Target, name: &WirePath, kept: Option<Kept>) -> Option<FileMessage> {
    let made = target.place_of(name).and_then(|place| {
        place.make_dir()?;
        if let Some(kept) = kept {
            place.keep(kept)?;
        }
        Ok(())
    });
    made.err().map(|error| failed(name, error))
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
