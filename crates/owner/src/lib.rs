//! What the remote computer's owner sees: the settings window that
//! `doorman settings open` serves on 127.0.0.1 ([`window`]), reached only
//! through a one-time link ([`access`]) that the browser gets from a file of
//! the owner's, never from a process's arguments ([`browser`]), with the
//! Desktop Sharing settings and, where local consent is on, the requests
//! waiting for the person at the computer ([`page`]), and the approvers'
//! passkeys: listed, removed, enrolled ([`approvers`], the forms;
//! [`passkeys`], what they act on). [`state`] is what the handlers share,
//! [`router`] puts them together behind the `Host` check ([`host`]) and the
//! page's headers.
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
