//! A copy from this computer: each source inside the shared folders is
//! sent, a directory (with `-r`) as its tree, depth first. A file that
//! changes while it is read is given up (the operator discards it), and
//! one that cannot be read fails alone: the copy goes on with the next.

use crate::ending::Tally;
use crate::error::FilesError;
use crate::place::{Place, Roots};
use doorman_wire::connection::{ConnectionError, FrameReader, FrameWriter};
use doorman_wire::copying::{hex, resume_from, send_bytes};
use doorman_wire::frame::Frame;
use doorman_wire::message::{CopyDirection, CopyJob, FileMessage, SessionEnd, WirePath};
use std::collections::HashSet;
use tokio::io::{AsyncRead, AsyncWrite};

/// How deep a tree is followed; deeper is refused (a loop of symlinks
/// inside a shared folder ends here too).
const MAX_DEPTH: usize = 128;

/// Sends the sources of `job` from the shared folders `roots`.
pub(super) async fn run<R: AsyncRead + Unpin, W: AsyncWrite + Unpin>(
    reader: &mut FrameReader<R>,
    writer: &mut FrameWriter<W>,
    job: &CopyJob,
    roots: &Roots,
) -> Result<SessionEnd, FilesError> {
    let mut sender = Sender::new(writer, job.resume.then_some(reader), job.recursive);
    for source in &job.paths {
        let place = match roots.resolve(&source.0) {
            Ok(place) => place,
            Err(error) => {
                sender.fail(source, error).await?;
                continue;
            }
        };
        let name = WirePath::from_os(&place.base_name());
        sender.send(&place, name, 0).await?;
    }
    let Sender { writer, tally, .. } = sender;
    writer.write_message(&FileMessage::CopyEnd).await?;
    crate::ending::finish(writer, tally).await
}

/// Sends files and trees, and counts what went.
pub(super) struct Sender<'a, R, W> {
    writer: &'a mut FrameWriter<W>,
    /// With `--resume`: the operator's side, which says what it has of
    /// each file.
    answers: Option<&'a mut FrameReader<R>>,
    recursive: bool,
    pub(super) tally: Tally,
    /// Directories sent, by device and inode: none is sent twice (where
    /// the system says them; see [`crate::metadata::Metadata::id`]).
    visited: HashSet<(u64, u64)>,
    /// What each `Copied` says of its direction: nothing in a copy (the
    /// copy's own says it), "from the computer" when browsing.
    direction: Option<CopyDirection>,
}

impl<'a, R, W> Sender<'a, R, W> {
    fn new(
        writer: &'a mut FrameWriter<W>,
        answers: Option<&'a mut FrameReader<R>>,
        recursive: bool,
    ) -> Self {
        Sender {
            writer,
            answers,
            recursive,
            tally: Tally::default(),
            visited: HashSet::new(),
            direction: None,
        }
    }

    /// A sender of single files for a browsing session.
    pub(super) fn browsing(writer: &'a mut FrameWriter<W>) -> Self {
        Self {
            direction: Some(CopyDirection::FromComputer),
            ..Self::new(writer, None, false)
        }
    }
}

impl<R: AsyncRead + Unpin, W: AsyncWrite + Unpin> Sender<'_, R, W> {
    async fn fail(
        &mut self,
        name: &WirePath,
        error: impl std::fmt::Display,
    ) -> Result<(), ConnectionError> {
        self.tally.failed += 1;
        self.writer
            .write_message(&FileMessage::Failed {
                name: name.clone(),
                message: error.to_string(),
            })
            .await
    }

    /// Sends `place` as `name`, a directory with its tree.
    async fn send(
        &mut self,
        place: &Place,
        name: WirePath,
        depth: usize,
    ) -> Result<(), ConnectionError> {
        let stat = match place.stat() {
            Ok(Some(stat)) => stat,
            Ok(None) => {
                return self
                    .fail(&name, format!("{}: not found", place.shown()))
                    .await;
            }
            Err(error) => return self.fail(&name, error).await,
        };
        if !stat.dir {
            return self.send_file(place, name).await;
        }
        if !self.recursive {
            let message = format!("{} is a directory (copy it with -r)", place.shown());
            return self.fail(&name, message).await;
        }
        if depth >= MAX_DEPTH || stat.id.is_some_and(|id| !self.visited.insert(id)) {
            let message = format!(
                "{}: a loop, or deeper than {MAX_DEPTH} folders",
                place.shown()
            );
            return self.fail(&name, message).await;
        }
        self.writer
            .write_message(&FileMessage::Dir {
                name: name.clone(),
                mode: stat.mode,
                mtime: stat.mtime_secs,
            })
            .await?;
        let entries = match place.list() {
            Ok(entries) => entries,
            Err(error) => return self.fail(&name, error).await,
        };
        for entry in entries {
            let mut child_name = name.clone();
            child_name.0.push(b'/');
            child_name
                .0
                .extend_from_slice(WirePath::from_os(&entry).0.as_slice());
            match place.child(&entry) {
                Ok(child) => Box::pin(self.send(&child, child_name, depth + 1)).await?,
                Err(error) => self.fail(&child_name, error).await?,
            }
        }
        Ok(())
    }

    /// Sends one file whole, or gives it up if it changes meanwhile.
    pub(super) async fn send_file(
        &mut self,
        place: &Place,
        name: WirePath,
    ) -> Result<(), ConnectionError> {
        let (file, before) = match place.open_file() {
            Ok(opened) => opened,
            Err(error) => return self.fail(&name, error).await,
        };
        let size = before.len;
        self.writer
            .write_message(&FileMessage::File {
                name: name.clone(),
                size,
                mode: before.mode,
                mtime: before.mtime_secs,
            })
            .await?;
        let mut file = tokio::fs::File::from_std(file);
        let mut hash = ring::digest::Context::new(&ring::digest::SHA256);
        let mut sent = 0u64;
        if let Some(answers) = self.answers.as_mut() {
            let have = match answers.read_message::<FileMessage>().await? {
                Some(FileMessage::Have { offset, sha256 }) => Some((offset, sha256)),
                _ => None,
            };
            sent = resume_from(&mut file, size, have, &mut hash).await;
            self.writer
                .write_message(&FileMessage::Resume { offset: sent })
                .await?;
        }
        let problem = send_bytes(
            &mut file,
            (sent, size),
            &mut hash,
            self.writer,
            Frame::Stdout,
            |_| {},
        )
        .await?;
        let file = file.into_std().await;
        let after = crate::place::file_metadata(&file).ok();
        let changed = after.is_none_or(|after| before.changed(&after));
        let problem =
            problem.or_else(|| changed.then(|| "it changed while it was read".to_string()));
        if let Some(problem) = problem {
            let message = format!("{}: {problem}", place.shown());
            self.writer
                .write_message(&FileMessage::FileAbandoned {
                    message: message.clone(),
                })
                .await?;
            return self.fail(&name, message).await;
        }
        let sha256 = hex(hash.finish().as_ref());
        self.writer
            .write_message(&FileMessage::FileEnd {
                sha256: sha256.clone(),
            })
            .await?;
        self.tally.files += 1;
        self.tally.bytes += size;
        self.writer
            .write_message(&FileMessage::Copied {
                path: WirePath::from_os(place.path().as_os_str()),
                size,
                sha256,
                direction: self.direction,
            })
            .await
    }
}
