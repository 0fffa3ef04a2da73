//! Doorman's web: the pages people open (the approval page, the outbox,
//! passkey enrolment, a computer's invitation), the web console, and the
//! router that serves them with the broker's endpoints on the one port.
//!
//! The map:
//!
//! - [`pages`]: the approval page, `/outbox`, the stylesheet and scripts,
//!   and the headers every page gets;
//! - `passkey_approval`: the WebAuthn ceremony of an approval on a
//!   computer that requires passkeys;
//! - [`enrollment`]: a recipient's passkey enrolled from a link a computer
//!   sent;
//! - `join`: a computer redeeming its invitation;
//! - [`console`]: the web console (sign-in, computers, terminal, desktop,
//!   files, recordings);
//! - [`AppState`] and [`app`]: the state every handler shares, and the
//!   router with every page and endpoint.
#![forbid(unsafe_code)]

pub mod console;
pub mod enrollment;
mod join;
pub mod pages;
mod passkey_approval;

use axum::extract::FromRef;
use doorman_broker::Broker;
use doorman_http::client_addr::TrustedProxies;
use doorman_http::origin::{self, PublicOrigin};
use lettre::message::Mailbox;
use std::path::PathBuf;
use std::sync::Arc;

/// The state every handler shares.
#[derive(Clone, Debug)]
pub struct AppState {
    broker: Arc<Broker>,
    /// `scheme://host[:port]` of the public URL, for same-origin checks.
    public: PublicOrigin,
    /// Where file-delivered emails are, when there is no SMTP server.
    outbox_dir: Option<PathBuf>,
    trusted_proxies: TrustedProxies,
    /// Who is signed in to the web console.
    console: Arc<console::ConsoleSessions>,
    /// How emails leave (the enrolment links go out at once).
    delivery: doorman_mail::Delivery,
    mail_from: Mailbox,
    /// Passkey enrolments under way.
    enrollments: Arc<enrollment::Enrollments>,
}

impl AppState {
    /// The state of a server whose public URL's origin is `public`; its
    /// console closes sessions unused for `console_idle`.
    pub fn new(
        broker: Arc<Broker>,
        public: PublicOrigin,
        trusted_proxies: TrustedProxies,
        delivery: doorman_mail::Delivery,
        mail_from: Mailbox,
        console_idle: std::time::Duration,
    ) -> Self {
        let outbox_dir = match &delivery {
            doorman_mail::Delivery::Files(dir) => Some(dir.clone()),
            doorman_mail::Delivery::Smtp(_) => None,
        };
        let console = Arc::new(console::ConsoleSessions::new(
            console_idle,
            broker.clock().clone(),
        ));
        Self {
            broker,
            public,
            outbox_dir,
            trusted_proxies,
            console,
            delivery,
            mail_from,
            enrollments: Arc::default(),
        }
    }
}

impl FromRef<AppState> for TrustedProxies {
    fn from_ref(state: &AppState) -> Self {
        state.trusted_proxies.clone()
    }
}

impl FromRef<AppState> for Arc<Broker> {
    fn from_ref(state: &AppState) -> Self {
        Arc::clone(&state.broker)
    }
}

/// The router with every page and endpoint.
pub fn app(state: AppState) -> axum::Router {
    use axum::routing::get;
    axum::Router::new()
        .route("/", get(pages::home))
        .route("/assets/doorman.css", get(pages::stylesheet))
        .route("/assets/{script}", get(pages::script))
        .route("/a/{token}", get(pages::show).post(pages::decide))
        .route("/outbox", get(pages::outbox))
        .route("/outbox/{file}", get(pages::outbox_file))
        .route(doorman_wire::ENROLL_PATH, get(enrollment::upgrade))
        .route("/e/{token}", get(enrollment::show).post(enrollment::made))
        .route("/join/{code}", get(join::show).post(join::redeem))
        .merge(console::routes())
        .merge(doorman_broker::routes())
        .layer(axum::extract::DefaultBodyLimit::max(pages::MAX_FORM_BYTES))
        .layer(axum::middleware::from_fn_with_state(
            state.public.clone(),
            origin::check_host,
        ))
        .layer(axum::middleware::from_fn(pages::security_headers))
        .with_state(state)
}
