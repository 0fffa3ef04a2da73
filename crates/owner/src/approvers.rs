//! The settings window's approvers: the passkeys pinned on this computer
//! (listed, removed) and an enrolment started from the page as `doorman
//! settings approvers enroll` starts one ([`doorman_agent::enroll`]): the
//! server emails the recipient a link and gives a code, which the page
//! shows; once the recipient has made the passkey, the page shows its
//! fingerprint, and the owner pins it only after comparing it with the one
//! on the recipient's page. Whether approvals need a passkey
//! (`require_passkey`) is a field of the settings form.
//!
//! The page has no script, so it learns that the passkey was made when it
//! is refreshed. One enrolment at a time: a new one, Discard, or the window
//! closing drops the one under way, which closes its connection, so the
//! server forgets it and its link stops working.

use crate::page::{self, Shared, View};
use axum::extract::{Form, State};
use axum::response::Response;
use doorman_agent::{enroll, settings_file};
use doorman_core::AgentSettings;
use doorman_core::passkey::PinnedPasskey;
use serde::Deserialize;
use std::sync::{Arc, Mutex, MutexGuard};

pub(crate) fn routes() -> axum::Router<Shared> {
    use axum::routing::post;
    axum::Router::new()
        .route("/approvers/enroll", post(start))
        .route("/approvers/pin", post(pin))
        .route("/approvers/discard", post(discard))
        .route("/approvers/remove", post(remove))
}

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
    fn begin(&self, recipient: &str, enrolment: enroll::Enrolment) {
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
    fn take_made(&self, id: &str) -> Option<PinnedPasskey> {
        let mut current = lock(&self.current);
        let made = match &*lock(&current.as_ref()?.stage) {
            Stage::Made(passkey) if passkey.id.to_string() == id => passkey.clone(),
            _ => return None,
        };
        *current = None;
        Some(made)
    }

    fn discard(&self) {
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

fn noted(note: String) -> View {
    View {
        approvers_note: Some(note),
        ..View::default()
    }
}

fn refused(problem: String) -> View {
    View {
        approvers_problem: Some(problem),
        ..View::default()
    }
}

#[derive(Deserialize)]
struct EnrolForm {
    #[serde(default)]
    session: String,
    #[serde(default)]
    recipient: String,
}

/// `POST /approvers/enroll`: the server emails the recipient a link.
async fn start(State(state): State<Shared>, Form(form): Form<EnrolForm>) -> Response {
    if !state.authorized(&form.session) {
        return page::forbidden();
    }
    let recipient = form.recipient.trim();
    let started = match settings_file::load(&state.config) {
        Ok(settings) => enroll::start(&settings, recipient)
            .await
            .map_err(|error| error.to_string()),
        Err(error) => Err(error.to_string()),
    };
    let view = match started {
        Ok(enrolment) => {
            state.enrolment.begin(recipient, enrolment);
            noted(format!("An enrolment link is on its way to {recipient}."))
        }
        Err(problem) => refused(format!("No enrolment started: {problem}")),
    };
    page::page(&state, form.session, view).await
}

#[derive(Deserialize)]
struct KeyForm {
    #[serde(default)]
    session: String,
    /// The credential id, base64url.
    #[serde(default)]
    id: String,
}

/// `POST /approvers/pin`: pins the passkey whose fingerprint the page
/// showed.
async fn pin(State(state): State<Shared>, Form(form): Form<KeyForm>) -> Response {
    if !state.authorized(&form.session) {
        return page::forbidden();
    }
    let view = match state.enrolment.take_made(&form.id) {
        Some(passkey) => {
            let recipient = passkey.recipient.clone();
            match enroll::pin(&state.config, passkey) {
                Ok(_) => noted(format!(
                    "Pinned the passkey of {recipient}. The next connection uses it."
                )),
                Err(error) => refused(format!("Not pinned: {error}")),
            }
        }
        None => refused(
            "That passkey is no longer waiting to be pinned: start the enrolment again.".into(),
        ),
    };
    page::page(&state, form.session, view).await
}

#[derive(Deserialize)]
struct SessionOnly {
    #[serde(default)]
    session: String,
}

/// `POST /approvers/discard`: drops the enrolment under way; its link
/// stops working.
async fn discard(State(state): State<Shared>, Form(form): Form<SessionOnly>) -> Response {
    if !state.authorized(&form.session) {
        return page::forbidden();
    }
    state.enrolment.discard();
    let view = noted("Enrolment stopped; nothing was pinned.".into());
    page::page(&state, form.session, view).await
}

/// `POST /approvers/remove`: unpins one passkey, by its credential id.
async fn remove(State(state): State<Shared>, Form(form): Form<KeyForm>) -> Response {
    if !state.authorized(&form.session) {
        return page::forbidden();
    }
    let view = if form.id.is_empty() {
        refused("Say which passkey to remove.".into())
    } else {
        match enroll::unpin(&state.config, &form.id) {
            Ok(0) => refused("That passkey is not pinned (any more).".into()),
            Ok(_) => noted("Removed the passkey; it no longer approves anything here.".into()),
            Err(error) => refused(format!("Not removed: {error}")),
        }
    };
    page::page(&state, form.session, view).await
}
