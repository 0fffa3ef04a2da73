//! Where emails go: an SMTP relay, or `.eml` files (each with a `.json`
//! summary that `/outbox` lists) when there is none; one attempt at a time.

use crate::message::{self, MailError};
use crate::smtp::SmtpRelay;
use doorman_store::{Millis, OutboxJob};
use lettre::message::Mailbox;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::sync::Arc;

/// The outcome of one delivery attempt.
pub(crate) enum Attempt {
    Sent,
    Temporary(String),
    Permanent(String),
}

/// What `/outbox` lists for each email written to a file.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct OutboxEntry {
    pub file: String,
    pub to: String,
    pub subject: String,
    pub link: String,
    pub written_at: Millis,
}

/// Where emails go.
#[derive(Clone, Debug)]
pub enum Delivery {
    Smtp(Arc<SmtpRelay>),
    /// `.eml` files (and a `.json` summary each) in this directory.
    Files(PathBuf),
}

/// Sends one email (or writes it to the outbox directory, stamped `now`).
pub(crate) async fn send(
    delivery: &Delivery,
    job: &OutboxJob,
    message: lettre::Message,
    link: &str,
    now: Millis,
) -> Attempt {
    match delivery {
        Delivery::Smtp(relay) => match relay.send(&message).await {
            Ok(_) => Attempt::Sent,
            Err(error) if error.is_permanent() => Attempt::Permanent(error.to_string()),
            // 4xx replies, refused connections, timeouts: worth another try.
            Err(error) => Attempt::Temporary(error.to_string()),
        },
        Delivery::Files(dir) => match write_file(dir, job, &message, link, now).await {
            Ok(()) => Attempt::Sent,
            Err(error) => Attempt::Temporary(format!("cannot write to {}: {error}", dir.display())),
        },
    }
}

async fn write_file(
    dir: &std::path::Path,
    job: &OutboxJob,
    message: &lettre::Message,
    link: &str,
    now: Millis,
) -> std::io::Result<()> {
    let stem = format!(
        "{}-{}-{}",
        job.request.created_at, job.request.id, job.position
    );
    let entry = OutboxEntry {
        file: format!("{stem}.eml"),
        to: job.address.clone(),
        subject: message::subject(&job.request),
        link: link.to_string(),
        written_at: now,
    };
    write_entry(dir, &stem, message, &entry).await
}

/// Writes an email and its summary into the outbox directory.
async fn write_entry(
    dir: &std::path::Path,
    stem: &str,
    message: &lettre::Message,
    entry: &OutboxEntry,
) -> std::io::Result<()> {
    doorman_store::private::create_dir(dir)?;
    let summary = serde_json::to_vec_pretty(entry).map_err(std::io::Error::other)?;
    write_atomically(&dir.join(format!("{stem}.eml")), &message.formatted()).await?;
    write_atomically(&dir.join(format!("{stem}.json")), &summary).await
}

/// [`doorman_store::private::write_atomically`] off the event loop: the outbox page
/// never lists half an email.
async fn write_atomically(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    let (path, bytes) = (path.to_path_buf(), bytes.to_vec());
    tokio::task::spawn_blocking(move || doorman_store::private::write_atomically(&path, &bytes))
        .await
        .map_err(std::io::Error::other)?
}

/// The emails written to `dir`, newest first.
pub async fn list_files(dir: &std::path::Path) -> Vec<OutboxEntry> {
    let mut entries = Vec::new();
    let Ok(mut read_dir) = tokio::fs::read_dir(dir).await else {
        return entries;
    };
    while let Ok(Some(item)) = read_dir.next_entry().await {
        let path = item.path();
        if path.extension().is_some_and(|ext| ext == "json")
            && let Ok(bytes) = tokio::fs::read(&path).await
            && let Ok(entry) = serde_json::from_slice::<OutboxEntry>(&bytes)
        {
            entries.push(entry);
        }
    }
    entries.sort_by(|a, b| b.written_at.cmp(&a.written_at).then(b.file.cmp(&a.file)));
    entries
}

/// Sends a passkey enrolment link at once (no retries: the person at the
/// computer is waiting and sees the failure). `now` stamps the file when
/// there is no relay.
pub async fn send_enrollment(
    delivery: &Delivery,
    from: &Mailbox,
    message_id: String,
    now: Millis,
    computer: &str,
    recipient: &str,
    link: &str,
) -> Result<(), String> {
    let message = message::build_enrollment(from, recipient, computer, link, message_id).map_err(
        |error| match error {
            MailError::Address(_) => format!("{recipient} is not an email address"),
            other => other.to_string(),
        },
    )?;
    let subject = message::enrollment_subject(computer);
    match delivery {
        Delivery::Smtp(relay) => relay
            .send(&message)
            .await
            .map(|_| ())
            .map_err(|e| e.to_string()),
        Delivery::Files(dir) => {
            let stem = format!("{now}-enroll-{computer}");
            let entry = OutboxEntry {
                file: format!("{stem}.eml"),
                to: recipient.to_string(),
                subject,
                link: link.to_string(),
                written_at: now,
            };
            write_entry(dir, &stem, &message, &entry)
                .await
                .map_err(|e| e.to_string())
        }
    }
}
