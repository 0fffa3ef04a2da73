//! File transfer on the remote computer: the computer's side of
//! `doorman cp` and of the console's Files view. A copy's last word is how
//! many files and bytes went, and how many failed.
//!
//! The map:
//!
//! - `job`: a copy job from start to end: whether this computer offers
//!   it ([`offered`]), and running it on its session connection ([`run`]);
//! - `place`: every path confined to the folders the owner shares
//!   (`openat2` beneath each one), files written whole or not at all;
//! - `receive`: a copy to the computer, no more than the approval counted;
//! - `send`: a copy from the computer, trees depth first;
//! - `browse`: the Files view: listings, and single files either way;
//! - `ending`: what a copy moved, its last word, or why it cannot start;
//! - `host`: what a copy takes from the agent's process: the home
//!   directory `~/` stands for, and the umask new files honour;
//! - `error`: why a copy failed ([`FilesError`]).
//!
//! Confinement rests on Linux's `openat2(RESOLVE_BENEATH)`; on other
//! systems this computer offers no file copies yet, and says so (`job`).
#![forbid(unsafe_code)]

#[cfg(unix)]
mod browse;
mod ending;
mod error;
#[cfg(unix)]
mod host;
mod job;
#[cfg(unix)]
mod place;
#[cfg(unix)]
mod receive;
#[cfg(unix)]
mod send;

#[cfg(all(test, unix))]
mod tests;

pub use error::FilesError;
pub use job::{offered, run};
