//! `doorman cp`: copying files to or from a computer, approved like any
//! session. [`plan`] reads the arguments (one direction per command),
//! `send` sends files to the computer, `receive` stores what comes
//! back, `report` shows it. A copy ends with how many files went and how
//! many failed: some failed is "partly copied", its own exit status.

mod part;
pub mod plan;
mod receive;
mod report;
mod send;

use crate::error::exit;
use crate::{ConnectError, Progress};
use doorman_wire::connection::{Connection, ConnectionError, FrameWriter, decode_message};
use doorman_wire::dial::Upgraded;
use doorman_wire::frame::Frame;
use doorman_wire::message::{FileMessage, SessionMessage, WirePath};
use plan::{CopyPlan, LocalSide};
use receive::{Received, Receiver};
use report::CopyReport;
use send::Sent;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use tokio::io::WriteHalf;
use tokio::sync::mpsc::Sender;
use tokio::sync::mpsc::error::TrySendError;

/// What the copy moved.
#[derive(Debug, Default)]
struct Tally {
    files: u64,
    bytes: u64,
    /// Failed on this side (the computer counts its own).
    failed_here: u64,
}

/// Runs the copy on the session connection; its exit status: 0 when every
/// file went, [`exit::PARTLY_COPIED`] when some did not.
pub(crate) async fn run(
    connection: Connection<Upgraded>,
    plan: CopyPlan,
    progress: &mut Progress,
    interrupt: Pin<&mut impl Future<Output = ()>>,
) -> Result<i32, ConnectError> {
    let total = match &plan.local {
        LocalSide::Send(_) => Some(plan.job.bytes),
        LocalSide::Receive { .. } => None,
    };
    let (mut reader, writer) = connection.split();
    let (news, mut sent) = tokio::sync::mpsc::unbounded_channel();
    // One `Have` answers each file, and the sender awaits it before it
    // sends the next: room for one is enough, and a computer that sends
    // more cannot fill this side's memory.
    let (haves, have) = tokio::sync::mpsc::channel(1);
    let receiver = Receiver::new(&plan.local, &plan.job);
    // Copying to the computer, the writer is the sender's; from it, the
    // loop's, which answers `--resume`'s questions.
    let (sender, writer) = match plan.local {
        LocalSide::Send(entries) => {
            let have = plan.job.resume.then_some(have);
            let mut writer = writer;
            let task =
                tokio::spawn(async move { send::send_all(&mut writer, entries, news, have).await });
            (Some(task), None)
        }
        LocalSide::Receive { .. } => (None, Some(writer)),
    };
    let _abort = sender.as_ref().map(|task| AbortOnDrop(task.abort_handle()));
    let mut copying = Copying {
        report: CopyReport::new(progress, total),
        tally: Tally::default(),
        receiver,
        haves,
        writer,
    };
    let mut interrupt = interrupt;
    loop {
        let frame = tokio::select! {
            frame = reader.read_frame() => frame,
            Some(news) = sent.recv() => {
                copying.on_sent(news);
                continue;
            }
            () = &mut interrupt => return Err(ConnectError::Cancelled),
        };
        match frame {
            Ok(Some(Frame::Stdout(data))) => copying.on_data(&data),
            Ok(Some(Frame::Message(payload))) => {
                if let Some(status) = copying.on_message(&payload).await? {
                    return Ok(status);
                }
            }
            Ok(Some(_)) => {}
            Ok(None) | Err(ConnectionError::Io(_) | ConnectionError::Truncated) => {
                return Err(ConnectError::SessionFailed(
                    "the connection to the server closed before the copy ended".into(),
                ));
            }
            Err(error) => return Err(ConnectError::SessionFailed(error.to_string())),
        }
    }
}

/// A copy under way, as this side follows it.
struct Copying<'a> {
    report: CopyReport<'a>,
    tally: Tally,
    /// Copying from the computer: where its files land.
    receiver: Option<Receiver>,
    /// Copying to the computer with `--resume`: the computer's `Have`s,
    /// for the sender.
    haves: Sender<(u64, String)>,
    /// Copying from the computer: the way to answer it.
    writer: Option<FrameWriter<WriteHalf<Upgraded>>>,
}

impl Copying<'_> {
    /// News from this side's sender.
    fn on_sent(&mut self, news: Sent) {
        match news {
            Sent::Moved(n) => self.report.moved(n),
            Sent::Resumed(name, offset) => self.report.resumed(&name.shown(), offset),
            Sent::Failed(name, why) => self.failed_here(&name, &why),
        }
    }

    /// A file's bytes from the computer.
    fn on_data(&mut self, data: &[u8]) {
        self.report.moved(data.len() as u64);
        if let Some(Received::Failed(name, why)) = self.receiver.as_mut().and_then(|r| r.data(data))
        {
            self.failed_here(&name, &why);
        }
    }

    fn failed_here(&mut self, name: &WirePath, why: &str) {
        self.tally.failed_here += 1;
        self.report.failed(&name.shown(), why);
    }

    /// A message from the computer (or the server); the exit status once
    /// the copy ended.
    async fn on_message(&mut self, payload: &[u8]) -> Result<Option<i32>, ConnectError> {
        if let Ok(message) = decode_message::<SessionMessage>(payload) {
            return match message {
                SessionMessage::Copied { failed, .. } => {
                    let Tally {
                        files,
                        bytes,
                        failed_here,
                    } = self.tally;
                    let failed = failed + failed_here;
                    self.report.ended(files, bytes, failed);
                    Ok(Some(if failed == 0 { 0 } else { exit::PARTLY_COPIED }))
                }
                SessionMessage::Error { message } => Err(ConnectError::SessionFailed(message)),
                SessionMessage::Ended { cause, message } => {
                    Err(ConnectError::ended(cause, &message))
                }
                _ => Ok(None),
            };
        }
        let Ok(message) = decode_message::<FileMessage>(payload) else {
            return Ok(None);
        };
        let received = match (message, self.receiver.as_mut()) {
            // Copying to the computer: its word on each file.
            (
                FileMessage::Copied {
                    path, size, sha256, ..
                },
                None,
            ) => Received::Stored(PathBuf::from(path.shown()), size, sha256),
            (FileMessage::Have { offset, sha256 }, None) => {
                // Closed: this copy does not resume, and the answer is moot.
                if let Err(TrySendError::Full(_)) = self.haves.try_send((offset, sha256)) {
                    return Err(ConnectError::SessionFailed(
                        "the computer answered a file it was not sent".into(),
                    ));
                }
                Received::Nothing
            }
            (FileMessage::Failed { name, message }, _) => {
                self.report.failed(&name.shown(), &message);
                Received::Nothing
            }
            (message, Some(receiver)) => receiver.message(message),
            (_, None) => Received::Nothing,
        };
        self.on_received(received).await?;
        Ok(None)
    }

    async fn on_received(&mut self, received: Received) -> Result<(), ConnectError> {
        match received {
            Received::Expecting(name, size, have) => {
                self.report.expecting(&name, size);
                self.answer(have).await?;
            }
            Received::Refused(name, why, have) => {
                self.failed_here(&name, &why);
                self.answer(have).await?;
            }
            Received::Resumed(name, offset) => self.report.resumed(&name, offset),
            Received::Stored(path, size, sha256) => {
                // Sizes the computer states: no overflow, whatever it says.
                self.tally.files += 1;
                self.tally.bytes = self.tally.bytes.saturating_add(size);
                self.report
                    .copied(&path.display().to_string(), size, &sha256);
            }
            Received::Failed(name, why) => self.failed_here(&name, &why),
            Received::Nothing => {}
        }
        Ok(())
    }

    /// Answers the computer's `File` (`--resume`: what is here of it).
    async fn answer(&mut self, have: Option<FileMessage>) -> Result<(), ConnectError> {
        if let (Some(have), Some(writer)) = (have, self.writer.as_mut()) {
            writer
                .write_message(&have)
                .await
                .map_err(|e| ConnectError::SessionFailed(e.to_string()))?;
        }
        Ok(())
    }
}

/// Stops a task when dropped.
struct AbortOnDrop(tokio::task::AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The process's umask, which new files honour.
fn umask() -> u32 {
    // Read by setting it, then put back: there is no read-only call.
    let old = rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o022));
    rustix::process::umask(old);
    old.bits()
}
