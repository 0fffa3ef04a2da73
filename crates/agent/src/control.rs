//! The agent's control connection: dial out, answer offers (from the
//! settings as they are, read once per offer: [`crate::answer`]), act on settled outcomes,
//! answer the server's pings, and reconnect with jittered backoff whenever
//! the server goes away or falls silent.

use crate::consent::ConsentBoard;
use crate::dialing::SharedDialer;
use crate::error::LinkError;
use crate::memory::{AwaitedOffer, Memory, RememberedApproval};
use crate::notify::{self, Event, Visitor};
use crate::session::{self, Shared};
use crate::settings_file;
use crate::verdict::{Settled, Verdict};
use doorman_core::passkey::Assertion;
use doorman_core::{LocalConsent, Outcome};
use doorman_proto::connection::Connection;
use doorman_proto::message::{
    AgentToServer, DEFAULT_WRITE_DEADLINE, OfferReply, ServerToAgent, Service, SessionEnd,
    silence_limit, write_deadline,
};
use doorman_proto::{AGENT_PATH, DialError};
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
                // watched for.
                tracing::error!(
                    %message,
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

/// Completes at `deadline`, or never without one.
async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
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
    let (mut reader, mut writer) = Connection::new(io).split();
    let (heartbeat, takes_status, takes_refusals) =
        match reader.read_message::<ServerToAgent>().await {
            Ok(Some(ServerToAgent::Welcome {
                heartbeat_ms,
                takes_status,
                takes_refusals,
            })) => (
                heartbeat_ms.map(Duration::from_millis),
                takes_status,
                takes_refusals,
            ),
            Ok(_) => return Err(LinkError::NoWelcome),
            Err(e) => return Err(e.into()),
        };
    // A server that stops reading is given up, like one that falls silent,
    // and dialed again.
    writer.set_write_deadline(Some(
        heartbeat.map_or(DEFAULT_WRITE_DEADLINE, write_deadline),
    ));
    // What the console shows of this computer (and the recipients the
    // server may enrol): told now, and again when a heartbeat finds the
    // settings changed.
    let mut told = None;
    if takes_status {
        let status = crate::answer::status_of(&settings);
        writer
            .write_message(&AgentToServer::Status(status.clone()))
            .await?;
        told = Some(status);
    }
    let acting = Acting {
        board,
        shared,
        to_server,
        takes_refusals,
    };
    // A connection the server stopped pinging (a NAT that forgot it, a
    // server host that vanished) is given up, so that the agent dials again
    // instead of waiting on it forever.
    let silence = heartbeat.map(silence_limit);
    let mut heard_by = silence.map(|silence| tokio::time::Instant::now() + silence);
    tracing::info!(computer = %settings.name, server = %settings.server, "agent online");
    board.set_online(true);
    // Messages from tasks (tunnel refusals) go out through this loop's writer.
    let (outgoing, mut to_send) = mpsc::channel::<AgentToServer>(64);
    loop {
        let message = tokio::select! {
            message = reader.read_message::<ServerToAgent>() => match message {
                Ok(Some(message)) => message,
                Ok(None) => return Ok(()),
                Err(e) => return Err(e.into()),
            },
            () = sleep_until(heard_by) => {
                let silence = silence.unwrap_or_default();
                return Err(LinkError::Silent(silence));
            }
            Some(message) = to_send.recv() => {
                writer.write_message(&message).await?;
                continue;
            }
            Some(message) = queued.recv() => {
                writer.write_message(&message).await?;
                continue;
            }
        };
        heard_by = silence.map(|silence| tokio::time::Instant::now() + silence);
        match message {
            ServerToAgent::Welcome { .. } => {}
            ServerToAgent::Displaced { address } => {
                return Err(LinkError::Displaced { address });
            }
            ServerToAgent::Ping => {
                writer.write_message(&AgentToServer::Pong).await?;
                let now = told
                    .as_ref()
                    .and_then(|_| settings_file::load(config).ok())
                    .map(|settings| crate::answer::status_of(&settings));
                if let Some(now) = now
                    && told.as_ref() != Some(&now)
                {
                    writer
                        .write_message(&AgentToServer::Status(now.clone()))
                        .await?;
                    told = Some(now);
                }
            }
            ServerToAgent::Offer {
                request_id,
                operator,
                operator_ip,
                reason,
                service,
            } => {
                let visitor = Visitor {
                    operator,
                    operator_ip,
                    reason,
                    service: service.describe(),
                };
                let reply = acting.offered(config, memory, &request_id, visitor, service);
                let answer = AgentToServer::OfferReply {
                    request_id: request_id.clone(),
                    reply,
                };
                if let Err(error) = writer.write_message(&answer).await {
                    // The server never had the answer, and refuses the
                    // operator: nothing will settle the request.
                    memory.awaited.forget(&request_id);
                    board.settle(&request_id);
                    return Err(error.into());
                }
            }
            ServerToAgent::Settled {
                request_id,
                outcome,
                assertions,
            } => {
                if let Some(message) = acting.settled(memory, request_id, outcome, &assertions) {
                    writer.write_message(&message).await?;
                }
            }
            ServerToAgent::OpenTunnel {
                session_id,
                tunnel_id,
                target,
            } => {
                let granted = shared
                    .grants
                    .lock()
                    .map(|grants| {
                        grants
                            .get(&session_id)
                            .is_some_and(|targets| targets.contains(&target))
                    })
                    .unwrap_or(false);
                // The settings as they are now must still offer the target.
                let settings = settings_file::load(config)
                    .ok()
                    .filter(|settings| settings.services.forward.contains(&target));
                if let Some(settings) = settings.filter(|_| granted) {
                    let dialer = shared.dialer.clone();
                    session::spawn_tunnel(settings, dialer, tunnel_id, target, outgoing.clone());
                } else {
                    tracing::warn!(session = %session_id, %target, "refusing a tunnel that no allowed session covers");
                    let refusal = AgentToServer::TunnelRefused {
                        tunnel_id,
                        message: format!("forwarding to {target} is not allowed"),
                    };
                    writer.write_message(&refusal).await?;
                }
            }
        }
    }
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
    /// An offer: answers it from the settings as they are now (read afresh,
    /// so that changes apply without a restart), remembers a request it
    /// asks authorization for until its deadline (refusing it when the
    /// memory is full of requests still awaited), and starts an admitted
    /// session.
    fn offered(
        &self,
        config: &Path,
        memory: &mut Memory,
        request_id: &str,
        visitor: Visitor,
        service: Service,
    ) -> OfferReply {
        let settings = match settings_file::load(config) {
            Ok(settings) => Arc::new(settings),
            Err(error) => return crate::answer::refuse_unreadable_settings(&error, &visitor),
        };
        let now = std::time::Instant::now();
        let reply = crate::answer::answer_offer(&settings, &visitor, &service, memory, now);
        match &reply {
            OfferReply::RequireAuthorization {
                reuse,
                max_session_seconds,
                local_consent,
                timeout_secs,
                passkey,
                ..
            } => {
                let offer = AwaitedOffer {
                    visitor: visitor.clone(),
                    service,
                    reuse_of: reuse.clone(),
                    limit: *max_session_seconds,
                    local_consent: *local_consent,
                    settings,
                    passkey: passkey.clone(),
                };
                let until = crate::memory::remember_until(now, *timeout_secs);
                let remembered = memory
                    .awaited
                    .remember(request_id.to_string(), offer, until, now);
                if remembered.is_err() {
                    // `answer_offer` made room; nothing came in between.
                    tracing::error!(request = %request_id, "no room to remember a request; refusing it");
                    return OfferReply::Refuse {
                        message: "this computer cannot take another request now".into(),
                    };
                }
                // Also when a reuse is offered: a reused approval still
                // needs a required local Allow, and the server may decline
                // the reuse and ask the recipients.
                if *local_consent != LocalConsent::Off {
                    self.board
                        .add(request_id, &visitor, *local_consent, *timeout_secs);
                    crate::consent::ask_on_desktop(self.board, request_id, &visitor, *timeout_secs);
                }
            }
            OfferReply::Admit {
                max_session_seconds,
            } => {
                session::spawn(
                    settings,
                    request_id.to_string(),
                    visitor,
                    service,
                    self.shared.clone(),
                    *max_session_seconds,
                    self.to_server.clone(),
                );
            }
            OfferReply::Refuse { .. } | OfferReply::ReasonRequired => {}
        }
        reply
    }

    /// A request ended: starts its session if [`crate::verdict::decide`]
    /// says it may, tells the owner, and returns what the server must hear
    /// (this computer's refusal of an allowed request). Only a request this
    /// agent asked for can start a session, whatever the server says.
    fn settled(
        &self,
        memory: &mut Memory,
        request_id: String,
        outcome: Outcome,
        assertions: &[Assertion],
    ) -> Option<AgentToServer> {
        let now = std::time::Instant::now();
        let Some(offer) = memory.awaited.take(&request_id, now) else {
            tracing::warn!(request = %request_id, "ignoring an outcome for a request this agent did not ask for, or no longer awaits");
            return None;
        };
        let command = offer.settings.notify_command.clone();
        let settled = Settled {
            request_id: &request_id,
            outcome: &outcome,
            assertions,
            local_answer: self.board.settle(&request_id),
        };
        let counters = match crate::verdict::decide(&offer, &settled, memory, now) {
            Verdict::Refuse(refusal) => {
                tracing::warn!(request = %request_id, %refusal, "refusing an allowed request that this computer's own checks do not accept");
                let message = format!("this computer refused the approval: {refusal}");
                notify::show(
                    command.as_deref(),
                    &offer.visitor,
                    &Event::Refused {
                        message: message.clone(),
                    },
                );
                return Some(if self.takes_refusals {
                    AgentToServer::Refused {
                        request_id,
                        reason: refusal.to_string(),
                    }
                } else {
                    // An older server hears of it as a session that failed
                    // before it began, which its waiting operator reads.
                    AgentToServer::SessionEnded {
                        session_id: request_id,
                        end: SessionEnd::Failed { message },
                    }
                });
            }
            Verdict::NoSession => None,
            Verdict::Start { counters } => Some(counters),
        };
        let event = match &outcome {
            Outcome::Allowed { by, .. } => Event::Allowed { by: by.clone() },
            Outcome::Denied { by, .. } => Event::Denied { by: by.clone() },
            Outcome::Expired { .. } => Event::Expired,
            Outcome::Cancelled { .. } => Event::Cancelled,
        };
        notify::show(command.as_deref(), &offer.visitor, &event);
        match &outcome {
            // A Deny on this computer ends every reuse window.
            Outcome::Denied { .. } => memory.approved.clear(),
            Outcome::Allowed {
                reused_from: None, ..
            } => {
                let approval = RememberedApproval {
                    operator: offer.visitor.operator.clone(),
                    service: offer.service.clone(),
                    at: now,
                    // Verified here only if a passkey assertion was: an
                    // approval the local Allow alone met is not one a
                    // computer requiring passkeys may reuse.
                    passkey_verified: offer.passkey.is_some()
                        && counters
                            .as_ref()
                            .is_some_and(|counters| !counters.is_empty()),
                };
                let window = offer.settings.desktop_sharing.approval_valid_for;
                memory.remember_approval(request_id.clone(), approval, window);
            }
            _ => {}
        }
        if let Some(counters) = counters {
            memory.passkey_counters.extend(counters);
            session::spawn(
                offer.settings,
                request_id,
                offer.visitor,
                offer.service,
                self.shared.clone(),
                offer.limit,
                self.to_server.clone(),
            );
        }
        None
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
