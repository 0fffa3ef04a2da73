//! A session's frames sealed one at a time with AES-256-GCM. Each
//! direction has its own key and counts its frames; the count is the
//! nonce, so a frame the server drops, repeats or moves does not open,
//! and the session ends rather than go on with a gap.

use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use zeroize::Zeroizing;

/// The length of a frame key.
pub const KEY_LEN: usize = 32;
/// What sealing adds to a frame: the AEAD tag.
pub const OVERHEAD: usize = 16;

/// A sealed frame that does not open, or a direction out of nonces.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SealError {
    #[error(
        "a sealed frame did not open: the session's frames were changed, dropped or reordered on the way"
    )]
    Open,
    #[error("the session sealed more frames than its keys allow")]
    Exhausted,
}

/// One direction's key and the count of frames it sealed or opened.
struct Direction {
    key: LessSafeKey,
    next: u64,
}

impl Direction {
    fn new(key: &Zeroizing<[u8; KEY_LEN]>) -> Self {
        // A 32-byte key is always one AES-256-GCM takes.
        let unbound = UnboundKey::new(&AES_256_GCM, key.as_slice())
            .unwrap_or_else(|_| unreachable!("AES-256-GCM takes 32-byte keys"));
        Direction {
            key: LessSafeKey::new(unbound),
            next: 0,
        }
    }

    fn nonce(&mut self) -> Result<Nonce, SealError> {
        let count = self.next;
        self.next = count.checked_add(1).ok_or(SealError::Exhausted)?;
        let mut nonce = [0u8; NONCE_LEN];
        nonce[NONCE_LEN - 8..].copy_from_slice(&count.to_be_bytes());
        Ok(Nonce::assume_unique_for_key(nonce))
    }
}

/// Seals what one end sends.
pub struct FrameSealer(Direction);

/// Opens what the other end sent, in order.
pub struct FrameOpener(Direction);

impl FrameSealer {
    pub(crate) fn new(key: &Zeroizing<[u8; KEY_LEN]>) -> Self {
        FrameSealer(Direction::new(key))
    }

    /// `plaintext` sealed, its tag appended.
    pub fn seal(&mut self, plaintext: &[u8]) -> Result<Vec<u8>, SealError> {
        let nonce = self.0.nonce()?;
        let mut sealed = Vec::with_capacity(plaintext.len() + OVERHEAD);
        sealed.extend_from_slice(plaintext);
        self.0
            .key
            .seal_in_place_append_tag(nonce, Aad::empty(), &mut sealed)
            .map_err(|_| SealError::Exhausted)?;
        Ok(sealed)
    }
}

impl FrameOpener {
    pub(crate) fn new(key: &Zeroizing<[u8; KEY_LEN]>) -> Self {
        FrameOpener(Direction::new(key))
    }

    /// The next frame's plaintext; an error if it is not the next frame
    /// the other end sealed.
    pub fn open(&mut self, sealed: &[u8]) -> Result<Vec<u8>, SealError> {
        let nonce = self.0.nonce()?;
        let mut buffer = sealed.to_vec();
        let plain = self
            .0
            .key
            .open_in_place(nonce, Aad::empty(), &mut buffer)
            .map_err(|_| SealError::Open)?;
        let len = plain.len();
        buffer.truncate(len);
        Ok(buffer)
    }
}

impl std::fmt::Debug for FrameSealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FrameSealer(MASKED)")
    }
}

impl std::fmt::Debug for FrameOpener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FrameOpener(MASKED)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair() -> (FrameSealer, FrameOpener) {
        let key = Zeroizing::new([9u8; KEY_LEN]);
        (FrameSealer::new(&key), FrameOpener::new(&key))
    }

    #[test]
    fn frames_open_in_order_and_only_in_order() {
        let (mut sealer, mut opener) = pair();
        let first = sealer.seal(b"one").unwrap();
        let second = sealer.seal(b"two").unwrap();
        assert_eq!(first.len(), 3 + OVERHEAD);
        assert!(
            !first.windows(3).any(|w| w == b"one"),
            "the plaintext shows"
        );
        // Reordered: the second in the first's place does not open …
        assert_eq!(opener.open(&second).unwrap_err(), SealError::Open);
        // … and once a frame failed, the session is over: nothing opens.
        assert!(opener.open(&first).is_err());
        let (mut sealer, mut opener) = pair();
        let first = sealer.seal(b"one").unwrap();
        let second = sealer.seal(b"two").unwrap();
        assert_eq!(opener.open(&first).unwrap(), b"one");
        // Replayed.
        assert_eq!(opener.open(&first).unwrap_err(), SealError::Open);
        let (mut sealer, mut opener) = pair();
        let mut changed = sealer.seal(b"one").unwrap();
        changed[0] ^= 1;
        assert_eq!(opener.open(&changed).unwrap_err(), SealError::Open);
        drop(second);
    }
}
