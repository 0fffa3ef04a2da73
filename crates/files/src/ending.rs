//! How a copy ends: what it moved ([`Tally`]), said to the operator as
//! its last word, or why it could not start at all.

use crate::error::FilesError;
use doorman_wire::connection::FrameWriter;
use doorman_wire::message::{SessionEnd, SessionMessage};
use tokio::io::AsyncWrite;

/// What a copy moved.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Tally {
    pub(crate) files: u64,
    pub(crate) bytes: u64,
    pub(crate) failed: u64,
}

/// Says the copy's last word, and closes.
pub(crate) async fn finish<W: AsyncWrite + Unpin>(
    writer: &mut FrameWriter<W>,
    tally: Tally,
) -> Result<SessionEnd, FilesError> {
    let Tally {
        files,
        bytes,
        failed,
    } = tally;
    writer
        .write_message(&SessionMessage::Copied {
            files,
            bytes,
            failed,
        })
        .await?;
    let _ = writer.shutdown().await;
    Ok(SessionEnd::Copied {
        files,
        bytes,
        failed,
    })
}

/// The copy cannot start at all (its destination is outside the shared
/// folders, none are shared…): the operator is told why.
pub(crate) async fn cannot_start<W: AsyncWrite + Unpin>(
    writer: &mut FrameWriter<W>,
    message: String,
) -> Result<SessionEnd, FilesError> {
    let _ = writer
        .write_message(&SessionMessage::Error {
            message: message.clone(),
        })
        .await;
    let _ = writer.shutdown().await;
    Err(FilesError::NotStarted(message))
}
