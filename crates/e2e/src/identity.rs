//! The computer's identity: an Ed25519 key pair made at the agent's first
//! start, whose public half `connect` remembers (as ssh's known_hosts
//! does) and whose fingerprint approvers and operators compare.
//!
//! The private key is kept as PKCS#8 in a PEM file (`PRIVATE KEY`), so
//! that standard tools read it; the public key travels as 32 bytes in
//! base64.

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
use ring::signature::{ED25519, Ed25519KeyPair, KeyPair as _, UnparsedPublicKey};
use std::fmt;
use zeroize::Zeroizing;

const PEM_BEGIN: &str = "-----BEGIN PRIVATE KEY-----";
const PEM_END: &str = "-----END PRIVATE KEY-----";
/// The length of an Ed25519 public key.
pub const PUBLIC_LEN: usize = 32;
/// How many base64 characters of the fingerprint its short form keeps
/// (72 bits).
const SHORT_CHARS: usize = 12;

/// What is wrong with an identity key or a public identity.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum IdentityError {
    #[error("not a PEM private key (expected {PEM_BEGIN} … {PEM_END})")]
    NotPem,
    #[error("not an Ed25519 private key in PKCS#8")]
    NotEd25519,
    #[error("the system's random source failed")]
    Random,
    #[error("not a public identity: expected {PUBLIC_LEN} bytes in base64")]
    BadPublic,
}

/// The computer's key pair. Its `Debug` shows only the public half.
pub struct Identity {
    pair: Ed25519KeyPair,
    /// The PKCS#8 document it was made from, for writing it out.
    pkcs8: Zeroizing<Vec<u8>>,
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Identity({})", self.public().fingerprint())
    }
}

impl Identity {
    /// A new key pair from the system's random source.
    pub fn generate() -> Result<Self, IdentityError> {
        let document =
            Ed25519KeyPair::generate_pkcs8(crate::rng()).map_err(|_| IdentityError::Random)?;
        Self::from_pkcs8(document.as_ref())
    }

    fn from_pkcs8(pkcs8: &[u8]) -> Result<Self, IdentityError> {
        // Unchecked: a PKCS#8 v1 file (OpenSSL's) has no public key to check.
        let pair = Ed25519KeyPair::from_pkcs8_maybe_unchecked(pkcs8)
            .map_err(|_| IdentityError::NotEd25519)?;
        Ok(Identity {
            pair,
            pkcs8: Zeroizing::new(pkcs8.to_vec()),
        })
    }

    /// Reads the key from its PEM file's text.
    pub fn from_pem(text: &str) -> Result<Self, IdentityError> {
        let start = text.find(PEM_BEGIN).ok_or(IdentityError::NotPem)? + PEM_BEGIN.len();
        let end = text[start..].find(PEM_END).ok_or(IdentityError::NotPem)? + start;
        let body: Zeroizing<String> = Zeroizing::new(
            text[start..end]
                .chars()
                .filter(|c| !c.is_ascii_whitespace())
                .collect(),
        );
        let der = Zeroizing::new(
            STANDARD
                .decode(body.as_bytes())
                .map_err(|_| IdentityError::NotPem)?,
        );
        Self::from_pkcs8(&der)
    }

    /// The key as a PEM file's text.
    pub fn to_pem(&self) -> Zeroizing<String> {
        let body = Zeroizing::new(STANDARD.encode(&*self.pkcs8));
        let mut pem = Zeroizing::new(String::with_capacity(body.len() + 64));
        pem.push_str(PEM_BEGIN);
        pem.push('\n');
        for line in body.as_bytes().chunks(64) {
            pem.push_str(std::str::from_utf8(line).unwrap_or_default());
            pem.push('\n');
        }
        pem.push_str(PEM_END);
        pem.push('\n');
        pem
    }

    pub fn public(&self) -> PublicIdentity {
        let mut key = [0u8; PUBLIC_LEN];
        key.copy_from_slice(self.pair.public_key().as_ref());
        PublicIdentity(key)
    }

    pub(crate) fn sign(&self, message: &[u8]) -> ring::signature::Signature {
        self.pair.sign(message)
    }
}

/// A computer's public identity: what `connect` remembers and checks.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct PublicIdentity([u8; PUBLIC_LEN]);

impl PublicIdentity {
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, IdentityError> {
        let key: [u8; PUBLIC_LEN] = bytes.try_into().map_err(|_| IdentityError::BadPublic)?;
        Ok(PublicIdentity(key))
    }

    pub fn from_base64(text: &str) -> Result<Self, IdentityError> {
        let bytes = STANDARD
            .decode(text.trim())
            .map_err(|_| IdentityError::BadPublic)?;
        Self::from_bytes(&bytes)
    }

    pub fn to_base64(&self) -> String {
        STANDARD.encode(self.0)
    }

    pub fn as_bytes(&self) -> &[u8; PUBLIC_LEN] {
        &self.0
    }

    pub fn fingerprint(&self) -> Fingerprint {
        let digest = ring::digest::digest(&ring::digest::SHA256, &self.0);
        Fingerprint(STANDARD_NO_PAD.encode(digest.as_ref()))
    }

    pub(crate) fn verify(&self, message: &[u8], signature: &[u8]) -> bool {
        UnparsedPublicKey::new(&ED25519, &self.0)
            .verify(message, signature)
            .is_ok()
    }
}

impl fmt::Debug for PublicIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicIdentity({})", self.fingerprint())
    }
}

/// A public identity's SHA-256 in base64, written `SHA256:…` as ssh
/// writes a host key's.
#[derive(Clone, PartialEq, Eq)]
pub struct Fingerprint(String);

impl Fingerprint {
    /// A fingerprint as [`Fingerprint`]'s `Display` writes it; none for
    /// anything else.
    pub fn parse(text: &str) -> Option<Fingerprint> {
        let hash = text.strip_prefix("SHA256:")?;
        let bytes = STANDARD_NO_PAD.decode(hash).ok()?;
        (bytes.len() == 32).then(|| Fingerprint(hash.to_string()))
    }

    /// The first 72 bits: enough for people to compare by eye, on a phone.
    pub fn short(&self) -> String {
        let end = self.0.len().min(SHORT_CHARS);
        format!("SHA256:{}", &self.0[..end])
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SHA256:{}", self.0)
    }
}

impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_written_as_pem_reads_back_as_the_same_identity() {
        let identity = Identity::generate().unwrap();
        let pem = identity.to_pem();
        assert!(pem.starts_with(PEM_BEGIN), "{}", &*pem);
        let again = Identity::from_pem(&pem).unwrap();
        assert_eq!(again.public(), identity.public());
        assert_ne!(Identity::generate().unwrap().public(), identity.public());
    }

    #[test]
    fn what_is_not_a_key_says_so() {
        assert_eq!(
            Identity::from_pem("hello").unwrap_err(),
            IdentityError::NotPem
        );
        let not_der = format!("{PEM_BEGIN}\nAAAA\n{PEM_END}\n");
        assert_eq!(
            Identity::from_pem(&not_der).unwrap_err(),
            IdentityError::NotEd25519
        );
        assert_eq!(
            PublicIdentity::from_base64("AAAA").unwrap_err(),
            IdentityError::BadPublic
        );
    }

    #[test]
    fn fingerprints_read_like_ssh_and_the_short_form_is_their_start() {
        let public = PublicIdentity([7; PUBLIC_LEN]);
        let full = public.fingerprint().to_string();
        assert!(full.starts_with("SHA256:"));
        assert_eq!(full.len(), "SHA256:".len() + 43);
        let short = public.fingerprint().short();
        assert_eq!(short.len(), "SHA256:".len() + SHORT_CHARS);
        assert!(full.starts_with(&short));
        assert_eq!(Fingerprint::parse(&full), Some(public.fingerprint()));
        assert_eq!(Fingerprint::parse(&short), None);
        assert_eq!(Fingerprint::parse("SHA256:<b>"), None);
        assert_eq!(
            PublicIdentity::from_base64(&public.to_base64()).unwrap(),
            public
        );
        // The secret never shows in a debug print.
        let identity = Identity::generate().unwrap();
        let debug = format!("{identity:?}");
        assert!(debug.starts_with("Identity(SHA256:"), "{debug}");
    }
}
