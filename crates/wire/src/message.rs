//! The messages carried in [`crate::Frame::Message`] frames, as JSON.
//!
//! Three conversations: operator ↔ server on `/v1/connect`, agent ↔ server on
//! `/v1/agent`, and operator ↔ agent over a relayed session connection.

pub use doorman_core::Outcome;
use doorman_core::access::ServiceKind;
pub use doorman_core::authorization::Millis;
use doorman_core::display::{escape_hidden, shell_quote};
use doorman_core::{Decision, LocalConsent};
use serde::{Deserialize, Serialize};

mod enroll;
pub mod files;
mod session;
pub use enroll::{EnrollAsk, EnrollNews};
pub use files::{CopyDirection, CopyJob, FileMessage, ListEntry, WirePath};
pub use session::{EndCause, SessionEnd, SessionMessage};

/// How long a peer that promised a message every `heartbeat` may stay
/// silent before its connection counts as dead: long enough for two pings
/// to be late. A NAT that forgot the connection, a host that vanished or a
/// proxy that stopped forwarding then ends it instead of leaving it open.
pub fn silence_limit(heartbeat: std::time::Duration) -> std::time::Duration {
    heartbeat.saturating_mul(3)
}

/// How long one message to a peer that answers every `heartbeat` may wait
/// for the peer to take it before the peer counts as stuck and its
/// connection is dropped: as long as the peer may stay silent
/// ([`silence_limit`]), so that one that stopped reading holds nothing up
/// for longer than one that vanished. Set on a connection with
/// [`crate::Connection::set_write_deadline`].
pub fn write_deadline(heartbeat: std::time::Duration) -> std::time::Duration {
    silence_limit(heartbeat)
}

/// [`write_deadline`] on a connection where no heartbeat was announced (an
/// operator's before the server answered, a server too old to say, an
/// enrolment): that of the server's default heartbeat of 20 s.
pub const DEFAULT_WRITE_DEADLINE: std::time::Duration = std::time::Duration::from_secs(60);

/// What an operator asks to reach on the remote computer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Service {
    /// Run a program (argv executed directly, not through a shell) and stream
    /// its output back.
    Command { argv: Vec<String> },
    /// The user's login shell in a pseudo-terminal.
    Shell { term: String, rows: u16, cols: u16 },
    /// Carry TCP connections to these `host:port` targets, as seen from the
    /// computer, one tunnel per connection.
    Forward { targets: Vec<String> },
    /// The computer's desktop: a stream to the VNC server the agent's
    /// settings name (`[services] desktop`), for the web console's viewer.
    /// Access rules count it as forwarding.
    Desktop,
    /// Copy files to or from the folders the computer shares
    /// (`[services] files`).
    Files(CopyJob),
}

impl Service {
    /// What access rules call this service.
    pub fn kind(&self) -> ServiceKind {
        match self {
            Service::Command { .. } => ServiceKind::Command,
            Service::Shell { .. } => ServiceKind::Shell,
            Service::Forward { .. } | Service::Desktop => ServiceKind::Forward,
            Service::Files(_) => ServiceKind::Files,
        }
    }

    /// Whether an approval of `approved` covers a session of this service:
    /// the same service, and a forward only to targets it covered (the
    /// desktop, which access rules count as forwarding, only by the desktop).
    pub fn covered_by(&self, approved: &Service) -> bool {
        match (approved, self) {
            (Service::Forward { targets: ok }, Service::Forward { targets }) => {
                targets.iter().all(|t| ok.contains(t))
            }
            (Service::Desktop, Service::Desktop) => true,
            (Service::Desktop, _) | (_, Service::Desktop) => false,
            (Service::Files(approved), Service::Files(asked)) => asked.covered_by(approved),
            (approved, asked) => approved.kind() == asked.kind(),
        }
    }

    /// A short human description, for notifications, emails, pages, logs
    /// and the audit trail: always one line, every character in it visible,
    /// a command shell-quoted, whatever the operator (or a peer) sent.
    pub fn describe(&self) -> String {
        match self {
            Service::Command { argv } => format!("run {}", shell_quote(argv)),
            Service::Shell { .. } => "open an interactive shell".to_string(),
            Service::Forward { targets } => {
                let targets: Vec<String> = targets.iter().map(|t| escape_hidden(t)).collect();
                format!("forward TCP to {}", targets.join(", "))
            }
            Service::Desktop => "view and control the desktop".to_string(),
            Service::Files(job) => job.describe(),
        }
    }
}

/// Operator → server, on `/v1/connect`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum OperatorMessage {
    Connect {
        computer: String,
        #[serde(default)]
        reason: String,
        service: Service,
        /// The operator's half of the end-to-end key exchange; absent from
        /// the web console, whose sessions the server can read.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        e2e: Option<doorman_e2e::OperatorHello>,
    },
    /// The operator gives up while the request is pending.
    Cancel,
    /// Picks up a request this operator made, after losing the connection
    /// (e.g. to a server restart).
    Resume { request_id: String },
}

/// Why the server will not go on with a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Refusal {
    /// No such computer, or the operator has no grant for it and this
    /// service: the two look the same, so names cannot be probed.
    UnknownComputer,
    ComputerOffline,
    /// The computer went offline while its request was pending.
    ComputerWentOffline,
    /// The agent does not offer the service asked for.
    NotOffered,
    /// The request itself is malformed (name, reason, command too long …).
    InvalidRequest,
    /// The agent accepted, but the session could not be set up.
    SessionFailed,
    /// Over a limit that protects the recipients from floods, or blocked by
    /// a recipient's "I did not expect this".
    Limited,
    /// No authorization email could be delivered.
    DeliveryFailed,
    /// The operator's token was replaced or removed while it waited.
    TokenRevoked,
}

/// Server → operator, on `/v1/connect`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerToOperator {
    /// Email authorization is pending.
    Pending {
        request_id: String,
        expires_in: u64,
        /// Masked recipient addresses.
        recipients: Vec<String>,
        /// How often the server sends [`ServerToOperator::Ping`] while the
        /// request is pending; see [`silence_limit`].
        #[serde(default, skip_serializing_if = "Option::is_none")]
        heartbeat_ms: Option<u64>,
    },
    /// Nothing new; the connection is alive.
    Ping,
    /// A recipient's Allow was counted; more are needed.
    Approval {
        approvals: u32,
        required: u32,
        /// Masked address of the recipient who approved.
        by: String,
    },
    /// The computer does not require email authorization.
    Admitted,
    Allowed {
        by: String,
        at: Millis,
    },
    Denied {
        by: String,
        at: Millis,
    },
    Expired {
        at: Millis,
    },
    Cancelled {
        at: Millis,
    },
    Refused {
        reason: Refusal,
        message: String,
    },
    /// An earlier approval covers this request (the computer's
    /// `approval_valid_for`): no emails; the session follows.
    ApprovedEarlier {
        /// The earlier request and who allowed it.
        request_id: String,
        by: String,
        /// Seconds the earlier approval still covers new sessions.
        valid_for: u64,
    },
    /// From the next byte on, this connection is relayed to the agent.
    SessionStarted {
        request_id: String,
        /// The session ends after this many seconds (the computer's
        /// `max_session_seconds`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        time_limit_secs: Option<u64>,
    },
    /// How the email to one recipient is doing.
    Delivery {
        /// Masked address.
        recipient: String,
        state: DeliveryState,
        /// The SMTP server's reply for `retrying` and `failed`; none for
        /// `sending` and `sent`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        detail: Option<String>,
    },
}

/// What a computer's settings say, as the console lists it and as the
/// server holds the computer to (the recipients it may enrol).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ComputerStatus {
    /// Whether a connection needs a recipient's approval by email.
    pub email_authorization: bool,
    /// Commands and interactive shells are offered.
    pub shell: bool,
    /// Some TCP forward targets are offered.
    pub forward: bool,
    /// A desktop (VNC server) is offered.
    pub desktop: bool,
    /// The folders it shares for copies (`[services] files`), as its
    /// settings name them: what the console's Files view browses.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<String>,
    /// The recipients in the settings: the only addresses the server
    /// emails a passkey enrolment link to for this computer.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub recipients: Vec<String>,
}

/// The delivery state of one authorization email.
///
/// `Sending` came later than the others. Client and server ship together;
/// an older client that meets it cannot decode that one message, takes it
/// for a broken connection, resumes the request and waits on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeliveryState {
    /// An attempt has started: the relay is being dialed or is taking
    /// the email.
    Sending,
    /// The relay accepted it.
    Sent,
    /// The relay refused it for now (or did not answer); it is tried again.
    Retrying,
    /// The relay refused it for good, or the request expires before the
    /// next try.
    Failed,
}

/// Server → agent, on `/v1/agent`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerToAgent {
    Welcome {
        /// How often the server sends [`ServerToAgent::Ping`]; see
        /// [`silence_limit`].
        #[serde(default, skip_serializing_if = "Option::is_none")]
        heartbeat_ms: Option<u64>,
        /// The server takes [`AgentToServer::Status`]; an older one closes
        /// the connection on a message it does not know, so an agent sends
        /// it only when told.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        takes_status: bool,
        /// The server takes [`AgentToServer::Refused`]; an older one hears
        /// of a refusal as a failed session.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        takes_refusals: bool,
    },
    /// Answered with [`AgentToServer::Pong`]; the connection is alive.
    Ping,
    /// Another agent connected with this computer's name and key (from
    /// `address`) and took its place; this connection is closed next.
    Displaced { address: String },
    /// An operator asks for a session; the agent answers with [`AgentToServer::OfferReply`].
    Offer {
        request_id: String,
        operator: String,
        operator_ip: String,
        reason: String,
        service: Service,
        /// The operator's hello, passed on as it came.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        e2e: Option<doorman_e2e::OperatorHello>,
    },
    /// A request the agent asked authorization for has ended.
    Settled {
        request_id: String,
        outcome: Outcome,
        /// The passkey assertions of the approvals that allowed it, as the
        /// browsers made them, for the computer to verify itself.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        assertions: Vec<doorman_core::passkey::Assertion>,
    },
    /// The operator of a forward session opened a connection: connect to
    /// `target` and open `/v1/session/<tunnel_id>` to carry it.
    OpenTunnel {
        /// The forward session, named by the id of the request (or offer)
        /// that started it.
        #[serde(alias = "request_id")]
        session_id: String,
        tunnel_id: String,
        target: String,
        /// The tunnel is sealed end to end, as its session is.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        sealed: bool,
    },
}

/// Agent → server, on `/v1/agent`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum AgentToServer {
    /// The answer to [`ServerToAgent::Ping`].
    /// What this computer asks and offers, for the web console's list:
    /// sent after the welcome and whenever the settings change.
    Status(ComputerStatus),
    Pong,
    OfferReply {
        request_id: String,
        reply: OfferReply,
    },
    /// The agent will not (or cannot) carry this tunnel.
    TunnelRefused {
        tunnel_id: String,
        message: String,
    },
    /// A session of this agent failed before its session connection opened
    /// (it could not be dialed), and how. A session that opened ends on its
    /// own connection (the program's [`SessionMessage::Exit`]), which the
    /// server reads; older agents sent this for every end, and a report
    /// after the session opened is ignored.
    SessionEnded {
        session_id: String,
        end: SessionEnd,
    },
    /// A person at the computer answered a request it asked authorization
    /// for (`doorman consent allow|deny`); `user` is their login name.
    LocalDecision {
        request_id: String,
        decision: Decision,
        user: String,
    },
    /// The computer will not start the session of this allowed request:
    /// the approval does not meet its own requirements (a passkey that does
    /// not verify here, a missing local Allow, a reuse it does not hold).
    /// The request ends refused, for `reason`, and is never sent again.
    /// Sent only to a server that said [`ServerToAgent::Welcome`]
    /// `takes_refusals`.
    Refused {
        request_id: String,
        reason: String,
    },
}

/// What a computer that requires passkey approvals tells the server: the
/// keys it pinned and what the challenge binds besides the request itself
/// ([`doorman_core::passkey::challenge`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PasskeyRequirement {
    /// Chosen by the computer for this offer alone.
    pub nonce: doorman_core::passkey::B64,
    /// When the request expires (milliseconds since the epoch): the
    /// computer's deadline, which the server keeps.
    pub expires_at: i64,
    pub passkeys: Vec<doorman_core::passkey::PinnedPasskey>,
}

/// The agent's answer to an offer, from its own settings.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "answer", rename_all = "snake_case", deny_unknown_fields)]
pub enum OfferReply {
    /// Not offered, or the settings are unusable.
    Refuse { message: String },
    /// Email authorization is on: ask these recipients, wait this long.
    RequireAuthorization {
        recipients: Vec<String>,
        timeout_secs: u32,
        /// Distinct recipients that must Allow; one Deny vetoes.
        #[serde(default = "one")]
        required_approvals: u32,
        /// Seconds an Allow also covers the same operator's further
        /// sessions of the same service.
        #[serde(default)]
        approval_valid_for: u32,
        /// Seconds the session may last (0: no limit).
        #[serde(default)]
        max_session_seconds: u32,
        /// An earlier allowed request this agent remembers and would let
        /// this one in on (its `approval_valid_for`); the server uses it
        /// only if its own records agree, and asks the recipients otherwise.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reuse: Option<String>,
        /// Whether a person at the computer answers too.
        #[serde(default)]
        local_consent: LocalConsent,
        /// Approvals must be made with one of these passkeys
        /// (`require_passkey`); the computer checks them itself.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        passkey: Option<PasskeyRequirement>,
        /// The computer's identity fingerprint, which the email and the
        /// approval page show.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        identity: Option<String>,
    },
    /// This computer requires a reason and the operator gave none.
    ReasonRequired,
    /// Email authorization is off: the agent opens the session now.
    Admit {
        /// Seconds the session may last (0: no limit).
        #[serde(default)]
        max_session_seconds: u32,
    },
}

fn one() -> u32 {
    1
}

#[cfg(test)]
mod tests;
