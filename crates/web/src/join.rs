//! Computers joining with an invitation (`doorman admin agent invite`,
//! `doorman agent join`): `POST /join/CODE` redeems one, once, for the new
//! computer's key; `GET` only says what the address is for, since previews
//! and scanners fetch links.
//!
//! Also what an invitation's URL carries besides its code, which the server
//! records in the database when it starts, so that `doorman admin` prints
//! the line without the server's configuration: the public URL, and the
//! SHA-256 of the private CA it presents ([`pinned_ca`]).
//!
//! An unknown code counts against the client's network as a bad approval
//! link does ([`crate::pages::wrong_link`]); every refusal is audited
//! (`invitation_refused`) and answered with one line saying why.

use crate::AppState;
use crate::pages::{PageError, user_agent};
use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use doorman_core::display::format_time;
use doorman_core::join::{INVITATION_PREFIX, Joined};
use doorman_core::secret::{AGENT_KEY_PREFIX, has_secret_form};
use doorman_core::{AuditKind, Secret};
use doorman_http::client_addr::ClientAddr;
use doorman_runtime::secrets;
use doorman_store::{AuditEvent, JoinedFrom, Redemption};

fn plain(status: StatusCode, message: &str) -> Response {
    (status, format!("{message}\n")).into_response()
}

/// `GET /join/{code}`: what the address is for. Never redeems.
pub async fn show() -> Response {
    plain(
        StatusCode::OK,
        "This address is an invitation for a computer to join this Doorman server. On that computer, run `doorman agent join` with the whole address, including what follows #.",
    )
}

/// `POST /join/{code}`: redeems the invitation once, adding the computer
/// with a new key, which the answer carries ([`Joined`]).
pub async fn redeem(
    State(state): State<AppState>,
    Path(code): Path<String>,
    ClientAddr(client): ClientAddr,
    headers: HeaderMap,
) -> Response {
    let now = state.broker.now_millis();
    let from = JoinedFrom {
        address: client.to_string(),
        user_agent: user_agent(&headers),
    };
    if !has_secret_form(&code, INVITATION_PREFIX) {
        return unknown(&state, client, &from, now).await;
    }
    let key = match secrets::new_token(AGENT_KEY_PREFIX) {
        Ok(key) => key,
        Err(error) => return internal(&error.to_string()),
    };
    let redeemed = state
        .broker
        .store()
        .redeem_invitation(&secrets::hash(&code), &secrets::hash(&key), &from, now)
        .await;
    let (name, status, message) = match redeemed {
        Ok(Redemption::Joined { name }) => {
            tracing::info!(computer = %name, address = %client, "a computer joined with its invitation");
            let joined = Joined {
                server: state.public.origin().to_string(),
                name,
                key: Secret::new(key),
            };
            return Json(joined).into_response();
        }
        Ok(Redemption::Unknown) => return unknown(&state, client, &from, now).await,
        Ok(Redemption::Used { name, at }) => {
            // The computer it added has the name now: a new invitation for
            // it would be refused, while a new key for it is what a join
            // that lost its answer needs.
            let message = format!(
                "this invitation was used at {}: an invitation works once, and {name:?} was added with it; ask for an invitation under another name, or for {name}'s key (doorman admin agent rotate {name})",
                format_time(at)
            );
            (name, StatusCode::GONE, message)
        }
        Ok(Redemption::Expired { name, at }) => {
            let message = format!(
                "this invitation expired at {}: ask for a new one (doorman admin agent invite {name})",
                format_time(at)
            );
            (name, StatusCode::GONE, message)
        }
        Ok(Redemption::NameTaken { name }) => {
            let message = format!(
                "a computer named {name:?} was added since this invitation was made: ask for an invitation under another name, or for that computer's key"
            );
            (name, StatusCode::CONFLICT, message)
        }
        Err(error) => return internal(&error.to_string()),
    };
    let refused = AuditEvent::new(AuditKind::InvitationRefused, now)
        .computer(&name)
        .address(&from.address)
        .user_agent(from.user_agent.clone())
        .detail(message.clone());
    record(&state, &refused).await;
    plain(status, &message)
}

/// A code that is no invitation's: audited, and counted against the
/// client's network like a bad approval link.
async fn unknown(
    state: &AppState,
    client: std::net::IpAddr,
    from: &JoinedFrom,
    now: i64,
) -> Response {
    let refused = AuditEvent::new(AuditKind::InvitationRefused, now)
        .address(&from.address)
        .user_agent(from.user_agent.clone())
        .detail("no such invitation");
    record(state, &refused).await;
    match crate::pages::wrong_link(state, client, "invitation") {
        PageError::TooManyFailures => plain(
            StatusCode::TOO_MANY_REQUESTS,
            "too many wrong invitation codes from this address: wait 10 minutes",
        ),
        _ => plain(
            StatusCode::NOT_FOUND,
            "no such invitation: copy the whole line `doorman admin agent invite` printed, or ask for a new one",
        ),
    }
}

async fn record(state: &AppState, event: &AuditEvent) {
    if let Err(error) = state.broker.store().record(event).await {
        tracing::error!(%error, "cannot audit a refused invitation");
    }
}

fn internal(error: &str) -> Response {
    tracing::error!(%error, "cannot redeem an invitation");
    plain(
        StatusCode::INTERNAL_SERVER_ERROR,
        "the server could not redeem the invitation; try again in a moment",
    )
}
