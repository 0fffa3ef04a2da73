//! The consent pipe (Windows): a named pipe, `\\.\pipe\doorman-consent`
//! unless `consent_socket` names another, local clients only. The agent
//! answers its own user and administrators (the client's token, read by
//! impersonating it, says who) and tells anyone else only its status (what
//! a standard user's tray shows of the service); `doorman consent` talks
//! only to a pipe its own user or the agent's service created.

use super::who::{pipe_client_allowed, pipe_server_allowed};
use super::{ConsentBoard, ConsentError, ConsentRequest, ConsentResponse, respond};
use doorman_windows::access_list;
use doorman_windows::pipe_user::{self, PipeUser};
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::windows::named_pipe::{ClientOptions, NamedPipeServer, ServerOptions};

/// Longest request line a consent client may send.
const MAX_LINE: usize = 4096;

/// How long a client may take to send its request line.
const REQUEST_WITHIN: Duration = Duration::from_secs(5);

/// How long one client may hold its pipe instance in all (its answer's
/// account lookup and write included).
const CLIENT_WITHIN: Duration = Duration::from_secs(15);

/// Clients served at once: any local user may connect (for the status),
/// so the instances and tasks they can hold are bounded; the next waits.
const CLIENTS_AT_ONCE: usize = 16;

/// ERROR_PIPE_BUSY: every instance is serving a client.
const PIPE_BUSY: i32 = 231;

/// The listening pipe: its name and the instance waiting for a client.
#[derive(Debug)]
pub struct Listener {
    name: PathBuf,
    next: NamedPipeServer,
}

/// A pipe leaves no file behind.
#[derive(Debug)]
pub struct SocketFile;

/// Creates the pipe `path`; fails if something else created it first.
pub fn listen(path: &Path) -> std::io::Result<(Listener, SocketFile)> {
    let next = ServerOptions::new()
        .first_pipe_instance(true)
        .reject_remote_clients(true)
        .create(path)?;
    let listener = Listener {
        name: path.to_path_buf(),
        next,
    };
    Ok((listener, SocketFile))
}

/// Serves consent clients forever, one pipe instance each.
pub async fn serve(mut listener: Listener, board: ConsentBoard) {
    let agent = match pipe_user::current() {
        Ok(agent) => agent,
        Err(error) => {
            tracing::warn!(%error, "local consent unavailable: this process's user is unknown");
            return;
        }
    };
    let slots = std::sync::Arc::new(tokio::sync::Semaphore::new(CLIENTS_AT_ONCE));
    loop {
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        if let Err(error) = listener.next.connect().await {
            tracing::debug!(%error, "consent client failed to connect");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let next = match ServerOptions::new()
            .reject_remote_clients(true)
            .create(&listener.name)
        {
            Ok(next) => next,
            Err(error) => {
                tracing::warn!(%error, "the consent pipe cannot take another client");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        let client = std::mem::replace(&mut listener.next, next);
        let board = board.clone();
        let agent = agent.clone();
        tokio::spawn(async move {
            let served = tokio::time::timeout(CLIENT_WITHIN, serve_client(client, &board, &agent));
            match served.await {
                Ok(Ok(())) => {}
                Ok(Err(error)) => tracing::debug!(%error, "consent client failed"),
                Err(_) => tracing::debug!("consent client too slow; dropped"),
            }
            drop(slot);
        });
    }
}

async fn serve_client(
    pipe: NamedPipeServer,
    board: &ConsentBoard,
    agent: &PipeUser,
) -> std::io::Result<()> {
    let mut line = String::new();
    let mut reader = BufReader::new(pipe).take(MAX_LINE as u64);
    tokio::time::timeout(REQUEST_WITHIN, reader.read_line(&mut line))
        .await
        .map_err(|_| std::io::Error::from(std::io::ErrorKind::TimedOut))??;
    let mut pipe = reader.into_inner().into_inner();
    // After the read, as Windows requires, and before any await.
    let client = pipe_user::client(&pipe)?;
    let allowed = pipe_client_allowed(&agent.sid, &client.sid, client.administrator);
    let response = if allowed {
        let sid = client.sid.clone();
        let who = async move {
            tokio::task::spawn_blocking(move || pipe_user::account_name(&sid).unwrap_or(sid))
                .await
                .unwrap_or(client.sid)
        };
        respond(board, &line, who).await
    } else if serde_json::from_str::<ConsentRequest>(&line)
        .is_ok_and(|request| request == ConsentRequest::Status)
    {
        respond(board, &line, std::future::ready(String::new())).await
    } else {
        ConsentResponse::Error {
            message: "only the agent's own user or an administrator may answer its requests".into(),
        }
    };
    let mut text = serde_json::to_string(&response).unwrap_or_default();
    text.push('\n');
    pipe.write_all(text.as_bytes()).await?;
    pipe.flush().await
}

/// `doorman consent`: asks the running agent over its pipe, once the
/// pipe has shown that this user's agent, or the service, serves it.
pub async fn call(path: &Path, request: &ConsentRequest) -> Result<ConsentResponse, ConsentError> {
    let unreachable = |source| ConsentError::Unreachable {
        path: path.to_path_buf(),
        source,
    };
    let own = pipe_user::current().map_err(unreachable)?;
    let mut busy = 0;
    let pipe = loop {
        match ClientOptions::new().open(path) {
            Ok(pipe) => break pipe,
            Err(error) if error.raw_os_error() == Some(PIPE_BUSY) && busy < 50 => {
                busy += 1;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                return Err(ConsentError::NotRunning {
                    path: path.to_path_buf(),
                });
            }
            Err(error) => return Err(unreachable(error)),
        }
    };
    // Who created the pipe; where Windows cannot say (Wine), whose
    // process serves it.
    let owner = access_list::owner_of(&pipe)
        .or_else(|_| pipe_user::server_process_user(&pipe))
        .map_err(unreachable)?;
    if !pipe_server_allowed(&own.sid, &owner) {
        let server = pipe_user::account_name(&owner).unwrap_or(owner);
        return Err(ConsentError::NotTheAgentsPipe {
            path: path.to_path_buf(),
            server,
        });
    }
    super::exchange(pipe, request, path).await
}

/// Who answers from the desktop: the user the agent runs as.
pub(super) async fn desktop_user() -> String {
    std::env::var("USERNAME").unwrap_or_else(|_| "the desktop's user".into())
}
