//! A copy job from start to end: whether this computer offers it (its
//! paths inside the shared folders), and running it on its session
//! connection, by its direction: `receive` to the computer,
//! `send` from it, `browse` for the Files view. The same on Unix and
//! Windows: only `place` differs.

use crate::error::FilesError;
use crate::place::Roots;
use doorman_wire::connection::Connection;
use doorman_wire::message::{CopyDirection, CopyJob, SessionEnd};
use tokio::io::{AsyncRead, AsyncWrite};

/// Runs the copy `job` on its session connection, over the folders
/// `shared` (the agent's `[services] files`).
pub async fn run<T>(
    connection: Connection<T>,
    job: CopyJob,
    shared: &[String],
) -> Result<SessionEnd, FilesError>
where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut reader, mut writer) = connection.split();
    let Some(home) = crate::host::home_dir() else {
        let message = format!(
            "the agent's home directory is unknown ({} is not set)",
            crate::host::HOME_VARIABLE
        );
        return crate::ending::cannot_start(&mut writer, message).await;
    };
    let roots = Roots::new(shared, &home);
    match job.direction {
        CopyDirection::ToComputer => {
            crate::receive::run(&mut reader, &mut writer, &job, &roots).await
        }
        CopyDirection::FromComputer => {
            // The operator sends nothing; its leaving ends the copy, when a
            // write fails.
            crate::send::run(&mut reader, &mut writer, &job, &roots).await
        }
        CopyDirection::Browse => crate::browse::run(&mut reader, &mut writer, &job, &roots).await,
    }
}

/// Whether this computer offers the copy `job`: it shares folders, and
/// the copy's paths are inside them (checked again, against the file
/// system, when the copy runs); browsing, each path is a shared folder.
pub fn offered(shared: &[String], job: &CopyJob) -> Result<(), String> {
    if shared.is_empty() {
        return Err("file copies are not offered on this computer".into());
    }
    let home = crate::host::home_dir().unwrap_or_default();
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
