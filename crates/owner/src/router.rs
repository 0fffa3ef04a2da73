//! The settings window's routes: the page's own ([`crate::page`]) and the
//! approvers' forms ([`crate::approvers`]), all behind the check that a
//! request names the window itself ([`crate::host`]), a cap on a form's
//! size, and the headers every answer carries.

use crate::state::Shared;
use axum::extract::{DefaultBodyLimit, Request};
use axum::http::{HeaderValue, header};
use axum::middleware::Next;
use axum::response::Response;

/// The largest form the page takes.
const MAX_FORM_BYTES: usize = 64 * 1024;

pub(crate) fn routes(state: Shared) -> axum::Router {
    crate::page::routes()
        .merge(crate::approvers::routes())
        .layer(DefaultBodyLimit::max(MAX_FORM_BYTES))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            crate::host::only_this_window,
        ))
        .layer(axum::middleware::from_fn(headers))
        .with_state(state)
}

/// The page's headers: no framing, no caching, nothing but this page's own
/// forms and style.
async fn headers(request: Request, next: Next) -> Response {
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
