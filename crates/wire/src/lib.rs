//! Doorman's wire: the messages agents, operators and the server exchange, the
//! frames that carry them, and the upgraded HTTP connections the frames ride on.
//!
//! Every connection starts as an HTTP/1.1 request to the server's one port and
//! is upgraded (`Upgrade: doorman/1`); from then on both ends speak frames
//! (see [`frame`]). Session connections are relayed byte for byte by the
//! server, so the operator and the agent speak frames to each other directly.
//!
//! The map:
//!
//! - [`message`]: the messages, as JSON: operator ↔ server, agent ↔
//!   server, and operator ↔ agent over a session;
//! - [`frame`]: frames, pure encoding and decoding, no I/O;
//! - [`connection`]: buffered frame I/O over any byte stream, with a write
//!   deadline, sealed end to end once a session's keys are agreed
//!   (`sealing`);
//! - [`dial`]: dialing the server: one TCP connection, one upgrade request,
//!   and the byte stream after it;
//! - [`socket`]: the TCP options every connection to or from the server
//!   gets;
//! - [`tls`]: the client's TLS (rustls, ring only), verified against the
//!   system's roots or given CA certificates;
//! - [`pinned`]: a server trusted through the SHA-256 of its CA
//!   certificate, as a join URL pins it;
//! - [`cert_problem`]: what is wrong with a certificate a server presented,
//!   in plain words;
//! - [`accept`]: waiting out failed accepts on a listening socket;
//! - [`cookie`]: one cookie read from a request's headers;
//! - [`copying`]: what both ends of a copy compute alike: SHA-256 sums, and
//!   where a resumed file's data starts.
#![forbid(unsafe_code)]

pub mod accept;
pub mod cert_problem;
pub mod connection;
pub mod cookie;
pub mod copying;
pub mod dial;
pub mod frame;
pub mod message;
pub mod pinned;
mod sealing;
pub mod socket;
pub mod tls;

pub use connection::{Connection, ConnectionError};
pub use dial::{DialError, Dialer};
pub use frame::{Frame, FrameError};

/// The `Upgrade` protocol token of every Doorman connection.
pub const UPGRADE_PROTOCOL: &str = "doorman/1";
/// Header carrying the agent's name on its upgrade requests.
pub const AGENT_NAME_HEADER: &str = "x-doorman-agent";
/// Paths of the upgrade endpoints.
pub const AGENT_PATH: &str = "/v1/agent";
/// Where a computer enrols a recipient's passkey (agent credentials).
pub const ENROLL_PATH: &str = "/v1/enroll";
pub const CONNECT_PATH: &str = "/v1/connect";
pub const SESSION_PATH_PREFIX: &str = "/v1/session/";
pub const TUNNEL_PATH_PREFIX: &str = "/v1/tunnel/";
/// Header naming a tunnel's `host:port` target on `/v1/tunnel/…`.
pub const TARGET_HEADER: &str = "x-doorman-target";
/// Header of an operator's tunnel request whose session is sealed end to
/// end: the tunnel is too (`doorman_relay::end_to_end`).
pub const SEALED_HEADER: &str = "x-doorman-sealed";
