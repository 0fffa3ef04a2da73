//! The authorization email: whatever operator text passes validation, the
//! message keeps one header per line (continuations only by folding), the
//! subject names the computer, and the HTML part carries no raw markup from
//! the operator.
#![no_main]

use doorman_core::RequestState;
use doorman_core::names::{validate_name, validate_reason};
use doorman_mail::message as mail;
use doorman_store::RequestRow;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let mut parts = text.splitn(3, '\u{1f}');
    let (Some(operator), Some(computer), Some(reason)) = (parts.next(), parts.next(), parts.next()) else {
        return;
    };
    if validate_name(operator).is_err() || validate_name(computer).is_err() || validate_reason(reason).is_err() {
        return;
    }
    let request = RequestRow {
        id: "0123456789abcdef0123456789abcdef".into(),
        computer: computer.into(),
        operator: operator.into(),
        operator_id: None,
        computer_id: None,
        operator_ip: "192.0.2.1".into(),
        reason: reason.into(),
        service: "run `true`".into(),
        state: RequestState::Pending,
        created_at: 1_795_000_000_000,
        expires_at: 1_795_000_180_000,
        settled_at: None,
        decided_by: None,
        service_json: None,
        required_approvals: 2,
        approval_count: 0,
        cancel_cause: None,
        approval_valid_for: 0,
        reusable_until: None,
        reused_from: None,
        reused_by: None,
        max_session_seconds: 0,
        local_consent: doorman_core::LocalConsent::Off,
        local_approval: None,
        passkey: None,
        computer_identity: None,
        sealed: false,
    };
    let from = "Doorman <doorman@example.com>".parse().expect("sender");
    let message = mail::build(&request, &from, "it@example.com", "https://doorman.example/a/TOKEN", "<id@doorman.example>".into())
        .expect("a validated request always makes an email");
    let raw = String::from_utf8(message.formatted()).expect("ASCII-safe encoding");
    let (head, body) = raw.split_once("\r\n\r\n").expect("headers end");
    for line in head.split("\r\n") {
        assert!(
            line.starts_with(' ') || line.starts_with('\t') || line.contains(':'),
            "a header line that is neither a field nor a fold: {line:?}"
        );
        assert!(!line.contains('\r') && !line.contains('\n'));
    }
    assert!(!head.to_ascii_lowercase().contains("\r\nbcc:"));
    assert!(body.contains("https://doorman.example/a/TOKEN"));
});
