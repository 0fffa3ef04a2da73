//! The three upgrade endpoints (agent control, operator, session) and the
//! authentication each performs before switching protocols.

use crate::broker::{AgentConnection, Broker};
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use doorman_http::client_addr::ClientAddr;
use doorman_relay::handover::HANDOVER_HEADER;
use doorman_runtime::secrets;
use doorman_wire::{AGENT_NAME_HEADER, UPGRADE_PROTOCOL};
use hyper_util::rt::TokioIo;
use std::sync::Arc;
use tokio_util::either::Either;

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
pub fn switch<F, Fut>(broker: &Broker, request: Request, serve: F) -> Response
where
    F: FnOnce(doorman_wire::dial::Upgraded) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    switch_with(broker, request, &[], serve)
}

/// [`switch`], with `headers` on the `101`.
fn switch_with<F, Fut>(
    broker: &Broker,
    mut request: Request,
    headers: &[(&'static str, &'static str)],
    serve: F,
) -> Response
where
    F: FnOnce(doorman_wire::dial::Upgraded) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let on_upgrade = hyper::upgrade::on(&mut request);
    broker.lifecycle().spawn(async move {
        match on_upgrade.await {
            // Boxed: the task then holds the connection's future once, at
            // its own size; awaited in place, the task kept room for it
            // beside `serve` itself for the connection's whole life.
            Ok(upgraded) => Box::pin(serve(TokioIo::new(upgraded))).await,
            Err(error) => tracing::warn!(%error, "upgrade failed"),
        }
    });
    let mut response = StatusCode::SWITCHING_PROTOCOLS.into_response();
    let response_headers = response.headers_mut();
    response_headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    response_headers.insert(header::UPGRADE, HeaderValue::from_static(UPGRADE_PROTOCOL));
    for (name, value) in headers {
        response_headers.insert(*name, HeaderValue::from_static(value));
    }
    response
}

/// A wrong token or key from `client`: counted against its network, logged
/// now and then (the first, the tenth, the hundredth …) with the count, and
/// audited as one row per address and minute. Over the limit, the answer
/// is 429 instead of 401. A right credential is never refused for what
/// others on its network got wrong.
async fn wrong_credential(
    broker: &Broker,
    client: std::net::IpAddr,
    what: &'static str,
    answer: &'static str,
) -> Response {
    if count_wrong_credential(broker, client, what).await {
        plain(
            StatusCode::TOO_MANY_REQUESTS,
            "too many wrong tokens or keys from this address: wait 10 minutes",
        )
    } else {
        plain(StatusCode::UNAUTHORIZED, answer)
    }
}

/// Counts, logs and audits a wrong token or key from `client`; whether the
/// address is now limited.
pub async fn count_wrong_credential(
    broker: &Broker,
    client: std::net::IpAddr,
    what: &'static str,
) -> bool {
    let now = broker.now_millis();
    let doorman_http::failures::Failure { limited, count } =
        broker.credential_failures().record_failure(client, now);
    broker.metrics().authentication_failed(what);
    if limited {
        broker.metrics().rate_limited("credentials");
    }
    if count == 1 || count.is_power_of_two() && count >= 16 {
        tracing::warn!(source = %client, failures = count, "wrong {what} (failures from this address in 10 minutes)");
    }
    let event = doorman_store::AuditEvent::new(doorman_core::AuditKind::AuthFailed, now)
        .actor(what)
        .address(&client.to_string())
        .detail(format!("wrong {what}"));
    if let Err(error) = broker.store().record(&event).await {
        tracing::error!(%error, "cannot audit a failed login");
    }
    limited
}

/// Checks an agent's upgrade request and key; the agent's name, and its id
/// with the stored hash of the key it used, on success.
pub async fn authenticate_agent(
    broker: &Broker,
    client: std::net::IpAddr,
    headers: &HeaderMap,
) -> Result<(String, doorman_store::AgentKey), Response> {
    if !wants_upgrade(headers) {
        return Err(not_an_upgrade());
    }
    let name = headers
        .get(AGENT_NAME_HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let key = bearer(headers).unwrap_or_default();
    let denied = || wrong_credential(broker, client, "agent key", "invalid agent name or key");
    if name.is_empty()
        || !secrets::plausible_token(key.trim_start_matches(secrets::AGENT_KEY_PREFIX))
    {
        return Err(denied().await);
    }
    match broker.store().agent_key(name).await {
        Ok(Some(stored)) if secrets::verify(key, &stored.key_hash) => {
            Ok((name.to_string(), stored))
        }
        Ok(_) => Err(denied().await),
        Err(error) => {
            tracing::error!(%error, "cannot check an agent key");
            Err(plain(StatusCode::INTERNAL_SERVER_ERROR, "internal error"))
        }
    }
}

/// Checks an operator's upgrade request and token; who the operator is, and
/// the token's hash, on success.
async fn authenticate_operator(
    broker: &Broker,
    client: std::net::IpAddr,
    headers: &HeaderMap,
) -> Result<(doorman_store::OperatorIdentity, [u8; 32]), Response> {
    if !wants_upgrade(headers) {
        return Err(not_an_upgrade());
    }
    let token = bearer(headers).unwrap_or_default();
    let denied = || wrong_credential(broker, client, "operator token", "invalid operator token");
    if !secrets::plausible_token(token) {
        return Err(denied().await);
    }
    let hash = secrets::hash(token);
    match broker.store().operator_by_token(&hash).await {
        Ok(Some(operator)) => Ok((operator, hash)),
        Ok(None) => Err(denied().await),
        Err(error) => {
            tracing::error!(%error, "cannot check an operator token");
            Err(plain(StatusCode::INTERNAL_SERVER_ERROR, "internal error"))
        }
    }
}

/// `GET /v1/agent`: an agent's control connection.
pub async fn agent(
    State(broker): State<Arc<Broker>>,
    ClientAddr(client): ClientAddr,
    headers: HeaderMap,
    request: Request,
) -> Response {
    let (name, agent) = match authenticate_agent(&broker, client, &headers).await {
        Ok(authenticated) => authenticated,
        Err(response) => return response,
    };
    let serving = Arc::clone(&broker);
    switch(&broker, request, move |io| {
        crate::agents::serve(serving, io, name, agent, client)
    })
}

/// `GET /v1/connect`: an operator's connection.
pub async fn operator(
    State(broker): State<Arc<Broker>>,
    ClientAddr(client): ClientAddr,
    headers: HeaderMap,
    request: Request,
) -> Response {
    let (operator, token_hash) = match authenticate_operator(&broker, client, &headers).await {
        Ok(authenticated) => authenticated,
        Err(response) => return response,
    };
    let serving = Arc::clone(&broker);
    switch(&broker, request, move |io| {
        crate::operators::serve(
            serving,
            Either::Left(io),
            operator,
            token_hash,
            client,
            crate::operators::Via::Client,
        )
    })
}

/// How long the agent has to connect a tunnel's target.
const TUNNEL_OPEN_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// `GET /v1/tunnel/{session}`: one forwarded connection of an operator's
/// forward session, carried to the agent on a connection of its own.
pub async fn tunnel(
    State(broker): State<Arc<Broker>>,
    ClientAddr(client): ClientAddr,
    Path(session): Path<String>,
    headers: HeaderMap,
    request: Request,
) -> Response {
    let operator = match authenticate_operator(&broker, client, &headers).await {
        Ok((operator, _)) => operator.id,
        Err(response) => return response,
    };
    let target = headers
        .get(doorman_wire::TARGET_HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let sealed = headers.contains_key(doorman_wire::SEALED_HEADER);
    let Some(grant) = broker
        .forwards()
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
    let mut expected = broker.sessions().expect(&tunnel_id, &grant.computer);
    let open = doorman_wire::message::ServerToAgent::OpenTunnel {
        session_id: session,
        tunnel_id,
        target: target.clone(),
        sealed,
    };
    if !broker.agents().send(&grant.computer, open) {
        return plain(StatusCode::SERVICE_UNAVAILABLE, "the computer is offline");
    }
    let agent = match tokio::time::timeout(TUNNEL_OPEN_TIMEOUT, &mut expected.receiver).await {
        Ok(Ok(agent)) => agent,
        _ => {
            return plain(
                StatusCode::BAD_GATEWAY,
                &format!("the computer could not connect to {target}"),
            );
        }
    };
    drop(expected);
    let mut ended = grant.ended;
    let metrics = broker.metrics().clone();
    switch(&broker, request, move |operator_io| async move {
        tokio::select! {
            relayed = crate::relay::relay_tunnel(operator_io, agent, sealed, &metrics) => {
                let (up, down) = match relayed {
                    Ok(moved) => moved,
                    Err(error) => error.moved,
                };
                metrics.relayed(up, down);
            }
            // The forward session ended (its `connect` stopped, or the
            // operator's token was revoked): its tunnels end with it.
            _ = ended.changed() => {}
        }
    })
}

/// `GET /v1/session/{request_id}`: the agent's side of a session.
pub async fn session(
    State(broker): State<Arc<Broker>>,
    ClientAddr(client): ClientAddr,
    Path(request_id): Path<String>,
    headers: HeaderMap,
    request: Request,
) -> Response {
    let name = match authenticate_agent(&broker, client, &headers).await {
        Ok((name, _)) => name,
        Err(response) => return response,
    };
    let Some(deliver) = broker.sessions().take_sender(&request_id, &name) else {
        return plain(
            StatusCode::NOT_FOUND,
            "no session is waiting for this request",
        );
    };
    // Only a tunnel's connection asks, and the tunnel's handler answers.
    let takes_over = headers.contains_key(HANDOVER_HEADER);
    let echo: &[_] = if takes_over {
        &[(HANDOVER_HEADER, "1")]
    } else {
        &[]
    };
    switch_with(&broker, request, echo, move |io| async move {
        let _ = deliver.send(AgentConnection { io, takes_over });
    })
}
