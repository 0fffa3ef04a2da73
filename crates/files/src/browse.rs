//! The console's Files view on this computer: a browsing session over the
//! shared folders it was approved for, serving the operator's requests one
//! at a time until the operator leaves. A directory's listing
//! ([`FileMessage::List`]); a file sent as a copy of one file from the
//! computer is ([`FileMessage::Get`], by [`crate::send`]); a file stored as
//! a copy to the computer stores it ([`FileMessage::Put`], by
//! [`crate::receive`]: under a temporary name until its SHA-256 matches).
//! Each request has one answer, and every file stored or sent whole is
//! announced with `Copied`, with its direction, for the audit trail.

use crate::ending::Tally;
use crate::error::FilesError;
use crate::place::Roots;
use crate::receive::{self, Current};
use crate::send::Sender;
use doorman_wire::ConnectionError;
use doorman_wire::connection::{FrameReader, FrameWriter, decode_message};
use doorman_wire::frame::Frame;
use doorman_wire::message::files::MAX_LISTED;
use doorman_wire::message::{CopyDirection, CopyJob, FileMessage, ListEntry, SessionEnd, WirePath};
use tokio::io::{AsyncRead, AsyncWrite};

/// How much of a frame one part of a listing fills at most, by its own
/// estimate (each name in base64, and room for its numbers): parts stay
/// well under the frame's limit, whatever the names.
const LISTING_PART_BYTES: usize = 128 * 1024;

/// Serves the browsing session `job` over the shared folders `roots`
/// (only the ones it names) until the operator leaves.
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
    let roots = match roots.only(job.paths.iter().map(|path| path.0.as_slice())) {
        Ok(roots) => roots,
        Err(error) => return crate::ending::cannot_start(writer, error.to_string()).await,
    };
    let mut browser = Browser {
        writer,
        roots,
        umask: crate::host::umask(),
        tally: Tally::default(),
        current: Current::Skipping,
    };
    loop {
        let frame = match reader.read_frame().await {
            Ok(Some(frame)) => frame,
            // The operator left: an unfinished upload goes with `current`.
            Ok(None) | Err(_) => break,
        };
        let served = match frame {
            Frame::Stdin(data) => browser.data(&data).await,
            Frame::Message(payload) => match decode_message::<FileMessage>(&payload) {
                Ok(message) => browser.serve(message).await,
                Err(_) => Ok(()),
            },
            Frame::Stdout(_) | Frame::Stderr(_) | Frame::Sealed(_) | Frame::Recording(_) => Ok(()),
        };
        if served.is_err() {
            // The operator's side takes nothing more: it has left.
            break;
        }
    }
    let Browser { writer, tally, .. } = browser;
    let Tally {
        files,
        bytes,
        failed,
    } = tally;
    // Said for the server's record; the operator may be gone already.
    let said = crate::ending::finish(writer, tally).await;
    Ok(said.unwrap_or(SessionEnd::Copied {
        files,
        bytes,
        failed,
    }))
}

/// A browsing session under way.
struct Browser<'a, W> {
    writer: &'a mut FrameWriter<W>,
    /// The shared folders this session was approved for.
    roots: Roots,
    umask: u32,
    tally: Tally,
    /// The file being uploaded, if any.
    current: Current,
}

impl<W: AsyncWrite + Unpin> Browser<'_, W> {
    /// Answers one request.
    async fn serve(&mut self, message: FileMessage) -> Result<(), ConnectionError> {
        match message {
            FileMessage::List { path } => {
                self.interrupt().await?;
                self.list(path).await
            }
            FileMessage::Get { path } => {
                self.interrupt().await?;
                self.get(path).await
            }
            FileMessage::Put { dir, name, size } => {
                self.interrupt().await?;
                self.put(dir, name, size).await
            }
            FileMessage::FileEnd { sha256 } => {
                match std::mem::replace(&mut self.current, Current::Skipping) {
                    Current::Writing(incoming) => {
                        let said = receive::finish(*incoming, &sha256, self.umask);
                        self.say(said).await
                    }
                    // It failed already, and was said to.
                    Current::Skipping => Ok(()),
                }
            }
            // The operator gave its file up (it could not read it on), and
            // counts that itself; what arrived of it goes.
            FileMessage::FileAbandoned { .. } => {
                self.current = Current::Skipping;
                Ok(())
            }
            // Nothing else is asked of a browsing computer.
            FileMessage::Dir { .. }
            | FileMessage::File { .. }
            | FileMessage::Have { .. }
            | FileMessage::Resume { .. }
            | FileMessage::Copied { .. }
            | FileMessage::Failed { .. }
            | FileMessage::CopyEnd
            | FileMessage::Listing { .. } => Ok(()),
        }
    }

    /// A new request while an upload is unfinished: the upload is given
    /// up (its temporary file goes), and said to be, so that each request
    /// still has its one answer.
    async fn interrupt(&mut self) -> Result<(), ConnectionError> {
        let Current::Writing(incoming) = std::mem::replace(&mut self.current, Current::Skipping)
        else {
            return Ok(());
        };
        let message = receive::failed(incoming.name(), "another request came before its end");
        drop(incoming);
        self.say(message).await
    }

    /// Says how an upload ended, `Copied` (with its direction) or
    /// `Failed`, and counts it.
    async fn say(&mut self, said: FileMessage) -> Result<(), ConnectionError> {
        let said = match said {
            FileMessage::Copied {
                path, size, sha256, ..
            } => {
                self.tally.files += 1;
                self.tally.bytes += size;
                FileMessage::Copied {
                    path,
                    size,
                    sha256,
                    direction: Some(CopyDirection::ToComputer),
                }
            }
            other => {
                self.tally.failed += 1;
                other
            }
        };
        self.writer.write_message(&said).await
    }

    /// The upload's next bytes.
    async fn data(&mut self, data: &[u8]) -> Result<(), ConnectionError> {
        match receive::write(&mut self.current, data) {
            Some(failed) => self.say(failed).await,
            None => Ok(()),
        }
    }

    /// Sends the listing of the directory at `path`, in parts that each
    /// fit a frame; or why it cannot be listed.
    async fn list(&mut self, path: WirePath) -> Result<(), ConnectionError> {
        let listed = self
            .roots
            .resolve(&path.0)
            .and_then(|place| place.entries());
        let entries = match listed {
            Ok(entries) => entries,
            Err(error) => {
                let failed = receive::failed(&path, error);
                return self.writer.write_message(&failed).await;
            }
        };
        let omitted = u64::try_from(entries.len().saturating_sub(MAX_LISTED)).unwrap_or(u64::MAX);
        let mut part = Vec::new();
        let mut filled = 0;
        for entry in entries.into_iter().take(MAX_LISTED) {
            let cost = entry.name.len() * 4 / 3 + 100;
            if filled + cost > LISTING_PART_BYTES && !part.is_empty() {
                let listing = FileMessage::Listing {
                    path: path.clone(),
                    entries: std::mem::take(&mut part),
                    last: false,
                    omitted: 0,
                };
                self.writer.write_message(&listing).await?;
                filled = 0;
            }
            filled += cost;
            part.push(ListEntry {
                name: WirePath::from_os(&entry.name),
                dir: entry.dir,
                size: entry.size,
                mtime: entry.mtime,
            });
        }
        let listing = FileMessage::Listing {
            path,
            entries: part,
            last: true,
            omitted,
        };
        self.writer.write_message(&listing).await
    }

    /// Sends the file at `path` as a copy of it from the computer would.
    async fn get(&mut self, path: WirePath) -> Result<(), ConnectionError> {
        let place = match self.roots.resolve(&path.0) {
            Ok(place) => place,
            Err(error) => {
                self.tally.failed += 1;
                return self
                    .writer
                    .write_message(&receive::failed(&path, error))
                    .await;
            }
        };
        // Nothing is read from the operator while a file goes: no resume.
        let mut sender = Sender::<tokio::io::Empty, W>::browsing(&mut *self.writer);
        let sent = sender.send_file(&place, path).await;
        let Tally {
            files,
            bytes,
            failed,
        } = sender.tally;
        self.tally.files += files;
        self.tally.bytes += bytes;
        self.tally.failed += failed;
        sent
    }

    /// Starts storing the file `name` in the directory `dir`, as a copy to
    /// the computer stores it; a file that cannot even start is said at
    /// once (its bytes, already on their way, are dropped).
    async fn put(
        &mut self,
        dir: WirePath,
        name: WirePath,
        size: u64,
    ) -> Result<(), ConnectionError> {
        // One plain name: no `/`, no `..`.
        let place = self
            .roots
            .resolve(&dir.0)
            .and_then(|dir| dir.child(crate::place::os_str(&name.0)?));
        let started = match place {
            Ok(place) => receive::start_at(place, name, size, None, false),
            Err(error) => Err(receive::failed(&name, error)),
        };
        match started {
            Ok((incoming, _)) => {
                self.current = Current::Writing(Box::new(incoming));
                Ok(())
            }
            Err(failed) => self.say(failed).await,
        }
    }
}
