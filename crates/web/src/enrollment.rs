//! Passkey enrolment, started at the computer (`doorman settings approvers
//! enroll ADDRESS`, on [`doorman_wire::ENROLL_PATH`] with the agent's
//! key): the server emails the recipient a link and tells the computer a
//! short code; the recipient's page shows the same code and creates a
//! passkey for this server's domain; the computer gets the credential and
//! its owner decides whether to pin it. Enrolment is the moment of trust:
//! the server only carries the key, and the person at the computer compares
//! the code and the key's fingerprint with the recipient.
//!
//! Enrolments live in memory for ten minutes; after a restart the computer
//! asks again.
//!
//! A computer's key must not become a way to flood mailboxes: the server
//! enrols only the recipients the computer's running agent announced (its
//! settings' `recipients`), at most `MAX_PER_COMPUTER` at once and
//! `MAX_PER_HOUR` an hour per computer, and audits each enrolment it
//! starts or refuses. Wrong `/e/` links count against the client's network
//! as wrong approval links do.

use crate::AppState;
use crate::pages::PageError;
use askama::Template;
use axum::extract::{Form, Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use doorman_core::AuditKind;
use doorman_core::passkey::{self, B64, Expected, PinnedPasskey};
use doorman_runtime::secrets::random_bytes;
use doorman_store::AuditEvent;
use doorman_wire::Connection;
use doorman_wire::message::{EnrollAsk, EnrollNews, write_deadline};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

/// How long an enrolment link works.
const LIFETIME: Duration = Duration::from_secs(600);
/// Enrolments one computer may have under way at once.
const MAX_PER_COMPUTER: usize = 3;
/// Enrolment links one computer may have emailed in any hour.
const MAX_PER_HOUR: usize = 5;
const HOUR: Duration = Duration::from_secs(3600);

/// The enrolments under way, by their link token's hash, and when each
/// computer's recent enrolments started.
#[derive(Default)]
pub struct Enrollments {
    pending: Mutex<HashMap<[u8; 32], Pending>>,
    /// By computer (names the server knows: bounded by its agents), the
    /// starts of the last hour.
    started: Mutex<HashMap<String, Vec<Instant>>>,
}

impl std::fmt::Debug for Enrollments {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Enrollments")
    }
}

struct Pending {
    computer: String,
    recipient: String,
    code: String,
    challenge: [u8; 32],
    user_id: [u8; 16],
    until: Instant,
    done: Option<oneshot::Sender<PinnedPasskey>>,
}

/// The random parts of an enrolment: its link token, the WebAuthn
/// challenge and user id, and the digits of its short code.
struct Draw {
    token: [u8; 24],
    challenge: [u8; 32],
    user_id: [u8; 16],
    code: [u8; 4],
}

impl Draw {
    /// None when the system has no randomness to give.
    fn new() -> Option<Self> {
        let (Some(token), Some(challenge), Some(user_id), Some(code)) = (
            random_bytes::<24>().ok(),
            random_bytes::<32>().ok(),
            random_bytes::<16>().ok(),
            random_bytes::<4>().ok(),
        ) else {
            return None;
        };
        Some(Self {
            token,
            challenge,
            user_id,
            code,
        })
    }
}

impl Enrollments {
    /// Remembers an enrolment under its link token's `hash` for its
    /// lifetime: its short code, and where its passkey will come.
    fn begin(
        &self,
        hash: [u8; 32],
        computer: &str,
        recipient: &str,
        draw: Draw,
    ) -> (String, oneshot::Receiver<PinnedPasskey>) {
        let digits = draw.code;
        let code = format!(
            "{:04}-{:04}",
            u16::from_be_bytes([digits[0], digits[1]]) % 10_000,
            u16::from_be_bytes([digits[2], digits[3]]) % 10_000
        );
        let (done, finished) = oneshot::channel();
        self.lock().insert(
            hash,
            Pending {
                computer: computer.to_string(),
                recipient: recipient.to_string(),
                code: code.clone(),
                challenge: draw.challenge,
                user_id: draw.user_id,
                until: Instant::now() + LIFETIME,
                done: Some(done),
            },
        );
        (code, finished)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<[u8; 32], Pending>> {
        self.pending
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Counts an enrolment of `computer` starting at `now`, unless it had
    /// [`MAX_PER_HOUR`] in the hour before.
    fn take_hourly_slot(&self, computer: &str, now: Instant) -> bool {
        let mut started = self
            .started
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        started.retain(|_, starts| {
            starts.retain(|at| now.saturating_duration_since(*at) < HOUR);
            !starts.is_empty()
        });
        let starts = started.entry(computer.to_string()).or_default();
        if starts.len() >= MAX_PER_HOUR {
            return false;
        }
        starts.push(now);
        true
    }
}

/// `GET /v1/enroll`: a computer enrols a recipient's passkey.
pub async fn upgrade(
    State(state): State<AppState>,
    doorman_http::client_addr::ClientAddr(client): doorman_http::client_addr::ClientAddr,
    headers: HeaderMap,
    request: axum::extract::Request,
) -> Response {
    let (computer, _) =
        match doorman_broker::upgrade::authenticate_agent(&state.broker, client, &headers).await {
            Ok(authenticated) => authenticated,
            Err(response) => return response,
        };
    let for_task = state.clone();
    doorman_broker::upgrade::switch(&state.broker, request, move |io| async move {
        let mut connection = Connection::new(io);
        // A computer that stops reading is dropped, not waited on.
        connection.set_write_deadline(Some(write_deadline(for_task.broker.heartbeat())));
        let from = Asker {
            computer: &computer,
            address: client,
        };
        if let Err(error) = enroll(&for_task, &mut connection, &from).await {
            tracing::info!(%computer, %error, "passkey enrolment ended");
        }
    })
}

/// The computer asking for an enrolment, and from where.
struct Asker<'a> {
    computer: &'a str,
    address: std::net::IpAddr,
}

impl Asker<'_> {
    /// The audit event of `kind` for this computer and `recipient`, now by
    /// the server's clock.
    fn audit(
        &self,
        state: &AppState,
        kind: AuditKind,
        recipient: &str,
        detail: String,
    ) -> AuditEvent {
        AuditEvent::new(kind, state.broker.now_millis())
            .computer(self.computer)
            .actor(recipient)
            .address(&self.address.to_string())
            .detail(detail)
    }
}

/// Why the server will not email an enrolment link, if it will not: the
/// recipient is none the computer's agent announced, or the computer is
/// over its enrolment limits. Takes the hourly slot when it will.
fn refusal(state: &AppState, computer: &str, recipient: &str) -> Option<String> {
    // The recipients the running agent announced, as its settings list them.
    let Some(announced) = state.broker.agents().recipients(computer) else {
        return Some(
            "this computer's agent is not connected to the server: start `doorman agent`, which tells the server the recipients it may enrol".into(),
        );
    };
    if !announced.iter().any(|r| r.eq_ignore_ascii_case(recipient)) {
        return Some(format!(
            "{recipient} is not one of the recipients this computer's agent announced"
        ));
    }
    let under_way = state
        .enrollments
        .lock()
        .values()
        .filter(|p| p.computer == computer && p.until > Instant::now())
        .count();
    if under_way >= MAX_PER_COMPUTER {
        return Some(format!(
            "{MAX_PER_COMPUTER} enrolments of this computer are under way already: finish or stop one first"
        ));
    }
    if !state.enrollments.take_hourly_slot(computer, Instant::now()) {
        state.broker.metrics().rate_limited("enrolments");
        return Some(format!(
            "this computer started {MAX_PER_HOUR} enrolments in the last hour: try again later"
        ));
    }
    None
}

/// One enrolment, as the computer asks it: started (or refused, with the
/// reason), then the passkey when the recipient makes it.
async fn enroll<S>(
    state: &AppState,
    connection: &mut Connection<S>,
    from: &Asker<'_>,
) -> Result<(), doorman_wire::ConnectionError>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let Some(ask) = connection.read_message::<EnrollAsk>().await? else {
        return Ok(());
    };
    let started = match start(state, from, &ask.recipient).await {
        Ok(started) => started,
        Err(message) => {
            return connection
                .write_message(&EnrollNews::Failed { message })
                .await;
        }
    };
    connection
        .write_message(&EnrollNews::Started {
            code: started.code,
            expires_in: LIFETIME.as_secs(),
        })
        .await?;
    finish(state, connection, started.hash, started.finished).await
}

/// An enrolment whose link went out.
struct Started {
    /// The short code the computer and the recipient's page both show.
    code: String,
    /// Its link token's hash, under which it is remembered.
    hash: [u8; 32],
    /// Where the passkey comes once the recipient made it.
    finished: oneshot::Receiver<PinnedPasskey>,
}

/// Starts the enrolment of `recipient` for the computer asking: checks
/// that it may ([`refused`]), records it, remembers it, and emails the
/// link. What the computer is told if it cannot.
async fn start(state: &AppState, from: &Asker<'_>, recipient: &str) -> Result<Started, String> {
    if let Some(message) = refused(state, from, recipient).await {
        return Err(message);
    }
    let Some(draw) = Draw::new() else {
        return Err("the server has no randomness".into());
    };
    // Recorded before the email goes: an enrolment the trail cannot hold
    // is not started.
    let started = from.audit(
        state,
        AuditKind::EnrolmentStarted,
        recipient,
        format!("passkey enrolment link emailed to {recipient}"),
    );
    if let Err(error) = state.broker.store().record(&started).await {
        tracing::error!(%error, "cannot record an enrolment");
        return Err("the server cannot record the enrolment".into());
    }
    let token = B64(draw.token.to_vec()).to_string();
    let hash = doorman_runtime::secrets::hash(&token);
    let (code, finished) = state
        .enrollments
        .begin(hash, from.computer, recipient, draw);
    let link = format!("{}/e/{token}", state.public.origin());
    let computer = from.computer;
    // Unique as the authorization emails' are; random, since the link's
    // token is a secret and its hash is how the enrolment is kept.
    let now = state.broker.now_millis();
    let unique = doorman_runtime::secrets::new_id().unwrap_or_else(|_| now.to_string());
    let message_id = format!("<enroll.{unique}@{}>", state.public.host());
    let sent = doorman_mail::send_enrollment(
        &state.delivery,
        &state.mail_from,
        message_id,
        now,
        computer,
        recipient,
        &link,
    )
    .await;
    if let Err(message) = sent {
        state.enrollments.lock().remove(&hash);
        return Err(format!("cannot email {recipient}: {message}"));
    }
    tracing::info!(%computer, %recipient, "passkey enrolment link sent");
    Ok(Started {
        code,
        hash,
        finished,
    })
}

/// Why the enrolment of `recipient` is refused, if it is: an address that
/// is not one, or a [`refusal`], which is audited. A computer's key must
/// not become a way to flood mailboxes.
async fn refused(state: &AppState, from: &Asker<'_>, recipient: &str) -> Option<String> {
    if let Err(message) = doorman_core::settings::validate_recipient(recipient) {
        return Some(message);
    }
    let computer = from.computer;
    let message = refusal(state, computer, recipient)?;
    let refused = from.audit(
        state,
        AuditKind::EnrolmentRefused,
        recipient,
        message.clone(),
    );
    if let Err(error) = state.broker.store().record(&refused).await {
        tracing::error!(%error, "cannot record a refused enrolment");
    }
    tracing::warn!(%computer, %recipient, reason = ?message, "passkey enrolment refused");
    Some(message)
}

/// Waits for the recipient to make the passkey, or for the link to
/// expire, and tells the computer; a computer that gave up (Ctrl-C) is
/// told nothing. The enrolment is forgotten either way.
async fn finish<S>(
    state: &AppState,
    connection: &mut Connection<S>,
    hash: [u8; 32],
    finished: oneshot::Receiver<PinnedPasskey>,
) -> Result<(), doorman_wire::ConnectionError>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let outcome = tokio::select! {
        made = tokio::time::timeout(LIFETIME, finished) => match made {
            Ok(Ok(passkey)) => EnrollNews::Enrolled { passkey },
            _ => EnrollNews::Failed { message: "the enrolment link expired unused".into() },
        },
        // The computer gave up (Ctrl-C).
        _ = connection.read_message::<EnrollAsk>() => {
            state.enrollments.lock().remove(&hash);
            return Ok(());
        }
    };
    state.enrollments.lock().remove(&hash);
    connection.write_message(&outcome).await
}

#[derive(Template)]
#[template(path = "enroll.html")]
struct EnrollPage<'a> {
    computer: &'a str,
    recipient: &'a str,
    code: &'a str,
    challenge: String,
    rp_id: &'a str,
    user_id: String,
    nonce: String,
    /// Once made: the new key's fingerprint.
    made: Option<String>,
    problem: Option<String>,
}

fn render(page: &EnrollPage<'_>) -> Response {
    match page.render() {
        Ok(html) => {
            let mut response = Html(html).into_response();
            response.headers_mut().insert(
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static(crate::pages::PASSKEY_PAGE_POLICY),
            );
            response
        }
        Err(error) => {
            tracing::error!(%error, "cannot render the enrolment page");
            (StatusCode::INTERNAL_SERVER_ERROR, "internal error").into_response()
        }
    }
}

/// The enrolment `token` names, while it lasts, with its page drawn by `f`.
/// Any other token counts against `peer`'s network, as a wrong approval
/// link does.
fn with_pending<R>(
    state: &AppState,
    token: &str,
    peer: std::net::IpAddr,
    f: impl FnOnce(&mut Pending, [u8; 32]) -> R,
) -> Result<R, PageError> {
    let hash = doorman_runtime::secrets::hash(token);
    {
        let mut pending = state.enrollments.lock();
        if let Some(found) = pending
            .get_mut(&hash)
            .filter(|found| found.until > Instant::now())
        {
            return Ok(f(found, hash));
        }
    }
    Err(crate::pages::wrong_link(state, peer, "enrolment link"))
}

fn page_of<'a>(state: &'a AppState, pending: &'a Pending, hash: &[u8; 32]) -> EnrollPage<'a> {
    EnrollPage {
        computer: &pending.computer,
        recipient: &pending.recipient,
        code: &pending.code,
        challenge: B64(pending.challenge.to_vec()).to_string(),
        rp_id: state.public.host(),
        user_id: B64(pending.user_id.to_vec()).to_string(),
        nonce: state.broker.key().page_nonce(hash),
        made: None,
        problem: None,
    }
}

/// `GET /e/{token}`: the recipient's enrolment page.
pub async fn show(
    State(state): State<AppState>,
    Path(token): Path<String>,
    doorman_http::client_addr::ClientAddr(client): doorman_http::client_addr::ClientAddr,
) -> Result<Response, PageError> {
    with_pending(&state, &token, client, |pending, hash| {
        render(&page_of(&state, pending, &hash))
    })
}

#[derive(serde::Deserialize)]
pub struct Made {
    nonce: String,
    /// JSON: `attestation_object` and `client_data_json`, base64url.
    credential: String,
}

#[derive(serde::Deserialize)]
struct Credential {
    attestation_object: B64,
    client_data_json: B64,
}

/// `POST /e/{token}`: the passkey the recipient's browser made.
pub async fn made(
    State(state): State<AppState>,
    Path(token): Path<String>,
    doorman_http::client_addr::ClientAddr(client): doorman_http::client_addr::ClientAddr,
    headers: HeaderMap,
    Form(form): Form<Made>,
) -> Result<Response, PageError> {
    if state
        .public
        .cross_site(&headers, client.is_loopback())
        .is_some()
    {
        return Err(PageError::Forbidden("enrol from the enrolment page itself"));
    }
    with_pending(&state, &token, client, |pending, hash| {
        if !doorman_core::secret::constant_time_eq(
            &form.nonce,
            &state.broker.key().page_nonce(&hash),
        ) {
            return Err(PageError::Forbidden(
                "this form did not come from the enrolment page",
            ));
        }
        let read = serde_json::from_str::<Credential>(&form.credential)
            .map_err(|e| e.to_string())
            .and_then(|c| {
                passkey::read_registration(
                    &c.attestation_object.0,
                    &c.client_data_json.0,
                    &Expected {
                        challenge: &pending.challenge,
                        origin: state.public.origin(),
                        rp_id: state.public.host(),
                    },
                )
                .map_err(|e| e.to_string())
            });
        let (made, problem) = match read {
            Ok(credential) => {
                let fingerprint = credential.public_key.fingerprint();
                let passkey = PinnedPasskey {
                    recipient: pending.recipient.clone(),
                    id: credential.id,
                    public_key: credential.public_key,
                };
                tracing::info!(computer = %pending.computer, recipient = %pending.recipient, "passkey created for enrolment");
                if let Some(done) = pending.done.take() {
                    let _ = done.send(passkey);
                }
                (Some(fingerprint), None)
            }
            Err(problem) => (None, Some(problem)),
        };
        let mut page = page_of(&state, pending, &hash);
        page.made = made;
        page.problem = problem;
        Ok(render(&page))
    })?
}
