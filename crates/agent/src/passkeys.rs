//! Passkey approvals, checked here whatever the server says: the nonce and
//! deadline the agent puts into the challenge when it answers an offer, and
//! the verification of the assertions that come with "allowed" against the
//! keys pinned in this computer's own settings.

use crate::memory::AwaitedOffer;
use doorman_core::display::counted;
use doorman_core::passkey::{self, Assertion, B64, ChallengeParts, Expected, PasskeyError};
use doorman_core::settings::EmailAuthorization;
use doorman_wire::message::PasskeyRequirement;
use std::collections::{HashMap, HashSet};

/// What this computer asks approvals to be made with, for one offer.
pub fn requirement(sharing: &EmailAuthorization) -> PasskeyRequirement {
    let mut nonce = [0u8; 16];
    // Without randomness the nonce is all zeros; the request id and the
    // deadline still bind the challenge to this offer.
    let _ = ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut nonce);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
    PasskeyRequirement {
        nonce: B64(nonce.to_vec()),
        expires_at: now + i64::from(sharing.email_authorization_timeout) * 1000,
        passkeys: sharing.passkeys.clone(),
    }
}

/// The server's origin and RP id, from the URL this agent knows it by.
fn site(server: &str) -> (String, String) {
    let origin = server.trim_end_matches('/').to_string();
    let host = origin
        .split("://")
        .nth(1)
        .unwrap_or_default()
        .rsplit_once(':')
        .map_or_else(
            || origin.split("://").nth(1).unwrap_or_default().to_string(),
            |(host, port)| {
                if port.chars().all(|c| c.is_ascii_digit()) {
                    host.to_string()
                } else {
                    origin.split("://").nth(1).unwrap_or_default().to_string()
                }
            },
        );
    (origin, host.trim_matches(['[', ']']).to_string())
}

/// Whether an allowed request's passkey approvals let its session start:
/// the signature counters to remember if they do; if they do not, why:
/// fewer distinct recipients approved with a pinned passkey that verifies
/// (a person allowing at this computer counts as one) than the settings
/// require. `counters` holds each key's last signature counter. Pure: the
/// caller keeps the counters once the session may start.
pub fn verify(
    offer: &AwaitedOffer,
    request_id: &str,
    assertions: &[Assertion],
    allowed_here: bool,
    counters: &HashMap<B64, u32>,
) -> Result<Vec<(B64, u32)>, String> {
    let Some(requirement) = offer.passkey.as_ref() else {
        return Ok(Vec::new());
    };
    let settings = &offer.settings;
    let service = serde_json::to_string(&offer.service).unwrap_or_default();
    let challenge = passkey::challenge(&ChallengeParts {
        request_id,
        computer: &settings.name,
        operator: &offer.visitor.operator,
        service: &service,
        expires_at: requirement.expires_at,
        nonce: &requirement.nonce.0,
    });
    let (origin, rp_id) = site(&settings.server);
    let expected = Expected {
        challenge: &challenge,
        origin: &origin,
        rp_id: &rp_id,
    };
    let mut approvers = HashSet::new();
    let mut seen: HashMap<B64, u32> = HashMap::new();
    let mut problem = None;
    for assertion in assertions {
        let Some(key) = requirement
            .passkeys
            .iter()
            .find(|key| key.id == assertion.credential_id)
        else {
            problem = Some(PasskeyError::UnknownCredential);
            continue;
        };
        let last = seen
            .get(&key.id)
            .or_else(|| counters.get(&key.id))
            .copied()
            .unwrap_or(0);
        match passkey::verify(assertion, key, &expected, last) {
            Ok(counter) => {
                seen.insert(key.id.clone(), counter);
                approvers.insert(key.recipient.as_str());
            }
            Err(error) => problem = Some(error),
        }
    }
    let verified = approvers.len() + usize::from(allowed_here);
    let required = settings.desktop_sharing.required_approvals as usize;
    if verified >= required {
        return Ok(seen.into_iter().collect());
    }
    Err(match problem {
        Some(error) => error.to_string(),
        None => format!(
            "it needs {} made with a passkey pinned on this computer, and has {verified}",
            counted(required, "approval", "approvals")
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::site;

    #[test]
    fn the_site_is_the_servers_url_and_host() {
        for (url, origin, host) in [
            (
                "https://doorman.example.com/",
                "https://doorman.example.com",
                "doorman.example.com",
            ),
            (
                "https://doorman.example.com:8443",
                "https://doorman.example.com:8443",
                "doorman.example.com",
            ),
            (
                "http://127.0.0.1:8080",
                "http://127.0.0.1:8080",
                "127.0.0.1",
            ),
            ("http://[::1]:8080", "http://[::1]:8080", "::1"),
            ("http://localhost", "http://localhost", "localhost"),
        ] {
            assert_eq!(site(url), (origin.to_string(), host.to_string()), "{url}");
        }
    }
}
