//! The wire decoder: arbitrary bytes must never panic, every decoded frame
//! re-encodes to exactly the bytes it came from, and every message payload
//! either parses or is refused cleanly.
#![no_main]

use bytes::BytesMut;
use doorman_wire::connection::decode_message;
use doorman_wire::frame::Frame;
use doorman_wire::message::{AgentToServer, OperatorMessage, ServerToAgent, ServerToOperator, SessionMessage};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut buffer = BytesMut::from(data);
    loop {
        let before = buffer.clone();
        match Frame::decode(&mut buffer) {
            Ok(Some(frame)) => {
                let consumed = before.len() - buffer.len();
                let mut encoded = BytesMut::new();
                frame.encode(&mut encoded).expect("a decoded frame re-encodes");
                assert_eq!(&encoded[..], &before[..consumed]);
                if let Frame::Message(payload) = &frame {
                    let _ = decode_message::<OperatorMessage>(payload);
                    let _ = decode_message::<ServerToOperator>(payload);
                    let _ = decode_message::<ServerToAgent>(payload);
                    let _ = decode_message::<AgentToServer>(payload);
                    let _ = decode_message::<SessionMessage>(payload);
                }
            }
            Ok(None) => {
                assert_eq!(buffer.len(), before.len(), "waiting consumes nothing");
                break;
            }
            Err(_) => break,
        }
    }
});
