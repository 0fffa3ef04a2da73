//! What is wrong with a certificate a server presented, in plain words
//! that say how to fix it, in place of rustls' and webpki's enum names:
//! for Doorman's own server, an ACME directory and an SMTP relay, each
//! with its own way to give the CA, and with a CA given distinguished from
//! none (the system's roots).

use rustls::CertificateError;
use std::path::Path;

const INIT: &str = "`doorman admin tls init --name HOST` on the server, which makes a CA and \
                    a server certificate signed by it";

/// Whose certificate was checked: what to do about it depends on it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Peer {
    /// A Doorman server, checked by `doorman connect` or an agent.
    Doorman,
    /// An ACME directory, checked by the server (`--acme-ca`).
    Acme,
    /// An SMTP relay, checked by the server (`--smtp-ca`).
    Smtp,
}

impl Peer {
    /// How this side is given a CA to trust ("give the CA certificate
    /// that signed it with …").
    fn give_ca(self) -> &'static str {
        match self {
            Peer::Doorman => "--ca (doorman connect) or ca = in the agent's settings",
            Peer::Acme => "--acme-ca (acme_ca in the server's --config file)",
            Peer::Smtp => "--smtp-ca (smtp_ca in the server's --config file)",
        }
    }

    /// Where its right CA comes from, when Doorman makes it.
    fn made_by(self) -> &'static str {
        match self {
            Peer::Doorman => {
                " (on the server, `doorman admin tls init` prints the CA's file and its SHA-256 \
                 fingerprint)"
            }
            Peer::Acme | Peer::Smtp => "",
        }
    }
}

/// The problem with the certificate `peer` presented and what to do about
/// it. `ca` is the CA file this side trusted, if one was given (else the
/// system's roots were).
pub fn describe(error: &CertificateError, peer: Peer, ca: Option<&Path>) -> String {
    let give = peer.give_ca();
    let made_by = peer.made_by();
    match (error, ca) {
        (CertificateError::UnknownIssuer, Some(ca)) => format!(
            "does not match the CA in {}: another CA signed it; give the CA certificate that \
             signed it with {give}{made_by}",
            ca.display()
        ),
        (CertificateError::UnknownIssuer, None) => match peer {
            Peer::Doorman => format!(
                "is signed by no CA trusted here: give the CA certificate that signed it with \
                 {give} ({INIT})"
            ),
            Peer::Acme | Peer::Smtp => format!(
                "is signed by no CA trusted here (the system's): give the CA certificate that \
                 signed it with {give}"
            ),
        },
        (CertificateError::BadSignature, Some(ca)) => format!(
            "does not match the CA in {}: it does not verify against it (another CA of the \
             same name, such as one made again, or a damaged certificate); give the CA \
             certificate that signed it with {give}{made_by}",
            ca.display()
        ),
        (CertificateError::BadSignature, None) => format!(
            "does not verify against the CA trusted here (another CA of the same name, or a \
             damaged certificate): give the CA certificate that signed it with {give}"
        ),
        (other, _) => describe_other(other, peer),
    }
}

/// The problems that do not depend on which CA was trusted.
fn describe_other(error: &CertificateError, peer: Peer) -> String {
    let ours = peer == Peer::Doorman;
    match error {
        CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
            if ours {
                "has expired: renew it on the server (or use --acme-domain, which renews by \
                 itself)"
                    .to_string()
            } else {
                "has expired: it must be renewed where it is served".to_string()
            }
        }
        CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
            "is not valid yet: check the clock of this machine and of the server".to_string()
        }
        CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
            if ours {
                format!(
                    "is for another name than the one in the server URL: use the name the \
                     certificate was made for, or make one for this name ({INIT}, with --ip \
                     for an address)"
                )
            } else {
                "is for another name than the one in the URL: use the name the certificate \
                 was made for"
                    .to_string()
            }
        }
        CertificateError::InvalidPurpose | CertificateError::InvalidPurposeContext { .. } => {
            "is not made for a TLS server (its extended key usage lacks serverAuth): make a \
             server certificate"
                .to_string()
        }
        CertificateError::Revoked => "has been revoked by its CA: make a new one".to_string(),
        CertificateError::BadEncoding => "is damaged: replace it".to_string(),
        CertificateError::Other(rustls::OtherError(inner))
            if inner.downcast_ref::<crate::pinned::PinProblem>().is_some() =>
        {
            inner.to_string()
        }
        other => describe_webpki(other, ours),
    }
}

/// webpki's own reasons, which come wrapped in `Other`, with no type of
/// theirs in rustls' API to match on.
fn describe_webpki(error: &CertificateError, ours: bool) -> String {
    let debug = format!("{error:?}");
    let init = if ours {
        format!(", or use {INIT}")
    } else {
        String::new()
    };
    if debug.contains("CaUsedAsEndEntity") {
        format!(
            "is a CA certificate, not a server certificate (what `openssl req -x509` makes by \
             default): make a server certificate signed by that CA{init}"
        )
    } else if debug.contains("UnsupportedCertVersion")
        || debug.contains("UnsupportedSignatureAlgorithm")
    {
        "uses a format or signature algorithm rustls does not accept: make a new one (ECDSA \
         P-256 or RSA 2048+)"
            .to_string()
    } else if ours {
        format!("is not accepted ({error}): {INIT}")
    } else {
        format!("is not accepted ({error})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_problem_says_what_to_do_without_rustls_names() {
        for (error, says) in [
            (
                CertificateError::UnknownIssuer,
                "is signed by no CA trusted here: give the CA certificate that signed it with --ca",
            ),
            (CertificateError::Expired, "has expired: renew it"),
            (CertificateError::NotValidYet, "check the clock"),
            (CertificateError::NotValidForName, "is for another name"),
            (
                CertificateError::BadSignature,
                "does not verify against the CA trusted here",
            ),
            (
                CertificateError::InvalidPurpose,
                "not made for a TLS server",
            ),
        ] {
            let text = describe(&error, Peer::Doorman, None);
            assert!(text.contains(says), "{error:?}: {text}");
            assert!(!text.contains(&format!("{error:?}")), "{text}");
        }
    }

    /// Issue 31: a wrong --ca is not "pass --ca": one was passed, and it
    /// is not the CA that signed the server's certificate.
    #[test]
    fn a_ca_that_was_given_and_does_not_match_is_named() {
        let ca = Path::new("/etc/doorman/ca.pem");
        for error in [
            CertificateError::UnknownIssuer,
            CertificateError::BadSignature,
        ] {
            let text = describe(&error, Peer::Doorman, Some(ca));
            assert!(
                text.starts_with("does not match the CA in /etc/doorman/ca.pem"),
                "{error:?}: {text}"
            );
            assert!(text.contains("SHA-256 fingerprint"), "{text}");
            assert!(!text.contains("signed by no CA trusted here"), "{text}");
        }
    }

    #[test]
    fn acme_and_smtp_are_told_their_own_option() {
        let ca = Path::new("pebble.pem");
        let acme = describe(&CertificateError::UnknownIssuer, Peer::Acme, Some(ca));
        assert!(
            acme.starts_with("does not match the CA in pebble.pem"),
            "{acme}"
        );
        assert!(acme.contains("with --acme-ca"), "{acme}");
        assert!(!acme.contains("--ca (doorman connect)"), "{acme}");
        let smtp = describe(&CertificateError::UnknownIssuer, Peer::Smtp, None);
        assert!(smtp.contains("with --smtp-ca"), "{smtp}");
        assert!(!smtp.contains("tls init"), "{smtp}");
    }
}
