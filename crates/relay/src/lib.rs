//! Doorman's relay: the bytes of a session moved between two connections,
//! whatever each is (plain TCP or TLS), and the TLS records of a session the
//! server handed over to the agent.
//!
//! The map:
//!
//! - [`streams`]: [`relay`], [`relay_taken_over_tls`] and [`copy`], the
//!   entry points, and [`RelayError`];
//! - `engine`: moves the bytes, and holds the half-close and reset policy;
//! - `side`: one side's non-blocking I/O (rustls for TLS; splice(2) between
//!   two plain sockets, so that bulk bytes stay in the kernel);
//! - `nonblocking`: what a non-blocking read found;
//! - `sealed`: the side of a handed-over session, whose records it seals and
//!   opens itself;
//! - `sys`: the system calls, and the crate's only `unsafe`;
//! - `drive`: waits for the sockets, on a thread of its own while the process
//!   has fewer than [`MAX_THREADED`] relays, else on the event loop;
//! - [`record`]: the TLS 1.3 record layer of a handed-over session;
//! - [`handover`]: how the server hands a TLS session over, and the agent
//!   takes it;
//! - [`tls_parts`]: a TLS stream that gives up its socket and TLS state;
//! - [`end_to_end`]: a forwarded connection sealed end to end: the
//!   tunnel's connections leaving TLS, the salts, the ends' records
//!   (`sealed_copy` where the engine is missing).
// Only `sys` (the system calls of relaying) needs `unsafe`; it says why.
// The engine is Unix's (splice, pipes, poll); elsewhere streams are copied
// by tokio (`streams`), and the agent asks for no handover.
#![deny(unsafe_code)]

#[cfg(unix)]
mod drive;
pub mod end_to_end;
#[cfg(unix)]
mod engine;
pub mod handover;
#[cfg(unix)]
mod nonblocking;
pub mod record;
#[cfg(unix)]
mod sealed;
#[cfg(not(unix))]
mod sealed_copy;
#[cfg(unix)]
mod side;
pub mod streams;
#[cfg(unix)]
mod sys;
#[cfg(all(test, unix))]
mod tests;
pub mod tls_parts;

#[cfg(unix)]
pub use drive::{MAX_THREADED, Slot};
#[cfg(unix)]
pub use streams::relay_taken_over_tls;
pub use streams::{RelayError, copy, relay, relay_dialed, relay_taken_over};
