//! Secrets: generating them from the OS random source, hashing them for
//! storage, deriving link tokens, and comparing in constant time.
//!
//! Every secret has 256 bits. Link tokens are derived as
//! `HMAC-SHA256(server key, request id ‖ recipient position)`: the database
//! stores only their SHA-256 hash, and the outbox worker derives the token
//! again when it writes the email, so no clear token is ever stored in the
//! database. The server key lives in `DATA_DIR/server.key` (mode 0600).

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::rand::{SecureRandom, SystemRandom};
use ring::{aead, digest, hmac};
use std::io::Write;
use std::path::Path;

/// Prefixes make a leaked secret recognisable (and greppable by scanners).
pub use doorman_core::secret::{AGENT_KEY_PREFIX, OPERATOR_TOKEN_PREFIX};

/// Longest token accepted from the outside, before any work is done on it.
pub const MAX_TOKEN_LEN: usize = 128;

/// The OS random source failed; nothing secret can be made.
#[derive(Debug, thiserror::Error)]
#[error("the operating system's random source failed")]
pub struct RandomError;

pub fn random_bytes<const N: usize>() -> Result<[u8; N], RandomError> {
    let mut bytes = [0u8; N];
    SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| RandomError)?;
    Ok(bytes)
}

/// A new secret token: `prefix` followed by 256 random bits, base64url.
pub fn new_token(prefix: &str) -> Result<String, RandomError> {
    Ok(format!(
        "{prefix}{}",
        URL_SAFE_NO_PAD.encode(random_bytes::<32>()?)
    ))
}

/// A new public identifier (request ids): 128 random bits, hex.
pub fn new_id() -> Result<String, RandomError> {
    Ok(random_bytes::<16>()?
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}

/// The SHA-256 of a secret, as stored.
pub fn hash(secret: &str) -> [u8; 32] {
    let digest = digest::digest(&digest::SHA256, secret.as_bytes());
    let mut out = [0u8; 32];
    out.copy_from_slice(digest.as_ref());
    out
}

/// Whether `secret` hashes to `stored`, in constant time.
pub fn verify(secret: &str, stored: &[u8]) -> bool {
    use subtle::ConstantTimeEq;
    bool::from(hash(secret)[..].ct_eq(stored))
}

/// Whether a token from the outside is worth looking up: bounded length and
/// the base64url alphabet only.
pub fn plausible_token(token: &str) -> bool {
    !token.is_empty()
        && token.len() <= MAX_TOKEN_LEN
        && token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// The server's own key, for deriving link tokens and page nonces.
#[derive(Clone)]
pub struct ServerKey(hmac::Key);

impl std::fmt::Debug for ServerKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ServerKey(MASKED)")
    }
}

impl ServerKey {
    /// Reads `path`, or creates it with a new random key (mode 0600).
    pub fn load_or_create(path: &Path) -> Result<Self, std::io::Error> {
        let bytes = match std::fs::read(path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let bytes = random_bytes::<32>()
                    .map_err(|e| std::io::Error::other(e.to_string()))?
                    .to_vec();
                let mut options = std::fs::OpenOptions::new();
                options.write(true).create_new(true);
                #[cfg(unix)]
                std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
                match options.open(path) {
                    Ok(mut file) => {
                        file.write_all(&bytes)?;
                        file.sync_all()?;
                        bytes
                    }
                    // Another process created it first: use theirs.
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => std::fs::read(path)?,
                    Err(e) => return Err(e),
                }
            }
            Err(e) => return Err(e),
        };
        if bytes.len() != 32 {
            return Err(std::io::Error::other(format!(
                "{} must hold exactly 32 bytes",
                path.display()
            )));
        }
        Ok(Self(hmac::Key::new(hmac::HMAC_SHA256, &bytes)))
    }

    fn derive(&self, parts: &[&[u8]]) -> String {
        let mut context = hmac::Context::with_key(&self.0);
        for part in parts {
            // Length-prefixed so that parts cannot run into each other.
            context.update(&(part.len() as u64).to_be_bytes());
            context.update(part);
        }
        URL_SAFE_NO_PAD.encode(context.sign().as_ref())
    }

    /// The link token of one recipient of one request.
    pub fn link_token(&self, request_id: &str, position: i64) -> String {
        self.derive(&[b"link", request_id.as_bytes(), &position.to_be_bytes()])
    }

    /// The nonce the approval page's form must send back.
    pub fn page_nonce(&self, token_hash: &[u8]) -> String {
        self.derive(&[b"page-nonce", token_hash])
    }

    /// `plain` encrypted and authenticated (AES-256-GCM) under a key
    /// derived from this one for `purpose`, for secrets the database keeps
    /// that must be read back (a TLS private key, an ACME account key):
    /// a copy of the database alone does not give them away.
    pub fn seal(&self, purpose: &str, plain: &[u8]) -> Result<String, RandomError> {
        let nonce = random_bytes::<{ aead::NONCE_LEN }>()?;
        let mut sealed = plain.to_vec();
        self.sealing_key(purpose)
            .seal_in_place_append_tag(
                aead::Nonce::assume_unique_for_key(nonce),
                aead::Aad::from(purpose.as_bytes()),
                &mut sealed,
            )
            .map_err(|_| RandomError)?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&sealed);
        Ok(URL_SAFE_NO_PAD.encode(out))
    }

    /// What [`ServerKey::seal`] sealed for `purpose`; `None` if it was
    /// sealed under another key or purpose, or altered.
    pub fn open(&self, purpose: &str, sealed: &str) -> Option<Vec<u8>> {
        let bytes = URL_SAFE_NO_PAD.decode(sealed).ok()?;
        if bytes.len() < aead::NONCE_LEN {
            return None;
        }
        let (nonce, rest) = bytes.split_at(aead::NONCE_LEN);
        let nonce = aead::Nonce::try_assume_unique_for_key(nonce).ok()?;
        let mut rest = rest.to_vec();
        let plain = self
            .sealing_key(purpose)
            .open_in_place(nonce, aead::Aad::from(purpose.as_bytes()), &mut rest)
            .ok()?;
        Some(plain.to_vec())
    }

    fn sealing_key(&self, purpose: &str) -> aead::LessSafeKey {
        let mut context = hmac::Context::with_key(&self.0);
        context.update(b"seal");
        context.update(purpose.as_bytes());
        let key = aead::UnboundKey::new(&aead::AES_256_GCM, context.sign().as_ref())
            .expect("HMAC-SHA256 output is an AES-256 key");
        aead::LessSafeKey::new(key)
    }

    /// Names this key without giving it away, so that a database can tell
    /// a server started with another key (whose links would not match).
    pub fn fingerprint(&self) -> String {
        self.derive(&[b"fingerprint"])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_secrets_open_only_under_the_same_key_and_purpose() {
        let dir = tempfile::tempdir().unwrap();
        let key = ServerKey::load_or_create(&dir.path().join("a")).unwrap();
        let other = ServerKey::load_or_create(&dir.path().join("b")).unwrap();
        let sealed = key.seal("tls key", b"-----BEGIN PRIVATE KEY-----").unwrap();
        assert!(!sealed.contains("PRIVATE"));
        assert_eq!(
            key.open("tls key", &sealed).unwrap(),
            b"-----BEGIN PRIVATE KEY-----"
        );
        assert_eq!(key.open("account", &sealed), None);
        assert_eq!(other.open("tls key", &sealed), None);
        let mut altered = sealed.clone().into_bytes();
        altered[20] = if altered[20] == b'A' { b'B' } else { b'A' };
        assert_eq!(
            key.open("tls key", &String::from_utf8(altered).unwrap()),
            None
        );
        assert_ne!(
            key.seal("tls key", b"x").unwrap(),
            key.seal("tls key", b"x").unwrap()
        );
    }

    #[test]
    fn tokens_are_long_random_and_prefixed() {
        let a = new_token(OPERATOR_TOKEN_PREFIX).unwrap();
        let b = new_token(OPERATOR_TOKEN_PREFIX).unwrap();
        assert_ne!(a, b);
        assert!(a.starts_with("dop_"));
        assert_eq!(a.len(), 4 + 43);
        assert!(plausible_token(&a));
        assert!(verify(&a, &hash(&a)));
        assert!(!verify(&b, &hash(&a)));
    }

    #[test]
    fn link_tokens_differ_per_recipient_and_request() {
        let dir = tempfile::tempdir().unwrap();
        let key = ServerKey::load_or_create(&dir.path().join("k")).unwrap();
        let again = ServerKey::load_or_create(&dir.path().join("k")).unwrap();
        assert_eq!(key.link_token("r1", 0), again.link_token("r1", 0));
        assert_ne!(key.link_token("r1", 0), key.link_token("r1", 1));
        assert_ne!(key.link_token("r1", 0), key.link_token("r2", 0));
        assert!(plausible_token(&key.link_token("r1", 0)));
    }

    #[test]
    fn implausible_tokens_are_refused_early() {
        assert!(!plausible_token(""));
        assert!(!plausible_token(&"a".repeat(129)));
        assert!(!plausible_token("abc%2F"));
        assert!(!plausible_token("a b"));
    }
}
