//! Size limits shared by every part, so that the server, the agent and the
//! operator's client refuse the same inputs with the same words.

/// Longest computer or operator name, in bytes.
pub const MAX_NAME_LEN: usize = 64;
/// Longest reason an operator may give, in characters.
pub const MAX_REASON_CHARS: usize = 500;
/// Most recipients one computer may list.
pub const MAX_RECIPIENTS: usize = 20;
/// Longest recipient address, in bytes (RFC 5321's path limit).
pub const MAX_ADDRESS_LEN: usize = 254;
/// Authorization timeout bounds, in seconds.
pub const MIN_TIMEOUT_SECS: u32 = 5;
pub const MAX_TIMEOUT_SECS: u32 = 3600;
/// The timeout when the settings file names none.
pub const DEFAULT_TIMEOUT_SECS: u32 = 180;
/// Most `-L` targets one forward session may carry.
pub const MAX_FORWARD_TARGETS: usize = 16;
/// Most arguments, and most bytes over all arguments, in a remote command.
pub const MAX_COMMAND_ARGS: usize = 256;
pub const MAX_COMMAND_BYTES: usize = 64 * 1024;
/// Longest `approval_valid_for`: a day.
pub const MAX_APPROVAL_VALID_FOR_SECS: u32 = 24 * 3600;
/// Longest `max_session_seconds`: a week.
pub const MAX_SESSION_SECS: u32 = 7 * 24 * 3600;
