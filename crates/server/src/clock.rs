//! The server's clock: milliseconds since the Unix epoch, as the database
//! and the state machine count time, and how a time is shown to people.

use doorman_core::authorization::Millis;
use std::time::{SystemTime, UNIX_EPOCH};

/// The current time in milliseconds since the Unix epoch.
pub fn now_millis() -> Millis {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// A human-readable UTC time, e.g. `2026-11-28 21:07:33 UTC`.
pub fn format_time(millis: Millis) -> String {
    let secs = u64::try_from(millis / 1000).unwrap_or(0);
    let time = UNIX_EPOCH + std::time::Duration::from_secs(secs);
    humantime::format_rfc3339_seconds(time)
        .to_string()
        .replace('T', " ")
        .replace('Z', " UTC")
}
