//! Doorman's end-to-end channel: what lets `doorman connect` and the agent
//! talk through the server without the server reading or changing a byte.
//!
//! The map:
//!
//! - [`identity`]: the computer's identity key pair (Ed25519), its public
//!   half and its fingerprint, as people compare them;
//! - [`handshake`]: the key exchange through the server: the operator's
//!   hello (an ephemeral X25519 key, sent with its ask), the computer's
//!   signed reply (sent first on the session connection), and the keys
//!   both derive, bound to the request;
//! - [`seal`]: a session's frames sealed one by one (AES-256-GCM, a
//!   counter for nonce), so that a frame dropped, replayed or reordered by
//!   the server does not open;
//! - [`tunnel`]: the secrets of one forwarded connection's records, from
//!   the session's secret and a fresh salt from each end.
//!
//! No I/O: the agent keeps the key file, the wire carries the messages.
#![forbid(unsafe_code)]

pub mod handshake;
pub mod identity;
pub mod seal;
pub mod tunnel;

pub use handshake::{ComputerReply, HandshakeError, Initiator, OperatorHello, SessionKeys};
pub use identity::{Fingerprint, Identity, IdentityError, PublicIdentity};
pub use seal::{FrameOpener, FrameSealer, SealError};

/// The random source of every key and salt here: the operating system's.
fn rng() -> &'static ring::rand::SystemRandom {
    static RNG: std::sync::OnceLock<ring::rand::SystemRandom> = std::sync::OnceLock::new();
    RNG.get_or_init(ring::rand::SystemRandom::new)
}
