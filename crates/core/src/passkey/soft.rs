//! A software authenticator for tests: makes ES256 credentials and the
//! assertions and registrations a browser would send, so tests can play a
//! recipient (or a forger) without a browser.

use super::{Assertion, B64, ChallengeParts, PinnedPasskey, PublicKey, challenge};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::rand::SystemRandom;
use ring::signature::{ECDSA_P256_SHA256_ASN1_SIGNING, EcdsaKeyPair, KeyPair};

/// One credential on a software authenticator.
pub struct SoftPasskey {
    key: EcdsaKeyPair,
    pub id: B64,
    pub counter: u32,
    pub rp_id: String,
    pub origin: String,
}

impl SoftPasskey {
    /// A new credential for the relying party at `origin` (its host is the
    /// RP id).
    pub fn new(origin: &str) -> SoftPasskey {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &rng)
            .expect("a P-256 key");
        let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, pkcs8.as_ref(), &rng)
            .expect("the key just made");
        let mut id = [0u8; 16];
        ring::rand::SecureRandom::fill(&rng, &mut id).expect("random bytes");
        let host = origin
            .split("://")
            .nth(1)
            .unwrap_or(origin)
            .split(':')
            .next()
            .unwrap_or_default()
            .to_string();
        SoftPasskey {
            key,
            id: B64(id.to_vec()),
            counter: 0,
            rp_id: host,
            origin: origin.to_string(),
        }
    }

    pub fn public_key(&self) -> PublicKey {
        PublicKey::Es256(B64(self.key.public_key().as_ref().to_vec()))
    }

    /// The pin a computer would keep for this credential.
    pub fn pinned(&self, recipient: &str) -> PinnedPasskey {
        PinnedPasskey {
            recipient: recipient.to_string(),
            id: self.id.clone(),
            public_key: self.public_key(),
        }
    }

    fn authenticator_data(&self, flags: u8, extra: &[u8]) -> Vec<u8> {
        let rp = ring::digest::digest(&ring::digest::SHA256, self.rp_id.as_bytes());
        [rp.as_ref(), &[flags], &self.counter.to_be_bytes(), extra].concat()
    }

    fn client_data(&self, kind: &str, challenge: &[u8]) -> Vec<u8> {
        serde_json::json!({
            "type": kind,
            "challenge": URL_SAFE_NO_PAD.encode(challenge),
            "origin": self.origin,
            "crossOrigin": false,
        })
        .to_string()
        .into_bytes()
    }

    /// An assertion over `challenge`, user present and verified.
    pub fn assert(&mut self, challenge: &[u8]) -> Assertion {
        self.counter += 1;
        let authenticator_data = self.authenticator_data(0x05, &[]);
        let client_data_json = self.client_data("webauthn.get", challenge);
        let client_hash = ring::digest::digest(&ring::digest::SHA256, &client_data_json);
        let signed = [&authenticator_data[..], client_hash.as_ref()].concat();
        let signature = self
            .key
            .sign(&SystemRandom::new(), &signed)
            .expect("a signature");
        Assertion {
            credential_id: self.id.clone(),
            authenticator_data: B64(authenticator_data),
            client_data_json: B64(client_data_json),
            signature: B64(signature.as_ref().to_vec()),
        }
    }

    /// An assertion for the request `parts` describe.
    pub fn approve(&mut self, parts: &ChallengeParts<'_>) -> Assertion {
        self.assert(&challenge(parts))
    }

    /// A registration ("none" attestation) over `challenge`: the
    /// attestation object and the client data, as the browser sends them.
    pub fn register(&self, challenge: &[u8]) -> (Vec<u8>, Vec<u8>) {
        let point = self.key.public_key().as_ref();
        let cose = ciborium::Value::Map(vec![
            (1.into(), 2.into()),
            (3.into(), (-7).into()),
            ((-1).into(), 1.into()),
            ((-2).into(), ciborium::Value::Bytes(point[1..33].to_vec())),
            ((-3).into(), ciborium::Value::Bytes(point[33..65].to_vec())),
        ]);
        let mut cose_bytes = Vec::new();
        ciborium::into_writer(&cose, &mut cose_bytes).expect("CBOR");
        let id_len = u16::try_from(self.id.0.len()).expect("a short id");
        let attested = [
            &[0u8; 16][..],
            &id_len.to_be_bytes(),
            &self.id.0,
            &cose_bytes,
        ]
        .concat();
        let auth_data = self.authenticator_data(0x45, &attested);
        let object = ciborium::Value::Map(vec![
            ("fmt".into(), "none".into()),
            ("attStmt".into(), ciborium::Value::Map(Vec::new())),
            ("authData".into(), ciborium::Value::Bytes(auth_data)),
        ]);
        let mut bytes = Vec::new();
        ciborium::into_writer(&object, &mut bytes).expect("CBOR");
        (bytes, self.client_data("webauthn.create", challenge))
    }
}
