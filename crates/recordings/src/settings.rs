//! Whether shell sessions are recorded, how long recordings are kept and
//! how large they may grow.

/// Whether shell sessions are recorded, and for how long recordings are kept.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Recordings {
    pub enabled: bool,
    pub keep_days: u32,
    /// Bytes of asciicast text one session's recording may hold; past it
    /// the recording says "truncated" and records nothing more.
    pub max_bytes: u64,
    /// Bytes all finished recordings may take in the database together
    /// (compressed); past it the oldest are deleted first.
    pub max_total_bytes: u64,
}

impl Default for Recordings {
    fn default() -> Self {
        Self {
            enabled: true,
            keep_days: DEFAULT_RECORDINGS_KEEP_DAYS,
            max_bytes: DEFAULT_RECORDING_MAX_BYTES,
            max_total_bytes: DEFAULT_RECORDINGS_MAX_TOTAL_BYTES,
        }
    }
}

/// How long recordings are kept unless told otherwise.
pub const DEFAULT_RECORDINGS_KEEP_DAYS: u32 = 90;
/// One session's recording: 64 MiB of asciicast text.
pub const DEFAULT_RECORDING_MAX_BYTES: u64 = 64 << 20;
/// All recordings together: 10 GiB stored.
pub const DEFAULT_RECORDINGS_MAX_TOTAL_BYTES: u64 = 10 << 30;
