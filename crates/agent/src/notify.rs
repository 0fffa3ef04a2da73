//! Telling the remote computer's owner what is happening. For now one log
//! line per event at `info`, so it shows in the agent's terminal or journal.

use doorman_core::Outcome;

/// Something the owner should know about.
#[derive(Debug, Clone)]
pub enum Notification<'a> {
    /// An operator is connecting and email authorization is pending.
    AwaitingAuthorization {
        operator: &'a str,
        operator_ip: &'a str,
        reason: &'a str,
        service: &'a str,
        recipients: &'a [String],
        timeout_secs: u32,
    },
    /// An operator is connecting with email authorization off.
    ConnectingWithoutAuthorization {
        operator: &'a str,
        operator_ip: &'a str,
        reason: &'a str,
        service: &'a str,
    },
    /// A request the agent asked for has ended.
    Settled {
        operator: &'a str,
        outcome: &'a Outcome,
    },
    SessionStarted {
        operator: &'a str,
        service: &'a str,
    },
    SessionEnded {
        operator: &'a str,
        status: &'a str,
    },
    /// An offer the settings do not allow.
    Refused {
        operator: &'a str,
        message: &'a str,
    },
}

/// Shows a notification.
pub fn show(notification: &Notification<'_>) {
    match notification {
        Notification::AwaitingAuthorization {
            operator,
            operator_ip,
            reason,
            service,
            recipients,
            timeout_secs,
        } => tracing::info!(
            target: "doorman::notify",
            "{operator} ({operator_ip}) is connecting to {service}; reason: {reason:?}. Email authorization pending: sent to {}; expires in {timeout_secs} s",
            recipients.join(", ")
        ),
        Notification::ConnectingWithoutAuthorization {
            operator,
            operator_ip,
            reason,
            service,
        } => tracing::info!(
            target: "doorman::notify",
            "{operator} ({operator_ip}) is connecting to {service}; reason: {reason:?}. Email authorization is off"
        ),
        Notification::Settled { operator, outcome } => match outcome {
            Outcome::Allowed { by, .. } => {
                tracing::info!(target: "doorman::notify", "connection of {operator} allowed by {by}")
            }
            Outcome::Denied { by, .. } => {
                tracing::info!(target: "doorman::notify", "connection of {operator} denied by {by}")
            }
            Outcome::Expired { .. } => tracing::info!(
                target: "doorman::notify",
                "connection of {operator} expired: nobody decided in time"
            ),
            Outcome::Cancelled { .. } => tracing::info!(
                target: "doorman::notify",
                "connection of {operator} cancelled by the operator"
            ),
        },
        Notification::SessionStarted { operator, service } => {
            tracing::info!(target: "doorman::notify", "session of {operator} started: {service}")
        }
        Notification::SessionEnded { operator, status } => {
            tracing::info!(target: "doorman::notify", "session of {operator} ended: {status}")
        }
        Notification::Refused { operator, message } => {
            tracing::info!(target: "doorman::notify", "refused {operator}: {message}")
        }
    }
}
