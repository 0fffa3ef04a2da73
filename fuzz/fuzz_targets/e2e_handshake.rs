//! The end-to-end handshake and seals as the network hands them: any bytes
//! as the computer's reply are refused or checked, never a panic; any bytes
//! as a sealed frame are refused (they were not sealed with the session's
//! key); and whatever is sealed opens again to the same bytes.
#![no_main]

use doorman_e2e::handshake::{ComputerReply, Initiator, OperatorHello, check_hello, respond};
use doorman_e2e::identity::Identity;
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

const SERVICE: &[u8] = br#"{"kind":"command","argv":["ls"]}"#;

fn identity() -> &'static Identity {
    static IDENTITY: OnceLock<Identity> = OnceLock::new();
    IDENTITY.get_or_init(|| Identity::generate().unwrap())
}

fuzz_target!(|data: &[u8]| {
    if let Ok(reply) = serde_json::from_slice::<ComputerReply>(data) {
        let (initiator, _) = Initiator::start().unwrap();
        let _ = initiator.finish("r1", SERVICE, &reply);
    }
    if let Ok(hello) = serde_json::from_slice::<OperatorHello>(data) {
        if check_hello(&hello).is_ok() {
            respond(identity(), "r1", data, &hello).unwrap();
        }
    }

    let (initiator, hello) = Initiator::start().unwrap();
    let (reply, mut computer) = respond(identity(), "r1", data, &hello).unwrap();
    let (signer, mut operator) = initiator.finish("r1", data, &reply).unwrap();
    assert_eq!(signer, identity().public());
    let sealed = computer.sealer.seal(data).unwrap();
    assert_eq!(operator.opener.open(&sealed).unwrap(), data);
    assert!(operator.opener.open(data).is_err(), "forged bytes opened");
});
