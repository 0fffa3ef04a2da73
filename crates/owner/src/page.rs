//! The settings page: Desktop Sharing (email authorization, its timeout and
//! recipients, the approval policies) and the services offered, saved
//! through the same check as `doorman settings set` (a refused save says
//! "Not saved" at the top, shows each problem beside its field, puts the
//! focus on the first, and writes nothing; a good save is written
//! atomically, comments kept); the approvers' passkeys
//! ([`crate::passkeys`], acted on by the `approvers` forms); and, where
//! local consent is on, the requests waiting for the person at the
//! computer, with Allow and Deny. No framing, nothing cached, and no
//! script at all: plain forms, each carrying the
//! page's session secret in a hidden field (see [`crate::access`]), which
//! is what every answer but the first needs. A same-origin script sending
//! it in a header would be as strong; a form field keeps the page working
//! without script and its policy at `default-src 'none'`. The price: the
//! address bar cannot reopen the page (a reload of `/open/…` is refused,
//! `GET /` holds nothing), so the list of waiting requests has its own
//! Refresh button.
//!
//! Every request must name the window itself in `Host` ([`crate::host`]);
//! that check and the page's headers are the router's, around this page.

use crate::access::Refused;
use crate::passkeys::Approvers;
use crate::state::{Shared, WindowState};
use askama::Template;
use axum::extract::{Form, Path, State};
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use doorman_agent::consent::{self, ConsentRequest, ConsentResponse, Waiting};
use doorman_agent::settings_file::{self, SettingsFileError};
use doorman_core::settings::{SettingsChange, SettingsError, split_list};
use doorman_core::{AgentSettings, Decision, LocalConsent};
use serde::Deserialize;
use std::collections::HashMap;
use std::time::Instant;

pub(crate) fn routes() -> axum::Router<Shared> {
    use axum::routing::{get, post};
    axum::Router::new()
        .route("/open/{secret}", get(open))
        .route("/", get(show).post(refresh))
        .route("/save", post(save))
        .route("/consent/{id}/{decision}", post(answer))
        .route("/style.css", get(style))
}

pub(crate) fn forbidden() -> Response {
    (
        StatusCode::FORBIDDEN,
        "Open the settings with `doorman settings open`: this window opens only from the link it gives, once.\n",
    )
        .into_response()
}

/// `GET /open/{secret}`: the one-time link. Opened in time, it shows the
/// page, which holds the session secret from then on.
async fn open(State(state): State<Shared>, Path(secret): Path<String>) -> Response {
    match state.access.open(&secret, Instant::now()) {
        Ok(session) => {
            state.touch();
            page(&state, session, View::default()).await
        }
        Err(Refused::Wrong) => forbidden(),
        Err(Refused::Used) => (
            StatusCode::FORBIDDEN,
            "This link worked once already. Use the page it opened, or run `doorman settings open` again.\n",
        )
            .into_response(),
        Err(Refused::Expired) => (
            StatusCode::FORBIDDEN,
            "This link expired unopened. Run `doorman settings open` again.\n",
        )
            .into_response(),
    }
}

/// The form's fields as typed, kept when a save is refused.
#[derive(Clone, Debug, Default, Deserialize)]
pub(crate) struct Fields {
    #[serde(default)]
    require_email_authorization: Option<String>,
    #[serde(default)]
    email_authorization_timeout: String,
    #[serde(default)]
    recipients: String,
    #[serde(default)]
    required_approvals: String,
    #[serde(default)]
    require_reason: Option<String>,
    #[serde(default)]
    approval_valid_for: String,
    #[serde(default)]
    max_session_seconds: String,
    #[serde(default)]
    local_consent: String,
    #[serde(default)]
    require_passkey: Option<String>,
    #[serde(default)]
    shell: Option<String>,
    #[serde(default)]
    forward: String,
    #[serde(default)]
    desktop: String,
    #[serde(default)]
    files: String,
    /// The page's session secret.
    #[serde(default)]
    session: String,
}

impl Fields {
    fn of(settings: &AgentSettings) -> Fields {
        let sharing = &settings.desktop_sharing;
        let on = |yes: bool| yes.then(|| "on".to_string());
        Fields {
            require_email_authorization: on(sharing.require_email_authorization),
            email_authorization_timeout: sharing.email_authorization_timeout.to_string(),
            recipients: sharing.recipients.join("\n"),
            required_approvals: sharing.required_approvals.to_string(),
            require_reason: on(sharing.require_reason),
            approval_valid_for: sharing.approval_valid_for.to_string(),
            max_session_seconds: sharing.max_session_seconds.to_string(),
            local_consent: sharing.local_consent.as_str().to_string(),
            require_passkey: on(sharing.require_passkey),
            shell: on(settings.services.shell),
            forward: settings.services.forward.join("\n"),
            desktop: settings.services.desktop.clone().unwrap_or_default(),
            files: settings.services.files.join("\n"),
            session: String::new(),
        }
    }

    /// The change these fields ask for, or the fields that are not numbers
    /// or choices at all.
    fn change(&self) -> Result<SettingsChange, HashMap<&'static str, String>> {
        let mut problems = HashMap::new();
        let mut number = |field: &'static str, text: &str| match text.trim().parse::<u32>() {
            Ok(n) => Some(n),
            Err(_) => {
                problems.insert(field, "must be a whole number".to_string());
                None
            }
        };
        let timeout = number(
            "email_authorization_timeout",
            &self.email_authorization_timeout,
        );
        let approvals = number("required_approvals", &self.required_approvals);
        let valid_for = number("approval_valid_for", &self.approval_valid_for);
        let session = number("max_session_seconds", &self.max_session_seconds);
        let local_consent = match self.local_consent.parse::<LocalConsent>() {
            Ok(mode) => Some(mode),
            Err(message) => {
                problems.insert("local_consent", message);
                None
            }
        };
        if !problems.is_empty() {
            return Err(problems);
        }
        let lines = |text: &str| split_list(&text.replace(['\r', '\n'], ","));
        let desktop = self.desktop.trim();
        Ok(SettingsChange {
            require_email_authorization: Some(self.require_email_authorization.is_some()),
            email_authorization_timeout: timeout,
            recipients: Some(lines(&self.recipients)),
            required_approvals: approvals,
            require_reason: Some(self.require_reason.is_some()),
            approval_valid_for: valid_for,
            max_session_seconds: session,
            local_consent,
            shell: Some(self.shell.is_some()),
            forward: Some(lines(&self.forward)),
            desktop: Some((!desktop.is_empty()).then(|| desktop.to_string())),
            files: Some(lines(&self.files)),
            require_passkey: Some(self.require_passkey.is_some()),
            // Passkeys are pinned and removed by the approvers' own forms.
            passkeys: None,
        })
    }
}

/// The form field a settings problem is about: `desktop_sharing.recipients[2]`
/// is the recipients box. A pinned passkey whose recipient is no longer
/// one is about the recipients too: removing the address did it.
fn field_of(problem_field: &str) -> String {
    if problem_field.starts_with("desktop_sharing.passkeys[") {
        return "recipients".to_string();
    }
    let last = problem_field.rsplit('.').next().unwrap_or(problem_field);
    last.split('[').next().unwrap_or(last).to_string()
}

/// The fields that show their problem beside them, in the page's order.
const PLACED: [&str; 10] = [
    "email_authorization_timeout",
    "recipients",
    "required_approvals",
    "approval_valid_for",
    "max_session_seconds",
    "local_consent",
    "require_passkey",
    "forward",
    "desktop",
    "files",
];

/// The first field in the page with a problem (it gets the focus, which
/// scrolls it into view: the page has no script), and the problems no
/// field shows (the file's own, such as its `key`), for the top.
fn placing(problems: &HashMap<String, String>) -> (Option<String>, Vec<String>) {
    let first = PLACED
        .iter()
        .find(|field| problems.contains_key(**field))
        .map(|field| field.to_string());
    let mut unplaced: Vec<String> = problems
        .iter()
        .filter(|(field, _)| field.as_str() != "file" && !PLACED.contains(&field.as_str()))
        .map(|(field, message)| format!("{field}: {message}"))
        .collect();
    unplaced.sort();
    (first, unplaced)
}

#[derive(Template)]
#[template(path = "settings.html")]
struct SettingsPage {
    name: String,
    fields: Fields,
    /// The page's session secret, carried by each of its forms.
    session: String,
    problems: HashMap<String, String>,
    /// The first field with a problem, which gets the focus.
    first_problem: Option<String>,
    /// Problems of the save that no field shows.
    unplaced: Vec<String>,
    /// A problem no field owns (the file itself).
    general: Option<String>,
    saved: Option<String>,
    consent: bool,
    waiting: Vec<Waiting>,
    consent_problem: Option<String>,
    /// What a local answer did.
    answered: Option<String>,
    /// Why a local answer was not taken.
    answer_problem: Option<String>,
    approvers: Approvers,
    /// This computer's end-to-end identity fingerprint, once its agent
    /// made the key.
    identity: Option<String>,
    /// How many age recipients its recordings of sealed shells go to.
    recording_recipients: usize,
}

impl SettingsPage {
    fn problem(&self, field: &str) -> Option<&str> {
        self.problems.get(field).map(String::as_str)
    }

    /// Whether `field` is the first with a problem.
    fn focus(&self, field: &str) -> bool {
        self.first_problem.as_deref() == Some(field)
    }

    fn checked(value: &Option<String>) -> bool {
        value.is_some()
    }
}

fn render(page: &SettingsPage, status: StatusCode) -> Response {
    match page.render() {
        Ok(html) => (status, Html(html)).into_response(),
        Err(error) => {
            tracing::error!(%error, "cannot render the settings page");
            (StatusCode::INTERNAL_SERVER_ERROR, "internal error").into_response()
        }
    }
}

/// The requests waiting for a local answer, as the running agent lists them.
async fn waiting(state: &WindowState, settings: &AgentSettings) -> Result<Vec<Waiting>, String> {
    let socket = consent::socket_path(&state.config, settings.consent_socket.as_deref());
    match consent::call(&socket, &ConsentRequest::List).await {
        Ok(ConsentResponse::Waiting { requests }) => Ok(requests),
        Ok(_) => Ok(Vec::new()),
        Err(error) => Err(error.to_string()),
    }
}

/// What the page shows besides the settings file's contents.
#[derive(Default)]
pub(crate) struct View {
    /// The fields as typed, when a save was refused.
    pub fields: Option<Fields>,
    pub problems: HashMap<String, String>,
    pub saved: Option<String>,
    pub answered: Option<String>,
    pub answer_problem: Option<String>,
    /// What an approvers action did, or why it did not.
    pub approvers_note: Option<String>,
    pub approvers_problem: Option<String>,
}

pub(crate) async fn page(state: &WindowState, session: String, view: View) -> Response {
    let View {
        fields,
        problems,
        saved,
        answered,
        answer_problem,
        approvers_note,
        approvers_problem,
    } = view;
    let (first_problem, unplaced) = placing(&problems);
    let settings = match settings_file::load(&state.config) {
        Ok(settings) => settings,
        Err(error) => {
            let page = SettingsPage {
                name: String::new(),
                fields: fields.unwrap_or_default(),
                session,
                problems,
                first_problem,
                unplaced,
                general: Some(error.to_string()),
                saved: None,
                consent: false,
                waiting: Vec::new(),
                consent_problem: None,
                answered: None,
                answer_problem,
                approvers: Approvers::default(),
                identity: None,
                recording_recipients: 0,
            };
            return render(&page, StatusCode::INTERNAL_SERVER_ERROR);
        }
    };
    let consent = settings.desktop_sharing.local_consent != LocalConsent::Off;
    let (waiting, consent_problem) = if consent {
        match waiting(state, &settings).await {
            Ok(list) => (list, None),
            Err(problem) => (Vec::new(), Some(problem)),
        }
    } else {
        (Vec::new(), None)
    };
    let status = if !problems.is_empty() {
        StatusCode::BAD_REQUEST
    } else if answer_problem.is_some() || approvers_problem.is_some() {
        StatusCode::CONFLICT
    } else {
        StatusCode::OK
    };
    let approvers = Approvers::of(
        &settings,
        &state.enrolment,
        approvers_note,
        approvers_problem,
    );
    let page = SettingsPage {
        name: settings.name.clone(),
        fields: fields.unwrap_or_else(|| Fields::of(&settings)),
        session,
        problems,
        first_problem,
        unplaced,
        general: None,
        saved,
        consent,
        waiting,
        consent_problem,
        answered,
        answer_problem,
        approvers,
        identity: doorman_agent::identity_file::fingerprint(&doorman_agent::identity_file::path(
            &state.config,
            settings.identity_key.as_deref(),
        )),
        recording_recipients: settings.recordings_to.len(),
    };
    render(&page, status)
}

/// `GET /`: the address bar holds no secret, so nothing here.
async fn show() -> Response {
    forbidden()
}

#[derive(Deserialize)]
struct SessionOnly {
    #[serde(default)]
    session: String,
}

/// `POST /`: the page again (its Refresh button).
async fn refresh(State(state): State<Shared>, Form(form): Form<SessionOnly>) -> Response {
    if !state.authorized(&form.session) {
        return forbidden();
    }
    page(&state, form.session, View::default()).await
}

/// `POST /save`.
async fn save(State(state): State<Shared>, Form(fields): Form<Fields>) -> Response {
    if !state.authorized(&fields.session) {
        return forbidden();
    }
    let session = fields.session.clone();
    let refused = |fields: Fields, problems: HashMap<String, String>| View {
        fields: Some(fields),
        problems,
        ..View::default()
    };
    let change = match fields.change() {
        Ok(change) => change,
        Err(problems) => {
            let problems = problems
                .into_iter()
                .map(|(field, message)| (field.to_string(), message))
                .collect();
            return page(&state, session, refused(fields, problems)).await;
        }
    };
    match settings_file::apply(&state.config, &change) {
        Ok(_) => {
            let view = View {
                saved: Some(time_of_day()),
                ..View::default()
            };
            page(&state, session, view).await
        }
        Err(SettingsFileError::Refused {
            error: SettingsError::Invalid(found),
            ..
        }) => {
            let mut problems = HashMap::new();
            for problem in found {
                problems
                    .entry(field_of(&problem.field))
                    .or_insert(problem.message);
            }
            page(&state, session, refused(fields, problems)).await
        }
        Err(error) => {
            let problems = HashMap::from([("file".to_string(), error.to_string())]);
            page(&state, session, refused(fields, problems)).await
        }
    }
}

/// `POST /consent/{id}/allow|deny`.
async fn answer(
    State(state): State<Shared>,
    Path((id, decision)): Path<(String, String)>,
    Form(form): Form<SessionOnly>,
) -> Response {
    if !state.authorized(&form.session) {
        return forbidden();
    }
    let request = match decision.as_str() {
        "allow" => ConsentRequest::Allow { id },
        "deny" => ConsentRequest::Deny { id },
        _ => return (StatusCode::NOT_FOUND, "no such answer").into_response(),
    };
    let settings = match settings_file::load(&state.config) {
        Ok(settings) => settings,
        Err(error) => {
            return (StatusCode::INTERNAL_SERVER_ERROR, error.to_string()).into_response();
        }
    };
    let socket = consent::socket_path(&state.config, settings.consent_socket.as_deref());
    let view = match consent::call(&socket, &request).await {
        Ok(ConsentResponse::Answered { id, decision }) => {
            let done = match decision {
                Decision::Allow => "Allowed",
                _ => "Denied",
            };
            View {
                answered: Some(format!("{done} request {id}.")),
                ..View::default()
            }
        }
        Ok(_) => View::default(),
        Err(error) => View {
            answer_problem: Some(error.to_string()),
            ..View::default()
        },
    };
    page(&state, form.session, view).await
}

/// The local time of day, `HH:MM:SS`, for "Saved at".
fn time_of_day() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default();
    let day = now % 86_400;
    format!(
        "{:02}:{:02}:{:02} UTC",
        day / 3600,
        day % 3600 / 60,
        day % 60
    )
}

/// `GET /style.css`.
async fn style() -> Response {
    (
        [(header::CONTENT_TYPE, "text/css; charset=utf-8")],
        include_str!("../templates/settings.css"),
    )
        .into_response()
}
