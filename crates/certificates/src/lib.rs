//! Doorman's certificates: what the server's one port presents.
//!
//! The map:
//!
//! - [`listener_tls`]: the listener's TLS configuration from PEM files.
#![forbid(unsafe_code)]

pub mod listener_tls;

pub use listener_tls::{server_config, server_config_with_ca};
