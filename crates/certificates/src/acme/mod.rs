//! Certificates over ACME (RFC 8555) for `--acme-domain`: obtained on the
//! server's one port (TLS-ALPN-01, RFC 8737), kept in the database (the
//! data directory's SQLite file, or the PostgreSQL that replicas share)
//! with the key sealed by the server key, served at once, and renewed in
//! place when fewer than `--acme-renew-days` remain.
//!
//! At start the stored certificate is served if there is one; one is
//! ordered when there is none or it is due. A first certificate the CA
//! refuses stops the server with the CA's reason; a renewal that fails is
//! retried every hour while the old certificate is served.

pub mod expiry;
mod http;
mod order;
pub mod served;

use doorman_runtime::clock::Clock;
use doorman_runtime::secrets::ServerKey;
use doorman_store::acme::{StoredCertificate, domains_key};
use doorman_store::{Store, StoreError};
use served::ServedCertificate;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// Let's Encrypt's production directory, the default.
pub const LETS_ENCRYPT: &str = "https://acme-v02.api.letsencrypt.org/directory";
/// Renew when fewer days than this remain, unless told otherwise.
pub const DEFAULT_RENEW_DAYS: u32 = 30;
/// How often the certificate's expiry is checked.
const CHECK_EVERY: Duration = Duration::from_secs(12 * 3600);
/// How soon a failed renewal is tried again.
const RETRY_AFTER: Duration = Duration::from_secs(3600);
/// Sealing purpose of a certificate's private key.
const KEY_PURPOSE: &str = "acme certificate key";

/// What `--acme-*` asks for.
#[derive(Clone, Debug)]
pub struct AcmeSettings {
    pub domains: Vec<String>,
    pub email: Option<String>,
    pub directory: String,
    /// Trusted for the directory's own HTTPS, instead of the system's roots.
    pub ca: Option<PathBuf>,
    pub renew_days: u32,
}

/// Why no certificate could be had.
#[derive(Debug, thiserror::Error)]
pub enum AcmeError {
    #[error("the ACME CA refused: {0}")]
    Refused(String),
    #[error("ACME: {0}")]
    Protocol(String),
    #[error("the ACME certificate cannot be used: {0}")]
    Certificate(String),
    #[error("the stored ACME secrets do not open with this server key (was server.key replaced?)")]
    Sealed,
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<instant_acme::Error> for AcmeError {
    fn from(error: instant_acme::Error) -> Self {
        match error {
            instant_acme::Error::Api(problem) => {
                AcmeError::Refused(match (&problem.detail, &problem.r#type) {
                    (Some(detail), Some(kind)) => format!("{detail} ({kind})"),
                    (Some(detail), None) => detail.clone(),
                    _ => problem.to_string(),
                })
            }
            other => AcmeError::Protocol(other.to_string()),
        }
    }
}

/// The ACME side of a server: what it serves and how it gets it.
pub struct Acme {
    settings: AcmeSettings,
    served: Arc<ServedCertificate>,
    http: http::AcmeHttp,
    tls: Arc<rustls::ServerConfig>,
}

impl Acme {
    pub fn new(settings: AcmeSettings) -> Result<Self, doorman_wire::tls::TlsError> {
        let client = doorman_wire::tls::client_config(settings.ca.as_deref())?;
        let http = http::AcmeHttp::new(client, settings.ca.as_deref());
        let served = Arc::new(ServedCertificate::default());
        let tls = served::server_config(Arc::clone(&served))
            .map_err(|e| doorman_wire::tls::TlsError::Config(e.to_string()))?;
        Ok(Self {
            settings,
            served,
            http,
            tls,
        })
    }

    /// The listener's TLS configuration.
    pub fn tls_config(&self) -> Arc<rustls::ServerConfig> {
        Arc::clone(&self.tls)
    }

    /// Serves the stored certificate, if any; whether it is due for renewal
    /// (or missing) at `now`.
    async fn load(&self, store: &Store, key: &ServerKey, now: i64) -> Result<bool, AcmeError> {
        let Some(stored) = store
            .acme_certificate(&domains_key(&self.settings.domains))
            .await?
        else {
            return Ok(true);
        };
        let key_pem = key
            .open(KEY_PURPOSE, &stored.sealed_key)
            .and_then(|pem| String::from_utf8(pem).ok())
            .ok_or(AcmeError::Sealed)?;
        let certified =
            served::certified_key(&stored.chain_pem, &key_pem).map_err(AcmeError::Certificate)?;
        self.served.install(certified);
        let due = self.due(stored.not_after, now);
        tracing::info!(
            domains = %self.settings.domains.join(","),
            days_left = (stored.not_after - now) / 86_400_000,
            renewing = due,
            "serving the stored ACME certificate"
        );
        Ok(due)
    }

    fn due(&self, not_after: i64, now: i64) -> bool {
        let margin = i64::from(self.settings.renew_days) * 86_400_000;
        not_after - now < margin
    }

    /// Orders a certificate, stores it and serves it.
    async fn renew(&self, store: &Store, key: &ServerKey, clock: &Clock) -> Result<(), AcmeError> {
        tracing::info!(
            domains = %self.settings.domains.join(","),
            directory = %self.settings.directory,
            "ordering a certificate over ACME"
        );
        let issued = order::issue(&self.settings, &self.http, &self.served, store, key).await?;
        let certified = served::certified_key(&issued.chain_pem, &issued.key_pem)
            .map_err(AcmeError::Certificate)?;
        let leaf = certified
            .cert
            .first()
            .ok_or_else(|| AcmeError::Certificate("an empty chain".into()))?;
        let not_after = expiry::not_after_millis(leaf)
            .ok_or_else(|| AcmeError::Certificate("no readable expiry date".into()))?;
        let sealed_key = key
            .seal(KEY_PURPOSE, issued.key_pem.as_bytes())
            .map_err(|_| AcmeError::Certificate("no randomness to seal the key".into()))?;
        let stored = StoredCertificate {
            chain_pem: issued.chain_pem,
            sealed_key,
            not_after,
        };
        store
            .save_acme_certificate(
                &domains_key(&self.settings.domains),
                &stored,
                clock.now_millis(),
            )
            .await?;
        self.served.install(certified);
        tracing::info!(
            domains = %self.settings.domains.join(","),
            days_valid = (not_after - clock.now_millis()) / 86_400_000,
            "ACME certificate issued and served"
        );
        Ok(())
    }

    /// Serves a certificate and keeps it fresh until the server stops,
    /// checking it by the server's `clock`. Fails only when there is no
    /// certificate to serve at all.
    pub async fn maintain(
        self: Arc<Self>,
        store: Store,
        key: ServerKey,
        clock: Clock,
        stopping: impl std::future::Future<Output = ()>,
    ) -> Result<(), AcmeError> {
        let work = async {
            let mut wait = Duration::ZERO;
            loop {
                clock.sleep(wait).await;
                let result = match self.load(&store, &key, clock.now_millis()).await {
                    Ok(false) => Ok(()),
                    Ok(true) => self.renew(&store, &key, &clock).await,
                    Err(error) => Err(error),
                };
                wait = match result {
                    Ok(()) => CHECK_EVERY,
                    Err(error) if !self.served.is_installed() => return Err(error),
                    Err(error) => {
                        tracing::error!(%error, "ACME renewal failed; serving the current certificate and trying again in an hour");
                        RETRY_AFTER
                    }
                };
            }
        };
        tokio::select! {
            result = work => result,
            () = stopping => Ok(()),
        }
    }
}
