//! The relay crate's integration tests, in one test binary: each module is
//! one file of tests, and linking the stack once instead of once a file
//! keeps the build short on two cores.

mod handover;
mod tls_relay;
