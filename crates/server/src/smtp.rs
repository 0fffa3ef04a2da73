//! The SMTP transport the outbox delivers through: from the administrator's
//! URL (`smtp://` plain, `smtp://…?tls=required` STARTTLS, `smtps://`
//! implicit TLS) and, for a relay whose certificate a private CA signed,
//! that CA (`--smtp-ca`), which then replaces the built-in roots.

use crate::ServerError;
use lettre::transport::smtp::client::{Certificate, CertificateStore, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, Tokio1Executor};
use std::path::Path;
use std::time::Duration;

/// How long one SMTP exchange may take.
const SMTP_TIMEOUT: Duration = Duration::from_secs(30);

/// The transport for `url`, verifying the relay against `ca` when given.
pub fn transport(
    url: &str,
    ca: Option<&Path>,
) -> Result<AsyncSmtpTransport<Tokio1Executor>, ServerError> {
    let bad_url = |message: String| ServerError::SmtpUrl(message);
    let mut builder = AsyncSmtpTransport::<Tokio1Executor>::from_url(url)
        .map_err(|e| bad_url(e.to_string()))?
        .timeout(Some(SMTP_TIMEOUT));
    if let Some(ca) = ca {
        let parsed = url::Url::parse(url).map_err(|e| bad_url(e.to_string()))?;
        let host = parsed
            .host_str()
            .ok_or_else(|| bad_url("it names no host".into()))?;
        let tls = parsed
            .query_pairs()
            .find(|(key, _)| key == "tls")
            .map(|(_, value)| value.into_owned());
        let bad_ca = |message: String| ServerError::SmtpCa {
            path: ca.to_path_buf(),
            message,
        };
        let pem = std::fs::read(ca).map_err(|e| bad_ca(e.to_string()))?;
        let certificate = Certificate::from_pem(&pem).map_err(|e| bad_ca(e.to_string()))?;
        let parameters = TlsParameters::builder(host.to_string())
            .certificate_store(CertificateStore::None)
            .add_root_certificate(certificate)
            .build_rustls()
            .map_err(|e| bad_ca(e.to_string()))?;
        let mode = match (parsed.scheme(), tls.as_deref()) {
            ("smtps", _) => Tls::Wrapper(parameters),
            ("smtp", Some("required")) => Tls::Required(parameters),
            ("smtp", Some("opportunistic")) => Tls::Opportunistic(parameters),
            _ => {
                return Err(bad_ca(
                    "a CA is for a TLS connection: use smtps://… or smtp://…?tls=required".into(),
                ));
            }
        };
        builder = builder.tls(mode);
    }
    Ok(builder.build())
}
