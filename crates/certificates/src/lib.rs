//! Doorman's certificates: what the server's one port presents.
//!
//! The map:
//!
//! - [`listener_tls`]: the listener's TLS configuration from PEM files, and
//!   where those files are ([`TlsFiles`]);
//! - [`acme`]: a certificate obtained and renewed over ACME (TLS-ALPN-01),
//!   kept sealed in the store;
//! - [`private_ca`]: `doorman admin tls init`'s private CA and the server
//!   certificate it signs.
#![forbid(unsafe_code)]

pub mod acme;
pub mod listener_tls;
pub mod private_ca;

pub use listener_tls::{TlsFiles, server_config, server_config_with_ca};
