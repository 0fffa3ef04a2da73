//! The server crate's integration tests, in one test binary: each module is
//! one file of tests, and linking the stack once instead of once a file
//! keeps the build short on two cores.

mod abuse;
mod access;
mod browser;
mod console;
mod console_browser;
mod console_files;
mod console_recordings;
mod console_terminal;
mod delivery;
mod files;
mod heartbeat;
mod hostile;
mod join;
mod load;
mod metrics;
mod passkeys;
mod policies;
mod promises;
mod proxy;
mod restart;
mod revocation;
mod sessions;
mod story;
mod story_before_email;
mod story_pages;
mod tls;
mod vnc;
mod wire;
mod words;
