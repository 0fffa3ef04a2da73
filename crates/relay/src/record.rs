//! TLS 1.3 records sealed and opened outside rustls (RFC 8446 §5), from a
//! traffic secret rustls negotiated: what lets the server hand an
//! operator's TLS session to the agent, so that the server relays
//! ciphertext it no longer opens (see [`crate::handover`]).
//!
//! Only what a session needs after its handshake: application data,
//! alerts, and key updates (§4.6.3), which is why the traffic *secret*
//! travels, not just the key: a key update derives the next secret from
//! it.

use ring::hkdf::KeyType as _;
use ring::{aead, hkdf};
use std::fmt;
use zeroize::Zeroizing;

/// The largest plaintext of one record (§5.1).
pub const MAX_PLAINTEXT: usize = 1 << 14;
/// The largest ciphertext of one record (§5.2): plaintext, content type,
/// padding and tag.
pub const MAX_CIPHERTEXT: usize = MAX_PLAINTEXT + 256;
/// A record's header: content type, legacy version, length.
pub const HEADER: usize = 5;
/// What sealing adds to a plaintext: header, content type, AEAD tag.
pub const OVERHEAD: usize = HEADER + 1 + TAG;
const TAG: usize = 16;
/// How many records one key may seal before it must be updated: well under
/// every suite's limit (AES-GCM's is the lowest, 2^24.5 full records, §5.5).
const RECORDS_PER_KEY: u64 = 1 << 23;
const NONCE: usize = aead::NONCE_LEN;

/// A record's content type (§5.1).
pub mod content {
    pub const ALERT: u8 = 21;
    pub const HANDSHAKE: u8 = 22;
    pub const APPLICATION_DATA: u8 = 23;
}

/// A TLS 1.3 cipher suite this module seals and opens.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Suite {
    Aes128GcmSha256,
    Aes256GcmSha384,
    Chacha20Poly1305Sha256,
}

impl Suite {
    /// The suite of its IANA code point, if this module knows it.
    pub fn from_code(code: u16) -> Option<Suite> {
        match code {
            0x1301 => Some(Suite::Aes128GcmSha256),
            0x1302 => Some(Suite::Aes256GcmSha384),
            0x1303 => Some(Suite::Chacha20Poly1305Sha256),
            _ => None,
        }
    }

    pub fn code(self) -> u16 {
        match self {
            Suite::Aes128GcmSha256 => 0x1301,
            Suite::Aes256GcmSha384 => 0x1302,
            Suite::Chacha20Poly1305Sha256 => 0x1303,
        }
    }

    fn aead(self) -> &'static aead::Algorithm {
        match self {
            Suite::Aes128GcmSha256 => &aead::AES_128_GCM,
            Suite::Aes256GcmSha384 => &aead::AES_256_GCM,
            Suite::Chacha20Poly1305Sha256 => &aead::CHACHA20_POLY1305,
        }
    }

    fn hkdf(self) -> hkdf::Algorithm {
        match self {
            Suite::Aes256GcmSha384 => hkdf::HKDF_SHA384,
            _ => hkdf::HKDF_SHA256,
        }
    }

    /// The length of its traffic secrets (its hash's output).
    pub fn secret_len(self) -> usize {
        self.hkdf().len()
    }
}

/// Why a record could not be opened or sealed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RecordError {
    #[error("a TLS record failed authentication (bad_record_mac)")]
    BadRecordMac,
    #[error("a TLS record of {0} bytes is over the limit (record_overflow)")]
    Overflow(usize),
    #[error("a TLS record has an unexpected outer type {0}")]
    UnexpectedType(u8),
    #[error("a TLS record holds no content type")]
    NoContentType,
    #[error("a traffic secret of {0} bytes does not fit the cipher suite")]
    BadSecret(usize),
}

/// HKDF-Expand-Label (§7.1) with an empty context.
fn expand_label(suite: Suite, secret: &[u8], label: &[u8], out: &mut [u8]) {
    struct Len(usize);
    impl hkdf::KeyType for Len {
        fn len(&self) -> usize {
            self.0
        }
    }
    let prk = hkdf::Prk::new_less_safe(suite.hkdf(), secret);
    let length = (out.len() as u16).to_be_bytes();
    let label_len = [(b"tls13 ".len() + label.len()) as u8];
    let info: [&[u8]; 5] = [&length, &label_len, b"tls13 ", label, &[0]];
    // Lengths here are the suite's own (≤ 255 hash blocks), so expansion
    // cannot fail.
    if let Ok(okm) = prk.expand(&info, Len(out.len())) {
        let _ = okm.fill(out);
    }
}

/// One direction's keys: the traffic secret, the AEAD key and IV derived
/// from it, and the sequence number of the next record.
pub struct TrafficKeys {
    suite: Suite,
    secret: Zeroizing<Vec<u8>>,
    key: aead::LessSafeKey,
    iv: [u8; NONCE],
    seq: u64,
}

impl fmt::Debug for TrafficKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TrafficKeys")
            .field("suite", &self.suite)
            .field("seq", &self.seq)
            .finish_non_exhaustive()
    }
}

impl TrafficKeys {
    /// Keys from a traffic secret, the next record being number `seq`.
    pub fn new(suite: Suite, secret: &[u8], seq: u64) -> Result<Self, RecordError> {
        if secret.len() != suite.secret_len() {
            return Err(RecordError::BadSecret(secret.len()));
        }
        let algorithm = suite.aead();
        let mut key = Zeroizing::new(vec![0u8; algorithm.key_len()]);
        expand_label(suite, secret, b"key", &mut key);
        let mut iv = [0u8; NONCE];
        expand_label(suite, secret, b"iv", &mut iv);
        let key = aead::UnboundKey::new(algorithm, &key)
            .map_err(|_| RecordError::BadSecret(secret.len()))?;
        Ok(TrafficKeys {
            suite,
            secret: Zeroizing::new(secret.to_vec()),
            key: aead::LessSafeKey::new(key),
            iv,
            seq,
        })
    }

    pub fn suite(&self) -> Suite {
        self.suite
    }

    /// Whether these are the key and IV rustls derived (a check that the
    /// secret is the session's current one).
    pub fn matches(&self, key: &[u8], iv: &[u8]) -> bool {
        let mut derived = Zeroizing::new(vec![0u8; self.suite.aead().key_len()]);
        expand_label(self.suite, &self.secret, b"key", &mut derived);
        derived[..] == *key && self.iv == iv
    }

    /// Moves to the next traffic secret (a key update), from record 0.
    pub fn update(&mut self) {
        let mut next = Zeroizing::new(vec![0u8; self.secret.len()]);
        expand_label(self.suite, &self.secret, b"traffic upd", &mut next);
        // The secret's own length fits its suite: this cannot fail.
        if let Ok(keys) = TrafficKeys::new(self.suite, &next, 0) {
            *self = keys;
        }
    }

    /// The number of the next record.
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// Whether this key has sealed as many records as it should.
    pub fn is_worn(&self) -> bool {
        self.seq >= RECORDS_PER_KEY
    }

    fn nonce(&self) -> aead::Nonce {
        let mut nonce = self.iv;
        for (n, s) in nonce[NONCE - 8..].iter_mut().zip(self.seq.to_be_bytes()) {
            *n ^= s;
        }
        aead::Nonce::assume_unique_for_key(nonce)
    }

    /// Seals `plaintext` (at most [`MAX_PLAINTEXT`]) of `content_type` as
    /// one record appended to `out`.
    pub fn seal(
        &mut self,
        content_type: u8,
        plaintext: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(), RecordError> {
        if plaintext.len() > MAX_PLAINTEXT {
            return Err(RecordError::Overflow(plaintext.len()));
        }
        let length = (plaintext.len() + 1 + TAG) as u16;
        let header = [
            content::APPLICATION_DATA,
            3,
            3,
            (length >> 8) as u8,
            length as u8,
        ];
        let start = out.len();
        out.extend_from_slice(&header);
        out.extend_from_slice(plaintext);
        out.push(content_type);
        let tag = self
            .key
            .seal_in_place_separate_tag(
                self.nonce(),
                aead::Aad::from(header),
                &mut out[start + HEADER..],
            )
            .map_err(|_| RecordError::BadRecordMac)?;
        out.extend_from_slice(tag.as_ref());
        self.seq += 1;
        Ok(())
    }

    /// Opens one whole record (header included) in place; its content type
    /// and where its plaintext lies in `record`.
    pub fn open(&mut self, record: &mut [u8]) -> Result<(u8, std::ops::Range<usize>), RecordError> {
        let body = record.len().saturating_sub(HEADER);
        if body > MAX_CIPHERTEXT {
            return Err(RecordError::Overflow(body));
        }
        if record[0] != content::APPLICATION_DATA {
            return Err(RecordError::UnexpectedType(record[0]));
        }
        let mut header = [0u8; HEADER];
        header.copy_from_slice(&record[..HEADER]);
        let plain = self
            .key
            .open_in_place(self.nonce(), aead::Aad::from(header), &mut record[HEADER..])
            .map_err(|_| RecordError::BadRecordMac)?;
        let inner = plain.iter().rposition(|&b| b != 0);
        let Some(type_at) = inner else {
            return Err(RecordError::NoContentType);
        };
        self.seq += 1;
        Ok((plain[type_at], HEADER..HEADER + type_at))
    }
}

/// The length of the whole record at the start of `buffer` (header
/// included), once its header is there.
pub fn record_len(buffer: &[u8]) -> Option<usize> {
    (buffer.len() >= HEADER).then(|| HEADER + u16::from_be_bytes([buffer[3], buffer[4]]) as usize)
}

/// A KeyUpdate handshake message (§4.6.3).
pub fn key_update(update_requested: bool) -> [u8; 5] {
    [24, 0, 0, 1, u8::from(update_requested)]
}

#[cfg(test)]
mod tests;
