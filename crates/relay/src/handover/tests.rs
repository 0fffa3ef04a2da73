//! The handover message's encoding.

use super::*;

fn handed() -> Message {
    Message {
        early: b"GET / HTTP/1.1\r\n".to_vec(),
        keys: Some(HandedKeys {
            suite: Suite::Aes256GcmSha384,
            rx: (3, vec![1; 48].into()),
            tx: (5, vec![2; 48].into()),
            closed: true,
        }),
    }
}

#[test]
fn messages_round_trip_and_wait_for_their_last_byte() {
    for message in [
        handed(),
        Message {
            early: Vec::new(),
            keys: None,
        },
    ] {
        let mut bytes = message.encode();
        for end in 0..bytes.len() {
            assert!(
                Message::parse(&bytes[..end]).unwrap().is_none(),
                "incomplete at {end}"
            );
        }
        bytes.extend_from_slice(b"records that follow");
        let (parsed, used) = Message::parse(&bytes).unwrap().unwrap();
        assert_eq!(used, message.encode().len());
        assert_eq!(parsed.early, message.early);
        match (parsed.keys, message.keys) {
            (Some(got), Some(sent)) => {
                assert_eq!(
                    (got.suite, got.rx, got.tx, got.closed),
                    (sent.suite, sent.rx, sent.tx, sent.closed)
                );
            }
            (None, None) => {}
            _ => panic!("keys lost or made up"),
        }
    }
}

#[test]
fn malformed_messages_are_refused_by_name() {
    let good = handed().encode();
    let mut magic = good.clone();
    magic[0] = b'X';
    assert_eq!(Message::parse(&magic).err(), Some(MessageError::Magic));
    let mut kind = good.clone();
    kind[4] = 7;
    assert_eq!(Message::parse(&kind).err(), Some(MessageError::Kind(7)));
    let mut long = good.clone();
    long[5..9].copy_from_slice(&(MAX_EARLY as u32 + 1).to_be_bytes());
    assert_eq!(
        Message::parse(&long).err(),
        Some(MessageError::TooLong(MAX_EARLY + 1))
    );
    let suite_at = 9 + handed().early.len();
    let mut suite = good.clone();
    suite[suite_at..suite_at + 2].copy_from_slice(&0x1304u16.to_be_bytes());
    assert_eq!(
        Message::parse(&suite).err(),
        Some(MessageError::Suite(0x1304))
    );
    let mut secret = good.clone();
    secret[suite_at + 3 + 8] = 32;
    assert_eq!(Message::parse(&secret).err(), Some(MessageError::Secret));
}
