//! The web pages: the approval page behind each emailed link, the `/outbox`
//! listing for loopback clients, and the headers every page carries.
//!
//! `GET` only shows; the `POST` of the page's own form decides. Unknown,
//! malformed and oversized tokens all get the same 404 page.

use crate::AppState;
use askama::Template;
use axum::extract::rejection::FormRejection;
use axum::extract::{Form, Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Redirect, Response};
use doorman_broker::broker::Witness;
use doorman_core::authorization::{Approval, Event, seconds_left};
use doorman_core::display::format_time;
use doorman_core::{AuditKind, CancelCause};
use doorman_core::{Decision, Outcome, RequestState};
use doorman_http::client_addr::{ClientAddr, Local, LocalOnly};
use doorman_runtime::secrets;
use doorman_store::{AuditEvent, RequestRow};
use serde::Deserialize;

/// Adds the security headers to every response.
pub async fn security_headers(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    // The console's pages widen it for their own scripts.
    headers
        .entry(header::CONTENT_SECURITY_POLICY)
        .or_insert(HeaderValue::from_static(
            "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ));
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    response
}

/// Adds HSTS; only layered when the server speaks TLS.
pub async fn strict_transport_security(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    response.headers_mut().insert(
        header::STRICT_TRANSPORT_SECURITY,
        HeaderValue::from_static("max-age=31536000"),
    );
    response
}

pub async fn stylesheet() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/css; charset=utf-8")],
        include_str!("../templates/doorman.css"),
    )
}

/// The scripts of the passkey pages (the approval page of a computer that
/// requires passkeys, the enrolment page), by name.
const SCRIPTS: [(&str, &str); 3] = [
    ("passkey.js", include_str!("../assets/passkey.js")),
    ("enroll.js", include_str!("../assets/enroll.js")),
    ("base64url.js", include_str!("../assets/base64url.js")),
];

/// `GET /assets/{script}`.
pub async fn script(Path(name): Path<String>) -> Response {
    match SCRIPTS.iter().find(|(script, _)| *script == name) {
        Some((_, text)) => (
            [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
            *text,
        )
            .into_response(),
        None => PageError::NotFound.into_response(),
    }
}

/// The approval page's policy when it runs the passkey script: the usual
/// one, plus this server's own scripts.
pub(crate) const PASSKEY_PAGE_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

pub async fn home() -> impl IntoResponse {
    render(
        StatusCode::OK,
        &MessagePage {
            title: "Doorman",
            message: "This server relays remote-access sessions that are approved by email. Open the link from your email to see a request.",
        },
    )
}

#[derive(Template)]
#[template(path = "message.html")]
struct MessagePage<'a> {
    title: &'a str,
    message: &'a str,
}

#[derive(Template)]
#[template(path = "approval.html")]
struct ApprovalPage<'a> {
    request: &'a RequestRow,
    recipient: &'a str,
    requested_at: String,
    expires_at: String,
    seconds_left: u64,
    /// Who allowed so far (of a request that needs several approvals).
    approvals: Vec<ApprovalLine>,
    /// Allows still needed; 0 once settled.
    approvals_missing: u32,
    /// Whether this recipient's Allow is among them.
    approved_by_you: bool,
    nonce: String,
    status: String,
    /// What a report ("I did not expect this") did, once one denied it.
    report: Option<String>,
    block_minutes: u32,
    /// The ceremony's data, when the computer requires passkeys.
    passkey: Option<crate::passkey_approval::PasskeyPage>,
    /// The short form of the computer's identity fingerprint.
    identity: Option<String>,
}

struct ApprovalLine {
    by: String,
    at: String,
}

fn render<T: Template>(status: StatusCode, page: &T) -> Response {
    match page.render() {
        Ok(html) => (status, Html(html)).into_response(),
        Err(error) => {
            tracing::error!(%error, "cannot render page");
            (StatusCode::INTERNAL_SERVER_ERROR, "internal error").into_response()
        }
    }
}

/// Why a page request failed, as the visitor is told: a page, or one line
/// for a form that did not come from our page. Internals are logged, never
/// sent.
#[derive(Debug)]
pub enum PageError {
    /// Unknown, malformed and oversized tokens alike.
    NotFound,
    /// The bad-link limit for this address.
    TooManyFailures,
    BadForm(&'static str),
    /// A form body over [`MAX_FORM_BYTES`].
    FormTooLarge,
    Forbidden(&'static str),
    /// An Allow without a passkey assertion that verifies.
    Passkey(String),
    Internal(String),
}

impl From<doorman_store::StoreError> for PageError {
    fn from(error: doorman_store::StoreError) -> Self {
        PageError::Internal(error.to_string())
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        let (status, title, message) = match self {
            PageError::NotFound => (
                StatusCode::NOT_FOUND,
                "Link not valid",
                "This link is not valid. Check that you copied the whole link from the email.",
            ),
            PageError::TooManyFailures => (
                StatusCode::TOO_MANY_REQUESTS,
                "Too many invalid links",
                "Too many invalid links were opened from your address. Try again in a few minutes.",
            ),
            PageError::BadForm(reason) => return (StatusCode::BAD_REQUEST, reason).into_response(),
            PageError::FormTooLarge => {
                return (
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "the form is larger than an approval form can be",
                )
                    .into_response();
            }
            PageError::Forbidden(reason) => return (StatusCode::FORBIDDEN, reason).into_response(),
            PageError::Passkey(reason) => {
                return (StatusCode::FORBIDDEN, format!("not counted: {reason}")).into_response();
            }
            PageError::Internal(error) => {
                tracing::error!(%error, "request failed");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "Something went wrong",
                    "The server could not handle this request. Try again in a moment.",
                )
            }
        };
        render(status, &MessagePage { title, message })
    }
}

pub(crate) fn user_agent(headers: &HeaderMap) -> Option<String> {
    headers
        .get(header::USER_AGENT)
        .and_then(|value| value.to_str().ok())
        .map(|value| value.chars().take(256).collect())
}

fn status_line(request: &RequestRow, now: i64) -> String {
    match request.outcome() {
        None if request.expires_at <= now => {
            format!("Expired at {}.", format_time(request.expires_at))
        }
        None => "Waiting for a decision.".to_string(),
        Some(Outcome::Allowed { by, at, .. }) => format!("Allowed by {by} at {}.", format_time(at)),
        Some(Outcome::Denied { by, at }) => format!("Denied by {by} at {}.", format_time(at)),
        Some(Outcome::Expired { at }) => {
            format!("Expired at {}: nobody decided in time.", format_time(at))
        }
        Some(Outcome::Cancelled {
            at,
            cause: CancelCause::Operator,
        }) => format!("Cancelled by the operator at {}.", format_time(at)),
        // Allowed here, refused there: the computer's word is the last.
        Some(Outcome::Cancelled {
            at,
            cause: CancelCause::RefusedByComputer { reason },
        }) => {
            let allowed = match &request.decided_by {
                Some(by) => format!(" It had been allowed by {by}; no session started."),
                None => " No session started.".to_string(),
            };
            let stop = if reason.ends_with(['.', '?', '!']) {
                ""
            } else {
                "."
            };
            format!(
                "Refused by the computer at {}: {reason}{stop}{allowed}",
                format_time(at)
            )
        }
        Some(Outcome::Cancelled { at, cause }) => {
            format!("Cancelled at {}: {}.", format_time(at), cause.describe())
        }
    }
}

/// What the page says of a request denied through "I did not expect
/// this" (issue 31): that the report is recorded, and the block it left,
/// until when, or that it is over. `None` for any other request.
async fn report_note(
    state: &AppState,
    request: &RequestRow,
    now: i64,
) -> Result<Option<String>, PageError> {
    if request.state != RequestState::Denied
        || !state.broker.store().was_reported(&request.id).await?
    {
        return Ok(None);
    }
    let until = match (request.operator_id, request.computer_id) {
        (Some(operator), Some(computer)) => {
            state
                .broker
                .store()
                .blocked_until(operator, computer, now)
                .await?
        }
        _ => None,
    };
    let (operator, computer) = (&request.operator, &request.computer);
    let block = match until {
        Some(until) => format!(
            "{operator} may not ask {computer} again until {} (an administrator can lift this block: doorman admin blocks lift {operator} {computer}).",
            format_time(until)
        ),
        None => format!("The block that kept {operator} from asking {computer} again is over."),
    };
    let by = request.decided_by.as_deref().unwrap_or("A recipient");
    Ok(Some(format!(
        "{by} reported this request as unexpected (\"I did not expect this\"): the report is recorded in the audit trail. {block}"
    )))
}

/// Whether a POST comes from our own page. A browser's `Sec-Fetch-Site`
/// (which pages cannot forge) must say `same-origin` when sent, and an
/// `Origin`, when sent, must be the public URL's (or, for a browser on this
/// host as [`Local`] finds it, a loopback one). Our `same-origin` referrer
/// policy lets browsers send their real `Origin` on our own form. Clients
/// that send neither still need the page's nonce.
fn same_origin(
    headers: &HeaderMap,
    public: &doorman_http::origin::PublicOrigin,
    client_is_local: bool,
) -> Result<(), &'static str> {
    match public.cross_site(headers, client_is_local) {
        None => Ok(()),
        Some(doorman_http::origin::CrossSite::FetchSite) => {
            Err("cross-site requests cannot decide; open the link from the email")
        }
        Some(doorman_http::origin::CrossSite::Origin) => {
            Err("requests from another origin cannot decide; open the link from the email")
        }
    }
}

/// Looks a link token up; not found for anything that is not a live token.
/// Only failures count against the client's network: a live link works
/// whatever others behind the same address guessed.
async fn find(
    state: &AppState,
    token: &str,
    peer: std::net::IpAddr,
) -> Result<(RequestRow, String, [u8; 32]), PageError> {
    if secrets::plausible_token(token) {
        let hash = secrets::hash(token);
        if let Some((request, address)) = state.broker.store().request_by_link(&hash).await? {
            return Ok((request, address, hash));
        }
    }
    Err(wrong_link(state, peer, "approval link"))
}

/// A link token that matched nothing (`kind`: an approval or an enrolment
/// link), counted against `peer`'s network: not found, or too many such
/// from there.
pub(crate) fn wrong_link(state: &AppState, peer: std::net::IpAddr, kind: &str) -> PageError {
    state.broker.metrics().authentication_failed(kind);
    if state
        .broker
        .link_failures()
        .record_failure(peer, state.broker.now_millis())
        .limited
    {
        state.broker.metrics().rate_limited("approval_links");
        return PageError::TooManyFailures;
    }
    PageError::NotFound
}

/// `GET /a/{token}`: shows the request. Never changes its state.
pub async fn show(
    State(state): State<AppState>,
    Path(token): Path<String>,
    ClientAddr(client): ClientAddr,
    headers: HeaderMap,
) -> Result<Response, PageError> {
    let (request, recipient, hash) = find(&state, &token, client).await?;
    let now = state.broker.now_millis();
    let viewed = AuditEvent::new(AuditKind::PageViewed, now)
        .request(&request.id, &request.computer)
        .actor(&recipient)
        .address(&client.to_string())
        .user_agent(user_agent(&headers));
    state.broker.store().record_once(&viewed).await?;
    // None counted, none to read (they are written with the count).
    let approvals: Vec<Approval> = if request.approval_count == 0 {
        Vec::new()
    } else {
        state.broker.store().approvals_of(&request.id).await?
    };
    let live = request.state == RequestState::Pending && request.expires_at > now;
    let counted = u32::try_from(approvals.len()).unwrap_or(u32::MAX);
    let passkey = crate::passkey_approval::page(&request, &recipient, &state.public);
    let scripted = passkey.is_some();
    let report = report_note(&state, &request, now).await?;
    let mut response = render(
        StatusCode::OK,
        &ApprovalPage {
            identity: doorman_mail::message::short_identity(&request),
            request: &request,
            recipient: &recipient,
            requested_at: format_time(request.created_at),
            expires_at: format_time(request.expires_at),
            seconds_left: if live {
                seconds_left(request.expires_at, now)
            } else {
                0
            },
            approved_by_you: approvals.iter().any(|a| a.by == recipient),
            approvals_missing: if live {
                request.required_approvals.saturating_sub(counted)
            } else {
                0
            },
            approvals: approvals
                .into_iter()
                .map(|a| ApprovalLine {
                    by: a.by,
                    at: format_time(a.at),
                })
                .collect(),
            nonce: state.broker.key().page_nonce(&hash),
            status: status_line(&request, now),
            report,
            block_minutes: state.broker.limits().block_minutes,
            passkey,
        },
    );
    if scripted {
        response.headers_mut().insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(PASSKEY_PAGE_POLICY),
        );
    }
    Ok(response)
}

/// The largest request body the server reads (the approval form is a few
/// dozen bytes).
pub const MAX_FORM_BYTES: usize = 16 * 1024;

/// The approval form's fields.
#[derive(Debug, Deserialize)]
pub struct DecisionForm {
    decision: String,
    nonce: String,
    /// A passkey assertion (JSON), for a computer that requires one.
    #[serde(default)]
    assertion: Option<String>,
}

/// `POST /a/{token}`: records the recipient's decision (the first one wins),
/// then shows the page again.
pub async fn decide(
    State(state): State<AppState>,
    Path(token): Path<String>,
    ClientAddr(client): ClientAddr,
    Local(local): Local,
    headers: HeaderMap,
    form: Result<Form<DecisionForm>, FormRejection>,
) -> Result<Response, PageError> {
    let (request, recipient, hash) = find(&state, &token, client).await?;
    let form = match form {
        Ok(Form(form)) => form,
        Err(rejection) if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            return Err(PageError::FormTooLarge);
        }
        Err(_) => {
            return Err(PageError::BadForm(
                "bad form: expected the fields decision and nonce",
            ));
        }
    };
    let Ok(decision) = form.decision.parse::<Decision>() else {
        return Err(PageError::BadForm(
            "bad form: decision must be \"allow\", \"deny\" or \"report\"",
        ));
    };
    same_origin(&headers, &state.public, local).map_err(PageError::Forbidden)?;
    if !doorman_core::secret::constant_time_eq(&form.nonce, &state.broker.key().page_nonce(&hash)) {
        return Err(PageError::Forbidden(
            "this form did not come from the approval page; open the link again",
        ));
    }
    // A computer that requires passkeys counts only an Allow made with one
    // pinned on it (a Deny needs none).
    let checked = match (&request.passkey, decision) {
        (Some(requirement), Decision::Allow) => Some(
            crate::passkey_approval::check(
                &request,
                requirement,
                &recipient,
                form.assertion.as_deref(),
                &state.public,
            )
            .map_err(PageError::Passkey)?,
        ),
        _ => None,
    };
    let event = Event::Decide {
        decision,
        by: recipient.clone(),
        at: state.broker.now_millis(),
    };
    let (assertion, detail) = checked.map_or((None, None), |c| (Some(c.assertion), Some(c.detail)));
    let witness = Witness {
        assertion,
        actor: Some(recipient),
        address: Some(client.to_string()),
        user_agent: user_agent(&headers),
        detail,
    };
    state.broker.apply_to(request, event, witness).await?;
    Ok(Redirect::to(&format!("/a/{token}")).into_response())
}

#[derive(Template)]
#[template(path = "outbox.html")]
struct OutboxPage {
    entries: Vec<doorman_mail::OutboxEntry>,
    times: Vec<String>,
    smtp: bool,
}

/// `GET /outbox`: the emails written to files. They hold live links: only
/// this machine may see them.
pub async fn outbox(State(state): State<AppState>, _: LocalOnly) -> Response {
    let entries = match &state.outbox_dir {
        Some(dir) => doorman_mail::list_files(dir).await,
        None => Vec::new(),
    };
    let times = entries.iter().map(|e| format_time(e.written_at)).collect();
    render(
        StatusCode::OK,
        &OutboxPage {
            entries,
            times,
            smtp: state.outbox_dir.is_none(),
        },
    )
}

/// `GET /outbox/{file}`: one `.eml` file as text, for this machine only.
pub async fn outbox_file(
    State(state): State<AppState>,
    _: LocalOnly,
    Path(file): Path<String>,
) -> Response {
    let valid = file.ends_with(".eml")
        && file.len() < 200
        && file
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
        && !file.contains("..");
    let Some(dir) = state.outbox_dir.as_ref().filter(|_| valid) else {
        return PageError::NotFound.into_response();
    };
    match tokio::fs::read(dir.join(&file)).await {
        Ok(bytes) => ([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], bytes).into_response(),
        Err(_) => PageError::NotFound.into_response(),
    }
}
