//! The certificate the listener serves, replaced in place when a renewed
//! one arrives, and the TLS-ALPN-01 answers (RFC 8737) an ACME server's
//! validation handshake gets instead while an order is open.

use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use std::collections::HashMap;
use std::sync::{Arc, RwLock};

/// The ALPN protocol of a TLS-ALPN-01 validation handshake.
pub const ACME_TLS_ALPN: &[u8] = b"acme-tls/1";

/// What the listener's TLS configuration asks for a certificate.
#[derive(Debug, Default)]
pub struct ServedCertificate {
    current: RwLock<Option<Arc<CertifiedKey>>>,
    /// Challenge certificates by lower-case domain.
    challenges: RwLock<HashMap<String, Arc<CertifiedKey>>>,
}

impl ServedCertificate {
    /// Serves `certificate` from the next handshake on.
    pub fn install(&self, certificate: Arc<CertifiedKey>) {
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = Some(certificate);
    }

    pub fn is_installed(&self) -> bool {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .is_some()
    }

    /// Answers validation handshakes for `domain` with `certificate`.
    pub fn set_challenge(&self, domain: &str, certificate: Arc<CertifiedKey>) {
        self.challenges
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(domain.to_ascii_lowercase(), certificate);
    }

    pub fn clear_challenges(&self) {
        self.challenges
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
    }
}

impl ResolvesServerCert for ServedCertificate {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let validating = hello
            .alpn()
            .is_some_and(|mut protocols| protocols.any(|p| p == ACME_TLS_ALPN));
        if validating {
            let domain = hello.server_name()?.to_ascii_lowercase();
            let challenges = self.challenges.read().unwrap_or_else(|e| e.into_inner());
            return challenges.get(&domain).cloned();
        }
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

/// A TLS server configuration that serves what `served` holds, speaking
/// HTTP/1.1 and answering ACME validation handshakes.
pub fn server_config(
    served: Arc<ServedCertificate>,
) -> Result<Arc<rustls::ServerConfig>, rustls::Error> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_cert_resolver(served);
    config.alpn_protocols = vec![b"http/1.1".to_vec(), ACME_TLS_ALPN.to_vec()];
    doorman_relay::handover::keep_secrets(&mut config);
    Ok(Arc::new(config))
}

/// A certificate and key, as rustls serves them, from PEM.
pub fn certified_key(chain_pem: &str, key_pem: &str) -> Result<Arc<CertifiedKey>, String> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let chain = CertificateDer::pem_slice_iter(chain_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("certificate chain: {e}"))?;
    if chain.is_empty() {
        return Err("no certificate in the chain".into());
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes())
        .map_err(|e| format!("private key: {e}"))?;
    let key = rustls::crypto::ring::sign::any_supported_type(&key)
        .map_err(|e| format!("private key: {e}"))?;
    Ok(Arc::new(CertifiedKey::new(chain, key)))
}

/// The TLS-ALPN-01 answer for `domain`: a self-signed certificate for it
/// carrying the key authorization's digest in the acmeIdentifier extension.
pub fn challenge_certificate(domain: &str, digest: &[u8]) -> Result<Arc<CertifiedKey>, String> {
    let mut params =
        rcgen::CertificateParams::new(vec![domain.to_string()]).map_err(|e| e.to_string())?;
    params.custom_extensions = vec![rcgen::CustomExtension::new_acme_identifier(digest)];
    let key = rcgen::KeyPair::generate().map_err(|e| e.to_string())?;
    let certificate = params.self_signed(&key).map_err(|e| e.to_string())?;
    certified_key(&certificate.pem(), &key.serialize_pem())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
    use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
    use std::sync::Mutex;

    /// Accepts any certificate and keeps it: an ACME validator checks the
    /// challenge certificate's contents, not its chain.
    #[derive(Debug, Default)]
    struct Keeps(Mutex<Option<Vec<u8>>>);

    impl ServerCertVerifier for Keeps {
        fn verify_server_cert(
            &self,
            end_entity: &CertificateDer<'_>,
            _: &[CertificateDer<'_>],
            _: &ServerName<'_>,
            _: &[u8],
            _: UnixTime,
        ) -> Result<ServerCertVerified, rustls::Error> {
            *self.0.lock().unwrap() = Some(end_entity.to_vec());
            Ok(ServerCertVerified::assertion())
        }
        fn verify_tls12_signature(
            &self,
            _: &[u8],
            _: &CertificateDer<'_>,
            _: &rustls::DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            Ok(HandshakeSignatureValid::assertion())
        }
        fn verify_tls13_signature(
            &self,
            _: &[u8],
            _: &CertificateDer<'_>,
            _: &rustls::DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            Ok(HandshakeSignatureValid::assertion())
        }
        fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
            rustls::crypto::ring::default_provider()
                .signature_verification_algorithms
                .supported_schemes()
        }
    }

    /// The certificate a handshake for `name` offering `alpn` is answered
    /// with, if any.
    fn served_to(config: Arc<rustls::ServerConfig>, name: &str, alpn: &[u8]) -> Option<Vec<u8>> {
        let verifier = Arc::new(Keeps::default());
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut client = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .dangerous()
            .with_custom_certificate_verifier(verifier.clone())
            .with_no_client_auth();
        client.alpn_protocols = vec![alpn.to_vec()];
        let server_name = ServerName::try_from(name.to_string()).unwrap();
        let mut client = rustls::ClientConnection::new(Arc::new(client), server_name).unwrap();
        let mut server = rustls::ServerConnection::new(config).unwrap();
        for _ in 0..10 {
            let mut wire = Vec::new();
            client.write_tls(&mut wire).unwrap();
            if server.read_tls(&mut wire.as_slice()).is_err()
                || server.process_new_packets().is_err()
            {
                break;
            }
            let mut wire = Vec::new();
            server.write_tls(&mut wire).unwrap();
            if client.read_tls(&mut wire.as_slice()).is_err()
                || client.process_new_packets().is_err()
            {
                break;
            }
        }
        verifier.0.lock().unwrap().take()
    }

    /// id-pe-acmeIdentifier, 1.3.6.1.5.5.7.1.31, as DER.
    const ACME_IDENTIFIER_OID: &[u8] =
        &[0x06, 0x08, 0x2B, 0x06, 0x01, 0x05, 0x05, 0x07, 0x01, 0x1F];

    fn contains(haystack: &[u8], needle: &[u8]) -> bool {
        haystack.windows(needle.len()).any(|w| w == needle)
    }

    #[test]
    fn a_validation_handshake_gets_the_challenge_and_others_the_certificate() {
        let served = Arc::new(ServedCertificate::default());
        let config = server_config(Arc::clone(&served)).unwrap();
        // Nothing to serve yet: the handshake fails, nothing is shown.
        assert_eq!(
            served_to(Arc::clone(&config), "a.example", b"http/1.1"),
            None
        );

        let key = rcgen::KeyPair::generate().unwrap();
        let params = rcgen::CertificateParams::new(vec!["a.example".into()]).unwrap();
        let current = params.self_signed(&key).unwrap();
        served.install(certified_key(&current.pem(), &key.serialize_pem()).unwrap());
        let digest = [7u8; 32];
        served.set_challenge(
            "A.example",
            challenge_certificate("a.example", &digest).unwrap(),
        );

        let ordinary = served_to(Arc::clone(&config), "a.example", b"http/1.1").unwrap();
        assert_eq!(ordinary, current.der().to_vec());
        let challenge = served_to(Arc::clone(&config), "a.example", ACME_TLS_ALPN).unwrap();
        assert!(contains(&challenge, ACME_IDENTIFIER_OID));
        assert!(contains(&challenge, &digest));
        // Another name's validation gets nothing; after the order, neither.
        assert_eq!(
            served_to(Arc::clone(&config), "b.example", ACME_TLS_ALPN),
            None
        );
        served.clear_challenges();
        assert_eq!(served_to(config, "a.example", ACME_TLS_ALPN), None);
    }
}
