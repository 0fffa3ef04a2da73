//! Doorman's one port, below what it serves: connections accepted under
//! limits, TLS or not, who the client is, and which names it answers to.
//!
//! The map:
//!
//! - [`serve`]: the accept loop, its limits and deadlines, and a stop that
//!   lets every connection finish its request;
//! - [`slots`]: the places connections hold in those limits;
//! - [`listener`]: plain TCP or TLS (with ACME's TLS-ALPN-01 challenges)
//!   on the one port;
//! - [`client_addr`]: who the client is, through the proxies trusted to
//!   say so, and whether a request comes from this host;
//! - [`origin`]: the public URL's origin, same-origin checks and the
//!   `Host` check;
//! - [`failures`]: wrong credentials counted per source network in a
//!   sliding window.
#![forbid(unsafe_code)]

pub mod client_addr;
pub mod failures;
pub mod listener;
pub mod origin;
pub mod serve;
pub mod slots;
