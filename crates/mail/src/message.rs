//! The emails: the authorization email (its subject, plain-text and HTML
//! bodies) and the passkey enrolment email, each with the headers that make
//! it a well-formed message (Date, Message-ID, MIME-Version).

use askama::Template;
use doorman_core::display::format_time;
use doorman_store::RequestRow;
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
    /// Whether this recipient has a passkey pinned on a computer that
    /// requires them: one who has none is not asked for "your passkey".
    passkey_pinned: bool,
    /// The short form of the computer's identity fingerprint.
    identity: Option<String>,
}

#[derive(Template)]
#[template(path = "email.html")]
struct EmailHtml<'a> {
    request: &'a RequestRow,
    link: &'a str,
    requested_at: String,
    expires_at: String,
    timeout_secs: i64,
    /// Whether this recipient has a passkey pinned on a computer that
    /// requires them: one who has none is not asked for "your passkey".
    passkey_pinned: bool,
    identity: Option<String>,
}

/// The short form of the computer's identity fingerprint, which the email
/// and the approval page show for approvers and the operator to compare.
pub fn short_identity(request: &RequestRow) -> Option<String> {
    request
        .computer_identity
        .as_deref()
        .and_then(doorman_e2e::Fingerprint::parse)
        .map(|fingerprint| fingerprint.short())
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
    let passkey_pinned = request.passkey.as_ref().is_some_and(|requirement| {
        requirement
            .passkeys
            .iter()
            .any(|key| key.recipient.eq_ignore_ascii_case(to))
    });
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
        passkey_pinned,
        identity: short_identity(request),
    }
    .render()?;
    let html = EmailHtml {
        request,
        link,
        requested_at,
        expires_at,
        timeout_secs,
        passkey_pinned,
        identity: short_identity(request),
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

/// The subject of the enrolment email for `computer`.
pub fn enrollment_subject(computer: &str) -> String {
    format!("Enrol a passkey for approving connections to {computer}")
}

/// Builds the passkey enrolment email to `to`: the link, and what to check
/// before making the passkey. Paragraphs are single lines (the mail client
/// wraps them), and the body a MIME part as in the authorization email, so
/// a long line travels quoted-printable and reads whole.
pub fn build_enrollment(
    from: &Mailbox,
    to: &str,
    computer: &str,
    link: &str,
    message_id: String,
) -> Result<Message, MailError> {
    let to: Mailbox = to.parse().map_err(|_| MailError::Address(to.to_string()))?;
    let message = Message::builder()
        .from(from.clone())
        .to(to)
        .subject(enrollment_subject(computer))
        .date_now()
        .message_id(Some(message_id))
        .singlepart(lettre::message::SinglePart::plain(enrollment_text(
            computer, link,
        )))?;
    Ok(message)
}

/// The enrolment email's text: one line a paragraph.
fn enrollment_text(computer: &str, link: &str) -> String {
    // The computer's name is validated to [A-Za-z0-9._-].
    format!(
        "The computer \"{computer}\" asks you to create a passkey for approving connections to it.\n\n\
         Enrol: {link}\n\n\
         The page shows a code; check that the computer shows the same one. Then create the passkey. \
         Its fingerprint is shown to you and at the computer, where its owner pins it.\n\n\
         If you did not expect this, ignore this email. The link works for ten minutes.\n"
    )
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
            computer_identity: None,
            sealed: false,
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

    fn requiring_passkeys(mut request: RequestRow) -> RequestRow {
        use doorman_core::passkey::{B64, PinnedPasskey, PublicKey};
        request.passkey = Some(doorman_wire::message::PasskeyRequirement {
            nonce: B64(vec![0; 16]),
            expires_at: request.expires_at,
            passkeys: vec![PinnedPasskey {
                recipient: "it@example.com".into(),
                id: B64(vec![1; 16]),
                public_key: PublicKey::Ed25519(B64(vec![2; 32])),
            }],
        });
        request
    }

    /// Issue 31: only a recipient with a pinned passkey is asked for
    /// "your passkey"; another is told what it can do.
    #[test]
    fn a_recipient_without_a_pinned_passkey_is_not_asked_for_one() {
        let request = requiring_passkeys(request("printer"));
        let text = |passkey_pinned| {
            EmailText {
                request: &request,
                link: "http://x/a/T",
                requested_at: String::new(),
                expires_at: String::new(),
                timeout_secs: 180,
                passkey_pinned,
                identity: None,
            }
            .render()
            .unwrap()
        };
        let html = |passkey_pinned| {
            EmailHtml {
                request: &request,
                link: "http://x/a/T",
                requested_at: String::new(),
                expires_at: String::new(),
                timeout_secs: 180,
                passkey_pinned,
                identity: None,
            }
            .render()
            .unwrap()
        };
        assert!(text(true).contains("made with your"), "{}", text(true));
        for other in [text(false), html(false)] {
            assert!(!other.contains("your\n            passkey"), "{other}");
            assert!(!other.contains("with your"), "{other}");
            assert!(other.contains("none of yours is"), "{other}");
        }
        // `build` tells them apart by the recipient's address.
        let from: Mailbox = "Doorman <doorman@example.com>".parse().unwrap();
        for (to, pinned) in [("IT@example.com", true), ("owner@example.com", false)] {
            let raw = build(&request, &from, to, "http://x/a/T", "<r1.0@x>".into())
                .unwrap()
                .formatted();
            let raw = String::from_utf8(raw).unwrap();
            assert_eq!(raw.contains("none of yours"), !pinned, "{to}: {raw}");
        }
    }

    /// Issue 31: the enrolment email has the headers the authorization
    /// email has, and its sentences are not broken in the middle.
    #[test]
    fn the_enrolment_email_is_well_formed() {
        let from: Mailbox = "Doorman <doorman@example.com>".parse().unwrap();
        let message = build_enrollment(
            &from,
            "it@example.com",
            "office-pc",
            "https://doorman.example.com/e/TOKEN",
            "<enroll.1@doorman.example.com>".into(),
        )
        .unwrap();
        let raw = String::from_utf8(message.formatted()).unwrap();
        let head = raw.split("\r\n\r\n").next().unwrap();
        assert!(head.contains("MIME-Version: 1.0"), "{head}");
        assert!(
            head.contains("Message-ID: <enroll.1@doorman.example.com>"),
            "{head}"
        );
        assert!(head.contains("Date: "), "{head}");
        assert!(
            head.contains("Subject: Enrol a passkey for approving connections to office-pc"),
            "{head}"
        );
        let text = enrollment_text("office-pc", "https://doorman.example.com/e/TOKEN");
        assert!(
            text.contains("\nEnrol: https://doorman.example.com/e/TOKEN\n"),
            "{text}"
        );
        assert!(
            text.contains("Then create the passkey. Its fingerprint"),
            "one line, no break inside the sentence: {text}"
        );
    }

    #[test]
    fn times_read_as_utc() {
        assert_eq!(format_time(0), "1970-01-01 00:00:00 UTC");
    }
}
