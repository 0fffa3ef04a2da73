//! What every part of Doorman's server runs on, whichever crate it lives in.
//!
//! The map:
//!
//! - [`clock`]: the server's one clock, anchored to the wall clock when it
//!   was made, which keeps every deadline and heartbeat; tests move it;
//! - [`lifecycle`]: the server's stop, and the tasks that must end before
//!   it has stopped;
//! - [`secrets`]: the server's key (link tokens, page nonces, sealed
//!   secrets), random ids and secrets, and the hashes secrets are kept as.
#![forbid(unsafe_code)]

pub mod clock;
pub mod lifecycle;
pub mod secrets;
