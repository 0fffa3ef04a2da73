//! Records sealed and opened here against rustls itself, in memory: each
//! suite, both directions, key updates either way, close_notify, and
//! forgeries.

use super::*;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{PrivateKeyDer, ServerName};
use rustls::{ClientConnection, KeyLog, ServerConnection};
use std::io::{Read, Write};
use std::sync::{Arc, Mutex};

#[derive(Debug, Default)]
struct Capture(Mutex<Vec<(String, Vec<u8>)>>);

impl KeyLog for Capture {
    fn log(&self, label: &str, _client_random: &[u8], secret: &[u8]) {
        self.0.lock().unwrap().push((label.into(), secret.to_vec()));
    }
}

impl Capture {
    fn secret(&self, label: &str) -> Vec<u8> {
        let logged = self.0.lock().unwrap();
        logged.iter().find(|(l, _)| l == label).unwrap().1.clone()
    }
}

fn client_to_bytes(client: &mut ClientConnection) -> Vec<u8> {
    let mut out = Vec::new();
    while client.wants_write() {
        client.write_tls(&mut out).unwrap();
    }
    out
}

/// Gives `bytes` to the client; the plaintext it read from them.
fn bytes_to_client(client: &mut ClientConnection, mut bytes: &[u8]) -> Vec<u8> {
    let mut plaintext = Vec::new();
    while !bytes.is_empty() {
        client.read_tls(&mut bytes).unwrap();
        client.process_new_packets().unwrap();
        let _ = client.reader().read_to_end(&mut plaintext);
    }
    plaintext
}

/// A rustls client and server after their handshake, the server's keys
/// taken out as a handover takes them: (client, opening keys, sealing keys).
fn handed_over(
    suite: rustls::SupportedCipherSuite,
) -> (ClientConnection, TrafficKeys, TrafficKeys) {
    let dir = tempfile::tempdir().unwrap();
    let certificates = doorman_test_support::tls::generate(dir.path());
    let chain = doorman_wire::tls::load_certificates(&certificates.cert).unwrap();
    let key = PrivateKeyDer::from_pem_file(&certificates.key).unwrap();
    let provider = Arc::new(rustls::crypto::CryptoProvider {
        cipher_suites: vec![suite],
        ..rustls::crypto::ring::default_provider()
    });
    let capture = Arc::new(Capture::default());
    let mut server_config = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .unwrap();
    server_config.key_log = capture.clone();
    server_config.enable_secret_extraction = true;
    let mut roots = rustls::RootCertStore::empty();
    for ca in doorman_wire::tls::load_certificates(&certificates.ca).unwrap() {
        roots.add(ca).unwrap();
    }
    let client_config = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = ServerName::try_from("localhost").unwrap();
    let mut client = ClientConnection::new(Arc::new(client_config), name).unwrap();
    let mut server = ServerConnection::new(Arc::new(server_config)).unwrap();
    while client.is_handshaking() || server.is_handshaking() || server.wants_write() {
        let bytes = client_to_bytes(&mut client);
        let mut slice = &bytes[..];
        while !slice.is_empty() {
            server.read_tls(&mut slice).unwrap();
        }
        server.process_new_packets().unwrap();
        let mut out = Vec::new();
        while server.wants_write() {
            server.write_tls(&mut out).unwrap();
        }
        bytes_to_client(&mut client, &out);
    }
    let extracted = server.dangerous_extract_secrets().unwrap();
    let suite_here = Suite::from_code(suite.suite().into()).unwrap();
    let rx = TrafficKeys::new(
        suite_here,
        &capture.secret("CLIENT_TRAFFIC_SECRET_0"),
        extracted.rx.0,
    )
    .unwrap();
    let tx = TrafficKeys::new(
        suite_here,
        &capture.secret("SERVER_TRAFFIC_SECRET_0"),
        extracted.tx.0,
    )
    .unwrap();
    for (ours, theirs) in [(&rx, &extracted.rx.1), (&tx, &extracted.tx.1)] {
        let (key, iv) = match theirs {
            rustls::ConnectionTrafficSecrets::Aes128Gcm { key, iv }
            | rustls::ConnectionTrafficSecrets::Aes256Gcm { key, iv }
            | rustls::ConnectionTrafficSecrets::Chacha20Poly1305 { key, iv } => (key, iv),
            _ => unreachable!(),
        };
        assert!(
            ours.matches(key.as_ref(), iv.as_ref()),
            "derived keys are rustls' keys"
        );
    }
    (client, rx, tx)
}

/// Opens every record in `bytes`: (content type, plaintext) each.
fn open_all(keys: &mut TrafficKeys, mut bytes: Vec<u8>) -> Vec<Opened> {
    let mut opened = Vec::new();
    let mut at = 0;
    while let Some(len) = record_len(&bytes[at..]) {
        let (kind, range) = keys.open(&mut bytes[at..at + len]).unwrap();
        opened.push((kind, bytes[at + range.start..at + range.end].to_vec()));
        at += len;
    }
    assert_eq!(at, bytes.len(), "whole records");
    opened
}

const SUITES: [rustls::SupportedCipherSuite; 3] = [
    rustls::crypto::ring::cipher_suite::TLS13_AES_128_GCM_SHA256,
    rustls::crypto::ring::cipher_suite::TLS13_AES_256_GCM_SHA384,
    rustls::crypto::ring::cipher_suite::TLS13_CHACHA20_POLY1305_SHA256,
];

#[test]
fn records_interoperate_with_rustls_in_every_suite() {
    for suite in SUITES {
        let (mut client, mut rx, mut tx) = handed_over(suite);
        let big: Vec<u8> = (0..40_000u32).map(|i| (i % 253) as u8).collect();
        client.writer().write_all(&big).unwrap();
        let opened = open_all(&mut rx, client_to_bytes(&mut client));
        let data: Vec<u8> = opened.iter().flat_map(|(_, p)| p.clone()).collect();
        assert!(opened.iter().all(|(k, _)| *k == content::APPLICATION_DATA));
        assert_eq!(data, big, "{suite:?}: the client's records open here");

        let mut sealed = Vec::new();
        for chunk in big.chunks(MAX_PLAINTEXT) {
            tx.seal(content::APPLICATION_DATA, chunk, &mut sealed)
                .unwrap();
        }
        assert_eq!(
            bytes_to_client(&mut client, &sealed),
            big,
            "{suite:?}: sealed here, opened by rustls"
        );
    }
}

/// A record opened: (content type, plaintext).
type Opened = (u8, Vec<u8>);

/// The first record of `bytes` opened, and the bytes after it.
fn open_first(keys: &mut TrafficKeys, bytes: &[u8]) -> Result<(Opened, Vec<u8>), RecordError> {
    let len = record_len(bytes).unwrap();
    let mut record = bytes[..len].to_vec();
    let (kind, range) = keys.open(&mut record)?;
    Ok(((kind, record[range].to_vec()), bytes[len..].to_vec()))
}

#[test]
fn key_updates_either_way_keep_the_session_going() {
    let (mut client, mut rx, mut tx) = handed_over(SUITES[1]);
    // The client updates its keys, as rustls does near the AEAD's limit,
    // and asks this side to update too.
    client.refresh_traffic_keys().unwrap();
    client
        .writer()
        .write_all(b"after the client's update")
        .unwrap();
    let bytes = client_to_bytes(&mut client);
    let (update, rest) = open_first(&mut rx, &bytes).unwrap();
    assert_eq!(update, (content::HANDSHAKE, key_update(true).to_vec()));
    assert_eq!(
        open_first(&mut rx, &rest).unwrap_err(),
        RecordError::BadRecordMac,
        "new key"
    );
    rx.update();
    let (data, _) = open_first(&mut rx, &rest).unwrap();
    assert_eq!(
        data,
        (
            content::APPLICATION_DATA,
            b"after the client's update".to_vec()
        )
    );

    // This side updates and asks the client to: rustls follows and answers.
    let mut sealed = Vec::new();
    tx.seal(content::HANDSHAKE, &key_update(true), &mut sealed)
        .unwrap();
    tx.update();
    tx.seal(content::APPLICATION_DATA, b"after ours", &mut sealed)
        .unwrap();
    assert_eq!(bytes_to_client(&mut client, &sealed), b"after ours");
    // Its answer comes before its next data (RFC 8446 §4.6.3).
    client.writer().write_all(b"and on").unwrap();
    let (answer, rest) = open_first(&mut rx, &client_to_bytes(&mut client)).unwrap();
    assert_eq!(answer, (content::HANDSHAKE, key_update(false).to_vec()));
    rx.update();
    let (data, _) = open_first(&mut rx, &rest).unwrap();
    assert_eq!(data.1, b"and on");

    client.send_close_notify();
    let (alert, _) = open_first(&mut rx, &client_to_bytes(&mut client)).unwrap();
    assert_eq!(alert, (content::ALERT, vec![1, 0]));
}

#[test]
fn forged_replayed_and_malformed_records_are_refused() {
    let suite = Suite::Aes256GcmSha384;
    let secret = [7u8; 48];
    let mut sealer = TrafficKeys::new(suite, &secret, 0).unwrap();
    let mut opener = TrafficKeys::new(suite, &secret, 0).unwrap();
    let mut record = Vec::new();
    sealer
        .seal(content::APPLICATION_DATA, b"payload", &mut record)
        .unwrap();

    let mut flipped = record.clone();
    flipped[HEADER + 2] ^= 1;
    assert_eq!(
        open_first(&mut opener, &flipped).unwrap_err(),
        RecordError::BadRecordMac
    );
    let mut header_changed = record.clone();
    header_changed[2] = 1;
    assert_eq!(
        open_first(&mut opener, &header_changed).unwrap_err(),
        RecordError::BadRecordMac
    );
    let mut outer = record.clone();
    outer[0] = content::HANDSHAKE;
    assert_eq!(
        open_first(&mut opener, &outer).unwrap_err(),
        RecordError::UnexpectedType(22)
    );

    assert_eq!(open_first(&mut opener, &record).unwrap().0.1, b"payload");
    assert_eq!(
        open_first(&mut opener, &record).unwrap_err(),
        RecordError::BadRecordMac,
        "a replayed record has the wrong number"
    );

    // Inner plaintext of padding only: no content type.
    let mut padding = Vec::new();
    sealer.seal(0, &[0, 0, 0], &mut padding).unwrap();
    assert_eq!(
        open_first(&mut opener, &padding).unwrap_err(),
        RecordError::NoContentType
    );

    let too_big = vec![0u8; MAX_PLAINTEXT + 1];
    assert_eq!(
        sealer.seal(content::APPLICATION_DATA, &too_big, &mut Vec::new()),
        Err(RecordError::Overflow(MAX_PLAINTEXT + 1))
    );
    assert_eq!(
        TrafficKeys::new(suite, &[0u8; 32], 0).unwrap_err(),
        RecordError::BadSecret(32),
        "a SHA-256-sized secret for a SHA-384 suite"
    );
}

#[test]
fn a_worn_key_is_noticed() {
    let mut keys = TrafficKeys::new(Suite::Aes128GcmSha256, &[1u8; 32], (1 << 23) - 1).unwrap();
    assert!(!keys.is_worn());
    keys.seal(content::APPLICATION_DATA, b"x", &mut Vec::new())
        .unwrap();
    assert!(keys.is_worn());
    keys.update();
    assert!(!keys.is_worn(), "a new key starts at record 0");
}
