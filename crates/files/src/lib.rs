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
#![forbid(unsafe_code)]

mod browse;
mod ending;
mod error;
mod host;
mod job;
mod place;
mod receive;
mod send;

#[cfg(test)]
mod tests;

pub use error::FilesError;
pub use job::{offered, run};
