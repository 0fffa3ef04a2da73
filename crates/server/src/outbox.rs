//! The outbox worker: delivers queued emails over SMTP (or into
//! `DATA_DIR/outbox/` when no SMTP server is configured), retrying temporary
//! failures with jittered backoff until the request expires.
//!
//! Each email is delivered by a task of its own, at most
//! [`MAX_IN_FLIGHT`] at once, so a slow relay or a recipient's slow mail
//! server delays only its own emails: the worker starts the next due email
//! as soon as a slot is free, not when a batch has ended. The operator hears
//! `sending` when an attempt starts and the relay's answer when it ends.

use crate::broker::{Broker, Witness};
use crate::mail;
use crate::smtp::SmtpRelay;
use doorman_core::CancelCause;
use doorman_core::authorization::Event;
use doorman_store::{Millis, OutboxJob};
use doorman_wire::message::DeliveryState;
use lettre::message::Mailbox;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinSet;
use tracing::Instrument;

/// Where emails go.
#[derive(Clone, Debug)]
pub enum Delivery {
    Smtp(Arc<SmtpRelay>),
    /// `.eml` files (and a `.json` summary each) in this directory.
    Files(PathBuf),
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

/// The outcome of one delivery attempt.
enum Attempt {
    Sent,
    Temporary(String),
    Permanent(String),
}

/// Settings the worker needs besides the broker.
#[derive(Clone, Debug)]
pub struct MailSettings {
    pub from: Mailbox,
    pub public_url: String,
    /// Host part of Message-IDs.
    pub message_id_host: String,
}

/// Emails delivered at the same time, at most. Each holds one connection
/// to the relay (or writes one file) until the relay has answered or the
/// relay's deadline (`smtp::SMTP_TIMEOUT`, 30 s) has passed, so this also
/// bounds the connections open to the relay.
const MAX_IN_FLIGHT: usize = 16;

/// The longest the worker sleeps without reading the outbox, in
/// milliseconds by the server's clock.
const IDLE_WAIT_MS: Millis = 30_000;

/// How long stopping waits for the deliveries under way before dropping
/// them. A dropped one is still queued, and is sent again after the
/// restart (with the same Message-ID and link).
const STOP_GRACE: Duration = Duration::from_secs(5);

/// Runs until shutdown.
pub async fn run(broker: Arc<Broker>, delivery: Delivery, settings: MailSettings) {
    let mut in_flight = InFlight::default();
    // Enough rows to fill every free slot even when the earliest due are
    // the ones under way.
    let batch = i64::try_from(2 * MAX_IN_FLIGHT).unwrap_or(i64::MAX);
    loop {
        let now = broker.clock.now_millis();
        if in_flight.has_room() {
            match broker.store.due_emails(now, batch).await {
                Ok(jobs) => {
                    for job in jobs {
                        if !in_flight.has_room() {
                            break;
                        }
                        if !in_flight.holds(&job) {
                            in_flight.start(job, &broker, &delivery, &settings);
                        }
                    }
                }
                Err(error) => tracing::error!(%error, "cannot read the outbox"),
            }
        }
        // Emails due by now are under way or wait for a slot, which a
        // delivery that ends frees: the wait is for the next one after.
        // A retry's time is the server's clock's: a test that moves it
        // wakes the worker.
        let idle_until = now.saturating_add(IDLE_WAIT_MS);
        let wake_at = match broker.store.next_email_due(now).await {
            Ok(Some(due)) => due.min(idle_until),
            _ => idle_until,
        };
        tokio::select! {
            _ = broker.outbox_wakeup.notified() => {}
            () = in_flight.next_finished() => {}
            () = broker.clock.sleep_until(wake_at) => {}
            _ = broker.lifecycle.stopping() => {
                in_flight.stop().await;
                return;
            }
        }
    }
}

/// An email's place in the outbox: its request and its recipient's position.
type Place = (String, i64);

/// The deliveries under way, a task each. Only the worker's loop starts and
/// forgets them, and it forgets one only once its task has ended, that is
/// after the task recorded the attempt: a read of the outbox that still
/// finds the row queued finds it here too, so no email is picked up twice.
/// (With PostgreSQL replicas only the server holding the leadership lock
/// runs a worker.)
#[derive(Default)]
struct InFlight {
    tasks: JoinSet<()>,
    places: HashMap<tokio::task::Id, Place>,
}

impl InFlight {
    fn has_room(&self) -> bool {
        self.tasks.len() < MAX_IN_FLIGHT
    }

    /// Whether this email is being delivered.
    fn holds(&self, job: &OutboxJob) -> bool {
        self.places
            .values()
            .any(|(request, position)| *request == job.request.id && *position == job.position)
    }

    fn start(
        &mut self,
        job: OutboxJob,
        broker: &Arc<Broker>,
        delivery: &Delivery,
        settings: &MailSettings,
    ) {
        let place = (job.request.id.clone(), job.position);
        let span = tracing::info_span!(
            "email",
            request = %job.request.id,
            computer = %job.request.computer
        );
        let (broker, delivery, settings) = (Arc::clone(broker), delivery.clone(), settings.clone());
        let task = self.tasks.spawn(
            async move { deliver_one(&broker, &delivery, &settings, job).await }.instrument(span),
        );
        self.places.insert(task.id(), place);
    }

    /// Completes when a delivery has ended (never while none is under way).
    async fn next_finished(&mut self) {
        match self.tasks.join_next_with_id().await {
            Some(Ok((id, ()))) => {
                self.places.remove(&id);
            }
            Some(Err(error)) => {
                tracing::error!(%error, "an email delivery ended abnormally");
                self.places.remove(&error.id());
            }
            None => std::future::pending::<()>().await,
        }
    }

    /// Lets the deliveries under way end, for [`STOP_GRACE`] at most.
    async fn stop(&mut self) {
        let ended = tokio::time::timeout(STOP_GRACE, async {
            while self.tasks.join_next().await.is_some() {}
        })
        .await
        .is_ok();
        if !ended {
            tracing::warn!(
                under_way = self.tasks.len(),
                "stopping with emails still being delivered; they stay queued"
            );
            self.tasks.shutdown().await;
        }
        self.places.clear();
    }
}

async fn deliver_one(
    broker: &Broker,
    delivery: &Delivery,
    settings: &MailSettings,
    job: OutboxJob,
) {
    broker.report_delivery(&job.request.id, &job.address, DeliveryState::Sending, None);
    let token = broker.key.link_token(&job.request.id, job.position);
    let link = format!("{}/a/{token}", settings.public_url);
    let message_id = format!(
        "<{}.{}@{}>",
        job.request.id, job.position, settings.message_id_host
    );
    let attempt = match mail::build(
        &job.request,
        &settings.from,
        &job.address,
        &link,
        message_id,
    ) {
        Ok(message) => send(delivery, &job, message, &link, broker.clock.now_millis()).await,
        Err(error) => Attempt::Permanent(error.to_string()),
    };
    let now = broker.clock.now_millis();
    let result = match attempt {
        Attempt::Sent => {
            match delivery {
                Delivery::Smtp(_) => {
                    tracing::info!(to = %job.address, "authorization email sent");
                }
                Delivery::Files(dir) => {
                    tracing::info!(to = %job.address, outbox = %dir.display(), "authorization email written to the outbox");
                }
            }
            Ok(())
        }
        Attempt::Temporary(error) => {
            let retry_at = now + backoff_millis(job.attempts);
            if retry_at < job.request.expires_at {
                tracing::warn!(to = %job.address, %error, "email delivery failed; will retry");
                Err((error, Some(retry_at)))
            } else {
                tracing::warn!(to = %job.address, %error, "email delivery failed; request expires before a retry");
                Err((error, None))
            }
        }
        Attempt::Permanent(error) => {
            tracing::warn!(to = %job.address, %error, "email delivery failed permanently");
            Err((error, None))
        }
    };
    match &result {
        Ok(()) => broker.metrics.email_sent(),
        Err((_, retry)) => broker.metrics.email_failed(retry.is_none()),
    }
    let (state, detail, permanent) = match &result {
        Ok(()) => (DeliveryState::Sent, None, false),
        Err((error, Some(_))) => (DeliveryState::Retrying, Some(error.clone()), false),
        Err((error, None)) => (DeliveryState::Failed, Some(error.clone()), true),
    };
    if !record_attempt(broker, &job, result, now).await {
        return;
    }
    broker.report_delivery(&job.request.id, &job.address, state, detail);
    if permanent {
        end_if_undeliverable(broker, &job).await;
    }
}

/// Records a delivery attempt, trying again for about a minute while the
/// database refuses (a full disk): the email keeps its place among those
/// under way meanwhile, so it is not picked up and sent again at once.
/// Whether it was recorded.
async fn record_attempt(
    broker: &Broker,
    job: &OutboxJob,
    result: Result<(), (String, Option<Millis>)>,
    now: Millis,
) -> bool {
    use backon::BackoffBuilder;
    // Nine tries, 250 ms, 500 ms … 16 s apart: about 48 s in all.
    let mut waits = backon::ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(250))
        .with_max_delay(Duration::from_secs(16))
        .with_max_times(8)
        .build();
    loop {
        match broker.store.email_attempted(job, result.clone(), now).await {
            Ok(()) => return true,
            Err(error) => tracing::error!(%error, "cannot record an email delivery; trying again"),
        }
        let Some(wait) = waits.next() else {
            return false;
        };
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = broker.lifecycle.stopping() => return false,
        }
    }
}

/// Nobody can approve a request none of whose emails arrived: it ends now
/// rather than at its timeout.
async fn end_if_undeliverable(broker: &Broker, job: &OutboxJob) {
    let error = match broker.store.all_emails_failed(&job.request.id).await {
        Ok(Some(error)) => error,
        Ok(None) => return,
        Err(error) => {
            tracing::error!(%error, "cannot read the outbox");
            return;
        }
    };
    let cancel = Event::Cancel {
        cause: CancelCause::Undeliverable { error },
        at: broker.clock.now_millis(),
    };
    if let Err(error) = broker
        .apply(&job.request.id, cancel, Witness::default())
        .await
    {
        tracing::error!(%error, "cannot end an undeliverable request");
    }
}

/// The wait before retry number `attempts + 1`: 1 s, 2 s, 4 s … up to 60 s,
/// each plus up to as much again at random, so that many retries do not hit
/// the SMTP server in step.
fn backoff_millis(attempts: i64) -> i64 {
    use backon::BackoffBuilder;
    let cap = Duration::from_secs(60);
    let wait = backon::ExponentialBuilder::default()
        .with_min_delay(Duration::from_secs(1))
        .with_max_delay(cap)
        .with_jitter()
        .without_max_times()
        .build()
        .nth(usize::try_from(attempts).unwrap_or(0))
        .unwrap_or(cap);
    i64::try_from(wait.as_millis()).unwrap_or(i64::MAX)
}

/// Sends one email (or writes it to the outbox directory, stamped `now`).
async fn send(
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
        subject: mail::subject(&job.request),
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
/// computer is waiting and sees the failure).
pub async fn send_enrollment(
    state: &crate::AppState,
    computer: &str,
    recipient: &str,
    link: &str,
) -> Result<(), String> {
    // Unique as the authorization emails' are; random, since the link's
    // token is a secret and its hash is how the enrolment is kept.
    let unique =
        crate::secrets::new_id().unwrap_or_else(|_| state.broker.clock.now_millis().to_string());
    let message_id = format!("<enroll.{unique}@{}>", state.public.host());
    let message = mail::build_enrollment(&state.mail_from, recipient, computer, link, message_id)
        .map_err(|error| match error {
        mail::MailError::Address(_) => format!("{recipient} is not an email address"),
        other => other.to_string(),
    })?;
    let subject = mail::enrollment_subject(computer);
    match &state.delivery {
        Delivery::Smtp(relay) => relay
            .send(&message)
            .await
            .map(|_| ())
            .map_err(|e| e.to_string()),
        Delivery::Files(dir) => {
            let now = state.broker.clock.now_millis();
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

#[cfg(test)]
mod tests {
    use super::backoff_millis;

    #[test]
    fn retries_wait_one_two_four_seconds_up_to_a_minute() {
        for (attempts, base) in [
            (0, 1_000),
            (1, 2_000),
            (2, 4_000),
            (5, 32_000),
            (6, 60_000),
            (30, 60_000),
        ] {
            for _ in 0..20 {
                let wait = backoff_millis(attempts);
                assert!(wait >= base && wait <= base * 2, "{attempts}: {wait}");
            }
        }
    }
}
