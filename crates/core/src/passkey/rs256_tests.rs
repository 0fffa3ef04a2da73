//! RS256 credentials (COSE alg -257), with a fixed RSA key from
//! `testdata/` since ring verifies RSA signatures but cannot make RSA
//! keys: a registration with a COSE RSA key gives the very key ring
//! verifies with, an assertion signed with it verifies, and anything else
//! does not.

use super::*;
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use ring::rand::SystemRandom;
use ring::signature::{KeyPair, RsaKeyPair, RsaPublicKeyComponents};

const ORIGIN: &str = "https://doorman.example.com";
const RP_ID: &str = "doorman.example.com";
const ID: &[u8] = b"an-rs256-credential";

/// The test key (PKCS #8), from the PEM file beside this one.
fn test_key() -> RsaKeyPair {
    let pem = include_str!("testdata/rs256-test-key.pem");
    let body: String = pem
        .lines()
        .skip_while(|line| !line.starts_with("-----BEGIN"))
        .skip(1)
        .take_while(|line| !line.starts_with("-----END"))
        .collect();
    let der = STANDARD.decode(body).expect("the PEM's base64");
    RsaKeyPair::from_pkcs8(&der).expect("an RSA key")
}

fn expected(challenge: &[u8]) -> Expected<'_> {
    Expected {
        challenge,
        origin: ORIGIN,
        rp_id: RP_ID,
    }
}

fn client_data(kind: &str, challenge: &[u8]) -> Vec<u8> {
    serde_json::json!({
        "type": kind,
        "challenge": URL_SAFE_NO_PAD.encode(challenge),
        "origin": ORIGIN,
        "crossOrigin": false,
    })
    .to_string()
    .into_bytes()
}

fn authenticator_data(flags: u8, counter: u32, extra: &[u8]) -> Vec<u8> {
    let rp = ring::digest::digest(&ring::digest::SHA256, RP_ID.as_bytes());
    [rp.as_ref(), &[flags], &counter.to_be_bytes(), extra].concat()
}

/// The COSE key an authenticator would report for `n` and `e`.
fn cose(n: Vec<u8>, e: Vec<u8>) -> Vec<u8> {
    let cose = ciborium::Value::Map(vec![
        (1.into(), 3.into()),
        (3.into(), (-257).into()),
        ((-1).into(), ciborium::Value::Bytes(n)),
        ((-2).into(), ciborium::Value::Bytes(e)),
    ]);
    let mut bytes = Vec::new();
    ciborium::into_writer(&cose, &mut bytes).expect("CBOR");
    bytes
}

/// A registration ("none" attestation) of the credential with `cose_key`:
/// the attestation object and the client data.
fn registration(cose_key: &[u8], challenge: &[u8]) -> (Vec<u8>, Vec<u8>) {
    let id_len = u16::try_from(ID.len()).expect("a short id");
    let attested = [&[0u8; 16][..], &id_len.to_be_bytes(), ID, cose_key].concat();
    let object = ciborium::Value::Map(vec![
        ("fmt".into(), "none".into()),
        ("attStmt".into(), ciborium::Value::Map(Vec::new())),
        (
            "authData".into(),
            ciborium::Value::Bytes(authenticator_data(0x45, 0, &attested)),
        ),
    ]);
    let mut bytes = Vec::new();
    ciborium::into_writer(&object, &mut bytes).expect("CBOR");
    (bytes, client_data("webauthn.create", challenge))
}

/// An assertion over `challenge`, signed RSASSA-PKCS1-v1_5 with SHA-256.
fn assertion(key: &RsaKeyPair, challenge: &[u8], counter: u32) -> Assertion {
    let authenticator_data = authenticator_data(0x05, counter, &[]);
    let client_data_json = client_data("webauthn.get", challenge);
    let client_hash = ring::digest::digest(&ring::digest::SHA256, &client_data_json);
    let signed = [&authenticator_data[..], client_hash.as_ref()].concat();
    let mut signature = vec![0; key.public().modulus_len()];
    key.sign(
        &ring::signature::RSA_PKCS1_SHA256,
        &SystemRandom::new(),
        &signed,
        &mut signature,
    )
    .expect("a signature");
    Assertion {
        credential_id: B64(ID.to_vec()),
        authenticator_data: B64(authenticator_data),
        client_data_json: B64(client_data_json),
        signature: B64(signature),
    }
}

#[test]
fn an_rs256_credential_enrols_and_its_assertions_verify() {
    let key = test_key();
    let public = RsaPublicKeyComponents::<Vec<u8>>::from(key.public());
    let enrolment = [7u8; 32];
    let (object, client) = registration(&cose(public.n, public.e), &enrolment);
    let made = read_registration(&object, &client, &expected(&enrolment)).unwrap();
    assert_eq!(made.id, B64(ID.to_vec()));
    // The DER written from the COSE modulus and exponent is ring's own.
    assert_eq!(
        made.public_key,
        PublicKey::Rs256(B64(key.public_key().as_ref().to_vec()))
    );
    assert_eq!(made.public_key.fingerprint().len(), 16 * 3 - 1);
    let pinned = PinnedPasskey {
        recipient: "owner@example.com".into(),
        id: made.id,
        public_key: made.public_key,
    };
    let text = serde_json::to_string(&pinned).unwrap();
    assert!(text.contains("\"alg\":\"rs256\""), "{text}");
    assert_eq!(
        serde_json::from_str::<PinnedPasskey>(&text).unwrap(),
        pinned
    );

    let wanted = [9u8; 32];
    let approval = assertion(&key, &wanted, 1);
    assert_eq!(verify(&approval, &pinned, &expected(&wanted), 0), Ok(1));
    let mut forged = assertion(&key, &wanted, 2);
    forged.signature.0[10] ^= 1;
    assert_eq!(
        verify(&forged, &pinned, &expected(&wanted), 1),
        Err(PasskeyError::BadSignature)
    );
    let elsewhere = assertion(&key, &[8u8; 32], 3);
    assert_eq!(
        verify(&elsewhere, &pinned, &expected(&wanted), 1),
        Err(PasskeyError::WrongChallenge)
    );
}

#[test]
fn rsa_keys_ring_would_not_verify_with_are_refused_at_enrolment() {
    let modulus = |len: usize| {
        let mut n = vec![0xC5u8; len];
        n[len - 1] |= 1;
        n
    };
    let f4: Vec<u8> = vec![1, 0, 1];
    // 2048 bits, with a leading zero byte as some encoders write it.
    let with_zero = [&[0u8][..], &modulus(256)].concat();
    assert_eq!(
        rs256_key(&with_zero, &f4),
        rs256_key(&modulus(256), &f4),
        "leading zeros do not change the key"
    );
    assert!(rs256_key(&modulus(256), &f4).is_some());
    assert!(rs256_key(&modulus(1024), &f4).is_some(), "8192 bits");
    assert!(rs256_key(&modulus(128), &f4).is_none(), "1024 bits");
    assert!(rs256_key(&modulus(1025), &f4).is_none(), "over 8192 bits");
    assert!(
        rs256_key(&modulus(256), &[1, 0, 0]).is_none(),
        "even exponent"
    );
    assert!(rs256_key(&modulus(256), &[1]).is_none(), "exponent 1");
    assert!(rs256_key(&modulus(256), &[]).is_none(), "no exponent");
    assert!(rs256_key(&[], &f4).is_none(), "no modulus");
    // A COSE RSA key under another algorithm is not taken for RS256.
    let key = test_key();
    let public = RsaPublicKeyComponents::<Vec<u8>>::from(key.public());
    let mut other_alg =
        ciborium::from_reader::<ciborium::Value, _>(&cose(public.n, public.e)[..]).expect("CBOR");
    if let ciborium::Value::Map(entries) = &mut other_alg {
        entries[1].1 = (-37).into(); // PS256
    }
    assert_eq!(cose_key(&other_alg), None);
}
