//! `doorman cp`: copying files to or from a computer, approved like any
//! session. [`plan`] reads the arguments (one direction per command),
//! [`send`] sends files to the computer, [`receive`] stores what comes
//! back, [`report`] shows it. A copy ends with how many files went and how
//! many failed: some failed is "partly copied", its own exit status.

mod part;
pub mod plan;
mod receive;
mod report;
mod send;

use crate::error::exit;
use crate::{ConnectError, Progress};
use doorman_proto::connection::{Connection, ConnectionError, decode_message};
use doorman_proto::dial::Upgraded;
use doorman_proto::frame::Frame;
use doorman_proto::message::{FileMessage, SessionMessage};
use plan::{CopyPlan, LocalSide};
use receive::{Received, Receiver};
use report::CopyReport;
use send::Sent;
use std::future::Future;
use std::pin::Pin;

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
    let mut report = CopyReport::new(progress, total);
    let (mut reader, writer) = connection.split();
    let (news, mut sent) = tokio::sync::mpsc::unbounded_channel();
    let (haves, have) = tokio::sync::mpsc::unbounded_channel();
    let mut receiver = Receiver::new(&plan.local, plan.job.keep, plan.job.resume);
    // Copying to the computer, the writer is the sender's; from it, the
    // loop's, which answers `--resume`'s questions.
    let (sender, mut writer) = match plan.local {
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
    let mut tally = Tally::default();
    let mut interrupt = interrupt;
    loop {
        let frame = tokio::select! {
            frame = reader.read_frame() => frame,
            Some(news) = sent.recv() => {
                match news {
                    Sent::Moved(n) => report.moved(n),
                    Sent::Resumed(name, offset) => report.resumed(&name.shown(), offset),
                    Sent::Failed(name, why) => {
                        tally.failed_here += 1;
                        report.failed(&name.shown(), &why);
                    }
                }
                continue;
            }
            () = &mut interrupt => return Err(ConnectError::Cancelled),
        };
        let payload = match frame {
            Ok(Some(Frame::Stdout(data))) => {
                report.moved(data.len() as u64);
                if let Some(Received::Failed(name, why)) =
                    receiver.as_mut().and_then(|r| r.data(&data))
                {
                    tally.failed_here += 1;
                    report.failed(&name.shown(), &why);
                }
                continue;
            }
            Ok(Some(Frame::Message(payload))) => payload,
            Ok(Some(_)) => continue,
            Ok(None) | Err(ConnectionError::Io(_) | ConnectionError::Truncated) => {
                return Err(ConnectError::SessionFailed(
                    "the connection to the server closed before the copy ended".into(),
                ));
            }
            Err(error) => return Err(ConnectError::SessionFailed(error.to_string())),
        };
        if let Ok(message) = decode_message::<SessionMessage>(&payload) {
            match message {
                SessionMessage::Copied { failed, .. } => {
                    let failed = failed + tally.failed_here;
                    report.ended(tally.files, tally.bytes, failed);
                    return Ok(if failed == 0 { 0 } else { exit::PARTLY_COPIED });
                }
                SessionMessage::Error { message } => {
                    return Err(ConnectError::SessionFailed(message));
                }
                SessionMessage::Ended { cause, message } => {
                    return Err(ConnectError::Ended { cause, message });
                }
                _ => continue,
            }
        }
        let Ok(message) = decode_message::<FileMessage>(&payload) else {
            continue;
        };
        match (message, receiver.as_mut()) {
            // Copying to the computer: its word on each file.
            (
                FileMessage::Copied {
                    path, size, sha256, ..
                },
                None,
            ) => {
                tally.files += 1;
                tally.bytes += size;
                report.copied(&path.shown(), size, &sha256);
            }
            (FileMessage::Have { offset, sha256 }, None) => {
                let _ = haves.send((offset, sha256));
            }
            (FileMessage::Failed { name, message }, _) => report.failed(&name.shown(), &message),
            (message, Some(receiver)) => match receiver.message(message) {
                Received::Expecting(name, size, have) => {
                    report.expecting(&name, size);
                    if let (Some(have), Some(writer)) = (have, writer.as_mut()) {
                        writer
                            .write_message(&have)
                            .await
                            .map_err(|e| ConnectError::SessionFailed(e.to_string()))?;
                    }
                }
                Received::Resumed(name, offset) => report.resumed(&name, offset),
                Received::Stored(path, size, sha256) => {
                    tally.files += 1;
                    tally.bytes += size;
                    report.copied(&path.display().to_string(), size, &sha256);
                }
                Received::Failed(name, why) => {
                    tally.failed_here += 1;
                    report.failed(&name.shown(), &why);
                }
                Received::Nothing => {}
            },
            (_, None) => {}
        }
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
