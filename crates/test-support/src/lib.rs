//! Shared test helpers: an SMTP sink that speaks real SMTP on loopback, a
//! [`World`] of server, agent and operator wired together in one process,
//! and a raw operator that speaks the wire protocol without the client's
//! own checks.
#![forbid(unsafe_code)]

pub mod connecting;
pub mod fake_server;
pub mod front;
pub mod postgres;
pub mod process;
pub mod raw;
pub mod smtp;
pub mod streams;
pub mod tls;
pub mod world;

pub use smtp::{ReceivedMail, SmtpSink};
pub use world::{World, WorldBuilder};
