//! Doorman's mail: the emails, the SMTP relay they leave by, and the outbox
//! that delivers them with retries.
//!
//! The map:
//!
//! - [`message`]: the authorization and passkey enrolment emails, built
//!   from auto-escaped templates;
//! - [`smtp`]: the relay, its URL and TLS, and its answers;
//! - [`delivery`]: where an email goes (the relay, or `.eml` files when
//!   there is none) and what `/outbox` lists;
//! - [`outbox`]: the worker that delivers queued emails, a task each,
//!   retrying temporary failures until the request expires; it reaches the
//!   server through [`PostOffice`].
#![forbid(unsafe_code)]

pub mod delivery;
pub mod message;
pub mod outbox;
pub mod smtp;

pub use delivery::{Delivery, OutboxEntry, list_files, send_enrollment};
pub use message::MailError;
pub use outbox::{MailSettings, Permanence, PostOffice};
pub use smtp::{SmtpRelay, SmtpSetupError};
