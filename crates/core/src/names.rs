//! What a computer or operator name may be: short, printable, and safe to put
//! in a subject line, a log line or a URL without escaping surprises.

use crate::display::check_visible;
use crate::limits::{MAX_NAME_LEN, MAX_REASON_CHARS};

/// Checks a computer or operator name: 1 to 64 of `A-Z a-z 0-9 . _ -`,
/// starting with a letter or digit.
pub fn validate_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("must not be empty".into());
    }
    if name.len() > MAX_NAME_LEN {
        return Err(format!("must be at most {MAX_NAME_LEN} characters"));
    }
    if !name.starts_with(|c: char| c.is_ascii_alphanumeric()) {
        return Err("must start with a letter or digit".into());
    }
    if let Some(bad) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Err(format!(
            "may contain only letters, digits, '.', '_' and '-' (found {bad:?})"
        ));
    }
    Ok(())
}

/// Checks the reason an operator gives: one line of visible text, at most
/// 500 characters. Control characters, bidirectional controls, line
/// separators and other invisible characters are refused rather than
/// rewritten, so what recipients read is exactly what the operator typed.
pub fn validate_reason(reason: &str) -> Result<(), String> {
    if reason.chars().count() > MAX_REASON_CHARS {
        return Err(format!("must be at most {MAX_REASON_CHARS} characters"));
    }
    check_visible(reason)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_ordinary_names() {
        for name in ["office-pc", "a", "web01.example", "Build_Box"] {
            assert!(validate_name(name).is_ok(), "{name}");
        }
    }

    #[test]
    fn refuses_names_that_could_break_a_line_or_a_url() {
        for name in ["", "-lead", "a b", "a/b", "a\r\nb", &"x".repeat(65), "é"] {
            assert!(validate_name(name).is_err(), "{name:?}");
        }
    }

    #[test]
    fn reason_must_be_one_bounded_line() {
        assert!(validate_reason("printer broken, ticket 42").is_ok());
        assert!(validate_reason("").is_ok());
        assert!(validate_reason("a\r\nBcc: x@y").is_err());
        assert!(validate_reason("nul\0").is_err());
        assert!(validate_reason("ticket \u{202E}24").is_err());
        assert!(validate_reason("two\u{2028}lines").is_err());
        assert!(validate_reason(&"é".repeat(500)).is_ok());
        assert!(validate_reason(&"é".repeat(501)).is_err());
    }
}
