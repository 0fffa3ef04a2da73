//! The outbox worker: delivers queued emails over SMTP (or into
//! `DATA_DIR/outbox/` when no SMTP server is configured), retrying temporary
//! failures with jittered backoff until the request expires.
//!
//! Each email is delivered by a task of its own, at most
//! `MAX_IN_FLIGHT` at once, so a slow relay or a recipient's slow mail
//! server delays only its own emails: the worker starts the next due email
//! as soon as a slot is free, not when a batch has ended. The operator hears
//! `sending` when an attempt starts and the relay's answer when it ends.

use crate::delivery::{Attempt, Delivery, send};
use crate::message;
use doorman_store::{Millis, OutboxJob, Store};
use doorman_wire::message::DeliveryState;
use lettre::message::Mailbox;
use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinSet;
use tracing::Instrument;

/// What the worker needs of the server it runs in: its store, its clock,
/// its links, and who hears how a delivery went.
pub trait PostOffice: Send + Sync + 'static {
    fn store(&self) -> &Store;
    /// Now, by the server's clock.
    fn now_millis(&self) -> Millis;
    /// Completes at `at` by the server's clock (at once when a test moves
    /// the clock past it).
    fn sleep_until(&self, at: Millis) -> impl Future<Output = ()> + Send + '_;
    /// Completes when the server begins to stop.
    fn stopping(&self) -> impl Future<Output = ()> + Send + '_;
    /// Completes when an email has been queued.
    fn queued(&self) -> impl Future<Output = ()> + Send + '_;
    /// The approval link's token of one recipient of a request.
    fn link_token(&self, request_id: &str, position: i64) -> String;
    /// Tells the waiting operator how the email to `address` is doing.
    fn report_delivery(
        &self,
        request_id: &str,
        address: &str,
        state: DeliveryState,
        detail: Option<String>,
    );
    /// Counts an email sent, or one that failed (for good or not).
    fn count(&self, sent: Result<(), Permanence>);
    /// Ends a request none of whose emails could be delivered.
    fn end_undeliverable<'a>(
        &'a self,
        request_id: &'a str,
        error: String,
    ) -> impl Future<Output = ()> + Send + 'a;
}

/// Whether a failed email will be tried again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Permanence {
    WillRetry,
    GivenUp,
}

/// Settings the worker needs besides its [`PostOffice`].
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
///
/// The outbox is read when there may be something new in it: at the start,
/// when an email is queued, when a retry falls due, and when a delivery
/// ends while due emails waited for a slot. A delivery that ends otherwise
/// changes nothing the worker does not know (its retry time, if any), so
/// under load each email costs no read of its own.
pub async fn run<P: PostOffice>(post: Arc<P>, delivery: Delivery, settings: MailSettings) {
    let mut in_flight = InFlight::default();
    // Enough rows to fill every free slot even when the earliest due are
    // the ones under way.
    let batch = 2 * MAX_IN_FLIGHT;
    let mut read = true;
    // Due emails were left for want of a slot (or more may be due than one
    // read returns).
    let mut waiting = false;
    let mut wake_at = post.now_millis();
    loop {
        if read && !in_flight.has_room() {
            waiting = true;
        } else if read {
            let now = post.now_millis();
            // Emails due by now are under way or wait for a slot, which a
            // delivery that ends frees: the wait is for the next one after.
            // A retry's time is the server's clock's: a test that moves it
            // wakes the worker.
            let idle_until = now.saturating_add(IDLE_WAIT_MS);
            wake_at = idle_until;
            match post
                .store()
                .due_emails(now, i64::try_from(batch).unwrap_or(i64::MAX))
                .await
            {
                Ok((jobs, next_due)) => {
                    if let Some(due) = next_due {
                        wake_at = due.min(idle_until);
                    }
                    waiting = jobs.len() >= batch;
                    for job in jobs {
                        if in_flight.holds(&job) {
                            continue;
                        }
                        if !in_flight.has_room() {
                            waiting = true;
                            break;
                        }
                        in_flight.start(job, &post, &delivery, &settings);
                    }
                }
                Err(error) => {
                    tracing::error!(%error, "cannot read the outbox");
                    waiting = true;
                }
            }
        }
        read = tokio::select! {
            () = post.queued() => true,
            ended = in_flight.next_finished() => match ended {
                Ended::Recorded { retry_at } => {
                    if let Some(retry_at) = retry_at {
                        wake_at = wake_at.min(retry_at);
                    }
                    waiting
                }
                Ended::Unrecorded => true,
            },
            // With every slot taken there is nothing to start when a retry
            // falls due (and `wake_at`, not read again, may be past): a
            // slot freed wakes the worker first.
            () = post.sleep_until(wake_at), if in_flight.has_room() => true,
            () = post.stopping() => {
                in_flight.stop().await;
                return;
            }
        };
    }
}

/// How a delivery's task ended.
enum Ended {
    /// Its attempt is in the outbox, with the time of the next one if the
    /// email will be tried again.
    Recorded { retry_at: Option<Millis> },
    /// Not recorded (the database refused, or the task ended abnormally):
    /// the email may still be due.
    Unrecorded,
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
    tasks: JoinSet<Ended>,
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

    fn start<P: PostOffice>(
        &mut self,
        job: OutboxJob,
        post: &Arc<P>,
        delivery: &Delivery,
        settings: &MailSettings,
    ) {
        let place = (job.request.id.clone(), job.position);
        let span = tracing::info_span!(
            "email",
            request = %job.request.id,
            computer = %job.request.computer
        );
        let (post, delivery, settings) = (Arc::clone(post), delivery.clone(), settings.clone());
        let task = self.tasks.spawn(
            async move { deliver_one(&*post, &delivery, &settings, job).await }.instrument(span),
        );
        self.places.insert(task.id(), place);
    }

    /// Completes when a delivery has ended (never while none is under way).
    async fn next_finished(&mut self) -> Ended {
        match self.tasks.join_next_with_id().await {
            Some(Ok((id, ended))) => {
                self.places.remove(&id);
                ended
            }
            Some(Err(error)) => {
                tracing::error!(%error, "an email delivery ended abnormally");
                self.places.remove(&error.id());
                Ended::Unrecorded
            }
            None => std::future::pending().await,
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

async fn deliver_one<P: PostOffice>(
    post: &P,
    delivery: &Delivery,
    settings: &MailSettings,
    job: OutboxJob,
) -> Ended {
    post.report_delivery(&job.request.id, &job.address, DeliveryState::Sending, None);
    let token = post.link_token(&job.request.id, job.position);
    let link = format!("{}/a/{token}", settings.public_url);
    let message_id = format!(
        "<{}.{}@{}>",
        job.request.id, job.position, settings.message_id_host
    );
    let attempt = match message::build(
        &job.request,
        &settings.from,
        &job.address,
        &link,
        message_id,
    ) {
        Ok(message) => send(delivery, &job, message, &link, post.now_millis()).await,
        Err(error) => Attempt::Permanent(error.to_string()),
    };
    let now = post.now_millis();
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
        Ok(()) => post.count(Ok(())),
        Err((_, Some(_))) => post.count(Err(Permanence::WillRetry)),
        Err((_, None)) => post.count(Err(Permanence::GivenUp)),
    }
    let (state, detail, permanent, retry_at) = match &result {
        Ok(()) => (DeliveryState::Sent, None, false, None),
        Err((error, Some(at))) => (
            DeliveryState::Retrying,
            Some(error.clone()),
            false,
            Some(*at),
        ),
        Err((error, None)) => (DeliveryState::Failed, Some(error.clone()), true, None),
    };
    if !record_attempt(post, &job, result, now).await {
        return Ended::Unrecorded;
    }
    post.report_delivery(&job.request.id, &job.address, state, detail);
    if permanent {
        end_if_undeliverable(post, &job).await;
    }
    Ended::Recorded { retry_at }
}

/// Records a delivery attempt, trying again for about a minute while the
/// database refuses (a full disk): the email keeps its place among those
/// under way meanwhile, so it is not picked up and sent again at once.
/// Whether it was recorded.
async fn record_attempt<P: PostOffice>(
    post: &P,
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
        match post.store().email_attempted(job, result.clone(), now).await {
            Ok(()) => return true,
            Err(error) => tracing::error!(%error, "cannot record an email delivery; trying again"),
        }
        let Some(wait) = waits.next() else {
            return false;
        };
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = post.stopping() => return false,
        }
    }
}

/// Nobody can approve a request none of whose emails arrived: it ends now
/// rather than at its timeout.
async fn end_if_undeliverable<P: PostOffice>(post: &P, job: &OutboxJob) {
    let error = match post.store().all_emails_failed(&job.request.id).await {
        Ok(Some(error)) => error,
        Ok(None) => return,
        Err(error) => {
            tracing::error!(%error, "cannot read the outbox");
            return;
        }
    };
    post.end_undeliverable(&job.request.id, error).await;
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
