//! Trusting a server through the SHA-256 of its CA certificate, as a join
//! URL pins it (kubeadm's discovery hash does the same): the CA is found
//! among the certificates the server presents by that hash and nothing
//! else, and the server's certificate must then verify against it as
//! against any trusted root (signatures, name, validity, purpose). Until
//! the hash matches nothing is trusted, and there is no way to skip it.

use crate::tls::TlsError;
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{
    CertificateError, DigitallySignedStruct, Error, OtherError, RootCertStore, SignatureScheme,
};
use std::sync::{Arc, Mutex};

/// Why a server's certificates do not satisfy the pin; what
/// [`crate::cert_problem::describe`] says about it.
#[derive(Debug, thiserror::Error)]
pub enum PinProblem {
    #[error(
        "does not come with the CA the join URL pins by its SHA-256: the URL was altered, or the server's CA changed since the invitation; ask for a new invitation"
    )]
    Absent,
    #[error("is not signed by the CA the join URL pins by its SHA-256: ask for a new invitation")]
    NotSigned,
}

impl PinProblem {
    fn into_error(self) -> Error {
        Error::InvalidCertificate(CertificateError::Other(OtherError(Arc::new(self))))
    }
}

/// A server certificate verifier that trusts exactly the CA whose
/// certificate has a given SHA-256, as presented by the server.
#[derive(Debug)]
pub struct PinnedCa {
    sha256: [u8; 32],
    provider: Arc<CryptoProvider>,
    /// The CA certificate the last accepted handshake verified with.
    found: Mutex<Option<CertificateDer<'static>>>,
}

impl PinnedCa {
    /// Trusts the CA whose certificate (DER) has this SHA-256.
    pub fn new(sha256: [u8; 32]) -> Arc<Self> {
        Arc::new(Self {
            sha256,
            provider: crate::tls::provider(),
            found: Mutex::new(None),
        })
    }

    /// The pinned CA's certificate, once a handshake presented it and the
    /// server's certificate verified against it.
    pub fn certificate(&self) -> Option<CertificateDer<'static>> {
        self.lock().clone()
    }

    /// A TLS client configuration that trusts servers through this pin
    /// alone (a new one per join: no session is resumed without a check).
    pub fn client_config(self: &Arc<Self>) -> Result<Arc<rustls::ClientConfig>, TlsError> {
        let verifier: Arc<dyn ServerCertVerifier> = Arc::clone(self) as Arc<dyn ServerCertVerifier>;
        let config = rustls::ClientConfig::builder_with_provider(Arc::clone(&self.provider))
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError::Config(e.to_string()))?
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_no_client_auth();
        Ok(Arc::new(config))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<CertificateDer<'static>>> {
        self.found
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn matches(&self, certificate: &CertificateDer<'_>) -> bool {
        let digest = ring::digest::digest(&ring::digest::SHA256, certificate.as_ref());
        digest.as_ref() == &self.sha256[..]
    }
}

impl ServerCertVerifier for PinnedCa {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        // The last one with the hash: the root, where a chain ends.
        let Some(anchor) = intermediates.iter().rev().find(|c| self.matches(c)) else {
            return Err(PinProblem::Absent.into_error());
        };
        let mut roots = RootCertStore::empty();
        roots.add(anchor.clone())?;
        let verifier = WebPkiServerVerifier::builder_with_provider(
            Arc::new(roots),
            Arc::clone(&self.provider),
        )
        .build()
        .map_err(|e| Error::General(e.to_string()))?;
        let others: Vec<CertificateDer<'_>> = intermediates
            .iter()
            .filter(|c| *c != anchor)
            .cloned()
            .collect();
        match verifier.verify_server_cert(end_entity, &others, server_name, ocsp_response, now) {
            Ok(verified) => {
                *self.lock() = Some(anchor.clone().into_owned());
                Ok(verified)
            }
            Err(Error::InvalidCertificate(
                CertificateError::UnknownIssuer | CertificateError::BadSignature,
            )) => Err(PinProblem::NotSigned.into_error()),
            Err(error) => Err(error),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tls::load_certificates;

    fn sha256(certificate: &CertificateDer<'_>) -> [u8; 32] {
        let digest = ring::digest::digest(&ring::digest::SHA256, certificate.as_ref());
        let mut hash = [0u8; 32];
        hash.copy_from_slice(digest.as_ref());
        hash
    }

    /// What the verifier said of a refused chain, in its own words.
    fn pin_problem(result: Result<ServerCertVerified, Error>) -> String {
        match result {
            Err(Error::InvalidCertificate(CertificateError::Other(OtherError(inner)))) => {
                inner.to_string()
            }
            Err(other) => panic!("not a pin problem: {other:?}"),
            Ok(_) => panic!("trusted"),
        }
    }

    /// A server may present the pinned CA's certificate (it is public);
    /// only a server certificate that CA signed is trusted through it.
    #[test]
    fn the_pinned_ca_must_be_the_issuer_not_merely_presented() {
        let dir = tempfile::tempdir().unwrap();
        let ours = doorman_test_support::tls::generate(&dir.path().join("ours"));
        let theirs = doorman_test_support::tls::generate(&dir.path().join("theirs"));
        let first = |path: &std::path::Path| load_certificates(path).unwrap().remove(0);
        let (our_ca, our_leaf) = (first(&ours.ca), first(&ours.cert));
        let (their_ca, their_leaf) = (first(&theirs.ca), first(&theirs.cert));
        let name = ServerName::try_from("localhost").unwrap();
        let now = UnixTime::now();
        let pin = PinnedCa::new(sha256(&our_ca));

        // Another CA's certificate beside ours: both CAs have the same
        // subject, so only the signatures tell them apart.
        let said = pin_problem(pin.verify_server_cert(
            &their_leaf,
            std::slice::from_ref(&our_ca),
            &name,
            &[],
            now,
        ));
        assert!(
            said.contains("is not signed by the CA the join URL pins"),
            "{said}"
        );
        for intermediates in [
            vec![their_ca.clone(), our_ca.clone()],
            vec![our_ca.clone(), their_ca.clone()],
        ] {
            let verified = pin.verify_server_cert(&their_leaf, &intermediates, &name, &[], now);
            assert!(verified.is_err(), "a chain through another CA is trusted");
        }
        assert!(pin.certificate().is_none(), "nothing was accepted");

        // Without the pinned CA at all.
        let absent = pin.verify_server_cert(
            &their_leaf,
            std::slice::from_ref(&their_ca),
            &name,
            &[],
            now,
        );
        let said = pin_problem(absent);
        assert!(said.contains("does not come with the CA"), "{said}");

        // Ours, for another name: the pin does not stand in for the name.
        let other = ServerName::try_from("doorman.example.com").unwrap();
        let wrong_name =
            pin.verify_server_cert(&our_leaf, std::slice::from_ref(&our_ca), &other, &[], now);
        assert!(wrong_name.is_err(), "another name is trusted");
        assert!(pin.certificate().is_none());

        // Ours: trusted, and the CA it verified with is what gets written.
        pin.verify_server_cert(&our_leaf, std::slice::from_ref(&our_ca), &name, &[], now)
            .expect("our own chain verifies");
        assert_eq!(pin.certificate(), Some(our_ca));
    }
}
