//! The settings page: Desktop Sharing (email authorization, its timeout and
//! recipients, the approval policies) and the services offered, saved
//! through the same check as `doorman settings set` (bad input is shown
//! beside its field and nothing is written; a good save is written
//! atomically, comments kept); and, where local consent is on, the requests
//! waiting for the person at the computer, with Allow and Deny. A plain form:
//! no script, no framing, nothing cached.

use crate::access::COOKIE;
use crate::window::WindowState;
use askama::Template;
use axum::extract::{Form, Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use doorman_agent::consent::{self, ConsentRequest, ConsentResponse, Waiting};
use doorman_agent::settings_file::{self, SettingsFileError};
use doorman_core::settings::{SettingsChange, SettingsError, split_list};
use doorman_core::{AgentSettings, LocalConsent};
use serde::Deserialize;
use std::collections::HashMap;
use std::sync::Arc;

type Shared = Arc<WindowState>;

pub(crate) fn routes(state: Shared) -> axum::Router {
    use axum::routing::{get, post};
    axum::Router::new()
        .route("/open/{secret}", get(open))
        .route("/", get(show))
        .route("/save", post(save))
        .route("/consent/{id}/{decision}", post(answer))
        .route("/style.css", get(style))
        .layer(axum::middleware::from_fn(headers))
        .with_state(state)
}

/// The approval page's headers: no framing, no caching, nothing but this
/// page's own form and style.
async fn headers(request: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    response
}

fn cookie(headers: &HeaderMap) -> Option<&str> {
    doorman_proto::cookie::value(headers, COOKIE)
}

fn forbidden() -> Response {
    (
        StatusCode::FORBIDDEN,
        "Open the settings with `doorman settings open`: this address works only from the link it gives.\n",
    )
        .into_response()
}

/// `GET /open/{secret}`: the one-time URL.
async fn open(State(state): State<Shared>, Path(secret): Path<String>) -> Response {
    state.touch();
    let Some(session) = state.access.open(&secret) else {
        return forbidden();
    };
    let mut response = Redirect::to("/").into_response();
    let set = format!("{COOKIE}={session}; Path=/; HttpOnly; SameSite=Strict");
    if let Ok(value) = HeaderValue::from_str(&set) {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    response
}

/// The form's fields as typed, kept when a save is refused.
#[derive(Clone, Debug, Default, Deserialize)]
struct Fields {
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
    shell: Option<String>,
    #[serde(default)]
    forward: String,
    #[serde(default)]
    desktop: String,
    #[serde(default)]
    nonce: String,
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
            shell: on(settings.services.shell),
            forward: settings.services.forward.join("\n"),
            desktop: settings.services.desktop.clone().unwrap_or_default(),
            nonce: String::new(),
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
            // Passkeys are pinned at the command line, where enrolment
            // shows its code and fingerprint.
            require_passkey: None,
            passkeys: None,
        })
    }
}

/// The form field a settings problem is about: `desktop_sharing.recipients[2]`
/// is the recipients box.
fn field_of(problem_field: &str) -> String {
    let last = problem_field.rsplit('.').next().unwrap_or(problem_field);
    last.split('[').next().unwrap_or(last).to_string()
}

#[derive(Template)]
#[template(path = "settings.html")]
struct SettingsPage {
    name: String,
    fields: Fields,
    nonce: String,
    problems: HashMap<String, String>,
    /// A problem no field owns (the file itself).
    general: Option<String>,
    saved: Option<String>,
    consent: bool,
    waiting: Vec<Waiting>,
    consent_problem: Option<String>,
}

impl SettingsPage {
    fn problem(&self, field: &str) -> Option<&str> {
        self.problems.get(field).map(String::as_str)
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

async fn page(
    state: &WindowState,
    nonce: String,
    fields: Option<Fields>,
    problems: HashMap<String, String>,
    saved: Option<String>,
) -> Response {
    let settings = match settings_file::load(&state.config) {
        Ok(settings) => settings,
        Err(error) => {
            let page = SettingsPage {
                name: String::new(),
                fields: fields.unwrap_or_default(),
                nonce,
                problems,
                general: Some(error.to_string()),
                saved: None,
                consent: false,
                waiting: Vec::new(),
                consent_problem: None,
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
    let refused = !problems.is_empty();
    let page = SettingsPage {
        name: settings.name.clone(),
        fields: fields.unwrap_or_else(|| Fields::of(&settings)),
        nonce,
        problems,
        general: None,
        saved,
        consent,
        waiting,
        consent_problem,
    };
    let status = if refused {
        StatusCode::BAD_REQUEST
    } else {
        StatusCode::OK
    };
    render(&page, status)
}

/// `GET /`.
async fn show(State(state): State<Shared>, headers: HeaderMap) -> Response {
    state.touch();
    let Some(nonce) = state.access.nonce_for(cookie(&headers)) else {
        return forbidden();
    };
    page(&state, nonce, None, HashMap::new(), None).await
}

/// `POST /save`.
async fn save(
    State(state): State<Shared>,
    headers: HeaderMap,
    Form(fields): Form<Fields>,
) -> Response {
    state.touch();
    if !state.access.nonce_ok(cookie(&headers), &fields.nonce) {
        return forbidden();
    }
    let nonce = fields.nonce.clone();
    let change = match fields.change() {
        Ok(change) => change,
        Err(problems) => {
            let problems = problems
                .into_iter()
                .map(|(field, message)| (field.to_string(), message))
                .collect();
            return page(&state, nonce, Some(fields), problems, None).await;
        }
    };
    match settings_file::apply(&state.config, &change) {
        Ok(_) => {
            let at = time_of_day();
            page(&state, nonce, None, HashMap::new(), Some(at)).await
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
            page(&state, nonce, Some(fields), problems, None).await
        }
        Err(error) => {
            let problems = HashMap::from([("file".to_string(), error.to_string())]);
            page(&state, nonce, Some(fields), problems, None).await
        }
    }
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

#[derive(Deserialize)]
struct NonceOnly {
    #[serde(default)]
    nonce: String,
}

/// `POST /consent/{id}/allow|deny`.
async fn answer(
    State(state): State<Shared>,
    Path((id, decision)): Path<(String, String)>,
    headers: HeaderMap,
    Form(form): Form<NonceOnly>,
) -> Response {
    state.touch();
    if !state.access.nonce_ok(cookie(&headers), &form.nonce) {
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
    match consent::call(&socket, &request).await {
        Ok(_) => Redirect::to("/").into_response(),
        Err(error) => (StatusCode::CONFLICT, format!("{error}\n")).into_response(),
    }
}

/// `GET /style.css`.
async fn style() -> Response {
    (
        [(header::CONTENT_TYPE, "text/css; charset=utf-8")],
        include_str!("../templates/settings.css"),
    )
        .into_response()
}
