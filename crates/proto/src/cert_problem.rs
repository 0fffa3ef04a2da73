//! What is wrong with a certificate the server presented, in plain words
//! that say how to fix it, in place of rustls' and webpki's enum names.

use rustls::CertificateError;

const INIT: &str = "`doorman admin tls init --name HOST` on the server, which makes a CA and \
                    a server certificate signed by it";

/// The problem with the server's certificate and what to do about it.
pub fn describe(error: &CertificateError) -> String {
    match error {
        CertificateError::UnknownIssuer => format!(
            "is signed by no CA trusted here: pass --ca (doorman connect) or set ca = in the \
             agent's settings to the CA certificate that signed it ({INIT})"
        ),
        CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
            "has expired: renew it on the server (or use --acme-domain, which renews by itself)"
                .to_string()
        }
        CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
            "is not valid yet: check the clock of this machine and of the server".to_string()
        }
        CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
            format!(
                "is for another name than the one in the server URL: use the name the \
                 certificate was made for, or make one for this name ({INIT}, with --ip for \
                 an address)"
            )
        }
        CertificateError::InvalidPurpose | CertificateError::InvalidPurposeContext { .. } => {
            "is not made for a TLS server (its extended key usage lacks serverAuth): make a \
             server certificate"
                .to_string()
        }
        CertificateError::Revoked => "has been revoked by its CA: make a new one".to_string(),
        CertificateError::BadSignature => {
            "does not verify against the CA trusted here (another CA of the same name, such as \
             one made again, or a damaged certificate): pass --ca (doorman connect) or set ca = \
             in the agent's settings to the CA certificate that signed it"
                .to_string()
        }
        CertificateError::BadEncoding => "is damaged: replace it".to_string(),
        CertificateError::Other(rustls::OtherError(inner))
            if inner.downcast_ref::<crate::pinned::PinProblem>().is_some() =>
        {
            inner.to_string()
        }
        other => {
            // webpki's own reasons come wrapped in `Other`, with no type
            // of theirs in rustls' API to match on.
            let debug = format!("{other:?}");
            if debug.contains("CaUsedAsEndEntity") {
                format!(
                    "is a CA certificate, not a server certificate (what `openssl req -x509` \
                     makes by default): make a server certificate signed by that CA, or use \
                     {INIT}"
                )
            } else if debug.contains("UnsupportedCertVersion")
                || debug.contains("UnsupportedSignatureAlgorithm")
            {
                "uses a format or signature algorithm rustls does not accept: make a new one \
                 (ECDSA P-256 or RSA 2048+)"
                    .to_string()
            } else {
                format!("is not accepted ({other}): {INIT}")
            }
        }
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
                "is signed by no CA trusted here: pass --ca",
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
            let text = describe(&error);
            assert!(text.contains(says), "{error:?}: {text}");
            assert!(!text.contains(&format!("{error:?}")), "{text}");
        }
    }
}
