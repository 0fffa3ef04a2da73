//! File transfer on the remote computer: the computer's side of
//! `doorman cp` and of the console's Files view. A copy's last word is how
//! many files and bytes went, and how many failed.
//!
//! The map:
//!
//! - `job`: a copy job from start to end: whether this computer offers
//!   it ([`offered`]), and running it on its session connection ([`run`]);
//! - `place`: every path confined to the folders the owner shares, files
//!   written whole or not at all. On Unix (`place.rs`) every open goes
//!   through `openat2` beneath the shared folder; on Windows
//!   (`place_windows.rs`, its roots in `place_windows/roots.rs`) each
//!   component is checked (`windows_names`, no reparse point) before the
//!   open, a check-then-open that module's note weighs;
//! - `metadata`: what a copy tells and keeps of a file, the same on both;
//! - `temporary`: the name a file goes by until it is whole;
//! - `windows_names`: the names Windows reads as themselves (a pure check,
//!   tested on every system);
//! - `receive`: a copy to the computer, no more than the approval counted;
//! - `send`: a copy from the computer, trees depth first;
//! - `browse`: the Files view: listings, and single files either way;
//! - `ending`: what a copy moved, its last word, or why it cannot start;
//! - `host`: what a copy takes from the agent's process: the home
//!   directory `~/` stands for, and the umask new files honour (Unix);
//! - `error`: why a copy failed ([`FilesError`]).
#![forbid(unsafe_code)]

mod browse;
mod ending;
mod error;
mod host;
mod job;
mod metadata;
#[cfg(unix)]
mod place;
#[cfg(windows)]
#[path = "place_windows.rs"]
mod place;
mod receive;
mod send;
mod temporary;
#[cfg(any(windows, test))]
mod windows_names;

#[cfg(all(test, unix))]
mod tests;

pub use error::FilesError;
pub use job::{offered, run};
