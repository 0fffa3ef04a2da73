//! What an agent says on its control connection: pongs, its status, its
//! answers to offers, refused tunnels, sessions' ends, this computer's
//! refusals of allowed requests, and decisions made at the computer.

use super::connection::Served;
use crate::broker::{Applied, Broker, Witness};
use doorman_core::Decision;
use doorman_core::authorization::Event;
use doorman_core::limits::MAX_NAME_LEN;
use doorman_store::ComputerId;
use doorman_wire::message::{AgentToServer, SessionEnd};
use std::sync::Arc;

impl<W> Served<W> {
    /// Acts on one message from the agent.
    pub(super) async fn on_message(&mut self, message: AgentToServer) {
        let broker = &self.broker;
        let name = &self.name;
        match message {
            AgentToServer::Pong => {}
            AgentToServer::Status(mut status) => {
                status
                    .recipients
                    .truncate(doorman_core::limits::MAX_RECIPIENTS);
                // As many as one browsing session may name.
                status
                    .files
                    .truncate(doorman_wire::message::files::MAX_COPY_PATHS);
                broker.agents().set_status(name, self.link_id, status);
            }
            AgentToServer::OfferReply { request_id, reply } => {
                if let Some(waiting) = self.offers.remove(&request_id) {
                    let _ = waiting.send(reply);
                }
            }
            AgentToServer::TunnelRefused { tunnel_id, message } => {
                tracing::info!(reason = ?message, "tunnel refused by the agent");
                // Dropping the slot tells the waiting operator at once.
                drop(broker.sessions().take_sender(&tunnel_id, name));
            }
            AgentToServer::SessionEnded { session_id, end } => {
                broker.sessions().report_end(&session_id, name, end);
            }
            AgentToServer::Refused { request_id, reason } => {
                // Recorded before this agent's next message is read, so a
                // flood of them waits on the database instead of piling
                // up; the operator waiting for the session hears the
                // computer's words.
                Box::pin(refused(broker, name, self.agent.id, &request_id, &reason)).await;
            }
            AgentToServer::LocalDecision {
                request_id,
                decision,
                user,
            } => {
                // Applied beside this loop: settling pushes the outcome
                // back through this agent's channel.
                let broker_for_task = Arc::clone(broker);
                let name = name.clone();
                let id = self.agent.id;
                broker.lifecycle().spawn(async move {
                    local_decision(&broker_for_task, &name, id, &request_id, decision, &user).await;
                });
            }
        }
    }
}

/// A person at computer `name` (whose id is `id`) answered one of its
/// requests: applied as a local decision, audited with their login name.
async fn local_decision(
    broker: &Broker,
    name: &str,
    id: ComputerId,
    request_id: &str,
    decision: Decision,
    user: &str,
) {
    let user_ok = !user.is_empty()
        && user.len() <= MAX_NAME_LEN
        && !user.chars().any(|c| c.is_control() || c == ',');
    // Only the computer a request was made to answers it locally.
    let ours = matches!(broker.store().request(request_id).await, Ok(Some(row)) if row.computer_id == Some(id));
    if !user_ok || !ours {
        tracing::warn!(computer = %name, request = %request_id, "ignoring a local decision for another computer's request or with a bad user name");
        return;
    }
    let event = Event::LocalDecide {
        decision,
        by: format!("{user} (at {name})"),
        at: broker.now_millis(),
    };
    let witness = Witness {
        actor: Some(format!("{user} (at {name})")),
        detail: Some(format!("local decision by {user} at the computer")),
        ..Witness::default()
    };
    match broker.apply(request_id, event, witness).await {
        Ok(Applied::Unchanged(why)) => {
            tracing::info!(computer = %name, request = %request_id, ?why, "local decision changed nothing");
        }
        Ok(_) => {}
        Err(error) => tracing::error!(%error, "cannot apply a local decision"),
    }
}

/// Computer `name` refused the session of its allowed request: the request
/// ends refused (never sent to the agent again), and the operator waiting
/// for the session is told why.
async fn refused(broker: &Broker, name: &str, id: ComputerId, request_id: &str, reason: &str) {
    match broker
        .refused_by_computer(name, id, request_id, reason)
        .await
    {
        Ok(Some(reason)) => {
            let message = format!("the computer refused the approval: {reason}");
            let end = SessionEnd::Failed { message };
            broker.sessions().report_end(request_id, name, end);
        }
        Ok(None) => {
            tracing::info!(computer = %name, request = %request_id, "ignoring a refusal of a request that is not this computer's, not allowed, or whose session started");
        }
        Err(error) => tracing::error!(%error, "cannot record a computer's refusal"),
    }
}
