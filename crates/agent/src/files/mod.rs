//! File transfer on this computer (`doorman cp`, the console's Files
//! view): [`place`] confines every path to the folders the owner shares
//! and writes files whole or not at all; [`receive`] takes a copy to the
//! computer, [`send`] sends one from it, and [`browse`] serves the Files
//! view (listings, and single files either way, with their logic). A
//! copy's last word is how many files and bytes went, and how many failed.

mod browse;
pub mod place;
mod receive;
mod send;

#[cfg(test)]
mod tests;

use crate::error::{LinkError, SessionError};
use doorman_core::AgentSettings;
use doorman_wire::connection::{Connection, FrameWriter};
use doorman_wire::message::{CopyDirection, CopyJob, SessionEnd, SessionMessage};
use place::Roots;
use tokio::io::{AsyncRead, AsyncWrite};

/// Runs the copy `job` on its session connection.
pub(crate) async fn run<T>(
    connection: Connection<T>,
    job: CopyJob,
    settings: &AgentSettings,
) -> Result<SessionEnd, SessionError>
where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut reader, mut writer) = connection.split();
    let Some(home) = home_dir() else {
        let message = "the agent's home directory is unknown (HOME is not set)".to_string();
        return cannot_start(&mut writer, message).await;
    };
    let roots = Roots::new(&settings.services.files, &home);
    match job.direction {
        CopyDirection::ToComputer => receive::run(&mut reader, &mut writer, &job, &roots).await,
        CopyDirection::FromComputer => {
            // The operator sends nothing; its leaving ends the copy, when a
            // write fails.
            send::run(&mut reader, &mut writer, &job, &roots).await
        }
        CopyDirection::Browse => browse::run(&mut reader, &mut writer, &job, &roots).await,
    }
}

/// Whether this computer offers the copy `job`: it shares folders, and
/// the copy's paths are inside them (checked again, against the file
/// system, when the copy runs); browsing, each path is a shared folder.
pub(crate) fn offered(shared: &[String], job: &CopyJob) -> Result<(), String> {
    if shared.is_empty() {
        return Err("file copies are not offered on this computer".into());
    }
    let home = home_dir().unwrap_or_default();
    let roots = Roots::new(shared, &home);
    if job.direction == CopyDirection::Browse {
        let paths = job.paths.iter().map(|path| path.0.as_slice());
        return roots.only(paths).map(|_| ()).map_err(|e| e.to_string());
    }
    for path in &job.paths {
        roots.resolve(&path.0).map_err(|error| error.to_string())?;
    }
    Ok(())
}

/// The home directory `~/` stands for: the agent's user's.
fn home_dir() -> Option<std::path::PathBuf> {
    std::env::var_os("HOME")
        .filter(|home| !home.is_empty())
        .map(std::path::PathBuf::from)
        .or_else(|| {
            uzers::get_user_by_uid(uzers::get_current_uid())
                .map(|u| uzers::os::unix::UserExt::home_dir(&u).to_path_buf())
        })
}

/// What a copy moved.
#[derive(Clone, Copy, Debug, Default)]
struct Tally {
    files: u64,
    bytes: u64,
    failed: u64,
}

/// Says the copy's last word, and closes.
async fn finish<W: AsyncWrite + Unpin>(
    writer: &mut FrameWriter<W>,
    tally: Tally,
) -> Result<SessionEnd, SessionError> {
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
        .await
        .map_err(LinkError::from)?;
    let _ = writer.shutdown().await;
    Ok(SessionEnd::Copied {
        files,
        bytes,
        failed,
    })
}

/// The copy cannot start at all (its destination is outside the shared
/// folders, none are shared…): the operator is told why.
async fn cannot_start<W: AsyncWrite + Unpin>(
    writer: &mut FrameWriter<W>,
    message: String,
) -> Result<SessionEnd, SessionError> {
    let _ = writer
        .write_message(&SessionMessage::Error {
            message: message.clone(),
        })
        .await;
    let _ = writer.shutdown().await;
    Err(SessionError::NotStarted(message))
}

/// The process's umask, which new files and directories honour.
fn umask() -> u32 {
    // Linux says it in /proc (since 4.7) without changing it. Setting it
    // to read it would change it, for a moment, for every thread of the
    // agent: a shell session starting then would keep 0o022 for good.
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let said = status
        .lines()
        .find_map(|line| line.strip_prefix("Umask:"))
        .and_then(|mask| u32::from_str_radix(mask.trim(), 8).ok());
    if let Some(mask) = said {
        return mask;
    }
    // Else read by setting it, then put back: there is no read-only call.
    let old = rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o022));
    rustix::process::umask(old);
    old.bits()
}
