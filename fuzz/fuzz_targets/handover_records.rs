//! What the network hands a handed-over session, and the server's handover
//! message: any bytes are opened or refused, never a panic, and whatever is
//! sealed opens again to the same bytes.
#![no_main]

use doorman_relay::handover::Message;
use doorman_relay::record::{MAX_PLAINTEXT, Suite, TrafficKeys, content, record_len};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = Message::parse(data);

    let keys = |suite: Suite| TrafficKeys::new(suite, &vec![7; suite.secret_len()], 0).unwrap();
    let mut opener = keys(Suite::Aes128GcmSha256);
    let mut bytes = data.to_vec();
    let mut at = 0;
    while let Some(len) = record_len(&bytes[at..]) {
        if bytes.len() - at < len {
            break;
        }
        let _ = opener.open(&mut bytes[at..at + len]);
        at += len;
    }

    let (mut sealer, mut opener) = (keys(Suite::Aes256GcmSha384), keys(Suite::Aes256GcmSha384));
    for chunk in data.chunks(MAX_PLAINTEXT) {
        let mut record = Vec::new();
        sealer.seal(content::APPLICATION_DATA, chunk, &mut record).unwrap();
        let (kind, range) = opener.open(&mut record).unwrap();
        assert_eq!(kind, content::APPLICATION_DATA);
        assert_eq!(&record[range], chunk);
    }
});
