//! The approval page of a computer that requires passkeys: what the page's
//! script needs for the WebAuthn ceremony (the challenge, the RP id, the
//! recipient's pinned credentials), and the server's own check of the
//! assertion an Allow brings before it counts. The computer checks it again
//! itself; the server's check keeps a bad Allow from settling the request.

use doorman_core::passkey::{self, Assertion, ChallengeParts, Expected, PinnedPasskey};
use doorman_http::origin::PublicOrigin;
use doorman_store::RequestRow;
use doorman_wire::message::PasskeyRequirement;

/// The script's data for one recipient's page.
pub struct PasskeyPage {
    /// base64url.
    pub challenge: String,
    pub rp_id: String,
    /// The recipient's pinned credential ids, base64url, comma-separated.
    pub credentials: String,
    /// Whether the recipient has a pinned passkey at all.
    pub enrolled: bool,
}

/// What an Allow with a passkey proved: the assertion as stored and the
/// audit's words.
pub struct Checked {
    pub assertion: String,
    pub detail: String,
}

fn challenge(request: &RequestRow, requirement: &PasskeyRequirement) -> [u8; 32] {
    passkey::challenge(&ChallengeParts {
        request_id: &request.id,
        computer: &request.computer,
        operator: &request.operator,
        service: request.service_json.as_deref().unwrap_or_default(),
        expires_at: request.expires_at,
        nonce: &requirement.nonce.0,
    })
}

fn keys_of<'a>(
    requirement: &'a PasskeyRequirement,
    recipient: &'a str,
) -> impl Iterator<Item = &'a PinnedPasskey> {
    requirement
        .passkeys
        .iter()
        .filter(move |key| key.recipient.eq_ignore_ascii_case(recipient))
}

/// The page's passkey data, when the request needs passkeys.
pub fn page(request: &RequestRow, recipient: &str, public: &PublicOrigin) -> Option<PasskeyPage> {
    let requirement = request.passkey.as_ref()?;
    let ids: Vec<String> = keys_of(requirement, recipient)
        .map(|key| key.id.to_string())
        .collect();
    Some(PasskeyPage {
        challenge: passkey::B64(challenge(request, requirement).to_vec()).to_string(),
        rp_id: public.host().to_string(),
        enrolled: !ids.is_empty(),
        credentials: ids.join(","),
    })
}

/// Checks the assertion an Allow of `recipient` brought (the form's JSON).
pub fn check(
    request: &RequestRow,
    requirement: &PasskeyRequirement,
    recipient: &str,
    assertion: Option<&str>,
    public: &PublicOrigin,
) -> Result<Checked, String> {
    // A recipient with no pinned passkey is not asked for "your passkey":
    // it is told what it can do instead.
    if keys_of(requirement, recipient).next().is_none() {
        return Err(format!(
            "no passkey of yours is pinned on {}, and it counts only approvals made with one: you may deny; to approve, ask its owner to enrol a passkey of yours",
            request.computer
        ));
    }
    let text = assertion
        .filter(|a| !a.is_empty())
        .ok_or("this computer requires the approval to be made with your passkey")?;
    let assertion: Assertion =
        serde_json::from_str(text).map_err(|_| "the passkey's answer is malformed".to_string())?;
    let key = keys_of(requirement, recipient)
        .find(|key| key.id == assertion.credential_id)
        .ok_or("that passkey is not one pinned on this computer for you")?;
    let challenge = challenge(request, requirement);
    let expected = Expected {
        challenge: &challenge,
        origin: public.origin(),
        rp_id: public.host(),
    };
    // Counters are the computer's to keep; the server checks the rest.
    passkey::verify(&assertion, key, &expected, 0).map_err(|e| e.to_string())?;
    Ok(Checked {
        assertion: serde_json::to_string(&assertion).map_err(|e| e.to_string())?,
        detail: format!(
            "allowed with passkey {} (key {})",
            key.id,
            key.public_key.fingerprint()
        ),
    })
}
