//! The name a file goes by in its directory while it is written, before it
//! is renamed over its own: the same on every system.

use std::ffi::{OsStr, OsString};

/// `.NAME.doorman-RANDOM.part`: hidden (on Unix), unique, and plainly a
/// leftover if the computer loses power mid-copy.
pub fn name(name: &OsStr) -> OsString {
    let mut random = [0u8; 8];
    let _ = ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut random);
    let mut temp = OsString::from(".");
    temp.push(name);
    temp.push(".doorman-");
    for byte in random {
        temp.push(format!("{byte:02x}"));
    }
    temp.push(".part");
    temp
}
