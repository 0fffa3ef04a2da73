//! Doorman's broker: the agents' connections, the operators' requests from
//! connect to session, and the one path by which a request changes.
//!
//! The map:
//!
//! - [`broker`]: the live state, one handle per concern, and
//!   [`Broker::apply`], the one path by which a request changes;
//! - [`operators`]: an operator's connection, a module per step (offer,
//!   authorization, wait, resume, session);
//! - [`agents`]: an agent's control connection, and the watch on agent keys;
//! - [`upgrade`]: the upgrade endpoints and the authentication each performs;
//! - [`relay`]: a tunnel's two connections relayed byte for byte;
//! - [`metrics`]: what the server counts; `scrape`: `GET /metrics`;
//! - `post_office`: the outbox worker's view of the broker;
//! - [`limits`]: what keeps recipients from being flooded.
#![forbid(unsafe_code)]

pub mod agents;
pub mod broker;
pub mod limits;
pub mod metrics;
pub mod operators;
mod post_office;
pub mod relay;
mod scrape;
pub mod upgrade;

pub use broker::Broker;
pub use limits::Limits;

use axum::extract::FromRef;
use doorman_http::client_addr::TrustedProxies;
use std::sync::Arc;

/// The endpoints the broker answers itself: the upgrades of agents,
/// operators, sessions and tunnels, and `/metrics` for this host. Served
/// with any state that yields the broker and the trusted proxies.
pub fn routes<S>() -> axum::Router<S>
where
    S: Clone + Send + Sync + 'static,
    Arc<Broker>: FromRef<S>,
    TrustedProxies: FromRef<S>,
{
    use axum::routing::get;
    axum::Router::new()
        .route("/metrics", get(scrape::scrape))
        .route(doorman_wire::AGENT_PATH, get(upgrade::agent))
        .route(doorman_wire::CONNECT_PATH, get(upgrade::operator))
        .route("/v1/session/{request_id}", get(upgrade::session))
        .route("/v1/tunnel/{session}", get(upgrade::tunnel))
}
