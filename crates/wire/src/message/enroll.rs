//! The enrolment conversation on [`crate::ENROLL_PATH`]: a computer asks
//! the server to email one of its recipients a passkey enrolment link, and
//! hears how it went.

use serde::{Deserialize, Serialize};

/// Computer → server on [`crate::ENROLL_PATH`]: email this recipient an
/// enrolment link.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnrollAsk {
    pub recipient: String,
}

/// Server → computer on [`crate::ENROLL_PATH`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum EnrollNews {
    /// The link is on its way; the page will show this code.
    Started { code: String, expires_in: u64 },
    /// The recipient made this passkey; the person at the computer decides
    /// whether to pin it.
    Enrolled {
        passkey: doorman_core::passkey::PinnedPasskey,
    },
    /// The enrolment ended without a passkey.
    Failed { message: String },
}
