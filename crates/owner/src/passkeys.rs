//! The approvers' passkeys as the settings window holds them: those pinned
//! in the settings file, listed for the page ([`Approvers`]), and the one
//! enrolment started from the page, followed while the recipient makes the
//! passkey ([`EnrolmentSlot`]). One enrolment at a time: a new one, Discard,
//! or the window closing drops the one under way, which closes its
//! connection, so the server forgets it and its link stops working. The
//! forms that act on all this are the `approvers` module's.

use doorman_agent::enroll;
use doorman_core::AgentSettings;
use doorman_core::passkey::PinnedPasskey;
use std::sync::{Arc, Mutex, MutexGuard};

/// Where an enrolment started from the page stands.
#[derive(Clone)]
enum Stage {
    /// The link is out; the recipient has not made the passkey yet.
    Waiting,
    /// The recipient made this passkey: to compare, then pin or discard.
    Made(PinnedPasskey),
    /// It ended without a passkey, for this reason.
    Failed(String),
}

/// The enrolment under way.
struct UnderWay {
    recipient: String,
    code: String,
    /// How long its link works, in minutes.
    minutes: u64,
    stage: Arc<Mutex<Stage>>,
    /// Awaits the passkey, holding the enrolment's connection.
    task: tokio::task::JoinHandle<()>,
}

impl Drop for UnderWay {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The page's one enrolment, if any.
#[derive(Default)]
pub(crate) struct EnrolmentSlot {
    current: Mutex<Option<UnderWay>>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

impl EnrolmentSlot {
    /// Follows `enrolment` (its link sent to `recipient`), in place of any
    /// other.
    pub(crate) fn begin(&self, recipient: &str, enrolment: enroll::Enrolment) {
        let stage = Arc::new(Mutex::new(Stage::Waiting));
        let code = enrolment.code.clone();
        let minutes = enrolment.expires_in / 60;
        let reported = Arc::clone(&stage);
        let task = tokio::spawn(async move {
            let outcome = match enrolment.passkey().await {
                Ok(passkey) => Stage::Made(passkey),
                Err(error) => Stage::Failed(error.to_string()),
            };
            *lock(&reported) = outcome;
        });
        *lock(&self.current) = Some(UnderWay {
            recipient: recipient.to_string(),
            code,
            minutes,
            stage,
            task,
        });
    }

    /// The passkey made, if it is the one with `id` that the page showed:
    /// taken out, and the enrolment over.
    pub(crate) fn take_made(&self, id: &str) -> Option<PinnedPasskey> {
        let mut current = lock(&self.current);
        let made = match &*lock(&current.as_ref()?.stage) {
            Stage::Made(passkey) if passkey.id.to_string() == id => passkey.clone(),
            _ => return None,
        };
        *current = None;
        Some(made)
    }

    pub(crate) fn discard(&self) {
        *lock(&self.current) = None;
    }

    fn view(&self) -> Option<EnrolmentView> {
        let current = lock(&self.current);
        let under_way = current.as_ref()?;
        let stage = lock(&under_way.stage).clone();
        let (made, failed) = match stage {
            Stage::Waiting => (None, None),
            Stage::Made(passkey) => (
                Some(Made {
                    id: passkey.id.to_string(),
                    fingerprint: passkey.public_key.fingerprint(),
                }),
                None,
            ),
            Stage::Failed(message) => (None, Some(message)),
        };
        Some(EnrolmentView {
            recipient: under_way.recipient.clone(),
            code: under_way.code.clone(),
            minutes: under_way.minutes,
            made,
            failed,
        })
    }
}

/// The approvers part of the page.
#[derive(Default)]
pub(crate) struct Approvers {
    pub pinned: Vec<PinnedRow>,
    /// Whom an enrolment may be for.
    pub recipients: Vec<String>,
    pub enrolment: Option<EnrolmentView>,
    /// What the last approvers action did.
    pub note: Option<String>,
    /// Why it did not.
    pub problem: Option<String>,
}

pub(crate) struct PinnedRow {
    pub recipient: String,
    pub id: String,
    pub fingerprint: String,
}

pub(crate) struct EnrolmentView {
    pub recipient: String,
    pub code: String,
    pub minutes: u64,
    pub made: Option<Made>,
    pub failed: Option<String>,
}

pub(crate) struct Made {
    pub id: String,
    pub fingerprint: String,
}

impl Approvers {
    pub(crate) fn of(
        settings: &AgentSettings,
        slot: &EnrolmentSlot,
        note: Option<String>,
        problem: Option<String>,
    ) -> Approvers {
        let sharing = &settings.desktop_sharing;
        Approvers {
            pinned: sharing
                .passkeys
                .iter()
                .map(|key| PinnedRow {
                    recipient: key.recipient.clone(),
                    id: key.id.to_string(),
                    fingerprint: key.public_key.fingerprint(),
                })
                .collect(),
            recipients: sharing.recipients.clone(),
            enrolment: slot.view(),
            note,
            problem,
        }
    }
}
