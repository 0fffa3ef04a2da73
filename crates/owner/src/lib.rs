//! What the remote computer's owner sees: the settings window that
//! `doorman settings open` serves on 127.0.0.1, reached only through a
//! one-time link, with the Desktop Sharing settings, the requests waiting
//! for the person at the computer, and the approvers' passkeys; and the
//! tray icon of the agent run as the desktop's user.
//!
//! The map:
//!
//! - [`window`]: the settings window's server, on 127.0.0.1 for as long as
//!   the page is used;
//! - `access`: who may use the window: the one-time link, exchanged once
//!   for the page's session secret;
//! - `browser`: how the link reaches the owner's browser: through a file of
//!   the owner's, never from a process's arguments;
//! - `host`: the `Host` check: only requests that name the window itself;
//! - `router`: the routes, behind the `Host` check, a cap on a form's size
//!   and the page's headers;
//! - `state`: what the handlers share;
//! - `page`: the settings page: Desktop Sharing and the services, saved
//!   through the check `doorman settings set` makes, and the requests
//!   waiting for local consent;
//! - `approvers`: the forms that list, remove and enrol the approvers'
//!   passkeys;
//! - `passkeys`: what those forms act on: the pinned passkeys and the one
//!   enrolment under way;
//! - [`tray`]: the tray icon: the computer's state and the requests waiting
//!   here, from the agent's consent socket (a StatusNotifierItem, or the
//!   Windows notification area, which also shows the agent's
//!   notifications).
#![forbid(unsafe_code)]

mod access;
mod approvers;
mod browser;
mod host;
mod page;
mod passkeys;
mod router;
mod state;
pub mod tray;
pub mod window;

pub use access::DEFAULT_LINK_LIFETIME;
pub use window::{Lifetimes, SettingsWindow, Stopped, WindowError};
