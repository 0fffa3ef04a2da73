//! What the remote computer's owner sees: the settings window that
//! `doorman settings open` serves on 127.0.0.1 ([`window`]), reached only
//! through a one-time URL ([`access`]), with the Desktop Sharing settings
//! and, where local consent is on, the requests waiting for the person at
//! the computer ([`page`]).

mod access;
mod page;
pub mod tray;
pub mod window;

pub use window::{SettingsWindow, WindowError};
