//! Shared test helpers: an SMTP sink that speaks real SMTP on loopback, and a
//! [`World`] of server, agent and operator wired together in one process.
#![forbid(unsafe_code)]

pub mod front;
pub mod postgres;
pub mod process;
pub mod smtp;
pub mod streams;
pub mod tls;
pub mod world;

pub use smtp::{ReceivedMail, SmtpSink};
pub use world::{World, WorldBuilder};
