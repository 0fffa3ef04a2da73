//! Passkey approvals that the computer checks itself: the challenge an
//! approval of one request must sign (a hash over what the computer was
//! asked and a nonce it chose), the verification of a WebAuthn assertion
//! against a key pinned in the computer's settings, and the reading of a
//! new credential at enrolment. Pure: no I/O.
//!
//! Only what Doorman needs of WebAuthn is here (ES256, Ed25519 and RS256
//! keys, "none" attestation), verified with ring, the project's one crypto
//! library: webauthn-rs would bring OpenSSL as a second one.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::signature::{self, UnparsedPublicKey};
use serde::{Deserialize, Serialize};

/// Why an assertion or a registration is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PasskeyError {
    #[error("the assertion is from a key that is not pinned on this computer")]
    UnknownCredential,
    #[error("the client data is not valid JSON: {0}")]
    ClientData(String),
    #[error("the client data's type is {0:?}, not {1:?}")]
    WrongType(String, &'static str),
    #[error("the approval was made for another request (its challenge differs)")]
    WrongChallenge,
    #[error("the approval was made on {0:?}, not on this server's page")]
    WrongOrigin(String),
    #[error("the authenticator data is malformed")]
    AuthenticatorData,
    #[error("the approval was made for another site (its RP ID hash differs)")]
    WrongRelyingParty,
    #[error("the authenticator did not confirm that a person was present")]
    NoUserPresence,
    #[error("the authenticator did not verify the person (PIN or biometrics)")]
    NoUserVerification,
    #[error("the signature does not verify with the pinned key")]
    BadSignature,
    #[error("the signature counter went back ({got} after {seen}): a cloned key?")]
    CounterWentBack { seen: u32, got: u32 },
    #[error("the new credential is unusable: {0}")]
    Registration(String),
}

/// Bytes that travel as base64url text (WebAuthn's own encoding).
#[derive(Clone, PartialEq, Eq, Hash, Default)]
pub struct B64(pub Vec<u8>);

impl std::fmt::Debug for B64 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&URL_SAFE_NO_PAD.encode(&self.0))
    }
}

impl std::fmt::Display for B64 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&URL_SAFE_NO_PAD.encode(&self.0))
    }
}

impl std::str::FromStr for B64 {
    type Err = base64::DecodeError;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        URL_SAFE_NO_PAD.decode(text.trim_end_matches('=')).map(B64)
    }
}

impl Serialize for B64 {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for B64 {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// A credential's public key, as Doorman keeps it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "alg", content = "key", rename_all = "lowercase")]
pub enum PublicKey {
    /// ECDSA P-256 with SHA-256: the uncompressed point (65 bytes).
    Es256(B64),
    /// Ed25519: the 32-byte key.
    Ed25519(B64),
    /// RSASSA-PKCS1-v1_5 with SHA-256 (some Windows Hello authenticators
    /// make nothing else): the DER `RSAPublicKey` of PKCS #1 (modulus and
    /// exponent), 2048 to 8192 bits.
    Rs256(B64),
}

impl PublicKey {
    /// The fingerprint shown at enrolment: SHA-256 of the key, in hex
    /// pairs.
    pub fn fingerprint(&self) -> String {
        let bytes = match self {
            PublicKey::Es256(key) | PublicKey::Ed25519(key) | PublicKey::Rs256(key) => &key.0,
        };
        let digest = ring::digest::digest(&ring::digest::SHA256, bytes);
        digest
            .as_ref()
            .iter()
            .take(16)
            .map(|b| format!("{b:02X}"))
            .collect::<Vec<_>>()
            .join(":")
    }

    fn verify(&self, message: &[u8], signature: &[u8]) -> bool {
        match self {
            PublicKey::Es256(key) => {
                UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_ASN1, &key.0)
                    .verify(message, signature)
                    .is_ok()
            }
            PublicKey::Ed25519(key) => UnparsedPublicKey::new(&signature::ED25519, &key.0)
                .verify(message, signature)
                .is_ok(),
            PublicKey::Rs256(key) => {
                UnparsedPublicKey::new(&signature::RSA_PKCS1_2048_8192_SHA256, &key.0)
                    .verify(message, signature)
                    .is_ok()
            }
        }
    }
}

/// A passkey pinned on the computer: whose it is and how to check it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PinnedPasskey {
    /// The recipient (email address) it belongs to.
    pub recipient: String,
    /// The credential id, base64url.
    pub id: B64,
    pub public_key: PublicKey,
}

/// One WebAuthn assertion, as the browser made it (base64url fields).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Assertion {
    pub credential_id: B64,
    pub authenticator_data: B64,
    pub client_data_json: B64,
    pub signature: B64,
}

/// What a request's approval must be bound to; the computer builds it
/// from its own copy of the offer, the server from the request it stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChallengeParts<'a> {
    pub request_id: &'a str,
    pub computer: &'a str,
    pub operator: &'a str,
    /// The service asked for, as its wire JSON.
    pub service: &'a str,
    /// When the request expires (milliseconds since the epoch).
    pub expires_at: i64,
    /// The nonce the computer chose when it answered the offer.
    pub nonce: &'a [u8],
}

/// The challenge: SHA-256 over a domain tag and each part, length-prefixed,
/// so that no two different requests encode alike.
pub fn challenge(parts: &ChallengeParts<'_>) -> [u8; 32] {
    let mut context = ring::digest::Context::new(&ring::digest::SHA256);
    context.update(b"doorman approval v1\0");
    let expires = parts.expires_at.to_be_bytes();
    for field in [
        parts.request_id.as_bytes(),
        parts.computer.as_bytes(),
        parts.operator.as_bytes(),
        parts.service.as_bytes(),
        &expires[..],
        parts.nonce,
    ] {
        context.update(&(field.len() as u64).to_be_bytes());
        context.update(field);
    }
    let mut out = [0u8; 32];
    out.copy_from_slice(context.finish().as_ref());
    out
}

/// Where and for what a ceremony must have happened.
#[derive(Clone, Copy, Debug)]
pub struct Expected<'a> {
    pub challenge: &'a [u8],
    /// The server's public URL: the page the ceremony ran on.
    pub origin: &'a str,
    /// The relying party id: the public URL's host.
    pub rp_id: &'a str,
}

#[derive(Deserialize)]
struct ClientData {
    #[serde(rename = "type")]
    kind: String,
    challenge: String,
    origin: String,
    #[serde(default, rename = "crossOrigin")]
    cross_origin: bool,
}

/// The parts of authenticator data this code reads.
struct AuthenticatorData<'a> {
    rp_id_hash: &'a [u8],
    flags: u8,
    counter: u32,
    /// Attested credential data and extensions, if any.
    rest: &'a [u8],
}

const USER_PRESENT: u8 = 0x01;
const USER_VERIFIED: u8 = 0x04;
const ATTESTED_DATA: u8 = 0x40;

fn authenticator_data(bytes: &[u8]) -> Result<AuthenticatorData<'_>, PasskeyError> {
    if bytes.len() < 37 {
        return Err(PasskeyError::AuthenticatorData);
    }
    Ok(AuthenticatorData {
        rp_id_hash: &bytes[..32],
        flags: bytes[32],
        counter: u32::from_be_bytes([bytes[33], bytes[34], bytes[35], bytes[36]]),
        rest: &bytes[37..],
    })
}

/// Checks client data and authenticator data common to both ceremonies.
fn check_ceremony<'a>(
    client_data_json: &[u8],
    authenticator: &'a [u8],
    kind: &'static str,
    expected: &Expected<'_>,
) -> Result<AuthenticatorData<'a>, PasskeyError> {
    let client: ClientData = serde_json::from_slice(client_data_json)
        .map_err(|e| PasskeyError::ClientData(e.to_string()))?;
    if client.kind != kind {
        return Err(PasskeyError::WrongType(client.kind, kind));
    }
    let challenge: B64 = client
        .challenge
        .parse()
        .map_err(|_| PasskeyError::WrongChallenge)?;
    // The challenge is public (the page shows it to the browser): a plain
    // comparison leaks nothing.
    if challenge.0 != expected.challenge {
        return Err(PasskeyError::WrongChallenge);
    }
    if client.origin != expected.origin || client.cross_origin {
        return Err(PasskeyError::WrongOrigin(client.origin));
    }
    let data = authenticator_data(authenticator)?;
    let rp_id_hash = ring::digest::digest(&ring::digest::SHA256, expected.rp_id.as_bytes());
    if data.rp_id_hash != rp_id_hash.as_ref() {
        return Err(PasskeyError::WrongRelyingParty);
    }
    if data.flags & USER_PRESENT == 0 {
        return Err(PasskeyError::NoUserPresence);
    }
    if data.flags & USER_VERIFIED == 0 {
        return Err(PasskeyError::NoUserVerification);
    }
    Ok(data)
}

/// Verifies `assertion` with the pinned `key`, for `expected`; its
/// signature counter, which must move forward from `last_counter` (both
/// zero: an authenticator without a counter, as synced passkeys are).
pub fn verify(
    assertion: &Assertion,
    key: &PinnedPasskey,
    expected: &Expected<'_>,
    last_counter: u32,
) -> Result<u32, PasskeyError> {
    if assertion.credential_id != key.id {
        return Err(PasskeyError::UnknownCredential);
    }
    let data = check_ceremony(
        &assertion.client_data_json.0,
        &assertion.authenticator_data.0,
        "webauthn.get",
        expected,
    )?;
    let client_hash = ring::digest::digest(&ring::digest::SHA256, &assertion.client_data_json.0);
    let signed = [&assertion.authenticator_data.0[..], client_hash.as_ref()].concat();
    if !key.public_key.verify(&signed, &assertion.signature.0) {
        return Err(PasskeyError::BadSignature);
    }
    if (data.counter != 0 || last_counter != 0) && data.counter <= last_counter {
        return Err(PasskeyError::CounterWentBack {
            seen: last_counter,
            got: data.counter,
        });
    }
    Ok(data.counter)
}

/// A credential made at enrolment: its id and public key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewCredential {
    pub id: B64,
    pub public_key: PublicKey,
}

/// Reads the credential a registration made ("none" attestation: the key is
/// trusted because the person enrolling confirms its fingerprint at the
/// computer, not because of a vendor's certificate).
pub fn read_registration(
    attestation_object: &[u8],
    client_data_json: &[u8],
    expected: &Expected<'_>,
) -> Result<NewCredential, PasskeyError> {
    let bad = |what: &str| PasskeyError::Registration(what.to_string());
    let object: ciborium::Value =
        ciborium::from_reader(attestation_object).map_err(|_| bad("not CBOR"))?;
    let auth_data = object
        .as_map()
        .and_then(|map| {
            map.iter()
                .find(|(k, _)| k.as_text() == Some("authData"))
                .and_then(|(_, v)| v.as_bytes())
        })
        .ok_or_else(|| bad("no authenticator data"))?;
    let data = check_ceremony(client_data_json, auth_data, "webauthn.create", expected)?;
    if data.flags & ATTESTED_DATA == 0 || data.rest.len() < 18 {
        return Err(bad("no attested credential"));
    }
    let id_len = usize::from(u16::from_be_bytes([data.rest[16], data.rest[17]]));
    let id = data
        .rest
        .get(18..18 + id_len)
        .ok_or_else(|| bad("credential id cut short"))?;
    let cose: ciborium::Value =
        ciborium::from_reader(&data.rest[18 + id_len..]).map_err(|_| bad("the key is not CBOR"))?;
    Ok(NewCredential {
        id: B64(id.to_vec()),
        public_key: cose_key(&cose)
            .ok_or_else(|| bad("not an ES256, Ed25519 or RS256 (2048 to 8192 bits) key"))?,
    })
}

/// An ES256, Ed25519 or RS256 COSE key (RFC 9053, RFC 8230).
fn cose_key(cose: &ciborium::Value) -> Option<PublicKey> {
    let map = cose.as_map()?;
    let get = |label: i64| {
        map.iter()
            .find(|(k, _)| k.as_integer().and_then(|i| i64::try_from(i).ok()) == Some(label))
            .map(|(_, v)| v)
    };
    let int = |label| get(label)?.as_integer().and_then(|i| i64::try_from(i).ok());
    let bytes = |label| get(label)?.as_bytes().cloned();
    match (int(1)?, int(3)?) {
        // EC2, ES256, P-256.
        (2, -7) if int(-1)? == 1 => {
            let (x, y) = (bytes(-2)?, bytes(-3)?);
            (x.len() == 32 && y.len() == 32)
                .then(|| PublicKey::Es256(B64([&[4u8][..], &x, &y].concat())))
        }
        // OKP, EdDSA, Ed25519.
        (1, -8) if int(-1)? == 6 => {
            let x = bytes(-2)?;
            (x.len() == 32).then_some(PublicKey::Ed25519(B64(x)))
        }
        // RSA, RS256: the modulus and the exponent.
        (3, -257) => rs256_key(&bytes(-1)?, &bytes(-2)?),
        _ => None,
    }
}

/// An RS256 key from its modulus `n` and exponent `e` (big-endian), if
/// ring would verify with it: 2048 to 8192 bits, an odd exponent of at
/// most 32 bits.
fn rs256_key(n: &[u8], e: &[u8]) -> Option<PublicKey> {
    let (n, e) = (without_leading_zeros(n), without_leading_zeros(e));
    let top_zeros = usize::try_from(n.first()?.leading_zeros()).ok()?;
    let bits = n.len().checked_mul(8)?.checked_sub(top_zeros)?;
    let odd = e.last().is_some_and(|last| last & 1 == 1);
    if !(2048..=8192).contains(&bits) || e.len() > 4 || !odd || e == [1] {
        return None;
    }
    let mut body = Vec::with_capacity(n.len() + e.len() + 10);
    der_unsigned_integer(n, &mut body)?;
    der_unsigned_integer(e, &mut body)?;
    let mut der = vec![0x30]; // SEQUENCE
    der_length(body.len(), &mut der)?;
    der.extend_from_slice(&body);
    Some(PublicKey::Rs256(B64(der)))
}

fn without_leading_zeros(bytes: &[u8]) -> &[u8] {
    let start = bytes.iter().position(|&b| b != 0).unwrap_or(bytes.len());
    &bytes[start..]
}

/// A positive DER INTEGER of `value` (big-endian, no leading zeros): a
/// zero byte first where the top bit is set, so it does not read negative.
fn der_unsigned_integer(value: &[u8], out: &mut Vec<u8>) -> Option<()> {
    let pad = value.first()? & 0x80 != 0;
    out.push(0x02); // INTEGER
    der_length(value.len() + usize::from(pad), out)?;
    if pad {
        out.push(0);
    }
    out.extend_from_slice(value);
    Some(())
}

/// A DER length: one byte below 128, else the count of bytes that follow.
fn der_length(len: usize, out: &mut Vec<u8>) -> Option<()> {
    if len < 0x80 {
        out.push(u8::try_from(len).ok()?);
    } else {
        let bytes = len.to_be_bytes();
        let skip = bytes.iter().take_while(|&&b| b == 0).count();
        out.push(0x80 | u8::try_from(bytes.len() - skip).ok()?);
        out.extend_from_slice(&bytes[skip..]);
    }
    Some(())
}

#[cfg(test)]
mod rs256_tests;
#[cfg(any(test, feature = "soft-authenticator"))]
pub mod soft;
#[cfg(test)]
mod tests;
