//! The server's Prometheus metrics: one registry per [`Metrics`], made by
//! whoever runs the server (so a standby replica reports too, and two
//! servers in one test process count apart), rendered in the text format by
//! `metrics-exporter-prometheus`. Nothing is installed as a global recorder.
//!
//! Every labelled series is registered when the registry is made, so a
//! scrape shows zeros rather than missing series before the first event.

use axum::http::header;
use axum::response::{IntoResponse, Response};
use doorman_wire::message::Service;
use metrics::{Counter, Gauge, Histogram, Key, KeyName, Label, Level, Metadata, Recorder};
use metrics_exporter_prometheus::{
    Matcher, PrometheusBuilder, PrometheusHandle, PrometheusRecorder,
};
use std::sync::Arc;

/// The kinds of session, as `doorman_sessions_active{kind}` names them.
pub const SESSION_KINDS: [&str; 5] = ["shell", "command", "forward", "desktop", "files"];
const OUTCOMES: [&str; 4] = ["allowed", "denied", "expired", "cancelled"];
/// Why an email was not sent: a retry is planned, or none will be.
const EMAIL_FAILURES: [&str; 2] = ["temporary", "permanent"];
/// What was wrong: as [`crate::upgrade::count_wrong_credential`], the
/// approval pages, the enrolment pages and the join endpoint name them.
const AUTH_FAILURES: [&str; 5] = [
    "operator_token",
    "agent_key",
    "approval_link",
    "enrolment_link",
    "invitation",
];
const LIMITS: [&str; 8] = [
    "credentials",
    "approval_links",
    "pending_requests",
    "requests_per_hour",
    "blocked",
    "connections",
    "console_sign_ins",
    "enrolments",
];
/// Upper bounds of the decision-time buckets, in seconds: a click within
/// seconds of the email, or minutes later, up to the longest timeout.
const DECISION_BUCKETS: [f64; 12] = [
    1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0, 86_400.0,
];

/// Each series' name and help text.
const HELP: [(&str, &str); 12] = [
    (
        "doorman_computers_connected",
        "Agents connected to this server now.",
    ),
    (
        "doorman_sessions_active",
        "Sessions being relayed now, by kind.",
    ),
    (
        "doorman_authorization_requests_total",
        "Authorization requests settled, by outcome.",
    ),
    (
        "doorman_decision_seconds",
        "Time from an authorization request to its outcome.",
    ),
    (
        "doorman_emails_sent_total",
        "Authorization emails handed to the relay (or written to the outbox).",
    ),
    (
        "doorman_emails_failed_total",
        "Authorization email attempts that failed, by cause.",
    ),
    (
        "doorman_authentication_failures_total",
        "Wrong credentials and approval links, by kind.",
    ),
    (
        "doorman_rate_limited_total",
        "Requests refused by a limit, by limit.",
    ),
    (
        "doorman_relay_bytes_total",
        "Bytes relayed between operators and computers, by direction, counted as each session or tunnel ends (a tunnel handed over to its agent counts its TLS records' bytes).",
    ),
    (
        "doorman_tunnels_total",
        "Forwarded connections opened: tls=end_to_end when the tunnel is sealed between connect and the agent (the server relays records it cannot open), handed_over when the agent took the operator's TLS session over (the server relays records it does not open), else server.",
    ),
    (
        "doorman_database_errors_total",
        "Database operations that failed.",
    ),
    (
        "doorman_leader",
        "1 while this server serves, 0 while it waits as a standby replica.",
    ),
];

/// The labelled counters: each one's name, its label, and every value the
/// label takes (each registered at zero).
const LABELLED_COUNTERS: [(&str, &str, &[&str]); 6] = [
    ("doorman_authorization_requests_total", "outcome", &OUTCOMES),
    ("doorman_emails_failed_total", "cause", &EMAIL_FAILURES),
    (
        "doorman_authentication_failures_total",
        "kind",
        &AUTH_FAILURES,
    ),
    ("doorman_rate_limited_total", "limit", &LIMITS),
    (
        "doorman_relay_bytes_total",
        "direction",
        &["to_computer", "to_operator"],
    ),
    (
        "doorman_tunnels_total",
        "tls",
        &["end_to_end", "handed_over", "server"],
    ),
];

static METADATA: Metadata<'static> = Metadata::new("doorman_server", Level::INFO, None);

/// The server's counters, gauges and histogram; cheap to clone.
#[derive(Clone)]
pub struct Metrics(Arc<Registry>);

struct Registry {
    recorder: PrometheusRecorder,
    handle: PrometheusHandle,
    computers_connected: Gauge,
    leader: Gauge,
    database_errors: Counter,
    decision_seconds: Histogram,
    emails_sent: Counter,
}

impl Registry {
    /// Registers the series without labels with `recorder`.
    fn new(recorder: PrometheusRecorder) -> Self {
        let gauge =
            |name: &'static str| recorder.register_gauge(&Key::from_static_name(name), &METADATA);
        let counter =
            |name: &'static str| recorder.register_counter(&Key::from_static_name(name), &METADATA);
        Registry {
            computers_connected: gauge("doorman_computers_connected"),
            leader: gauge("doorman_leader"),
            database_errors: counter("doorman_database_errors_total"),
            emails_sent: counter("doorman_emails_sent_total"),
            decision_seconds: recorder.register_histogram(
                &Key::from_static_name("doorman_decision_seconds"),
                &METADATA,
            ),
            handle: recorder.handle(),
            recorder,
        }
    }
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// Whose keys a tunnel's bytes travel with between the server and its
/// ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TunnelKeys {
    /// `connect`'s and the agent's own: sealed end to end.
    EndToEnd,
    /// The operator's TLS session, taken over by the agent.
    HandedOver,
    /// The server's: it opens and seals them.
    Server,
}

impl Metrics {
    pub fn new() -> Self {
        let recorder = PrometheusBuilder::new()
            .set_buckets_for_metric(
                Matcher::Full("doorman_decision_seconds".into()),
                &DECISION_BUCKETS,
            )
            .map(PrometheusBuilder::build_recorder)
            // The buckets are constants; the builder refuses only an empty list.
            .unwrap_or_else(|_| PrometheusBuilder::new().build_recorder());
        for (name, help) in HELP {
            recorder.describe_counter(KeyName::from_const_str(name), None, help.into());
        }
        let metrics = Metrics(Arc::new(Registry::new(recorder)));
        for kind in SESSION_KINDS {
            metrics
                .labelled_gauge("doorman_sessions_active", "kind", kind)
                .set(0.0);
        }
        for (name, label, values) in LABELLED_COUNTERS {
            for value in values {
                metrics.labelled_counter(name, label, value).increment(0);
            }
        }
        metrics
    }

    fn labelled_counter(&self, name: &'static str, label: &'static str, value: &str) -> Counter {
        let key = Key::from_parts(name, vec![Label::new(label, value.to_string())]);
        self.0.recorder.register_counter(&key, &METADATA)
    }

    fn labelled_gauge(&self, name: &'static str, label: &'static str, value: &str) -> Gauge {
        let key = Key::from_parts(name, vec![Label::new(label, value.to_string())]);
        self.0.recorder.register_gauge(&key, &METADATA)
    }

    /// The gauge of connected computers, kept by the agent registry.
    pub fn computers_connected(&self) -> Gauge {
        self.0.computers_connected.clone()
    }

    /// Whether this server serves (or waits as a standby).
    pub fn set_leader(&self, leader: bool) {
        self.0.leader.set(if leader { 1.0 } else { 0.0 });
    }

    /// A session of `service` is relayed until the guard is dropped.
    pub fn session_active(&self, service: &Service) -> ActiveSession {
        let kind = match service {
            Service::Shell { .. } => SESSION_KINDS[0],
            Service::Command { .. } => SESSION_KINDS[1],
            Service::Forward { .. } => SESSION_KINDS[2],
            Service::Desktop => SESSION_KINDS[3],
            Service::Files(_) => SESSION_KINDS[4],
        };
        let gauge = self.labelled_gauge("doorman_sessions_active", "kind", kind);
        gauge.increment(1.0);
        ActiveSession(gauge)
    }

    /// A request settled with `outcome` after `millis`.
    pub fn request_settled(&self, outcome: &str, millis: i64) {
        self.labelled_counter("doorman_authorization_requests_total", "outcome", outcome)
            .increment(1);
        // Millisecond counts are far below 2^52: exact as f64.
        #[allow(clippy::cast_precision_loss)]
        self.0
            .decision_seconds
            .record(millis.max(0) as f64 / 1000.0);
    }

    pub fn email_sent(&self) {
        self.0.emails_sent.increment(1);
    }

    /// An email attempt failed; `permanent` when no retry follows.
    pub fn email_failed(&self, permanent: bool) {
        let cause = EMAIL_FAILURES[usize::from(permanent)];
        self.labelled_counter("doorman_emails_failed_total", "cause", cause)
            .increment(1);
    }

    /// A wrong credential or link; `what` as the log says it ("operator token").
    pub fn authentication_failed(&self, what: &str) {
        let kind = what.replace(' ', "_");
        self.labelled_counter("doorman_authentication_failures_total", "kind", &kind)
            .increment(1);
    }

    /// A request refused by `limit` (one of the limits listed above).
    pub fn rate_limited(&self, limit: &'static str) {
        self.labelled_counter("doorman_rate_limited_total", "limit", limit)
            .increment(1);
    }

    /// Connections refused because the server or their source held the most
    /// it may.
    pub fn connection_refusals(&self) -> Counter {
        self.labelled_counter("doorman_rate_limited_total", "limit", "connections")
    }

    pub fn relayed(&self, to_computer: u64, to_operator: u64) {
        self.labelled_counter("doorman_relay_bytes_total", "direction", "to_computer")
            .increment(to_computer);
        self.labelled_counter("doorman_relay_bytes_total", "direction", "to_operator")
            .increment(to_operator);
    }

    /// A forwarded connection's tunnel opened, with whose keys its bytes
    /// travel.
    pub fn tunnel_opened(&self, keys: TunnelKeys) {
        let tls = match keys {
            TunnelKeys::EndToEnd => "end_to_end",
            TunnelKeys::HandedOver => "handed_over",
            TunnelKeys::Server => "server",
        };
        self.labelled_counter("doorman_tunnels_total", "tls", tls)
            .increment(1);
    }

    /// The text exposition, with the database error count as of now.
    pub fn render(&self) -> String {
        self.0
            .database_errors
            .absolute(doorman_store::database_errors());
        self.0.handle.render()
    }
}

/// Counts one active session while it lives.
#[must_use]
pub struct ActiveSession(Gauge);

impl Drop for ActiveSession {
    fn drop(&mut self) {
        self.0.decrement(1.0);
    }
}

/// The Prometheus text format's content type.
const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Answers a scrape.
pub fn exposition(metrics: &Metrics) -> Response {
    ([(header::CONTENT_TYPE, CONTENT_TYPE)], metrics.render()).into_response()
}

/// The router for `--metrics-listen`: `/metrics` and nothing else.
pub fn router(metrics: Metrics) -> axum::Router {
    axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let metrics = metrics.clone();
            async move { exposition(&metrics) }
        }),
    )
}
