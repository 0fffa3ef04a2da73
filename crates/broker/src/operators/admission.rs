//! The checks a connect passes before and while it waits: the request's
//! shape, the agent's answer, the operator's access (its token and grants,
//! re-checked every heartbeat), the limits that protect recipients, and who
//! may not approve.

use super::{Ask, OperatorError, audit};
use crate::broker::Broker;
use doorman_core::access::permits;
use doorman_core::display::hidden_kind;
use doorman_core::limits::{
    MAX_COMMAND_ARGS, MAX_COMMAND_BYTES, MAX_FORWARD_TARGETS, MAX_RECIPIENTS, MAX_TIMEOUT_SECS,
    MIN_TIMEOUT_SECS,
};
use doorman_core::names::{validate_name, validate_reason};
use doorman_core::settings::{validate_forward_target, validate_recipient};
use doorman_core::{AuditKind, Revoked};
use doorman_store::StoreError;
use doorman_wire::message::files::MAX_COPY_PATHS;
use doorman_wire::message::{CopyDirection, CopyJob, Service};

pub(super) fn validate_ask(computer: &str, reason: &str, service: &Service) -> Result<(), String> {
    validate_name(computer).map_err(|e| format!("computer name {e}"))?;
    validate_reason(reason).map_err(|e| format!("reason {e}"))?;
    match service {
        Service::Command { argv } => {
            if argv.is_empty() || argv[0].is_empty() {
                return Err("command must not be empty".into());
            }
            if argv.len() > MAX_COMMAND_ARGS {
                return Err(format!(
                    "command has more than {MAX_COMMAND_ARGS} arguments"
                ));
            }
            if argv.iter().map(String::len).sum::<usize>() > MAX_COMMAND_BYTES {
                return Err(format!("command is longer than {MAX_COMMAND_BYTES} bytes"));
            }
            if argv.iter().any(|arg| arg.contains('\0')) {
                return Err("command contains a NUL byte".into());
            }
        }
        Service::Shell { term, .. } => {
            if term.len() > 64 || term.chars().any(|c| hidden_kind(c).is_some()) {
                return Err("terminal name must be one short line".into());
            }
        }
        Service::Forward { targets } => {
            if targets.is_empty() || targets.len() > MAX_FORWARD_TARGETS {
                return Err(format!(
                    "between 1 and {MAX_FORWARD_TARGETS} forward targets"
                ));
            }
            for target in targets {
                validate_forward_target(target)?;
            }
        }
        Service::Desktop => {}
        Service::Files(job) => validate_copy(job)?,
    }
    Ok(())
}

/// Checks a copy's shape: one destination to the computer, at least one
/// source from it, and not too many, nor too long in all (they go into
/// the email, the page and the notification, as a command's words do).
fn validate_copy(job: &CopyJob) -> Result<(), String> {
    let paths = job.paths.len();
    match job.direction {
        CopyDirection::ToComputer if paths != 1 => {
            Err("a copy to the computer names one destination".into())
        }
        CopyDirection::FromComputer if paths == 0 || paths > MAX_COPY_PATHS => Err(format!(
            "a copy from the computer names between 1 and {MAX_COPY_PATHS} sources"
        )),
        CopyDirection::Browse if paths == 0 || paths > MAX_COPY_PATHS => Err(format!(
            "browsing names between 1 and {MAX_COPY_PATHS} shared folders"
        )),
        _ if job.paths.iter().any(|path| path.0.is_empty()) => {
            Err("a copy names an empty path".into())
        }
        _ if job.paths.iter().map(|path| path.0.len()).sum::<usize>() > MAX_COMMAND_BYTES => Err(
            format!("a copy's paths are longer than {MAX_COMMAND_BYTES} bytes in all"),
        ),
        _ => Ok(()),
    }
}

/// Why this operator may not ask this computer now, if a limit says so;
/// a refusal is recorded in the audit trail.
pub(super) async fn check_limits(
    broker: &Broker,
    ask: &Ask<'_>,
) -> Result<Option<String>, OperatorError> {
    let refusal = over_limit(broker, ask).await?;
    if let Some(message) = &refusal {
        broker
            .store()
            .record(&audit(
                broker,
                ask,
                AuditKind::RefusedLimit,
                None,
                Some(message.clone()),
            ))
            .await?;
    }
    Ok(refusal)
}

pub(super) async fn over_limit(
    broker: &Broker,
    ask: &Ask<'_>,
) -> Result<Option<String>, OperatorError> {
    let now = broker.now_millis();
    let limits = broker.limits();
    // Counted per operator and computer: one operator's requests
    // (cancelled at once, say) never lock the others out of the computer.
    let counts = broker
        .store()
        .admission_counts(ask.operator_id, ask.computer_id, now, now - 3_600_000)
        .await?;
    if let Some(until) = counts.blocked_until {
        broker.metrics().rate_limited("blocked");
        return Ok(Some(format!(
            "a recipient of {:?} did not expect your last request; you may ask again after {}",
            ask.computer,
            doorman_core::display::format_time(until)
        )));
    }
    let pending = counts.pending;
    if pending >= i64::from(limits.max_pending_per_operator) {
        broker.metrics().rate_limited("pending_requests");
        return Ok(Some(format!(
            "you already have {pending} requests waiting for authorization (limit {})",
            limits.max_pending_per_operator
        )));
    }
    let recent = counts.recent;
    if recent >= i64::from(limits.max_requests_per_hour) {
        broker.metrics().rate_limited("requests_per_hour");
        return Ok(Some(format!(
            "you asked computer {:?} {recent} times in the last hour (limit {}); try again later",
            ask.computer, limits.max_requests_per_hour
        )));
    }
    Ok(None)
}

pub(super) fn validate_agent_answer(
    recipients: &[String],
    timeout_secs: u32,
    required_approvals: u32,
) -> Result<(), String> {
    if recipients.is_empty() || recipients.len() > MAX_RECIPIENTS {
        return Err(format!(
            "between 1 and {MAX_RECIPIENTS} recipients are required"
        ));
    }
    for recipient in recipients {
        validate_recipient(recipient)?;
    }
    if !(MIN_TIMEOUT_SECS..=MAX_TIMEOUT_SECS).contains(&timeout_secs) {
        return Err(format!(
            "timeout must be {MIN_TIMEOUT_SECS}-{MAX_TIMEOUT_SECS} seconds"
        ));
    }
    if required_approvals == 0 || required_approvals as usize > recipients.len() {
        return Err("required approvals must be between 1 and the number of recipients".into());
    }
    Ok(())
}

/// Whether two recipient entries name the same mailbox (`Name <a@x>` and
/// `a@x` do), ignoring case.
pub(super) fn same_mailbox(a: &str, b: &str) -> bool {
    let address = |text: &str| {
        text.parse::<lettre::message::Mailbox>()
            .map(|mailbox| mailbox.email.to_string().to_ascii_lowercase())
            .unwrap_or_else(|_| text.trim().to_ascii_lowercase())
    };
    address(a) == address(b)
}

/// Whether the operator's grants let it reach this computer for this service.
pub(super) async fn permitted(broker: &Broker, ask: &Ask<'_>) -> Result<bool, StoreError> {
    let grants = broker.store().grants_of_operator(ask.operator_id).await?;
    Ok(permits(&grants, &ask.computer, ask.service.kind()))
}

/// What ended the operator's right to this connection, if anything did:
/// its token was replaced or removed (`doorman admin operator
/// rotate|remove`), the computer removed (`doorman admin agent remove`,
/// even if another was added under its name since), or its grant revoked
/// (`doorman admin access revoke`).
/// A database that cannot answer revokes nothing.
pub(super) async fn still_permitted(broker: &Broker, ask: &Ask<'_>) -> Option<Revoked> {
    let checked = async {
        let operator = broker.store().operator_by_token(&ask.token_hash).await?;
        if operator.map(|operator| operator.id) != Some(ask.operator_id) {
            return Ok(Some(Revoked::OperatorToken));
        }
        if broker.store().computer_id(&ask.computer).await? != Some(ask.computer_id) {
            return Ok(Some(Revoked::Computer));
        }
        Ok::<_, StoreError>((!permitted(broker, ask).await?).then_some(Revoked::Access))
    };
    match checked.await {
        Ok(revoked) => revoked,
        Err(error) => {
            tracing::error!(%error, "cannot check an operator's token and grants");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{validate_agent_answer, validate_copy};
    use doorman_core::limits::MAX_COMMAND_BYTES;
    use doorman_wire::message::{CopyDirection, CopyJob, WirePath};

    #[test]
    fn a_copy_names_no_more_than_a_commands_worth_of_paths() {
        let job = |paths: usize| CopyJob {
            direction: CopyDirection::FromComputer,
            paths: vec![WirePath(vec![b'a'; 4096]); paths],
            files: 0,
            bytes: 0,
            dirs: 0,
            sources: 1,
            recursive: false,
            keep: false,
            resume: false,
        };
        assert!(validate_copy(&job(MAX_COMMAND_BYTES / 4096)).is_ok());
        let error = validate_copy(&job(MAX_COMMAND_BYTES / 4096 + 1)).unwrap_err();
        assert!(error.contains("longer than"), "{error}");
    }

    fn recipients(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("r{i}@example.com")).collect()
    }

    #[test]
    fn an_agent_may_name_one_to_twenty_recipients() {
        assert!(validate_agent_answer(&recipients(20), 180, 1).is_ok());
        assert!(validate_agent_answer(&recipients(1), 180, 1).is_ok());
        for bad in [0, 21] {
            let error = validate_agent_answer(&recipients(bad), 180, 1).unwrap_err();
            assert_eq!(error, "between 1 and 20 recipients are required");
        }
    }

    #[test]
    fn the_timeout_and_the_approvals_are_bounded() {
        assert!(validate_agent_answer(&recipients(3), 4, 1).is_err());
        assert!(validate_agent_answer(&recipients(3), 5, 1).is_ok());
        assert!(validate_agent_answer(&recipients(3), 3600, 3).is_ok());
        assert!(validate_agent_answer(&recipients(3), 3601, 1).is_err());
        assert!(validate_agent_answer(&recipients(3), 180, 4).is_err());
        assert!(validate_agent_answer(&recipients(3), 180, 0).is_err());
    }
}
