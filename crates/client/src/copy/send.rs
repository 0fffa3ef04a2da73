//! Sending a copy's files to the computer: each directory, then each file
//! as its bytes and their SHA-256. A file that changes while it is read,
//! or cannot be read, is given up alone and counted as failed here.

use super::plan::{Entry, EntryKind};
use doorman_wire::connection::{ConnectionError, FrameWriter};
use doorman_wire::copying::{hex, resume_from, send_bytes};
use doorman_wire::frame::Frame;
use doorman_wire::message::{FileMessage, WirePath};
use std::os::unix::fs::MetadataExt;
use tokio::io::AsyncWrite;
use tokio::sync::mpsc::{Receiver, UnboundedSender};

/// What the sender tells the copy's loop.
#[derive(Debug)]
pub(super) enum Sent {
    /// This many more bytes went.
    Moved(u64),
    /// This file continues at this offset (`--resume`).
    Resumed(WirePath, u64),
    /// This entry could not go, for this reason.
    Failed(WirePath, String),
}

/// Sends `entries`, then the end of the copy.
pub(super) async fn send_all<W: AsyncWrite + Unpin>(
    writer: &mut FrameWriter<W>,
    entries: Vec<Entry>,
    news: UnboundedSender<Sent>,
    mut haves: Option<Receiver<(u64, String)>>,
) -> Result<(), ConnectionError> {
    for entry in entries {
        match entry.kind {
            EntryKind::Dir => {
                let metadata = std::fs::metadata(&entry.path).ok();
                writer
                    .write_message(&FileMessage::Dir {
                        name: entry.name,
                        mode: metadata.as_ref().map_or(0o755, |m| m.mode() & 0o7777),
                        mtime: metadata.as_ref().map_or(0, MetadataExt::mtime),
                    })
                    .await?;
            }
            EntryKind::File { .. } => {
                if let Err(why) = send_file(writer, &entry, &news, haves.as_mut()).await? {
                    let _ = news.send(Sent::Failed(entry.name, why));
                }
            }
            EntryKind::Unsendable(why) => {
                let _ = news.send(Sent::Failed(entry.name, why));
            }
        }
    }
    writer.write_message(&FileMessage::CopyEnd).await
}

/// Sends one file whole; `Ok(Err(why))` when it was given up.
async fn send_file<W: AsyncWrite + Unpin>(
    writer: &mut FrameWriter<W>,
    entry: &Entry,
    news: &UnboundedSender<Sent>,
    haves: Option<&mut Receiver<(u64, String)>>,
) -> Result<Result<(), String>, ConnectionError> {
    let shown = entry.path.display();
    let opened = match tokio::fs::File::open(&entry.path).await {
        Ok(file) => file.metadata().await.map(|m| (file, m)),
        Err(error) => Err(error),
    };
    let (mut file, before) = match opened {
        Ok(opened) => opened,
        Err(error) => return Ok(Err(format!("{shown}: {error}"))),
    };
    let size = before.len();
    writer
        .write_message(&FileMessage::File {
            name: entry.name.clone(),
            size,
            mode: before.mode() & 0o7777,
            mtime: before.mtime(),
        })
        .await?;
    let mut hash = ring::digest::Context::new(&ring::digest::SHA256);
    let mut sent = 0u64;
    if let Some(haves) = haves {
        // The computer says what it has of the file.
        let have = haves.recv().await;
        sent = resume_from(&mut file, size, have, &mut hash).await;
        writer
            .write_message(&FileMessage::Resume { offset: sent })
            .await?;
        if sent > 0 {
            let _ = news.send(Sent::Resumed(entry.name.clone(), sent));
        }
    }
    let moved = |n| {
        let _ = news.send(Sent::Moved(n));
    };
    let problem = send_bytes(
        &mut file,
        (sent, size),
        &mut hash,
        writer,
        Frame::Stdin,
        moved,
    )
    .await?;
    let after = file.metadata().await.ok();
    let changed = after.is_none_or(|after| {
        (after.len(), after.mtime(), after.mtime_nsec())
            != (before.len(), before.mtime(), before.mtime_nsec())
    });
    let problem = problem.or_else(|| changed.then(|| "it changed while it was read".to_string()));
    if let Some(problem) = problem {
        let message = format!("{shown}: {problem}");
        writer
            .write_message(&FileMessage::FileAbandoned {
                message: message.clone(),
            })
            .await?;
        return Ok(Err(message));
    }
    writer
        .write_message(&FileMessage::FileEnd {
            sha256: hex(hash.finish().as_ref()),
        })
        .await?;
    Ok(Ok(()))
}
