//! A session connection sealed end to end: once `connect` and the agent
//! have exchanged keys (`doorman_e2e::handshake`), every frame either sends
//! travels inside a [`Frame::Sealed`], which the server relays but cannot
//! open or change.
//!
//! Some frames stay plain, by design:
//!
//! - the server's own last word to the operator ([`SessionMessage::Ended`]:
//!   a time limit, a revocation), which it could always say by closing
//!   the connection;
//! - what the audit trail keeps of a session, which the agent sends the
//!   server as well as (sealed) the operator: how the program ended
//!   (`Exit`, `Error`), what a copy moved (`Copied`, and each file's
//!   [`FileMessage::Copied`]). The operator trusts only the sealed copy;
//! - what is for the server alone: the session's recording, sealed on the
//!   computer with age ([`Frame::Recording`]), and what it measured
//!   ([`SessionMessage::Recorded`]).
//!
//! A sealed reader skips every other plain frame: nothing the server says
//! in the session's name reaches the program or the operator's terminal.

use crate::connection::{ConnectionError, decode_message};
use crate::frame::Frame;
use crate::message::{FileMessage, SessionMessage};
use bytes::{Bytes, BytesMut};
use doorman_e2e::{FrameOpener, FrameSealer};

/// `frame` sealed into a [`Frame::Sealed`].
pub(crate) fn seal(sealer: &mut FrameSealer, frame: &Frame) -> Result<Frame, ConnectionError> {
    let mut inner = BytesMut::new();
    frame.encode(&mut inner)?;
    // Checked before sealing: a frame sealed and then not sent would leave
    // a gap in the count, and the session could not go on.
    let sealed_len = inner.len() + doorman_e2e::seal::OVERHEAD;
    if sealed_len > crate::frame::MAX_PAYLOAD_LEN {
        return Err(crate::FrameError::TooLong(sealed_len + 1).into());
    }
    let sealed = sealer
        .seal(&inner)
        .map_err(|e| ConnectionError::Sealed(e.to_string()))?;
    Ok(Frame::Sealed(Bytes::from(sealed)))
}

/// The frame a [`Frame::Sealed`]'s `payload` holds.
pub(crate) fn open(opener: &mut FrameOpener, payload: &[u8]) -> Result<Frame, ConnectionError> {
    let plain = opener
        .open(payload)
        .map_err(|e| ConnectionError::Sealed(e.to_string()))?;
    let mut inner = BytesMut::from(&plain[..]);
    match Frame::decode(&mut inner)? {
        Some(Frame::Sealed(_)) => Err(ConnectionError::Sealed(
            "a sealed frame in a sealed frame".into(),
        )),
        Some(frame) if inner.is_empty() => Ok(frame),
        _ => Err(ConnectionError::Sealed(
            "a sealed frame does not hold one whole frame".into(),
        )),
    }
}

/// Who a frame a sealed end sends is for.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Audience {
    /// The other end only: sealed.
    Peer,
    /// The other end, sealed, and the server, plain: what the audit trail
    /// keeps of how a session ended and what a copy moved.
    PeerAndServer,
    /// The server only: plain.
    Server,
}

pub(crate) fn audience(frame: &Frame) -> Audience {
    let payload = match frame {
        Frame::Recording(_) => return Audience::Server,
        Frame::Message(payload) => payload,
        _ => return Audience::Peer,
    };
    match decode_message::<SessionMessage>(payload) {
        Ok(
            SessionMessage::Exit { .. }
            | SessionMessage::Error { .. }
            | SessionMessage::Copied { .. },
        ) => Audience::PeerAndServer,
        Ok(SessionMessage::Recorded { .. }) => Audience::Server,
        Ok(_) => Audience::Peer,
        Err(_) if matches!(decode_message(payload), Ok(FileMessage::Copied { .. })) => {
            Audience::PeerAndServer
        }
        Err(_) => Audience::Peer,
    }
}

/// Whether a sealed reader takes this plain `frame`: only the server's last
/// word.
pub(crate) fn from_the_server(frame: &Frame) -> bool {
    let Frame::Message(payload) = frame else {
        return false;
    };
    matches!(decode_message(payload), Ok(SessionMessage::Ended { .. }))
}

#[cfg(test)]
mod tests {
    use crate::connection::Connection;
    use crate::frame::Frame;
    use crate::message::{EndCause, SessionMessage};
    use bytes::Bytes;
    use doorman_e2e::SessionKeys;
    use doorman_e2e::handshake::{Initiator, respond};
    use doorman_e2e::identity::Identity;

    /// A session's keys, as the computer and the operator hold them.
    fn keys() -> (SessionKeys, SessionKeys) {
        let identity = Identity::generate().unwrap();
        let (initiator, hello) = Initiator::start().unwrap();
        let (reply, computer) = respond(&identity, "r1", b"ls", &hello).unwrap();
        let (_, operator) = initiator.finish("r1", b"ls", &reply).unwrap();
        (computer, operator)
    }

    /// An operator's and an agent's sealed connections, the server's plain
    /// view of what the agent sends, and the server's own pipe to the
    /// operator.
    #[tokio::test]
    async fn sealed_frames_pass_whole_and_the_server_sees_only_what_the_audit_keeps() {
        let (computer, operator) = keys();
        let (agent_io, server_io) = tokio::io::duplex(1 << 20);
        let mut agent = Connection::new(agent_io);
        agent.seal(computer.sealer, computer.opener);
        agent
            .write_frame(&Frame::Stdout(Bytes::from_static(b"secret output")))
            .await
            .unwrap();
        agent
            .write_message(&SessionMessage::Exit {
                code: Some(3),
                signal: None,
            })
            .await
            .unwrap();
        drop(agent);
        // The server's view: a sealed frame, the exit status in plain, and
        // the sealed copy of it.
        let mut server = Connection::new(server_io);
        let mut seen = Vec::new();
        while let Some(frame) = server.read_frame().await.unwrap() {
            seen.push(frame);
        }
        assert!(matches!(seen[0], Frame::Sealed(_)), "{seen:?}");
        let Frame::Sealed(sealed) = &seen[0] else {
            unreachable!()
        };
        assert!(!sealed.windows(6).any(|w| w == b"secret"));
        assert!(matches!(seen[1], Frame::Message(_)));
        assert!(matches!(seen[2], Frame::Sealed(_)));
        assert_eq!(seen.len(), 3);
        // The operator's view, with the server's own word and a forged
        // plain frame in between.
        let (near, far) = tokio::io::duplex(1 << 20);
        let mut relay = Connection::new(near);
        relay.write_frame(&seen[0]).await.unwrap();
        relay
            .write_frame(&Frame::Stdout(Bytes::from_static(b"forged")))
            .await
            .unwrap();
        relay.write_frame(&seen[1]).await.unwrap();
        relay.write_frame(&seen[2]).await.unwrap();
        let ended = SessionMessage::Ended {
            cause: EndCause::TimeLimit,
            message: "time".into(),
        };
        relay.write_message(&ended).await.unwrap();
        drop(relay);
        let mut operator_side = Connection::new(far);
        operator_side.seal(operator.sealer, operator.opener);
        assert_eq!(
            operator_side.read_frame().await.unwrap(),
            Some(Frame::Stdout(Bytes::from_static(b"secret output")))
        );
        let exit: Option<SessionMessage> = operator_side.read_message().await.unwrap();
        assert!(matches!(
            exit,
            Some(SessionMessage::Exit { code: Some(3), .. })
        ));
        let last: Option<SessionMessage> = operator_side.read_message().await.unwrap();
        assert_eq!(last, Some(ended));
        assert_eq!(operator_side.read_frame().await.unwrap(), None);
    }

    #[tokio::test]
    async fn a_sealed_frame_the_server_changed_ends_the_session() {
        let (computer, operator) = keys();
        let mut sealer = computer.sealer;
        let Frame::Sealed(sealed) =
            super::seal(&mut sealer, &Frame::Stdout(Bytes::from_static(b"rm -rf"))).unwrap()
        else {
            unreachable!()
        };
        let mut changed = sealed.to_vec();
        changed[2] ^= 0x20;
        let (near, far) = tokio::io::duplex(1 << 16);
        let mut relay = Connection::new(near);
        relay
            .write_frame(&Frame::Sealed(Bytes::from(changed)))
            .await
            .unwrap();
        let mut operator_side = Connection::new(far);
        operator_side.seal(operator.sealer, operator.opener);
        assert!(matches!(
            operator_side.read_frame().await,
            Err(crate::ConnectionError::Sealed(_))
        ));
    }
}
