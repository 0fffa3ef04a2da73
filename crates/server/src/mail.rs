//! The authorization email: its subject, plain-text and HTML bodies, and the
//! headers that make it a well-formed message.

use crate::clock::format_time;
use crate::store::RequestRow;
use askama::Template;
use lettre::Message;
use lettre::message::{Mailbox, MultiPart, header::ContentType};

/// Values that go into the email; all operator-supplied text was validated
/// to one printable line before the request was created.
#[derive(Template)]
#[template(path = "email.txt")]
struct EmailText<'a> {
    request: &'a RequestRow,
    link: &'a str,
    requested_at: String,
    expires_at: String,
    timeout_secs: i64,
}

#[derive(Template)]
#[template(path = "email.html")]
struct EmailHtml<'a> {
    request: &'a RequestRow,
    link: &'a str,
    requested_at: String,
    expires_at: String,
    timeout_secs: i64,
}

/// Why an email could not be built.
#[derive(Debug, thiserror::Error)]
pub enum MailError {
    #[error("invalid address {0:?}")]
    Address(String),
    #[error("cannot render email: {0}")]
    Render(#[from] askama::Error),
    #[error("cannot build email: {0}")]
    Build(#[from] lettre::error::Error),
}

pub fn subject(request: &RequestRow) -> String {
    // Names are validated to [A-Za-z0-9._-], so nothing here can break the header.
    format!(
        "Doorman: {} asks to connect to {}",
        request.operator, request.computer
    )
}

/// Builds the email to one recipient.
pub fn build(
    request: &RequestRow,
    from: &Mailbox,
    to: &str,
    link: &str,
    message_id: String,
) -> Result<Message, MailError> {
    let to: Mailbox = to.parse().map_err(|_| MailError::Address(to.to_string()))?;
    let requested_at = format_time(request.created_at);
    let expires_at = format_time(request.expires_at);
    let timeout_secs = (request.expires_at - request.created_at) / 1000;
    let text = EmailText {
        request,
        link,
        requested_at: requested_at.clone(),
        expires_at: expires_at.clone(),
        timeout_secs,
    }
    .render()?;
    let html = EmailHtml {
        request,
        link,
        requested_at,
        expires_at,
        timeout_secs,
    }
    .render()?;
    let message = Message::builder()
        .from(from.clone())
        .to(to)
        .subject(subject(request))
        .date_now()
        .message_id(Some(message_id))
        .multipart(
            MultiPart::alternative()
                .singlepart(
                    lettre::message::SinglePart::builder()
                        .header(ContentType::TEXT_PLAIN)
                        .body(text),
                )
                .singlepart(
                    lettre::message::SinglePart::builder()
                        .header(ContentType::TEXT_HTML)
                        .body(html),
                ),
        )?;
    Ok(message)
}

#[cfg(test)]
mod tests {
    use super::*;
    use doorman_core::RequestState;

    fn request(reason: &str) -> RequestRow {
        RequestRow {
            id: "r1".into(),
            computer: "office-pc".into(),
            operator: "alice".into(),
            operator_id: None,
            computer_id: None,
            operator_ip: "192.0.2.7".into(),
            reason: reason.into(),
            service: "run ls".into(),
            state: RequestState::Pending,
            created_at: 1_795_000_000_000,
            expires_at: 1_795_000_180_000,
            settled_at: None,
            decided_by: None,
            service_json: None,
            required_approvals: 1,
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
        }
    }

    #[test]
    fn email_names_everything_and_escapes_html() {
        let from: Mailbox = "Doorman <doorman@example.com>".parse().unwrap();
        let message = build(
            &request("<script>alert(1)</script> & more"),
            &from,
            "it@example.com",
            "http://127.0.0.1:8080/a/TOKEN",
            "<r1.0@example.com>".into(),
        )
        .unwrap();
        let raw = String::from_utf8(message.formatted()).unwrap();
        assert!(raw.contains("Subject: Doorman: alice asks to connect to office-pc"));
        assert!(raw.contains("Message-ID: <r1.0@example.com>"));
        assert!(raw.contains("Date: "));
        assert!(raw.contains("http://127.0.0.1:8080/a/TOKEN"));
        let html = raw
            .split("Content-Type: text/html")
            .nth(1)
            .expect("an html part");
        assert!(!html.contains("<script>"), "html part must escape");
        assert!(html.contains("#60;script"), "html part must escape");
        assert!(raw.contains("192.0.2.7"));
    }

    #[test]
    fn times_read_as_utc() {
        assert_eq!(format_time(0), "1970-01-01 00:00:00 UTC");
    }
}
