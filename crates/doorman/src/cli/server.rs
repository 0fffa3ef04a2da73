//! `doorman server` and `doorman demo`'s command lines.

use crate::logging::LogFormat;
use clap::Args;
use doorman_server::config::{
    BLOCK_MINUTES, ByteSize, CONSOLE_IDLE_MINUTES, MAX_PENDING_PER_OPERATOR, MAX_REQUESTS_PER_HOUR,
    RECORDINGS_KEEP_DAYS, ServerSettings,
};
use std::net::SocketAddr;
use std::path::PathBuf;

#[derive(Debug, Args)]
pub struct ServerArgs {
    /// TOML file with any of: listen, public_url, data_dir, database_url,
    /// smtp_url, smtp_ca, mail_from, tls_cert, tls_key, acme_domains (a list),
    /// acme_email, acme_directory, acme_ca, acme_renew_days, max_connections,
    /// max_connections_per_address, audit_retention_days, console_idle_minutes,
    /// trusted_proxies (a list),
    /// max_pending_per_operator, max_requests_per_hour, block_minutes,
    /// metrics_listen, record_sessions, recordings_keep_days,
    /// recording_max_bytes, recordings_max_total_bytes, insecure_public_url.
    /// Command-line options override it.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Address to listen on [default: 127.0.0.1:8080]
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<SocketAddr>,
    /// Base URL of the links in emails [default: http://LISTEN]
    #[arg(long, value_name = "URL")]
    pub public_url: Option<String>,
    /// Where the database, server key and outbox live [default: ./doorman-data]
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Database URL: sqlite://FILE, or postgres://… to let several replicas
    /// share one state (one serves, the others wait as standbys)
    /// [default: sqlite://DATA_DIR/doorman.db]
    #[arg(long, value_name = "URL")]
    pub database_url: Option<String>,
    /// SMTP server, e.g. smtp://127.0.0.1:2525 or smtps://user:pass@host; without it
    /// emails are written to DATA_DIR/outbox/ and listed at /outbox
    #[arg(long, value_name = "URL")]
    pub smtp_url: Option<String>,
    /// The CA (PEM) that signed the SMTP server's certificate, trusted
    /// instead of the built-in roots (smtps:// or ?tls=required)
    #[arg(long, value_name = "PEM")]
    pub smtp_ca: Option<PathBuf>,
    /// Sender address of the emails [default: doorman@localhost]
    #[arg(long, value_name = "ADDR")]
    pub mail_from: Option<String>,
    /// Requests one operator may have pending at once [default: 3]
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(MAX_PENDING_PER_OPERATOR))]
    pub max_pending_per_operator: Option<u32>,
    /// Requests one operator may make to one computer per hour [default: 30]
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(MAX_REQUESTS_PER_HOUR))]
    pub max_requests_per_hour: Option<u32>,
    /// Connections held at once: agents, operators, sessions, pages
    /// [default: 30000, lowered to fit the open-file limit]
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(8..))]
    pub max_connections: Option<u32>,
    /// Connections held at once from one address (an IPv6 /64) [default: a
    /// tenth of --max-connections]
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub max_connections_per_address: Option<u32>,
    /// Delete audit events older than this, once a day [default: 365]
    #[arg(long, value_name = "DAYS", value_parser = clap::value_parser!(u32).range(1..=36500))]
    pub audit_retention_days: Option<u32>,
    /// End a web console session unused this long [default: 30]
    #[arg(long, value_name = "MINUTES", value_parser = clap::value_parser!(u32).range(CONSOLE_IDLE_MINUTES))]
    pub console_idle_minutes: Option<u32>,
    /// How long "I did not expect this" blocks the operator from that computer [default: 20]
    #[arg(long, value_name = "MINUTES", value_parser = clap::value_parser!(u32).range(BLOCK_MINUTES))]
    pub block_minutes: Option<u32>,
    /// Serve everything over TLS with this certificate chain (PEM)
    #[arg(long, value_name = "PEM", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// TLS private key (PEM)
    #[arg(long, value_name = "PEM", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Obtain and renew the certificate for this domain over ACME (Let's
    /// Encrypt unless --acme-directory says otherwise), answering the
    /// CA's check on this same port (TLS-ALPN-01: the domain's port 443
    /// must reach it); repeatable
    #[arg(long = "acme-domain", value_name = "DOMAIN", conflicts_with_all = ["tls_cert", "tls_key"])]
    pub acme_domains: Vec<String>,
    /// Contact address for the ACME account (expiry notices)
    #[arg(long, value_name = "ADDR")]
    pub acme_email: Option<String>,
    /// The ACME directory URL [default: Let's Encrypt]
    #[arg(long, value_name = "URL")]
    pub acme_directory: Option<String>,
    /// The CA (PEM) of the ACME directory's own HTTPS, instead of the system's roots
    #[arg(long, value_name = "PEM")]
    pub acme_ca: Option<PathBuf>,
    /// Renew when fewer days than this remain [default: 30]
    #[arg(long, value_name = "DAYS", value_parser = clap::value_parser!(u32).range(1..=3650))]
    pub acme_renew_days: Option<u32>,
    /// A reverse proxy (address or ADDR/PREFIX network) whose X-Forwarded-For
    /// names the client shown to recipients and kept in the audit trail;
    /// repeatable
    #[arg(long = "trusted-proxy", value_name = "ADDR[/PREFIX]")]
    pub trusted_proxies: Vec<doorman_http::client_addr::TrustedProxy>,
    /// Also serve /metrics (Prometheus) on this address, to anyone who
    /// reaches it; the main port serves it to clients on this host only
    /// (a trusted proxy's forwarded clients are not on this host)
    #[arg(long, value_name = "ADDR")]
    pub metrics_listen: Option<SocketAddr>,
    /// Record what shell sessions display (not what is typed) [default: true]
    #[arg(long, value_name = "BOOL", value_parser = clap::value_parser!(bool))]
    pub record_sessions: Option<bool>,
    /// Delete session recordings older than this, once a day [default: 90]
    #[arg(long, value_name = "DAYS", value_parser = clap::value_parser!(u32).range(RECORDINGS_KEEP_DAYS))]
    pub recordings_keep_days: Option<u32>,
    /// The most one session's recording holds (asciicast text); past it the
    /// recording and the audit trail say "truncated" [default: 64MiB]
    #[arg(long, value_name = "SIZE")]
    pub recording_max_bytes: Option<ByteSize>,
    /// The most all recordings take together (stored); past it the oldest
    /// are deleted first [default: 10GiB]
    #[arg(long, value_name = "SIZE")]
    pub recordings_max_total_bytes: Option<ByteSize>,
    /// Accept an http:// --public-url naming another host (a lab only:
    /// operator tokens and agent keys then cross the network in clear)
    #[arg(long)]
    pub insecure_public_url: bool,
    /// How log lines are written: text, or one JSON object a line
    #[arg(long, value_enum, value_name = "FORMAT", default_value = "text")]
    pub log_format: LogFormat,
}

impl ServerArgs {
    /// The settings given on the command line (they win over the file's).
    pub fn settings(&self) -> ServerSettings {
        ServerSettings {
            listen: self.listen,
            public_url: self.public_url.clone(),
            data_dir: self.data_dir.clone(),
            database_url: self.database_url.clone(),
            smtp_url: self.smtp_url.clone(),
            smtp_ca: self.smtp_ca.clone(),
            mail_from: self.mail_from.clone(),
            tls_cert: self.tls_cert.clone(),
            tls_key: self.tls_key.clone(),
            acme_domains: (!self.acme_domains.is_empty()).then(|| self.acme_domains.clone()),
            acme_email: self.acme_email.clone(),
            acme_directory: self.acme_directory.clone(),
            acme_ca: self.acme_ca.clone(),
            acme_renew_days: self.acme_renew_days,
            max_connections: self.max_connections,
            max_connections_per_address: self.max_connections_per_address,
            audit_retention_days: self.audit_retention_days,
            console_idle_minutes: self.console_idle_minutes,
            trusted_proxies: (!self.trusted_proxies.is_empty())
                .then(|| self.trusted_proxies.clone()),
            max_pending_per_operator: self.max_pending_per_operator,
            max_requests_per_hour: self.max_requests_per_hour,
            block_minutes: self.block_minutes,
            metrics_listen: self.metrics_listen,
            record_sessions: self.record_sessions,
            recordings_keep_days: self.recordings_keep_days,
            recording_max_bytes: self.recording_max_bytes,
            recordings_max_total_bytes: self.recordings_max_total_bytes,
            insecure_public_url: self.insecure_public_url.then_some(true),
        }
    }
}

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Address to listen on [default: 127.0.0.1:8080, or any free port]
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<SocketAddr>,
    /// How log lines are written: text, or one JSON object a line
    #[arg(long, value_enum, value_name = "FORMAT", default_value = "text")]
    pub log_format: LogFormat,
}
