//! The listener's TLS configuration, from a PEM certificate chain and key:
//! the server's one port serves HTTP/1.1 under it, and keeps each session's
//! secrets so that a tunnel can be handed over to the agent.

use doorman_wire::tls::{TlsError, load_certificates, provider};
use rustls::pki_types::PrivateKeyDer;
use rustls::pki_types::pem::PemObject;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The server configuration from a PEM certificate chain and key.
pub fn server_config(cert: &Path, key: &Path) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    server_config_with_ca(cert, None, key)
}

/// [`server_config`], presenting after the chain the certificates of the
/// CA file `ca` that it does not hold already: a private CA, so that a
/// computer joining with a URL that pins that CA's SHA-256 finds it in the
/// handshake (see `doorman_wire::pinned`). Clients that trust the CA already
/// build the same path as without it.
pub fn server_config_with_ca(
    cert: &Path,
    ca: Option<&Path>,
    key: &Path,
) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let mut chain = load_certificates(cert)?;
    if let Some(ca) = ca {
        for certificate in load_certificates(ca)? {
            if !chain.contains(&certificate) {
                chain.push(certificate);
            }
        }
    }
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| TlsError::Key {
        path: key.display().to_string(),
        message: e.to_string(),
    })?;
    let mut config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| TlsError::Config(e.to_string()))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    doorman_relay::handover::keep_secrets(&mut config);
    Ok(Arc::new(config))
}

/// Where the server's certificate and key are.
#[derive(Clone, Debug)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    /// The private CA that signed `cert` (`tls init`'s): presented after
    /// the chain, so that a computer joining with a URL that pins its
    /// SHA-256 finds it, and pinned in the invitations' URLs.
    pub ca: Option<PathBuf>,
}
