//! The agent's control connection: dial out, answer offers (from the
//! settings as they are, read once per offer: [`crate::answer`]), act on settled outcomes,
//! answer the server's pings, and reconnect with jittered backoff whenever
//! the server goes away or falls silent.
//!
//! This module owns the reconnecting; [`connection`] serves one
//! connection, and each kind of work has its own module: [`offer`],
//! [`settled`], [`tunnel`].

mod connection;
mod offer;
mod settled;
mod tunnel;

use crate::consent::ConsentBoard;
use crate::dialing::SharedDialer;
use crate::error::LinkError;
use crate::memory::Memory;
use crate::session::{self, Shared};
use crate::settings_file;
use connection::Served;
use doorman_core::AgentSettings;
use doorman_wire::connection::Connection;
use doorman_wire::message::AgentToServer;
use doorman_wire::{AGENT_PATH, DialError};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

/// Connects (through `dialer`), serves, and reconnects, forever. Messages
/// queued on `to_server` (local answers from `board`, sessions' ends) go
/// to the server on whichever connection is up.
pub async fn run_forever(
    config: PathBuf,
    board: ConsentBoard,
    dialer: SharedDialer,
    identity: Arc<doorman_e2e::Identity>,
    to_server: mpsc::UnboundedSender<AgentToServer>,
    mut queued: mpsc::UnboundedReceiver<AgentToServer>,
) {
    let mut failures: u32 = 0;
    // Requests this agent asked authorization for outlive one connection: a
    // request allowed after a server restart still starts its session.
    let mut memory = Memory::default();
    let shared = Shared {
        grants: session::ForwardGrants::default(),
        dialer,
        identity,
    };
    loop {
        let tried = current_key(&config);
        let link = Link {
            board: &board,
            to_server: &to_server,
            queued: &mut queued,
        };
        let served = serve_once(&config, &mut memory, &shared, link).await;
        board.set_online(false);
        match served {
            Ok(()) => {
                failures = 0;
                // A server that stops or restarts ends its connections so.
                tracing::info!(
                    "the server closed the connection (it stopped or restarted); reconnecting"
                );
            }
            Err(LinkError::Dial(DialError::Refused { status, message }))
                if status == hyper::StatusCode::UNAUTHORIZED =>
            {
                // Retrying at once cannot help; a fixed key can, so it is
                // watched for. The server's words go in a field of their
                // own: one named `message` would be printed unlabelled,
                // run together with this line's.
                tracing::error!(
                    server_said = ?message,
                    settings = %config.display(),
                    "the server refused this agent's key: put the key that `doorman admin agent add` or `agent rotate` printed in the settings file (key = ...); trying again in 5 minutes, or as soon as the key there changes"
                );
                wait_for_new_key(&config, tried, KEY_REFUSED_WAIT).await;
                continue;
            }
            Err(LinkError::Displaced { address }) => {
                // Two agents with one name and key would take each other's
                // place every few seconds; this one stands aside.
                tracing::error!(
                    other = %address,
                    settings = %config.display(),
                    "another agent connected with this computer's name and key and took this one's place: give each computer its own name and key (doorman admin agent add); trying again in 5 minutes"
                );
                tokio::time::sleep(STAND_ASIDE_WAIT).await;
                continue;
            }
            Err(error) => {
                failures = failures.saturating_add(1);
                tracing::warn!(%error, "cannot stay connected to the server");
            }
        }
        tokio::time::sleep(backoff(failures)).await;
    }
}

/// How long an agent whose key was refused waits before trying it again.
const KEY_REFUSED_WAIT: Duration = Duration::from_secs(300);
/// How long an agent that another one displaced waits before connecting again.
const STAND_ASIDE_WAIT: Duration = Duration::from_secs(300);

fn current_key(config: &Path) -> Option<doorman_core::Secret> {
    settings_file::load(config)
        .ok()
        .map(|settings| settings.key)
}

/// Waits up to `wait`, returning early once the settings file holds a key
/// other than the one refused.
async fn wait_for_new_key(config: &Path, refused: Option<doorman_core::Secret>, wait: Duration) {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let now = current_key(config);
        if now.is_some() && now != refused {
            return;
        }
        if tokio::time::Instant::now() >= deadline {
            return;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// The wait before dialing again after `failures` failures in a row (0:
/// after a clean close): 0.5 s, then 1, 2, 4 … up to 30 s, each plus up to
/// as much again at random (so at most a minute), so that many agents do
/// not reconnect in step.
fn backoff(failures: u32) -> Duration {
    use backon::BackoffBuilder;
    let cap = Duration::from_secs(30);
    backon::ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(500))
        .with_max_delay(cap)
        .with_jitter()
        .without_max_times()
        .build()
        .nth(usize::try_from(failures).unwrap_or(usize::MAX))
        .unwrap_or(cap)
}

/// What the control connection shares with the rest of the agent.
struct Link<'a> {
    board: &'a ConsentBoard,
    to_server: &'a mpsc::UnboundedSender<AgentToServer>,
    queued: &'a mut mpsc::UnboundedReceiver<AgentToServer>,
}

/// One connection: dials, takes the welcome, tells the server this
/// computer's status, then serves it until it closes, falls silent or
/// displaces this agent.
async fn serve_once(
    config: &Path,
    memory: &mut Memory,
    shared: &Shared,
    link: Link<'_>,
) -> Result<(), LinkError> {
    let Link {
        board,
        to_server,
        queued,
    } = link;
    let settings = settings_file::load(config)?;
    let io = shared.dialer.dial(&settings, AGENT_PATH).await?;
    let (mut reader, writer) = Connection::new(io).split();
    let welcome = connection::await_welcome(&mut reader).await?;
    let acting = Acting {
        board,
        shared,
        to_server,
        takes_refusals: welcome.takes_refusals,
    };
    let mut served = Served::new(config, memory, acting, writer, welcome.heartbeat);
    if welcome.takes_status {
        served.tell(crate::answer::status_of(&settings)).await?;
    }
    tracing::info!(computer = %settings.name, server = %settings.server, "agent online");
    board.set_online(true);
    served.serve(reader, queued, welcome.heartbeat).await
}

/// What acting on an offer or an outcome needs besides the agent's memory.
struct Acting<'a> {
    board: &'a ConsentBoard,
    shared: &'a Shared,
    to_server: &'a mpsc::UnboundedSender<AgentToServer>,
    /// The server takes [`AgentToServer::Refused`].
    takes_refusals: bool,
}

impl Acting<'_> {
    /// Starts the session of request `request_id` in its own task.
    fn start(&self, settings: Arc<AgentSettings>, allowed: session::Allowed) {
        session::spawn(
            settings,
            allowed,
            self.shared.clone(),
            self.to_server.clone(),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::backoff;
    use std::time::Duration;

    #[test]
    fn backoff_doubles_from_half_a_second_up_to_its_30_second_cap() {
        for (failures, base) in [(0, 500), (1, 1_000), (2, 2_000), (5, 16_000), (6, 30_000)] {
            let base = Duration::from_millis(base);
            for _ in 0..20 {
                let wait = backoff(failures);
                assert!(wait >= base && wait <= base * 2, "{failures}: {wait:?}");
            }
        }
        // The cap is reached and held.
        for _ in 0..20 {
            let wait = backoff(40);
            assert!(
                wait >= Duration::from_secs(30) && wait <= Duration::from_secs(60),
                "{wait:?}"
            );
        }
    }
}
