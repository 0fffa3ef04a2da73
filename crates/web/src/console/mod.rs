//! The operator's web console at `/console`: sign-in with the operator token
//! (a cookie session, [`sessions`]), the computers this operator may reach
//! with their online state, their terminal, desktop and Files view pages
//! (one WebSocket, `socket` and `files_socket`), the recordings of their
//! shell sessions (`recordings`), and the browser's own scripts and styles,
//! embedded in the binary. Pages keep the approval page's headers; scripts
//! come only from this server (`script-src 'self'`, no inline script).

mod files_socket;
mod recordings;
pub mod sessions;
mod socket;

use crate::AppState;
use askama::Template;
use axum::Json;
use axum::extract::{Form, Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use doorman_core::access::{ServiceKind, permits};
use doorman_http::client_addr::{ClientAddr, Local};
use doorman_store::{OperatorId, Principal};
use doorman_wire::message::ComputerStatus;
use serde::{Deserialize, Serialize};
pub use sessions::{ConsoleSessions, SignedIn};

/// How long a console session may sit unused unless told otherwise.
pub const DEFAULT_IDLE_MINUTES: u32 = 30;

/// The console pages' policy: the approval page's, plus this server's own
/// scripts and connections back to it.
const CONSOLE_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// The terminal page's: xterm.js styles its rows with `<style>` elements
/// it creates, so inline styles are allowed there; scripts stay our own.
const TERMINAL_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

pub fn routes() -> axum::Router<AppState> {
    use axum::routing::{get, post};
    axum::Router::new()
        .route("/console", get(home))
        .route("/console/sign-in", post(sign_in))
        .route("/console/sign-out", post(sign_out))
        .route("/console/computers", get(computers_json))
        .route("/console/socket", get(socket::socket))
        .route("/console/terminal/{computer}", get(terminal))
        .route("/console/desktop/{computer}", get(desktop))
        .route("/console/files/{computer}", get(files))
        .route("/console/recordings", get(recordings::list))
        .route("/console/recordings/{id}", get(recordings::replay))
        .route("/console/recordings/{id}/events", get(recordings::events))
        .route("/console/assets/{*path}", get(asset))
}

/// The cookie's name: `__Host-` under TLS, so that it is only ever set by
/// this origin over HTTPS for the whole site.
fn cookie_name(state: &AppState) -> &'static str {
    if state.public.is_https() {
        "__Host-doorman_console"
    } else {
        "doorman_console"
    }
}

fn cookie_value<'h>(state: &AppState, headers: &'h HeaderMap) -> Option<&'h str> {
    doorman_wire::cookie::value(headers, cookie_name(state))
}

/// The operator signed in with this request's cookie, while its token is
/// still the one it signed in with (and the operator the same one, not
/// another added under its name).
pub async fn signed_in(state: &AppState, headers: &HeaderMap) -> Option<SignedIn> {
    let cookie = cookie_value(state, headers)?;
    let who = state.console.find(cookie)?;
    match state
        .broker
        .store()
        .operator_by_token(&who.token_hash)
        .await
    {
        Ok(Some(operator)) if operator.id == who.operator_id => Some(who),
        Ok(_) => {
            state.console.close(cookie);
            None
        }
        Err(error) => {
            tracing::error!(%error, "cannot check a console session's token");
            None
        }
    }
}

fn with_policy(mut response: Response) -> Response {
    response.headers_mut().insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONSOLE_POLICY),
    );
    response
}

fn page(status: StatusCode, template: &impl Template) -> Response {
    match template.render() {
        Ok(html) => with_policy((status, Html(html)).into_response()),
        Err(error) => {
            tracing::error!(%error, "cannot render a console page");
            (StatusCode::INTERNAL_SERVER_ERROR, "internal error").into_response()
        }
    }
}

#[derive(Template)]
#[template(path = "console_sign_in.html")]
struct SignInPage<'a> {
    problem: Option<&'a str>,
}

/// The terminal's or the desktop's page: the reason, the wait for
/// approval, then the session.
#[derive(Template)]
#[template(path = "console_session.html")]
struct SessionPage {
    operator: String,
    computer: String,
    desktop: bool,
    heading: &'static str,
}

/// The Files view's page: the reason, the wait for approval, then the
/// shared folders to browse, upload to and download from.
#[derive(Template)]
#[template(path = "console_files.html")]
struct FilesPage {
    operator: String,
    computer: String,
}

#[derive(Template)]
#[template(path = "console_computers.html")]
struct ComputersPage {
    operator: String,
    computers: Vec<Computer>,
}

/// A computer as the console lists it.
#[derive(Clone, Debug, Serialize)]
pub struct Computer {
    pub name: String,
    pub online: bool,
    /// Whether a connection needs a recipient's approval by email; `None`
    /// until the computer has said (offline, or an older agent).
    pub email_authorization: Option<bool>,
    /// Whether this operator may open a terminal on it: its access rules
    /// allow it, and the computer offers shells (or has not said).
    pub shell: bool,
    /// Whether this operator may ask for its desktop: access rules count it
    /// as forwarding, and the computer must have said it offers one.
    pub desktop: bool,
    /// Whether it offers TCP forwarding (`connect -L`) to this operator.
    pub forward: bool,
    /// Whether this operator may browse its shared folders: its access
    /// rules allow copies, and the computer said it shares some.
    pub files: bool,
}

/// The computers `operator` may reach for any service, by name.
async fn reachable(state: &AppState, operator: OperatorId) -> Result<Vec<Computer>, Response> {
    let store = &state.broker.store();
    let loaded = async {
        let agents = store.principals(Principal::Agent).await?;
        let grants = store.grants_of_operator(operator).await?;
        Ok::<_, doorman_store::StoreError>((agents, grants))
    };
    let (agents, grants) = loaded.await.map_err(|error| {
        tracing::error!(%error, "cannot list the console's computers");
        (StatusCode::INTERNAL_SERVER_ERROR, "internal error").into_response()
    })?;
    let mut computers: Vec<Computer> = agents
        .into_iter()
        .filter(|(name, _)| {
            ServiceKind::ALL
                .into_iter()
                .any(|kind| permits(&grants, name, kind))
        })
        .map(|(name, _)| {
            let status = state.broker.agents().status(&name);
            let offers = |offered: fn(&ComputerStatus) -> bool| status.as_ref().is_none_or(offered);
            let forwarding = permits(&grants, &name, ServiceKind::Forward);
            Computer {
                online: state.broker.agents().is_online(&name),
                email_authorization: status.as_ref().map(|s| s.email_authorization),
                shell: permits(&grants, &name, ServiceKind::Shell) && offers(|s| s.shell),
                desktop: forwarding && status.as_ref().is_some_and(|s| s.desktop),
                forward: forwarding && offers(|s| s.forward),
                files: permits(&grants, &name, ServiceKind::Files)
                    && status.as_ref().is_some_and(|s| !s.files.is_empty()),
                name,
            }
        })
        .collect();
    computers.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(computers)
}

/// `GET /console`: the computers, or the sign-in form.
async fn home(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let Some(who) = signed_in(&state, &headers).await else {
        return page(StatusCode::OK, &SignInPage { problem: None });
    };
    match reachable(&state, who.operator_id).await {
        Ok(computers) => page(
            StatusCode::OK,
            &ComputersPage {
                operator: who.operator,
                computers,
            },
        ),
        Err(response) => response,
    }
}

/// `GET /console/terminal/{computer}`.
async fn terminal(
    State(state): State<AppState>,
    Path(computer): Path<String>,
    headers: HeaderMap,
) -> Response {
    session_page(&state, &headers, computer, false).await
}

/// `GET /console/desktop/{computer}`.
async fn desktop(
    State(state): State<AppState>,
    Path(computer): Path<String>,
    headers: HeaderMap,
) -> Response {
    session_page(&state, &headers, computer, true).await
}

/// `GET /console/files/{computer}`.
async fn files(
    State(state): State<AppState>,
    Path(computer): Path<String>,
    headers: HeaderMap,
) -> Response {
    let Some(who) = signed_in(&state, &headers).await else {
        return Redirect::to("/console").into_response();
    };
    let page = FilesPage {
        operator: who.operator,
        computer,
    };
    self::page(StatusCode::OK, &page)
}

async fn session_page(
    state: &AppState,
    headers: &HeaderMap,
    computer: String,
    desktop: bool,
) -> Response {
    let Some(who) = signed_in(state, headers).await else {
        return Redirect::to("/console").into_response();
    };
    let page = SessionPage {
        operator: who.operator,
        computer,
        desktop,
        heading: if desktop { "Desktop of" } else { "Terminal on" },
    };
    let mut response = self::page(StatusCode::OK, &page);
    if !desktop {
        response.headers_mut().insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(TERMINAL_POLICY),
        );
    }
    response
}

/// `GET /console/computers`: the list again, for the page to update itself.
async fn computers_json(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let Some(who) = signed_in(&state, &headers).await else {
        return (StatusCode::UNAUTHORIZED, "signed out").into_response();
    };
    match reachable(&state, who.operator_id).await {
        Ok(computers) => Json(computers).into_response(),
        Err(response) => response,
    }
}

#[derive(Deserialize)]
struct SignInForm {
    token: String,
}

/// `POST /console/sign-in`.
async fn sign_in(
    State(state): State<AppState>,
    ClientAddr(client): ClientAddr,
    Local(local): Local,
    headers: HeaderMap,
    form: Result<Form<SignInForm>, axum::extract::rejection::FormRejection>,
) -> Response {
    let token = form.map(|Form(form)| form.token).unwrap_or_default();
    let token = token.trim();
    if !from_this_site(&state, &headers, local) {
        return (StatusCode::FORBIDDEN, "sign in from the console's own page").into_response();
    }
    let found = if doorman_runtime::secrets::plausible_token(token) {
        let hash = doorman_runtime::secrets::hash(token);
        match state.broker.store().operator_by_token(&hash).await {
            Ok(found) => found.map(|operator| SignedIn {
                operator: operator.name,
                operator_id: operator.id,
                token_hash: hash,
            }),
            Err(error) => {
                tracing::error!(%error, "cannot check a console sign-in");
                return (StatusCode::INTERNAL_SERVER_ERROR, "internal error").into_response();
            }
        }
    } else {
        None
    };
    let Some(who) = found else {
        let limited = doorman_broker::upgrade::count_wrong_credential(
            &state.broker,
            client,
            "operator token",
        )
        .await;
        let (status, problem) = if limited {
            (
                StatusCode::TOO_MANY_REQUESTS,
                "Too many wrong tokens from this address: wait 10 minutes.",
            )
        } else {
            (
                StatusCode::UNAUTHORIZED,
                "That is not a valid operator token.",
            )
        };
        return page(
            status,
            &SignInPage {
                problem: Some(problem),
            },
        );
    };
    let operator = who.operator.clone();
    let cookie = match state.console.open(who) {
        Ok(cookie) => cookie,
        Err(sessions::OpenError::TooManySignIns) => {
            // Counted, not logged at each refusal: a flood would fill the log.
            state.broker.metrics().rate_limited("console_sign_ins");
            tracing::debug!(%operator, source = %client, "console sign-in refused: too many sign-ins");
            return page(
                StatusCode::TOO_MANY_REQUESTS,
                &SignInPage {
                    problem: Some("Too many sign-ins for this operator: wait 10 minutes."),
                },
            );
        }
        Err(sessions::OpenError::Full) => {
            tracing::warn!(%operator, "console sign-in refused: the server holds its most console sessions");
            return (
                StatusCode::SERVICE_UNAVAILABLE,
                "too many console sessions: try again later",
            )
                .into_response();
        }
        Err(error) => {
            tracing::error!(%error, "cannot open a console session");
            return (StatusCode::INTERNAL_SERVER_ERROR, "internal error").into_response();
        }
    };
    tracing::info!(%operator, source = %client, "signed in to the console");
    back_to_console(&state, &cookie, "")
}

/// A redirect to `/console` that sets the session cookie to `value` with
/// `extra` attributes (an expiry to clear it).
fn back_to_console(state: &AppState, value: &str, extra: &str) -> Response {
    let secure = if state.public.is_https() {
        "; Secure"
    } else {
        ""
    };
    let set = format!(
        "{}={value}; Path=/{extra}; HttpOnly; SameSite=Strict{secure}",
        cookie_name(state)
    );
    let mut response = Redirect::to("/console").into_response();
    if let Ok(value) = HeaderValue::from_str(&set) {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    response
}

/// Whether a POST comes from this server's own pages: no other site may
/// sign anyone in or out.
fn from_this_site(state: &AppState, headers: &HeaderMap, client_is_local: bool) -> bool {
    state.public.cross_site(headers, client_is_local).is_none()
}

/// `POST /console/sign-out`.
async fn sign_out(
    State(state): State<AppState>,
    Local(local): Local,
    headers: HeaderMap,
) -> Response {
    if !from_this_site(&state, &headers, local) {
        return (
            StatusCode::FORBIDDEN,
            "sign out from the console's own page",
        )
            .into_response();
    }
    if let Some(cookie) = cookie_value(&state, &headers) {
        state.console.close(cookie);
    }
    back_to_console(&state, "", "; Max-Age=0")
}

/// The console's scripts and styles by their path under
/// `assets/console/` (see `build.rs`), embedded at build time.
const ASSETS: &[(&str, &[u8])] = include!(concat!(env!("OUT_DIR"), "/console_assets.rs"));

/// `GET /console/assets/{*path}`.
async fn asset(Path(path): Path<String>) -> Response {
    let kind = if path.ends_with(".css") {
        "text/css; charset=utf-8"
    } else {
        "text/javascript; charset=utf-8"
    };
    match ASSETS.iter().find(|(name, _)| *name == path) {
        Some((_, bytes)) => ([(header::CONTENT_TYPE, kind)], *bytes).into_response(),
        None => (StatusCode::NOT_FOUND, "no such file").into_response(),
    }
}
