//! The server's configuration as an administrator writes it: the optional
//! settings file (`--config`, TOML), the command line's values that win
//! over it, the defaults both share, and the checked [`ServerConfig`] they
//! make together. Also [`run_replica`]: serving as the active server or
//! waiting as a standby on a shared database.

use crate::leadership::Leadership;
use crate::{DEFAULT_HEARTBEAT, Limits, Prepared, ServerConfig, ServerError, TlsFiles};
use doorman_certificates::acme::AcmeSettings;
use doorman_http::client_addr::TrustedProxy;
use doorman_http::serve::ConnectionLimits;
use serde::Deserialize;
use std::future::Future;
use std::net::SocketAddr;
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};

mod byte_size;
pub use byte_size::ByteSize;

/// Where the server listens when nothing says otherwise.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
/// The data directory of `doorman server` and `doorman admin` when neither
/// `--data-dir` nor `--database-url` is given (relative to the working
/// directory).
pub const DEFAULT_DATA_DIR: &str = "doorman-data";
/// The emails' sender when nothing says otherwise.
pub const DEFAULT_MAIL_FROM: &str = "doorman@localhost";

/// The values the limits may take, on the command line and in the file.
pub const MAX_PENDING_PER_OPERATOR: RangeInclusive<i64> = 1..=1000;
pub const MAX_REQUESTS_PER_HOUR: RangeInclusive<i64> = 1..=100_000;
pub const BLOCK_MINUTES: RangeInclusive<i64> = 1..=525_600;
/// A web console session's idle time: a minute to a week.
pub const CONSOLE_IDLE_MINUTES: RangeInclusive<i64> = 1..=10080;
/// How long session recordings are kept: a day to a hundred years.
pub const RECORDINGS_KEEP_DAYS: RangeInclusive<i64> = 1..=36500;

/// Why the configuration cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid server config {path}: {message}")]
    Invalid { path: PathBuf, message: String },
    #[error("--tls-cert and --tls-key go together")]
    TlsPair,
    #[error(
        "--smtp-ca needs --smtp-url: without an SMTP server, emails go to the outbox directory"
    )]
    SmtpCaWithoutUrl,
    #[error(
        "--acme-domain and --tls-cert do not go together: the certificate comes from one or the other"
    )]
    AcmeAndTlsFiles,
    #[error("--acme-email, --acme-directory, --acme-ca and --acme-renew-days need --acme-domain")]
    AcmeWithoutDomain,
    #[error("--acme-domain {0:?} is not a DNS name")]
    AcmeDomain(String),
    #[error("--acme-directory {0:?} must be an https:// URL")]
    AcmeDirectory(String),
    #[error(
        "cannot read {}: {source}; the server would serve plain HTTP without it: let the server's account read it (make it with `sudo -u doorman doorman admin tls init …`, or chown it), or remove it",
        path.display()
    )]
    TlsFiles {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// The settings one may give, from the file or the command line; every one
/// optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerSettings {
    pub listen: Option<SocketAddr>,
    pub public_url: Option<String>,
    pub data_dir: Option<PathBuf>,
    pub database_url: Option<String>,
    pub smtp_url: Option<String>,
    pub smtp_ca: Option<PathBuf>,
    pub mail_from: Option<String>,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    pub acme_domains: Option<Vec<String>>,
    pub acme_email: Option<String>,
    pub acme_directory: Option<String>,
    pub acme_ca: Option<PathBuf>,
    pub acme_renew_days: Option<u32>,
    pub max_connections: Option<u32>,
    pub max_connections_per_address: Option<u32>,
    pub audit_retention_days: Option<u32>,
    pub console_idle_minutes: Option<u32>,
    pub trusted_proxies: Option<Vec<TrustedProxy>>,
    pub max_pending_per_operator: Option<u32>,
    pub max_requests_per_hour: Option<u32>,
    pub block_minutes: Option<u32>,
    pub metrics_listen: Option<SocketAddr>,
    pub record_sessions: Option<bool>,
    pub recordings_keep_days: Option<u32>,
    pub recording_max_bytes: Option<ByteSize>,
    pub recordings_max_total_bytes: Option<ByteSize>,
    pub insecure_public_url: Option<bool>,
}

impl ServerSettings {
    /// Reads and checks a settings file.
    pub fn read(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(&text).map_err(|message| ConfigError::Invalid {
            path: path.to_path_buf(),
            message,
        })
    }

    /// Parses a settings file's text; the limits must lie where the command
    /// line's would.
    pub fn parse(text: &str) -> Result<Self, String> {
        let settings: ServerSettings = toml::from_str(text).map_err(|e| e.to_string())?;
        for (key, value, range) in [
            (
                "max_pending_per_operator",
                settings.max_pending_per_operator,
                MAX_PENDING_PER_OPERATOR,
            ),
            (
                "max_requests_per_hour",
                settings.max_requests_per_hour,
                MAX_REQUESTS_PER_HOUR,
            ),
            ("block_minutes", settings.block_minutes, BLOCK_MINUTES),
            (
                "console_idle_minutes",
                settings.console_idle_minutes,
                CONSOLE_IDLE_MINUTES,
            ),
            (
                "recordings_keep_days",
                settings.recordings_keep_days,
                RECORDINGS_KEEP_DAYS,
            ),
        ] {
            if let Some(value) = value
                && !range.contains(&i64::from(value))
            {
                return Err(format!(
                    "{key} = {value}: must be {} to {}",
                    range.start(),
                    range.end()
                ));
            }
        }
        Ok(settings)
    }

    /// These settings over `file`'s: each value given here wins.
    pub fn over(self, file: ServerSettings) -> ServerSettings {
        ServerSettings {
            listen: self.listen.or(file.listen),
            public_url: self.public_url.or(file.public_url),
            data_dir: self.data_dir.or(file.data_dir),
            database_url: self.database_url.or(file.database_url),
            smtp_url: self.smtp_url.or(file.smtp_url),
            smtp_ca: self.smtp_ca.or(file.smtp_ca),
            mail_from: self.mail_from.or(file.mail_from),
            tls_cert: self.tls_cert.or(file.tls_cert),
            tls_key: self.tls_key.or(file.tls_key),
            acme_domains: self.acme_domains.or(file.acme_domains),
            acme_email: self.acme_email.or(file.acme_email),
            acme_directory: self.acme_directory.or(file.acme_directory),
            acme_ca: self.acme_ca.or(file.acme_ca),
            acme_renew_days: self.acme_renew_days.or(file.acme_renew_days),
            max_connections: self.max_connections.or(file.max_connections),
            max_connections_per_address: self
                .max_connections_per_address
                .or(file.max_connections_per_address),
            audit_retention_days: self.audit_retention_days.or(file.audit_retention_days),
            console_idle_minutes: self.console_idle_minutes.or(file.console_idle_minutes),
            trusted_proxies: self.trusted_proxies.or(file.trusted_proxies),
            max_pending_per_operator: self
                .max_pending_per_operator
                .or(file.max_pending_per_operator),
            max_requests_per_hour: self.max_requests_per_hour.or(file.max_requests_per_hour),
            block_minutes: self.block_minutes.or(file.block_minutes),
            metrics_listen: self.metrics_listen.or(file.metrics_listen),
            record_sessions: self.record_sessions.or(file.record_sessions),
            recordings_keep_days: self.recordings_keep_days.or(file.recordings_keep_days),
            recording_max_bytes: self.recording_max_bytes.or(file.recording_max_bytes),
            recordings_max_total_bytes: self
                .recordings_max_total_bytes
                .or(file.recordings_max_total_bytes),
            insecure_public_url: self.insecure_public_url.or(file.insecure_public_url),
        }
    }

    /// Where to listen.
    pub fn listen(&self) -> SocketAddr {
        self.listen.unwrap_or_else(|| {
            DEFAULT_LISTEN
                .parse()
                .unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 8080)))
        })
    }

    /// The configuration, with the defaults filled in; `bound` is the
    /// address actually bound (the default public URL names its port).
    pub fn into_config(self, bound: SocketAddr) -> Result<ServerConfig, ConfigError> {
        let acme = self.acme()?;
        let connections = self.connection_limits();
        let data_dir = self
            .data_dir
            .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR));
        let tls = match (self.tls_cert, self.tls_key) {
            (Some(_), Some(_)) if acme.is_some() => return Err(ConfigError::AcmeAndTlsFiles),
            (Some(cert), Some(key)) => Some(TlsFiles {
                cert,
                key,
                ca: None,
            }),
            (None, None) if acme.is_some() => None,
            // What `doorman admin tls init` made, when nothing else is given.
            (None, None) => doorman_certificates::private_ca::server_files(&data_dir)
                .map_err(|(path, source)| ConfigError::TlsFiles { path, source })?,
            _ => return Err(ConfigError::TlsPair),
        };
        if self.smtp_ca.is_some() && self.smtp_url.is_none() {
            return Err(ConfigError::SmtpCaWithoutUrl);
        }
        let scheme = if tls.is_some() || acme.is_some() {
            "https"
        } else {
            "http"
        };
        // With ACME the links name the domain, not the address bound.
        let default_host = match &acme {
            Some(acme) if bound.port() == 443 => acme.domains[0].clone(),
            Some(acme) => format!("{}:{}", acme.domains[0], bound.port()),
            None => bound.to_string(),
        };
        let defaults = Limits::default();
        Ok(ServerConfig {
            public_url: self
                .public_url
                .unwrap_or_else(|| format!("{scheme}://{default_host}")),
            data_dir,
            database_url: self.database_url,
            smtp_url: self.smtp_url,
            smtp_ca: self.smtp_ca,
            mail_from: self.mail_from.unwrap_or_else(|| DEFAULT_MAIL_FROM.into()),
            tls,
            acme,
            limits: Limits {
                max_pending_per_operator: self
                    .max_pending_per_operator
                    .unwrap_or(defaults.max_pending_per_operator),
                max_requests_per_hour: self
                    .max_requests_per_hour
                    .unwrap_or(defaults.max_requests_per_hour),
                block_minutes: self.block_minutes.unwrap_or(defaults.block_minutes),
            },
            trusted_proxies: self.trusted_proxies.unwrap_or_default(),
            heartbeat: DEFAULT_HEARTBEAT,
            connections,
            audit_retention_days: self
                .audit_retention_days
                .unwrap_or(crate::DEFAULT_AUDIT_RETENTION_DAYS),
            console_idle_minutes: self
                .console_idle_minutes
                .unwrap_or(doorman_web::console::DEFAULT_IDLE_MINUTES),
            metrics: doorman_broker::metrics::Metrics::new(),
            metrics_listen: self.metrics_listen,
            recordings: crate::Recordings {
                enabled: self.record_sessions.unwrap_or(true),
                keep_days: self
                    .recordings_keep_days
                    .unwrap_or(crate::DEFAULT_RECORDINGS_KEEP_DAYS),
                max_bytes: self
                    .recording_max_bytes
                    .map_or(crate::DEFAULT_RECORDING_MAX_BYTES, |size| size.0),
                max_total_bytes: self
                    .recordings_max_total_bytes
                    .map_or(crate::DEFAULT_RECORDINGS_MAX_TOTAL_BYTES, |size| size.0),
            },
            insecure_public_url: self.insecure_public_url.unwrap_or(false),
            clock: doorman_runtime::clock::Clock::system(),
        })
    }
}

impl ServerSettings {
    fn connection_limits(&self) -> ConnectionLimits {
        let defaults = ConnectionLimits::default();
        let or = |value: Option<u32>, default: usize| {
            value.map_or(default, |v| usize::try_from(v).unwrap_or(usize::MAX))
        };
        ConnectionLimits {
            max_connections: or(self.max_connections, defaults.max_connections),
            max_per_address: or(self.max_connections_per_address, defaults.max_per_address),
            ..defaults
        }
    }

    /// The ACME settings, checked, if `--acme-domain` is given.
    fn acme(&self) -> Result<Option<AcmeSettings>, ConfigError> {
        let domains = self.acme_domains.clone().unwrap_or_default();
        if domains.is_empty() {
            let others = self.acme_email.is_some()
                || self.acme_directory.is_some()
                || self.acme_ca.is_some()
                || self.acme_renew_days.is_some();
            return if others {
                Err(ConfigError::AcmeWithoutDomain)
            } else {
                Ok(None)
            };
        }
        if let Some(domain) = domains
            .iter()
            .find(|d| !doorman_certificates::private_ca::is_dns_name(d))
        {
            return Err(ConfigError::AcmeDomain(domain.clone()));
        }
        let directory = self
            .acme_directory
            .clone()
            .unwrap_or_else(|| doorman_certificates::acme::LETS_ENCRYPT.to_string());
        if !directory.starts_with("https://") {
            return Err(ConfigError::AcmeDirectory(directory));
        }
        Ok(Some(AcmeSettings {
            domains,
            email: self.acme_email.clone(),
            directory,
            ca: self.acme_ca.clone(),
            renew_days: self
                .acme_renew_days
                .unwrap_or(doorman_certificates::acme::DEFAULT_RENEW_DAYS),
        }))
    }
}

/// Why a replica stopped.
#[derive(Debug, thiserror::Error)]
pub enum ReplicaError {
    #[error(transparent)]
    Server(#[from] ServerError),
    #[error("cannot listen on {address}: {source}")]
    Listen {
        address: SocketAddr,
        source: std::io::Error,
    },
    #[error("lost the database lock ({0}); stopped so that a standby can take over")]
    LostLock(String),
}

/// Serves on `socket` (bound, not yet listening) until `shutdown`. With a
/// database that several replicas share, waits as a standby until this one
/// holds the database's lock, listening only then, and stops at once if it
/// loses the lock: a standby may already have taken over.
pub async fn run_replica(
    prepared: Prepared,
    socket: tokio::net::TcpSocket,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ReplicaError> {
    let address = socket.local_addr().map_err(|source| ReplicaError::Listen {
        address: SocketAddr::from(([0, 0, 0, 0], 0)),
        source,
    })?;
    // Scraped from the start, so that a standby reports that it waits.
    let metrics = prepared.metrics();
    let _metrics_served = match prepared.metrics_listen() {
        Some(address) => Some(serve_metrics(address, metrics.clone()).await?),
        None => None,
    };
    prepared.check_database().await?;
    let leadership = Leadership::acquire(&prepared.database_url(), || {
        metrics.set_leader(false);
        tracing::info!(
            "doorman server standby: another server is active on this database; taking over when it stops"
        );
    })
    .await
    .map_err(ServerError::from)?;
    let listener = socket
        .listen(1024)
        .map_err(|source| ReplicaError::Listen { address, source })?;
    let server = prepared.bind(listener).await?;
    let Some(mut leadership) = leadership else {
        server.run(shutdown).await?;
        return Ok(());
    };
    let (lost_tx, lost_rx) = tokio::sync::oneshot::channel();
    let shutdown = async move {
        tokio::select! {
            () = shutdown => {}
            reason = leadership.lost() => {
                let _ = lost_tx.send(reason);
            }
        }
    };
    server.run(shutdown).await?;
    match lost_rx.await {
        Ok(reason) => Err(ReplicaError::LostLock(reason.to_string())),
        Err(_) => Ok(()),
    }
}

/// Serves `/metrics` alone on `address` until the returned guard is dropped.
async fn serve_metrics(
    address: SocketAddr,
    metrics: doorman_broker::metrics::Metrics,
) -> Result<tokio_util::task::AbortOnDropHandle<()>, ReplicaError> {
    let listener = tokio::net::TcpListener::bind(address)
        .await
        .map_err(|source| ReplicaError::Listen { address, source })?;
    let address = listener
        .local_addr()
        .map_err(|source| ReplicaError::Listen { address, source })?;
    tracing::info!(%address, "serving /metrics");
    let router = doorman_broker::metrics::router(metrics);
    Ok(tokio_util::task::AbortOnDropHandle::new(tokio::spawn(
        async move {
            if let Err(error) = axum::serve(listener, router).await {
                tracing::error!(%error, "the metrics listener stopped");
            }
        },
    )))
}

/// A socket bound to `address` but not listening yet, as `TcpListener::bind`
/// would bind it (a restarted server can bind at once).
pub fn bind_socket(address: SocketAddr) -> std::io::Result<tokio::net::TcpSocket> {
    let socket = if address.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(address)?;
    Ok(socket)
}

#[cfg(test)]
mod tests {
    use super::ServerSettings;

    #[test]
    fn the_shipped_example_settings_file_is_valid() {
        let file =
            ServerSettings::parse(include_str!("../../../contrib/systemd/server.toml")).unwrap();
        assert_eq!(file.data_dir.unwrap().to_str(), Some("/var/lib/doorman"));
        assert!(file.smtp_url.unwrap().starts_with("smtps://"));
    }

    #[test]
    fn limits_in_the_settings_file_are_checked_like_the_options() {
        let file = ServerSettings::parse(
            "max_pending_per_operator = 5\nmax_requests_per_hour = 100\nblock_minutes = 60\n\
             trusted_proxies = [\"10.0.0.0/8\", \"127.0.0.1\"]\n",
        )
        .unwrap();
        assert_eq!(file.max_pending_per_operator, Some(5));
        assert_eq!(file.max_requests_per_hour, Some(100));
        assert_eq!(file.block_minutes, Some(60));
        assert_eq!(file.trusted_proxies.unwrap().len(), 2);
        for (text, says) in [
            (
                "max_pending_per_operator = 0",
                "max_pending_per_operator = 0: must be 1 to 1000",
            ),
            (
                "max_requests_per_hour = 100001",
                "max_requests_per_hour = 100001: must be 1 to 100000",
            ),
            (
                "block_minutes = 0",
                "block_minutes = 0: must be 1 to 525600",
            ),
        ] {
            assert_eq!(ServerSettings::parse(text).unwrap_err(), says);
        }
        assert!(ServerSettings::parse("block_minutes = -1").is_err());
    }

    #[test]
    fn the_command_line_wins_over_the_file() {
        let file = ServerSettings::parse("mail_from = \"a@x.example\"\nblock_minutes = 5").unwrap();
        let line = ServerSettings {
            block_minutes: Some(9),
            ..ServerSettings::default()
        };
        let config = line
            .over(file)
            .into_config("127.0.0.1:1".parse().unwrap())
            .unwrap();
        assert_eq!(config.mail_from, "a@x.example");
        assert_eq!(config.limits.block_minutes, 9);
        assert_eq!(config.public_url, "http://127.0.0.1:1");
    }
}
