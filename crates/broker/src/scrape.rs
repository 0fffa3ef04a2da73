//! `GET /metrics` on the main port, for this host only.

use crate::broker::Broker;
use crate::metrics::exposition;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use doorman_http::client_addr::Local;
use std::sync::Arc;

/// `GET /metrics` on the main port: for this host only, by the rule
/// `/outbox` follows too ([`doorman_http::client_addr::Local`]), so a visitor that
/// a proxy forwards, trusted or not, is refused; others get 404, as if
/// there were nothing here. Scrapers elsewhere use `--metrics-listen`.
pub async fn scrape(State(broker): State<Arc<Broker>>, Local(local): Local) -> Response {
    if local {
        exposition(broker.metrics())
    } else {
        StatusCode::NOT_FOUND.into_response()
    }
}
