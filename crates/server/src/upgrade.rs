//! The three upgrade endpoints (agent control, operator, session) and the
//! authentication each performs before switching protocols.

use crate::AppState;
use crate::client_addr::ClientAddr;
use crate::secrets;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use doorman_proto::{AGENT_NAME_HEADER, UPGRADE_PROTOCOL};
use hyper_util::rt::TokioIo;

fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
        .map(str::trim)
}

fn wants_upgrade(headers: &HeaderMap) -> bool {
    headers
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case(UPGRADE_PROTOCOL))
}

fn not_an_upgrade() -> Response {
    plain(StatusCode::BAD_REQUEST, "expected Upgrade: doorman/1")
}

fn plain(status: StatusCode, message: &str) -> Response {
    (status, format!("{message}\n")).into_response()
}

/// Answers `101 Switching Protocols` and hands the upgraded stream to `serve`.
fn switch<F, Fut>(state: &AppState, mut request: Request, serve: F) -> Response
where
    F: FnOnce(doorman_proto::dial::Upgraded) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let on_upgrade = hyper::upgrade::on(&mut request);
    state.broker.lifecycle.spawn(async move {
        match on_upgrade.await {
            Ok(upgraded) => serve(TokioIo::new(upgraded)).await,
            Err(error) => tracing::warn!(%error, "upgrade failed"),
        }
    });
    let mut response = StatusCode::SWITCHING_PROTOCOLS.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    headers.insert(header::UPGRADE, HeaderValue::from_static(UPGRADE_PROTOCOL));
    response
}

/// Checks an agent's upgrade request and its name and key headers; the
/// agent's name on success.
/// Checks an agent's upgrade request and key; the agent's name and the
/// stored hash of the key it used, on success.
async fn authenticate_agent(
    state: &AppState,
    headers: &HeaderMap,
) -> Result<(String, Vec<u8>), Response> {
    if !wants_upgrade(headers) {
        return Err(not_an_upgrade());
    }
    let name = headers
        .get(AGENT_NAME_HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let key = bearer(headers).unwrap_or_default();
    let denied = || plain(StatusCode::UNAUTHORIZED, "invalid agent name or key");
    if name.is_empty()
        || !secrets::plausible_token(key.trim_start_matches(secrets::AGENT_KEY_PREFIX))
    {
        return Err(denied());
    }
    match state.broker.store.agent_key_hash(name).await {
        Ok(Some(stored)) if secrets::verify(key, &stored) => Ok((name.to_string(), stored)),
        Ok(_) => Err(denied()),
        Err(error) => {
            tracing::error!(%error, "cannot check an agent key");
            Err(plain(StatusCode::INTERNAL_SERVER_ERROR, "internal error"))
        }
    }
}

/// Checks an operator's upgrade request and token; the operator's name on
/// success.
async fn authenticate_operator(
    state: &AppState,
    headers: &HeaderMap,
) -> Result<(String, [u8; 32]), Response> {
    if !wants_upgrade(headers) {
        return Err(not_an_upgrade());
    }
    let token = bearer(headers).unwrap_or_default();
    let denied = || plain(StatusCode::UNAUTHORIZED, "invalid operator token");
    if !secrets::plausible_token(token) {
        return Err(denied());
    }
    let hash = secrets::hash(token);
    match state.broker.store.operator_by_token_hash(&hash).await {
        Ok(Some(name)) => Ok((name, hash)),
        Ok(None) => Err(denied()),
        Err(error) => {
            tracing::error!(%error, "cannot check an operator token");
            Err(plain(StatusCode::INTERNAL_SERVER_ERROR, "internal error"))
        }
    }
}

/// `GET /v1/agent`: an agent's control connection.
pub async fn agent(
    State(state): State<AppState>,
    ClientAddr(client): ClientAddr,
    headers: HeaderMap,
    request: Request,
) -> Response {
    let (name, key_hash) = match authenticate_agent(&state, &headers).await {
        Ok(authenticated) => authenticated,
        Err(response) => return response,
    };
    let broker = state.broker.clone();
    switch(&state, request, move |io| {
        crate::agents::serve(broker, io, name, key_hash, client)
    })
}

/// `GET /v1/connect`: an operator's connection.
pub async fn operator(
    State(state): State<AppState>,
    ClientAddr(client): ClientAddr,
    headers: HeaderMap,
    request: Request,
) -> Response {
    let (operator, token_hash) = match authenticate_operator(&state, &headers).await {
        Ok(authenticated) => authenticated,
        Err(response) => return response,
    };
    let broker = state.broker.clone();
    switch(&state, request, move |io| {
        crate::operators::serve(broker, io, operator, token_hash, client)
    })
}

/// How long the agent has to connect a tunnel's target.
const TUNNEL_OPEN_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// `GET /v1/tunnel/{session}`: one forwarded connection of an operator's
/// forward session, carried to the agent on a connection of its own.
pub async fn tunnel(
    State(state): State<AppState>,
    Path(session): Path<String>,
    headers: HeaderMap,
    request: Request,
) -> Response {
    let operator = match authenticate_operator(&state, &headers).await {
        Ok((name, _)) => name,
        Err(response) => return response,
    };
    let target = headers
        .get(doorman_proto::TARGET_HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let Some(grant) = state
        .broker
        .forwards
        .get(&session)
        .filter(|grant| grant.operator == operator)
    else {
        return plain(
            StatusCode::NOT_FOUND,
            "no forward session with this id is running",
        );
    };
    if !grant.targets.contains(&target) {
        return plain(
            StatusCode::FORBIDDEN,
            &format!("{target:?} is not a target of this session"),
        );
    }
    let Ok(tunnel_id) = secrets::new_id() else {
        return plain(StatusCode::INTERNAL_SERVER_ERROR, "internal error");
    };
    let mut expected = state.broker.sessions.expect(&tunnel_id, &grant.computer);
    let open = doorman_proto::message::ServerToAgent::OpenTunnel {
        session_id: session,
        tunnel_id,
        target: target.clone(),
    };
    if !state.broker.agents.send(&grant.computer, open).await {
        return plain(StatusCode::SERVICE_UNAVAILABLE, "the computer is offline");
    }
    let agent_io = match tokio::time::timeout(TUNNEL_OPEN_TIMEOUT, &mut expected.receiver).await {
        Ok(Ok(io)) => io,
        _ => {
            return plain(
                StatusCode::BAD_GATEWAY,
                &format!("the computer could not connect to {target}"),
            );
        }
    };
    drop(expected);
    let mut ended = grant.ended;
    switch(&state, request, move |operator_io| async move {
        tokio::select! {
            _ = crate::relay::relay(operator_io, &[], agent_io) => {}
            // The forward session ended (its `connect` stopped, or the
            // operator's token was revoked): its tunnels end with it.
            _ = ended.changed() => {}
        }
    })
}

/// `GET /v1/session/{request_id}`: the agent's side of a session.
pub async fn session(
    State(state): State<AppState>,
    Path(request_id): Path<String>,
    headers: HeaderMap,
    request: Request,
) -> Response {
    let name = match authenticate_agent(&state, &headers).await {
        Ok((name, _)) => name,
        Err(response) => return response,
    };
    let Some(deliver) = state.broker.sessions.take_sender(&request_id, &name) else {
        return plain(
            StatusCode::NOT_FOUND,
            "no session is waiting for this request",
        );
    };
    switch(&state, request, move |io| async move {
        let _ = deliver.send(io);
    })
}
