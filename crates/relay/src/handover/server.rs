//! The server's side of a handover: waits for the agent's [`READY`], then
//! answers with the operator session's keys when it can hand it over, or
//! says it keeps it.

use super::{HandedKeys, Message, READY, Tracked, TrafficSecrets, drain, invalid, suite_of};
use crate::record::{Suite, TrafficKeys};
use doorman_wire::tls::MaybeTls;
use rustls::ConnectionTrafficSecrets;
use std::io;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_rustls::server::TlsStream;

/// A connection as the server accepted it.
pub type ServerSide = MaybeTls<TlsStream<Tracked>>;

/// How long the agent has to say it is ready.
const READY_TIMEOUT: Duration = Duration::from_secs(10);

/// A tunnel after [`hand_over`]: both connections, to relay byte for byte
/// with nothing sent first (plain sockets when the session was handed
/// over).
pub struct Handover {
    pub operator: ServerSide,
    pub agent: ServerSide,
    /// The agent seals and opens the operator's session now.
    pub handed: bool,
}

/// Hands the operator's session to the agent if it can. `operator_early`
/// and `agent_early` are what the HTTP layer had read past each upgrade.
pub async fn hand_over(
    operator: ServerSide,
    operator_early: &[u8],
    mut agent: ServerSide,
    agent_early: &[u8],
) -> io::Result<Handover> {
    let ready = match agent_early {
        [] => {
            let mut byte = [0u8; 1];
            tokio::time::timeout(READY_TIMEOUT, agent.read_exact(&mut byte))
                .await
                .map_err(|_| {
                    io::Error::new(io::ErrorKind::TimedOut, "the agent never got ready")
                })??;
            byte[0]
        }
        [byte] => *byte,
        _ => return Err(invalid("the agent sent more than READY")),
    };
    if ready != READY {
        return Err(invalid("the agent sent something else than READY"));
    }
    let agent_is_tls = matches!(agent, MaybeTls::Tls(_));
    let suite = match &operator {
        MaybeTls::Tls(tls) if agent_is_tls => suite_to_hand_over(tls),
        _ => None,
    };
    let (message, operator) = match (operator, suite) {
        (MaybeTls::Tls(tls), Some(suite)) => {
            let (keys, early, socket) = take_keys(*tls, suite, operator_early)?;
            let message = Message {
                early,
                keys: Some(keys),
            };
            (message, MaybeTls::Plain(socket))
        }
        (kept, _) => {
            let message = Message {
                early: operator_early.to_vec(),
                keys: None,
            };
            (message, kept)
        }
    };
    agent.write_all(&message.encode()).await?;
    agent.flush().await?;
    let handed = message.keys.is_some();
    let agent = match agent {
        MaybeTls::Tls(tls) if handed => {
            // The agent's own session is done with: no close_notify, the
            // socket goes on carrying the operator's records.
            let (tracked, _) = tls.into_inner();
            MaybeTls::Plain(tracked.into_parts().0)
        }
        agent => agent,
    };
    Ok(Handover {
        operator,
        agent,
        handed,
    })
}

/// The operator session's suite if it can be handed over now: TLS 1.3 with
/// a suite [`crate::record`] knows, its secrets kept, nothing of it waiting
/// to be sent, and no part of a record read.
fn suite_to_hand_over(tls: &TlsStream<Tracked>) -> Option<Suite> {
    let (tracked, connection) = tls.get_ref();
    let ready = tracked.at_record_boundary()
        && tracked.has_secrets()
        && connection.protocol_version() == Some(rustls::ProtocolVersion::TLSv1_3)
        && !connection.wants_write();
    suite_of(connection).filter(|_| ready)
}

/// Takes the operator's session apart: its keys (checked against rustls'
/// own), the plaintext rustls had opened after `early`, and its socket.
fn take_keys(
    tls: TlsStream<Tracked>,
    suite: Suite,
    early: &[u8],
) -> io::Result<(HandedKeys, Vec<u8>, tokio::net::TcpStream)> {
    let (tracked, mut connection) = tls.into_inner();
    let (socket, secrets) = tracked.into_parts();
    let TrafficSecrets { client, server, .. } =
        secrets.ok_or_else(|| invalid("the operator session's secrets are gone"))?;
    let state = connection.process_new_packets().map_err(invalid)?;
    let mut early = early.to_vec();
    drain(connection.reader(), &mut early)?;
    let extracted = connection.dangerous_extract_secrets().map_err(invalid)?;
    let keys = HandedKeys {
        suite,
        rx: (extracted.rx.0, client),
        tx: (extracted.tx.0, server),
        closed: state.peer_has_closed(),
    };
    let (rx, tx) = keys.keys().map_err(invalid)?;
    if !same_keys(&rx, &extracted.rx.1) || !same_keys(&tx, &extracted.tx.1) {
        return Err(invalid(
            "the operator session's kept secrets are not its current ones",
        ));
    }
    Ok((keys, early, socket))
}

fn same_keys(ours: &TrafficKeys, theirs: &ConnectionTrafficSecrets) -> bool {
    match theirs {
        ConnectionTrafficSecrets::Aes128Gcm { key, iv }
        | ConnectionTrafficSecrets::Aes256Gcm { key, iv }
        | ConnectionTrafficSecrets::Chacha20Poly1305 { key, iv } => {
            ours.matches(key.as_ref(), iv.as_ref())
        }
        _ => false,
    }
}
