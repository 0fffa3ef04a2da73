//! What this computer's settings answer, read afresh each time: an offer
//! (refused, asked of the recipients by email, or admitted, with the owner
//! told), and the status the web console lists.

use crate::memory::{MAX_AWAITED, Memory};
use crate::notify::{self, Event, Visitor};
use crate::settings_file;
use doorman_core::AgentSettings;
use doorman_wire::message::{ComputerStatus, OfferReply, Service};

/// What the settings say, as the web console lists the computer.
pub(crate) fn status_of(settings: &AgentSettings) -> ComputerStatus {
    ComputerStatus {
        email_authorization: settings.desktop_sharing.require_email_authorization,
        shell: settings.services.shell,
        forward: !settings.services.forward.is_empty(),
        desktop: settings.services.desktop.is_some(),
        files: settings.services.files.clone(),
        recipients: settings.desktop_sharing.recipients.clone(),
    }
}

/// A settings file that cannot be read refuses every connection until it
/// is fixed.
pub(crate) fn refuse_unreadable_settings(
    error: &settings_file::SettingsFileError,
    visitor: &Visitor,
) -> OfferReply {
    tracing::error!(%error, "refusing connections until the settings file is fixed");
    let message = "the computer's settings file is invalid".to_string();
    notify::show(
        None,
        visitor,
        &Event::Refused {
            message: message.clone(),
        },
    );
    OfferReply::Refuse { message }
}

/// Decides from the settings as they were read for this offer, at `now`.
/// Email authorization needs room in the memory of awaited requests
/// (expired ones are forgotten to make it); when every one there is still
/// awaited, the offer is refused rather than one of them forgotten.
pub(crate) fn answer_offer(
    settings: &AgentSettings,
    visitor: &Visitor,
    service: &Service,
    memory: &mut Memory,
    now: std::time::Instant,
) -> OfferReply {
    let command = settings.notify_command.as_deref();
    let refuse = |message: String| {
        notify::show(
            command,
            visitor,
            &Event::Refused {
                message: message.clone(),
            },
        );
        OfferReply::Refuse { message }
    };
    if let Some(message) = not_offered(settings, service) {
        return refuse(message);
    }
    let sharing = &settings.desktop_sharing;
    if sharing.require_reason && visitor.reason.trim().is_empty() {
        let message = "this computer requires a reason".to_string();
        notify::show(command, visitor, &Event::Refused { message });
        return OfferReply::ReasonRequired;
    }
    if sharing.require_email_authorization {
        if !memory.awaited.make_room(now) {
            tracing::warn!(
                awaited = MAX_AWAITED,
                "refusing an offer: this computer already awaits the most requests it remembers"
            );
            return refuse(format!(
                "this computer already has {MAX_AWAITED} requests waiting for authorization; try again once some are decided or expired"
            ));
        }
        // While the computer requires passkeys, only an approval whose
        // passkeys were verified here is offered for reuse.
        let reuse = (sharing.approval_valid_for > 0)
            .then(|| {
                memory.reusable(
                    &visitor.operator,
                    service,
                    sharing.approval_valid_for,
                    sharing.require_passkey,
                    now,
                )
            })
            .flatten();
        // A reuse is announced when the server agrees (the outcome says
        // "allowed"); otherwise the emails go out as usual. Either way a
        // required local Allow is still asked for.
        if reuse.is_none() {
            let event = Event::AwaitingAuthorization {
                recipients: sharing.recipients.clone(),
                expires_in: sharing.email_authorization_timeout,
            };
            notify::show(command, visitor, &event);
        }
        OfferReply::RequireAuthorization {
            recipients: sharing.recipients.clone(),
            timeout_secs: sharing.email_authorization_timeout,
            required_approvals: sharing.required_approvals,
            approval_valid_for: sharing.approval_valid_for,
            max_session_seconds: sharing.max_session_seconds,
            reuse,
            local_consent: sharing.local_consent,
            passkey: sharing
                .require_passkey
                .then(|| crate::passkeys::requirement(sharing)),
            // Said by the caller, which holds the identity.
            identity: None,
        }
    } else {
        notify::show(command, visitor, &Event::Connecting);
        OfferReply::Admit {
            max_session_seconds: sharing.max_session_seconds,
        }
    }
}

/// Why this computer does not offer `service`, if it does not: the
/// service is off, or the forward target, desktop or folder not shared.
fn not_offered(settings: &AgentSettings, service: &Service) -> Option<String> {
    let services = &settings.services;
    match service {
        Service::Command { .. } if !services.shell => {
            Some("remote commands are not offered on this computer".into())
        }
        Service::Shell { .. } if !services.shell => {
            Some("interactive shells are not offered on this computer".into())
        }
        Service::Forward { targets } => targets
            .iter()
            .find(|t| !services.forward.contains(t))
            .map(|target| format!("forwarding to {target} is not offered on this computer")),
        Service::Desktop if services.desktop.is_none() => {
            Some("the desktop is not offered on this computer".into())
        }
        Service::Files(job) => doorman_files::offered(&services.files, job).err(),
        Service::Command { .. } | Service::Shell { .. } | Service::Desktop => None,
    }
}
