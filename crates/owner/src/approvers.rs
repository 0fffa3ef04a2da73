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
//! is refreshed. The enrolment under way and the pinned passkeys as the page
//! lists them are [`crate::passkeys`]'s.

use crate::page::{self, View};
use crate::state::Shared;
use axum::extract::{Form, State};
use axum::response::Response;
use doorman_agent::{enroll, settings_file};
use serde::Deserialize;

pub(crate) fn routes() -> axum::Router<Shared> {
    use axum::routing::post;
    axum::Router::new()
        .route("/approvers/enroll", post(start))
        .route("/approvers/pin", post(pin))
        .route("/approvers/discard", post(discard))
        .route("/approvers/remove", post(remove))
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
