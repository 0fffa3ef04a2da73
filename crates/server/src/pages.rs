//! The web pages: the approval page behind each emailed link, the `/outbox`
//! listing for loopback clients, and the headers every page carries.
//!
//! `GET` only shows; the `POST` of the page's own form decides. Unknown,
//! malformed and oversized tokens all get the same 404 page.

use crate::AppState;
use crate::broker::now_millis;
use crate::mail::format_time;
use crate::secrets;
use crate::store::{AuditEvent, RequestRow};
use askama::Template;
use axum::extract::rejection::FormRejection;
use axum::extract::{ConnectInfo, Form, Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Redirect, Response};
use doorman_core::{Decision, Outcome, RequestState};
use serde::Deserialize;
use std::net::SocketAddr;

/// Adds the security headers to every response.
pub async fn security_headers(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
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
    seconds_left: i64,
    nonce: String,
    status: String,
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

fn not_found() -> Response {
    render(
        StatusCode::NOT_FOUND,
        &MessagePage {
            title: "Link not valid",
            message: "This link is not valid. Check that you copied the whole link from the email.",
        },
    )
}

fn server_error(error: impl std::fmt::Display) -> Response {
    tracing::error!(%error, "request failed");
    render(
        StatusCode::INTERNAL_SERVER_ERROR,
        &MessagePage {
            title: "Something went wrong",
            message: "The server could not handle this request. Try again in a moment.",
        },
    )
}

fn user_agent(headers: &HeaderMap) -> Option<String> {
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
        Some(Outcome::Allowed { by, at }) => format!("Allowed by {by} at {}.", format_time(at)),
        Some(Outcome::Denied { by, at }) => format!("Denied by {by} at {}.", format_time(at)),
        Some(Outcome::Expired { at }) => {
            format!("Expired at {}: nobody decided in time.", format_time(at))
        }
        Some(Outcome::Cancelled { at }) => {
            format!("Cancelled by the operator at {}.", format_time(at))
        }
    }
}

/// Looks a link token up; `None` for anything that is not a live token.
async fn find(
    state: &AppState,
    token: &str,
) -> Result<Option<(RequestRow, String, [u8; 32])>, Response> {
    if !secrets::plausible_token(token) {
        return Ok(None);
    }
    let hash = secrets::hash(token);
    match state.broker.store.request_by_link(&hash).await {
        Ok(found) => Ok(found.map(|(request, address)| (request, address, hash))),
        Err(error) => Err(server_error(error)),
    }
}

/// `GET /a/{token}`: shows the request. Never changes its state.
pub async fn show(
    State(state): State<AppState>,
    Path(token): Path<String>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Response {
    let (request, recipient, hash) = match find(&state, &token).await {
        Ok(Some(found)) => found,
        Ok(None) => return not_found(),
        Err(response) => return response,
    };
    let now = now_millis();
    let viewed = AuditEvent {
        at: now,
        event: "page_viewed".into(),
        request_id: Some(request.id.clone()),
        computer: Some(request.computer.clone()),
        actor: Some(recipient.clone()),
        address: Some(peer.ip().to_string()),
        user_agent: user_agent(&headers),
        detail: None,
    };
    if let Err(error) = state.broker.store.record(&viewed).await {
        return server_error(error);
    }
    let live = request.state == RequestState::Pending && request.expires_at > now;
    render(
        StatusCode::OK,
        &ApprovalPage {
            request: &request,
            recipient: &recipient,
            requested_at: format_time(request.created_at),
            expires_at: format_time(request.expires_at),
            seconds_left: if live {
                (request.expires_at - now + 999) / 1000
            } else {
                0
            },
            nonce: state.broker.key.page_nonce(&hash),
            status: status_line(&request, now),
        },
    )
}

/// The approval form's fields.
#[derive(Debug, Deserialize)]
pub struct DecisionForm {
    decision: String,
    nonce: String,
}

/// `POST /a/{token}`: records the recipient's decision (the first one wins),
/// then shows the page again.
pub async fn decide(
    State(state): State<AppState>,
    Path(token): Path<String>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    form: Result<Form<DecisionForm>, FormRejection>,
) -> Response {
    let (request, recipient, hash) = match find(&state, &token).await {
        Ok(Some(found)) => found,
        Ok(None) => return not_found(),
        Err(response) => return response,
    };
    let Ok(Form(form)) = form else {
        return (
            StatusCode::BAD_REQUEST,
            "bad form: expected the fields decision and nonce",
        )
            .into_response();
    };
    let Ok(decision) = form.decision.parse::<Decision>() else {
        return (
            StatusCode::BAD_REQUEST,
            "bad form: decision must be \"allow\" or \"deny\"",
        )
            .into_response();
    };
    if !secrets::constant_time_eq(&form.nonce, &state.broker.key.page_nonce(&hash)) {
        return (
            StatusCode::FORBIDDEN,
            "this form did not come from the approval page; open the link again",
        )
            .into_response();
    }
    let (target, event) = match decision {
        Decision::Allow => (RequestState::Allowed, "allowed"),
        Decision::Deny => (RequestState::Denied, "denied"),
    };
    let audit = AuditEvent {
        at: now_millis(),
        event: event.into(),
        request_id: Some(request.id.clone()),
        computer: Some(request.computer.clone()),
        actor: Some(recipient.clone()),
        address: Some(peer.ip().to_string()),
        user_agent: user_agent(&headers),
        detail: None,
    };
    if let Err(error) = state
        .broker
        .settle(&request.id, target, Some(&recipient), audit)
        .await
    {
        return server_error(error);
    }
    Redirect::to(&format!("/a/{token}")).into_response()
}

#[derive(Template)]
#[template(path = "outbox.html")]
struct OutboxPage {
    entries: Vec<crate::outbox::OutboxEntry>,
    times: Vec<String>,
    smtp: bool,
}

/// `GET /outbox`: the emails written to files, for loopback clients only.
pub async fn outbox(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
) -> Response {
    if !peer.ip().is_loopback() {
        return (
            StatusCode::FORBIDDEN,
            "the outbox is shown to loopback clients only",
        )
            .into_response();
    }
    let entries = match &state.outbox_dir {
        Some(dir) => crate::outbox::list_files(dir).await,
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

/// `GET /outbox/{file}`: one `.eml` file as text, for loopback clients only.
pub async fn outbox_file(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(file): Path<String>,
) -> Response {
    if !peer.ip().is_loopback() {
        return (
            StatusCode::FORBIDDEN,
            "the outbox is shown to loopback clients only",
        )
            .into_response();
    }
    let valid = file.ends_with(".eml")
        && file.len() < 200
        && file
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
        && !file.contains("..");
    let Some(dir) = state.outbox_dir.as_ref().filter(|_| valid) else {
        return not_found();
    };
    match tokio::fs::read(dir.join(&file)).await {
        Ok(bytes) => ([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], bytes).into_response(),
        Err(_) => not_found(),
    }
}
