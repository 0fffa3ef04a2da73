//! Limits that keep recipients from being flooded.

/// Limits that keep recipients from being flooded (approval fatigue).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Requests one operator may have pending at once.
    pub max_pending_per_operator: u32,
    /// Requests one operator may make to one computer in any hour.
    pub max_requests_per_hour: u32,
    /// How long "I did not expect this" blocks that operator from that computer.
    pub block_minutes: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_pending_per_operator: 3,
            max_requests_per_hour: 30,
            block_minutes: 20,
        }
    }
}
