//! Doorman's server: the map that wires the store, the mail, the
//! certificates, the one port, the broker and the web (each a crate of its
//! own) into one server: a [`ServerConfig`] checked into a [`Prepared`]
//! server, bound into a [`Server`] and run until shutdown.
//!
//! [`run`] takes a bound listener and a shutdown future, so tests bind port 0
//! and stop it for real.
//!
//! The map:
//!
//! - [`config`]: the configuration as an administrator writes it (the
//!   settings file and the command line over it), and serving as the
//!   active server or waiting as a standby ([`config::run_replica`]);
//! - [`leadership`]: which of several servers sharing one PostgreSQL
//!   database serves;
//! - [`admin`]: what `doorman admin` does, on the database the server uses;
//! - `retention`: what the server deletes as it ages, at start and daily;
//! - `data_dir`: the data directory's lock, and whether a file given is one
//!   of its own;
//! - `public_url`: the public URL's form, and that it sends no secret in
//!   clear.
#![forbid(unsafe_code)]

use doorman_certificates::acme;
pub mod admin;

pub mod config;
mod data_dir;
pub mod leadership;
use data_dir::{lock_data_dir, same_file};
mod public_url;
use public_url::check_clear_text;
pub use public_url::normalize_public_url;

mod retention;
pub use doorman_recordings::{
    DEFAULT_RECORDING_MAX_BYTES, DEFAULT_RECORDINGS_KEEP_DAYS, DEFAULT_RECORDINGS_MAX_TOTAL_BYTES,
    Recordings,
};

use doorman_broker::{Broker, agents, metrics};
use doorman_http::{client_addr, listener, origin, serve};
use doorman_runtime::{clock, secrets};
use doorman_store::{self as store, Store, StoreError, private};
use doorman_web::pages;
use lettre::message::Mailbox;
use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use tokio::net::TcpListener;

/// What `doorman server` is started with.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// Base URL of the links in emails, e.g. `https://doorman.example.com`.
    pub public_url: String,
    pub data_dir: PathBuf,
    /// Defaults to `sqlite://DATA_DIR/doorman.db`.
    pub database_url: Option<String>,
    /// `smtp://host:port`, `smtps://…`; none: emails go to `DATA_DIR/outbox/`.
    pub smtp_url: Option<String>,
    /// The CA that signed the SMTP relay's certificate, instead of the
    /// built-in roots (a relay inside the organisation).
    pub smtp_ca: Option<PathBuf>,
    pub mail_from: String,
    /// Certificate chain and key (PEM) to serve everything over TLS.
    pub tls: Option<TlsFiles>,
    /// Or a certificate obtained and renewed over ACME.
    pub acme: Option<acme::AcmeSettings>,
    pub limits: Limits,
    /// Reverse proxies whose `X-Forwarded-For` names the client.
    pub trusted_proxies: Vec<client_addr::TrustedProxy>,
    /// How often agents and waiting operators are pinged
    /// ([`DEFAULT_HEARTBEAT`]).
    pub heartbeat: std::time::Duration,
    /// Simultaneous connections and the deadline for a request head.
    pub connections: serve::ConnectionLimits,
    /// Audit events older than this are deleted, once a day.
    pub audit_retention_days: u32,
    /// A web console session unused this long ends
    /// ([`doorman_web::console::DEFAULT_IDLE_MINUTES`]).
    pub console_idle_minutes: u32,
    /// Where the server counts what it does (`GET /metrics`).
    pub metrics: metrics::Metrics,
    /// A second port serving `/metrics` alone, to anyone who reaches it.
    pub metrics_listen: Option<std::net::SocketAddr>,
    pub recordings: Recordings,
    /// The server's one clock ([`clock::Clock::system`]): anchored to the
    /// wall clock when it was made, it keeps every deadline. Tests give
    /// one they move forward, which a restarted server keeps.
    pub clock: clock::Clock,
    /// Accept an `http://` public URL naming another host (a lab): tokens
    /// then cross the network in clear.
    pub insecure_public_url: bool,
}

/// How long the audit trail keeps events unless told otherwise.
pub const DEFAULT_AUDIT_RETENTION_DAYS: u32 = 365;

/// Often enough to keep a proxy's idle timeout (nginx: 60 s) from closing
/// a quiet connection; a peer silent for three of these is gone.
pub const DEFAULT_HEARTBEAT: std::time::Duration = std::time::Duration::from_secs(20);

pub use doorman_broker::Limits;
pub use doorman_certificates::TlsFiles;

/// Why the server could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServerError {
    #[error("invalid --public-url {0:?}: must be an http:// or https:// URL without a path")]
    PublicUrl(String),
    #[error(
        "--public-url {0} is plain HTTP to another host: operator tokens and agent keys would cross the network in clear; serve TLS (--tls-cert/--tls-key, --acme-domain, or `doorman admin tls init`), give the https:// URL of a TLS proxy in front, or --insecure-public-url for a lab"
    )]
    ClearTextPublicUrl(String),
    #[error(
        "--public-url {0} is http://, but this server speaks only TLS: emailed links would not open; give its https:// URL"
    )]
    PlainUrlForTls(String),
    #[error("invalid --mail-from {0:?}: not an email address")]
    MailFrom(String),
    #[error(transparent)]
    Smtp(#[from] doorman_mail::SmtpSetupError),
    #[error(
        "another doorman server is running on this data directory ({0} is locked): stop it first, or give this one a --data-dir of its own"
    )]
    AlreadyRunning(PathBuf),
    #[error(
        "--tls-key {0} is DATA_DIR/server.key, the file the server keeps its link key in: keep the TLS key in a file of its own (e.g. tls-key.pem)"
    )]
    TlsKeyIsServerKey(PathBuf),
    #[error("cannot use data directory {path}: {source}")]
    DataDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Tls(#[from] doorman_wire::tls::TlsError),
    #[error(transparent)]
    Acme(#[from] acme::AcmeError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("server I/O error: {0}")]
    Io(#[from] std::io::Error),
}

/// The database URL for a data directory.
pub fn default_database_url(data_dir: &std::path::Path) -> String {
    format!("sqlite://{}", data_dir.join("doorman.db").display())
}

pub use doorman_web::{AppState, app};

/// Runs the server on `listener` until `shutdown` completes, then waits for
/// every connection and worker to finish.
pub async fn run(
    config: ServerConfig,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    Server::bind(config, listener).await?.run(shutdown).await
}

/// A server that is set up (database open, migrations applied) but not yet
/// serving; tests use it to reach the [`Broker`].
pub struct Server {
    broker: Arc<Broker>,
    listener: TcpListener,
    delivery: doorman_mail::Delivery,
    mail_settings: doorman_mail::MailSettings,
    tls: Option<Arc<rustls::ServerConfig>>,
    acme: Option<Arc<acme::Acme>>,
    trusted_proxies: client_addr::TrustedProxies,
    connections: serve::ConnectionLimits,
    console_idle: std::time::Duration,
    /// The data directory's lock, released when the server has stopped.
    lock: Option<std::fs::File>,
}

/// A configuration that has been checked (URLs, addresses, TLS files, data
/// directory, server key) but holds no database or port yet, so that a
/// standby replica reports bad settings at once rather than at takeover.
pub struct Prepared {
    config: ServerConfig,
    public_url: String,
    tls: Option<Arc<rustls::ServerConfig>>,
    acme: Option<Arc<acme::Acme>>,
    from: Mailbox,
    delivery: doorman_mail::Delivery,
    key: secrets::ServerKey,
    /// The SHA-256 of the private CA it presents, for invitations' URLs.
    ca_sha256: Option<String>,
    /// Held while this server runs on a SQLite data directory.
    lock: Option<std::fs::File>,
}

impl Prepared {
    /// Checks `config` and loads (or creates) the server key.
    pub fn new(config: ServerConfig) -> Result<Self, ServerError> {
        let public_url = normalize_public_url(&config.public_url)?;
        let server_key = config.data_dir.join("server.key");
        if let Some(files) = &config.tls
            && same_file(&files.key, &server_key)
        {
            return Err(ServerError::TlsKeyIsServerKey(files.key.clone()));
        }
        let acme = match &config.acme {
            Some(settings) => Some(Arc::new(acme::Acme::new(settings.clone())?)),
            None => None,
        };
        let tls = match (&config.tls, &acme) {
            (Some(files), _) => Some(doorman_certificates::server_config_with_ca(
                &files.cert,
                files.ca.as_deref(),
                &files.key,
            )?),
            (None, Some(acme)) => Some(acme.tls_config()),
            (None, None) => None,
        };
        check_clear_text(&public_url, tls.is_some(), config.insecure_public_url)?;
        let ca_sha256 = pinned_ca(&config)?;
        let from: Mailbox = config
            .mail_from
            .parse()
            .map_err(|_| ServerError::MailFrom(config.mail_from.clone()))?;
        let delivery = match &config.smtp_url {
            Some(url) => doorman_mail::Delivery::Smtp(Arc::new(doorman_mail::SmtpRelay::new(
                url,
                config.smtp_ca.as_deref(),
            )?)),
            None => doorman_mail::Delivery::Files(config.data_dir.join("outbox")),
        };
        private::create_dir(&config.data_dir).map_err(|source| ServerError::DataDir {
            path: config.data_dir.clone(),
            source,
        })?;
        let key = secrets::ServerKey::load_or_create(&server_key).map_err(|source| {
            ServerError::DataDir {
                path: config.data_dir.clone(),
                source,
            }
        })?;
        let lock = match store::Backend::of(&database_url(&config))? {
            store::Backend::Sqlite => Some(lock_data_dir(&config.data_dir)?),
            store::Backend::Postgres => None,
        };
        Ok(Self {
            config,
            public_url,
            tls,
            acme,
            from,
            delivery,
            key,
            ca_sha256,
            lock,
        })
    }

    /// Opens the database (applying migrations) and checks that its links
    /// were made with this server key: a standby replica with another key
    /// is refused when it starts, not when it takes over.
    pub async fn check_database(&self) -> Result<(), ServerError> {
        let store = Store::open(&self.database_url()).await?;
        store.claim_key(&self.key.fingerprint()).await?;
        Ok(())
    }

    /// The database this server keeps its state in.
    pub fn database_url(&self) -> String {
        database_url(&self.config)
    }

    pub fn metrics(&self) -> metrics::Metrics {
        self.config.metrics.clone()
    }

    pub fn metrics_listen(&self) -> Option<std::net::SocketAddr> {
        self.config.metrics_listen
    }

    /// Opens the database (applying migrations), checks that its links were
    /// made with this server key, and restores the expiry timers of pending
    /// requests.
    pub async fn bind(self, listener: TcpListener) -> Result<Server, ServerError> {
        let Prepared {
            config,
            public_url,
            tls,
            acme,
            from,
            delivery,
            key,
            ca_sha256,
            lock,
        } = self;
        let store = Store::open(&database_url(&config)).await?;
        store.claim_key(&key.fingerprint()).await?;
        store
            .record_join_details(&public_url, ca_sha256.as_deref())
            .await?;
        let open_files = serve::raise_open_file_limit();
        let connections = config.connections.within(open_files);
        tracing::info!(
            open_files,
            max_connections = connections.max_connections,
            max_per_address = connections.max_per_address,
            "connection limits"
        );
        for notice in store.take_upgrade_notices().await? {
            tracing::warn!("{notice}");
        }

        let broker = Arc::new(Broker::new(
            config.clock.clone(),
            store,
            key,
            config.limits,
            config.heartbeat,
            config.metrics.clone(),
            config.recordings,
        ));
        broker.metrics().set_leader(true);
        broker.lifecycle().spawn(retention::prune(
            Arc::clone(&broker),
            config.audit_retention_days,
            config.recordings.keep_days,
        ));
        broker
            .lifecycle()
            .spawn(agents::watch_keys(Arc::clone(&broker)));
        for request in broker.store().pending_requests().await? {
            broker.schedule_expiry(request.id, request.expires_at);
        }
        let message_id_host = public_url
            .split("://")
            .nth(1)
            .and_then(|rest| rest.split(':').next())
            .unwrap_or("doorman")
            .to_string();
        Ok(Server {
            broker,
            listener,
            delivery,
            mail_settings: doorman_mail::MailSettings {
                from,
                public_url,
                message_id_host,
            },
            tls,
            acme,
            trusted_proxies: client_addr::TrustedProxies::new(config.trusted_proxies),
            connections,
            console_idle: std::time::Duration::from_secs(
                u64::from(config.console_idle_minutes) * 60,
            ),
            lock,
        })
    }
}

/// The SHA-256 (hex) of the private CA the server presents (the first
/// certificate of its file): what invitations' URLs pin. `None` without
/// one (ACME, or a certificate given with --tls-cert).
fn pinned_ca(config: &ServerConfig) -> Result<Option<String>, ServerError> {
    let Some(ca) = config.tls.as_ref().and_then(|files| files.ca.as_deref()) else {
        return Ok(None);
    };
    let certificates = doorman_wire::tls::load_certificates(ca)?;
    Ok(certificates.first().map(|certificate| {
        let digest = ring::digest::digest(&ring::digest::SHA256, certificate.as_ref());
        doorman_core::join::hex(digest.as_ref())
    }))
}

fn database_url(config: &ServerConfig) -> String {
    config
        .database_url
        .clone()
        .unwrap_or_else(|| default_database_url(&config.data_dir))
}

impl Server {
    /// [`Prepared::new`] and [`Prepared::bind`] in one step.
    pub async fn bind(config: ServerConfig, listener: TcpListener) -> Result<Self, ServerError> {
        Prepared::new(config)?.bind(listener).await
    }

    pub fn broker(&self) -> Arc<Broker> {
        Arc::clone(&self.broker)
    }

    /// Serves until `shutdown` completes; returns when every task is done.
    pub async fn run(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), ServerError> {
        let Server {
            broker,
            listener,
            delivery,
            mail_settings,
            tls,
            acme,
            trusted_proxies,
            connections,
            console_idle,
            lock,
        } = self;
        let public_url = mail_settings.public_url.clone();
        let mail_from = mail_settings.from.clone();
        broker.lifecycle().spawn(doorman_mail::outbox::run(
            Arc::clone(&broker),
            delivery.clone(),
            mail_settings,
        ));
        let state = AppState::new(
            Arc::clone(&broker),
            origin::PublicOrigin::new(&public_url),
            trusted_proxies,
            delivery,
            mail_from,
            console_idle,
        );
        let address = listener.local_addr()?;
        let with_tls = tls.is_some();
        tracing::info!(%address, %public_url, tls = with_tls, "doorman server listening");
        let mut router = app(state);
        if with_tls {
            router = router.layer(axum::middleware::from_fn(pages::strict_transport_security));
        }
        let listener = listener::DoormanListener::new(listener, tls);
        let served = serve::serve(
            listener,
            router,
            connections,
            broker.lifecycle().clone(),
            broker.metrics().connection_refusals(),
        );
        let signal = async {
            tokio::select! {
                () = shutdown => broker.lifecycle().stop(),
                () = broker.lifecycle().stopping() => {}
            }
        };
        // A first certificate the CA refuses stops the server: it has
        // nothing to serve with.
        let certificates = async {
            let Some(acme) = acme else { return Ok(()) };
            let (store, key) = (broker.store().clone(), broker.key().clone());
            let clock = broker.clock().clone();
            let result = acme
                .maintain(store, key, clock, broker.lifecycle().stopping())
                .await;
            if result.is_err() {
                broker.lifecycle().stop();
            }
            result
        };
        let ((), (), certificates) = tokio::join!(served, signal, certificates);
        broker.lifecycle().wait_for_tasks().await;
        certificates?;
        tracing::info!("doorman server stopped");
        drop(lock);
        Ok(())
    }
}
