//! Relaying a tunnel's two upgraded connections byte for byte: unwraps each
//! down to its socket (and TLS state), so that `doorman_relay` can
//! take both off the event loop onto a relay thread. (A session's own
//! connection is relayed frame by frame: `operators::session`.)

use crate::metrics::TunnelKeys;
use bytes::Bytes;
use doorman_http::listener::ServerStream;
use doorman_http::serve::Counted;
use doorman_http::slots::Slot;
use doorman_relay::end_to_end::{salts, switch_to_raw};
use doorman_relay::handover::hand_over;
use doorman_relay::{RelayError, copy, relay as relay_streams};
use doorman_wire::dial::Upgraded;
use doorman_wire::tls::MaybeTls;
use hyper_util::rt::TokioIo;
use tokio_util::either::Either;

/// The socket under an upgraded connection, its connection slot (held
/// until the relay ends) and the bytes hyper had already read from it; the
/// connection itself when it cannot be unwrapped. Its TLS secrets are
/// forgotten: only an operator's tunnel is ever handed over (see
/// [`unwrap_keeping_secrets`]), and an agent's control connection may live
/// for days.
fn unwrap(io: Upgraded) -> Result<(ServerStream, Slot, Bytes), Upgraded> {
    let mut unwrapped = unwrap_keeping_secrets(io)?;
    if let MaybeTls::Tls(tls) = &mut unwrapped.0 {
        tls.get_mut().0.forget_secrets();
    }
    Ok(unwrapped)
}

/// [`unwrap`], keeping the TLS secrets for a handover.
fn unwrap_keeping_secrets(io: Upgraded) -> Result<(ServerStream, Slot, Bytes), Upgraded> {
    io.into_inner()
        .downcast::<TokioIo<Counted>>()
        .map(|parts| {
            let Counted { stream, slot } = parts.io.into_inner();
            (stream, slot, parts.read_buf)
        })
        .map_err(TokioIo::new)
}

/// An upgraded connection unwrapped to its socket, or as it came when it
/// could not be.
pub type AgentStream = Either<Counted, Upgraded>;

/// A framed connection over an upgraded one, holding only the socket and
/// the bytes read past the upgrade, not the HTTP layer's read buffer (8 KiB
/// that an idle agent would otherwise keep for as long as it is connected).
pub fn framed(io: Upgraded) -> doorman_wire::Connection<AgentStream> {
    match unwrap(io) {
        Ok((stream, slot, buffered)) => doorman_wire::Connection::with_buffered(
            Either::Left(Counted { stream, slot }),
            &buffered,
        ),
        Err(io) => doorman_wire::Connection::new(Either::Right(io)),
    }
}

/// An operator's connection: upgraded from HTTP (`doorman connect`), or a
/// pipe from the web console's WebSocket bridge in this process.
pub type OperatorStream = Either<Upgraded, tokio::io::DuplexStream>;

/// Relays `a` ↔ `b` until both directions end; `a_early` are bytes already
/// read from `a` that belong to `b`. Returns the bytes moved each way.
async fn relay(a: Upgraded, a_early: &[u8], b: Upgraded) -> Result<(u64, u64), RelayError> {
    match (unwrap(a), unwrap(b)) {
        (Ok((a, _a_slot, a_buffered)), Ok((b, _b_slot, b_buffered))) => {
            let a_first = [a_early, &a_buffered].concat();
            relay_streams(a, &a_first, b, &b_buffered).await
        }
        (Ok((a, _slot, a_buffered)), Err(b)) => {
            copy(a, &[a_early, &a_buffered].concat(), b, &[]).await
        }
        (Err(a), Ok((b, _slot, b_buffered))) => copy(a, a_early, b, &b_buffered).await,
        (Err(a), Err(b)) => copy(a, a_early, b, &[]).await,
    }
}

/// A forwarded connection's tunnel: sealed end to end (`sealed`), both
/// connections leave TLS and the server relays the two sockets, records it
/// cannot open (`doorman_relay::end_to_end`); when the agent takes the
/// operator's TLS session over, the server hands it over first and then
/// relays the two sockets, ciphertext and all (`doorman_relay::handover`);
/// else `relay`. Bytes counted are then the records' bytes.
pub async fn relay_tunnel(
    operator: Upgraded,
    agent: crate::broker::AgentConnection,
    sealed: bool,
    metrics: &crate::metrics::Metrics,
) -> Result<(u64, u64), RelayError> {
    if sealed {
        metrics.tunnel_opened(TunnelKeys::EndToEnd);
        return relay_sealed(operator, agent.io).await;
    }
    if !agent.takes_over {
        metrics.tunnel_opened(TunnelKeys::Server);
        return relay(operator, &[], agent.io).await;
    }
    let (Ok((operator, _operator_slot, operator_early)), Ok((agent, _agent_slot, agent_early))) =
        (unwrap_keeping_secrets(operator), unwrap(agent.io))
    else {
        return Err(RelayError::before_any(std::io::Error::other(
            "a tunnel to hand over must be the server's own connections",
        )));
    };
    let handover = hand_over(operator, &operator_early, agent, &agent_early)
        .await
        .map_err(|error| {
            tracing::warn!(%error, "a tunnel could not be handed to its agent");
            RelayError::before_any(error)
        })?;
    metrics.tunnel_opened(if handover.handed {
        TunnelKeys::HandedOver
    } else {
        TunnelKeys::Server
    });
    relay_streams(handover.operator, &[], handover.agent, &[]).await
}

/// A tunnel sealed end to end: both connections switched out of TLS, each
/// end's salt read, then the two sockets relayed byte for byte, the salts
/// first.
async fn relay_sealed(operator: Upgraded, agent: Upgraded) -> Result<(u64, u64), RelayError> {
    let (Ok((operator, _operator_slot, operator_early)), Ok((agent, _agent_slot, agent_early))) =
        (unwrap(operator), unwrap(agent))
    else {
        return Err(RelayError::before_any(std::io::Error::other(
            "a sealed tunnel must be the server's own connections",
        )));
    };
    let switched = async {
        let mut operator = switch_to_raw(operator, &operator_early).await?;
        let mut agent = switch_to_raw(agent, &agent_early).await?;
        let (operator_salt, agent_salt) = salts(&mut operator, &mut agent).await?;
        Ok::<_, std::io::Error>((operator, operator_salt, agent, agent_salt))
    };
    let (operator, operator_salt, agent, agent_salt) = switched.await.map_err(|error| {
        tracing::warn!(%error, "a sealed tunnel could not be switched");
        RelayError::before_any(error)
    })?;
    relay_streams(
        ServerStream::Plain(operator),
        &operator_salt,
        ServerStream::Plain(agent),
        &agent_salt,
    )
    .await
}
