//! Doorman's calls into Windows, each behind a safe type, so that the
//! crates above keep `#![forbid(unsafe_code)]`. On other systems only the
//! pure part is built (and tested).
//!
//! The map:
//!
//! - [`pseudo_console`]: a ConPTY and the one process started in it,
//!   in a job that ends the process's whole tree with it;
//! - [`command_line`]: a program and its arguments quoted as one Windows
//!   command line (pure, so tested on every system);
//! - [`console_host`]: the first process in a pseudo-console, which gives
//!   the shell the console as its standard streams;
//! - [`pipe_user`]: who is at the other end of a named pipe (the user SID
//!   of the client's process), and who this process runs as;
//! - [`access_list`]: a folder readable only by SYSTEM and Administrators;
//! - [`service`]: installing and removing the agent's Windows service,
//!   and running as one;
//! - [`tray`]: an icon in the notification area, its menu, and its
//!   notifications.
//!
//! Every `unsafe` block here says why it is sound; nothing else in
//! Doorman calls Windows directly.
#![deny(unsafe_op_in_unsafe_fn)]

#[cfg(windows)]
pub mod access_list;
pub mod command_line;
#[cfg(windows)]
pub mod console_host;
#[cfg(windows)]
pub mod pipe_user;
#[cfg(windows)]
pub mod pseudo_console;
#[cfg(windows)]
pub mod service;
#[cfg(windows)]
pub mod tray;
