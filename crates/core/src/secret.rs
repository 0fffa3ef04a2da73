//! A secret held in memory: its `Debug` and `Display` never show it, so it
//! cannot leak into a log line by accident.

use serde::{Deserialize, Serialize};
use std::fmt;

/// What an operator token issued by `doorman admin operator add` starts with.
pub const OPERATOR_TOKEN_PREFIX: &str = "dop_";
/// What an agent key issued by `doorman admin agent add` starts with.
pub const AGENT_KEY_PREFIX: &str = "dak_";
/// URL-safe base64 characters after the prefix: 256 random bits.
pub const SECRET_CHARS: usize = 43;

/// Whether `value` has the form of a secret issued with `prefix`: the prefix
/// and [`SECRET_CHARS`] URL-safe base64 characters. A typo or a placeholder
/// is caught where the secret is written, not at the server's 401.
pub fn has_secret_form(value: &str, prefix: &str) -> bool {
    value.strip_prefix(prefix).is_some_and(|rest| {
        rest.len() == SECRET_CHARS
            && rest
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    })
}

/// A secret string (agent key, operator token, link token).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret itself, for the few places that must send or hash it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(MASKED)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MASKED")
    }
}

/// Constant-time string equality.
pub fn constant_time_eq(a: &str, b: &str) -> bool {
    use subtle::ConstantTimeEq;
    bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::Secret;

    #[test]
    fn formatting_never_shows_the_value() {
        let secret = Secret::new("hunter2");
        assert!(!format!("{secret:?} {secret}").contains("hunter2"));
        assert_eq!(secret.expose(), "hunter2");
    }
}
