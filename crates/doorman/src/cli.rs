//! The command line as the user types it (step one of two: `main` turns these
//! into validated configurations for the library crates).

use crate::logging::LogFormat;
use clap::{Args, Parser, Subcommand};
use doorman_server::config::{
    BLOCK_MINUTES, ByteSize, CONSOLE_IDLE_MINUTES, MAX_PENDING_PER_OPERATOR, MAX_REQUESTS_PER_HOUR,
    RECORDINGS_KEEP_DAYS, ServerSettings,
};
use std::net::SocketAddr;
use std::path::PathBuf;

mod admin;
pub use admin::*;

#[derive(Debug, Parser)]
#[command(
    name = "doorman",
    version,
    about = "Self-hosted remote access that an emailed link must approve",
    long_about = "Doorman lets an operator into an unattended computer only after one of the \
computer's recipients approves the connection from an emailed link.\n\n\
Start with `doorman demo` to see the whole story on this machine."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the broker: agents, operators, emails, approval pages, relay, audit.
    Server(Box<ServerArgs>),
    /// Add operators and agents, read the audit trail.
    #[command(after_help = ADMIN_FINDS)]
    Admin(AdminArgs),
    /// Run the agent on the remote computer.
    Agent(AgentArgs),
    /// Show or change the agent's settings file.
    Settings(SettingsArgs),
    /// Answer, at the remote computer, the requests waiting for local consent.
    Consent(ConsentArgs),
    /// Connect to a computer (waits for email authorization when it requires it).
    #[command(after_help = CONNECT_EXIT_STATUSES)]
    Connect(ConnectArgs),
    /// Copy files to or from a computer's shared folders, approved like any
    /// connection (`doorman cp report.pdf office-pc:~/Shared/`).
    #[command(after_help = CP_EXIT_STATUSES, override_usage = "doorman cp [OPTIONS] SOURCE... DEST")]
    Cp(CpArgs),
    /// Run a server and an agent on loopback and print how to connect.
    Demo(DemoArgs),
    /// Print a shell completion script (e.g. `doorman completions bash >
    /// /etc/bash_completion.d/doorman`).
    Completions { shell: clap_complete::Shell },
    /// Print the manual page of doorman or of one of its commands (roff;
    /// `doorman man connect | man -l -`).
    Man {
        /// A command, or `admin operator` for one below it
        command: Vec<String>,
    },
}

pub const CONNECT_EXIT_STATUSES: &str = "\
Exit status:
  0-255  the remote command's or shell's exit status (128+N when killed by signal N)
  0      a forward session (-L) stopped with Ctrl-C
  2      invalid arguments or request (bad computer name, reason too long,
         no command and no terminal, a -L port that cannot be bound)
  130    cancelled (Ctrl-C) while waiting for authorization or during the session
  240    authorization denied
  241    authorization expired: nobody decided in time (the server said so)
  242    unknown computer, or not permitted (an operator without a grant for
         that computer and service sees the same), or the grant was revoked
         during the session
  243    computer offline, or it went offline while waiting, or it was removed
         from the server (waiting or in a session)
  244    bad operator token, or it was replaced or removed (waiting or in a session)
  245    refused by the computer: the service is not offered there, too few of
         its recipients may approve your requests, or its settings file is
         broken (the message says which)
  246    the session failed, was cut off, or reached the computer's time limit
         (the server's message says which)
  247    refused by a limit: too many pending requests, the computer asked too
         often, or a recipient reported the last request (\"I did not expect this\")
  248    no authorization email could be delivered
  255    cannot reach or talk to the server, or it did not confirm the
         request's expiry within 10 s of its deadline";

pub const CP_EXIT_STATUSES: &str = "\
Exit status:
  0      every file was copied
  250    partly copied: some files were, others not (each one's reason is said)
  2-255  as `doorman connect --help` lists (2 also for arguments that name
         both sides, or neither, as COMPUTER:PATH)";

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
#[command(args_conflicts_with_subcommands = true)]
pub struct AgentArgs {
    /// The agent's settings file [default: $XDG_CONFIG_HOME/doorman/agent.toml,
    /// else ~/.config/doorman/agent.toml]
    #[arg(long, value_name = "FILE", env = "DOORMAN_AGENT_CONFIG")]
    pub config: Option<PathBuf>,
    /// How log lines are written: text, or one JSON object a line
    #[arg(long, value_enum, value_name = "FORMAT", default_value = "text")]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Option<AgentCommand>,
}

#[derive(Debug, Subcommand)]
pub enum AgentCommand {
    /// Join this computer to a server with the line `doorman admin agent
    /// invite` printed: redeem the invitation (once) for this computer's
    /// key over TLS verified as the URL says, and write the settings file
    /// (0600) and, when the URL pins the server's CA, the CA beside it. On
    /// a terminal it asks for the recipients and the timeout first.
    Join(JoinArgs),
}

#[derive(Debug, Args)]
pub struct JoinArgs {
    /// The invitation: https://SERVER/join/CODE, with #ca=sha256:HEX when
    /// the server's certificate is from a private CA; - reads it from
    /// standard input, where other users of the computer cannot see it as
    /// they can a command's arguments
    #[arg(value_name = "URL")]
    pub url: String,
    /// The settings file to write; it must not exist yet [default:
    /// $XDG_CONFIG_HOME/doorman/agent.toml, else ~/.config/doorman/agent.toml,
    /// the file every command and the packaged user service read]
    #[arg(long, value_name = "FILE", env = "DOORMAN_AGENT_CONFIG")]
    pub config: Option<PathBuf>,
    /// Then enable and start the agent's user service (systemctl --user
    /// enable --now doorman-agent), which reads the default settings file
    #[arg(long)]
    pub start: bool,
}

#[derive(Debug, Args)]
pub struct SettingsArgs {
    /// The agent's settings file [default: $XDG_CONFIG_HOME/doorman/agent.toml,
    /// else ~/.config/doorman/agent.toml]
    #[arg(long, value_name = "FILE", env = "DOORMAN_AGENT_CONFIG")]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: SettingsCommand,
}

#[derive(Debug, Subcommand)]
pub enum SettingsCommand {
    /// Print the effective settings (the key masked).
    Show,
    /// Change them in a browser window: a page on this computer only, at a
    /// one-time address that works for 2 minutes (opened in the desktop's
    /// browser through a private file, never on a command line).
    Open {
        /// Print the address (for this terminal only) instead of opening a browser
        #[arg(long)]
        no_browser: bool,
    },
    /// Change settings; the running agent uses them for the next connection.
    Set {
        /// Require email authorization for incoming connections (true/false)
        #[arg(long, value_name = "BOOL", action = clap::ArgAction::Set)]
        require_email_authorization: Option<bool>,
        /// Seconds a request waits for a decision (5-3600)
        #[arg(long, value_name = "SECONDS")]
        email_timeout: Option<u32>,
        /// Who may approve, comma-separated
        #[arg(long, value_name = "ADDR[,ADDR...]")]
        recipients: Option<String>,
        /// Distinct recipients that must allow; one Deny refuses (1 to the
        /// number of recipients)
        #[arg(long, value_name = "N")]
        required_approvals: Option<u32>,
        /// Refuse connections that give no --reason (true/false)
        #[arg(long, value_name = "BOOL", action = clap::ArgAction::Set)]
        require_reason: Option<bool>,
        /// Seconds an Allow also covers the same operator's further sessions
        /// of the same service (0: never)
        #[arg(long, value_name = "SECONDS")]
        approval_valid_for: Option<u32>,
        /// Seconds a session may last (0: no limit)
        #[arg(long, value_name = "SECONDS")]
        max_session_seconds: Option<u32>,
        /// Whether a person at the computer answers too: off, alternative
        /// (a local answer settles like a recipient's) or required (a
        /// session needs the local Allow as well)
        #[arg(long, value_name = "MODE")]
        local_consent: Option<doorman_core::LocalConsent>,
        /// Offer remote commands and interactive shells (true/false)
        #[arg(long, value_name = "BOOL", action = clap::ArgAction::Set)]
        shell: Option<bool>,
        /// The host:port targets operators may forward to, comma-separated
        /// ("" for none)
        #[arg(long, value_name = "HOST:PORT[,...]")]
        forward: Option<String>,
        /// The VNC server the web console's Desktop shows ("" for none)
        #[arg(long, value_name = "HOST:PORT")]
        desktop: Option<String>,
        /// The folders operators may copy files to and from (`doorman cp`),
        /// absolute or under ~/, comma-separated ("" for none)
        #[arg(long, value_name = "DIR[,...]")]
        files: Option<String>,
        /// Count only approvals made with a passkey pinned here, which this
        /// computer verifies itself (true/false)
        #[arg(long, value_name = "BOOL", action = clap::ArgAction::Set)]
        require_passkey: Option<bool>,
    },
    /// The recipients' passkeys pinned on this computer.
    #[command(subcommand)]
    Approvers(ApproversCommand),
}

#[derive(Debug, Subcommand)]
pub enum ApproversCommand {
    /// Email ADDRESS an enrolment link, show the code its page shows too,
    /// wait for the passkey, show its fingerprint and pin it once you
    /// confirm. Enrolment is the moment of trust: check the code and the
    /// fingerprint with the recipient.
    Enroll {
        /// A recipient of this computer
        address: String,
    },
    /// The pinned passkeys: recipient, credential id, key fingerprint.
    List,
    /// Unpin the passkeys of a recipient, or one by its credential id.
    Remove {
        /// A recipient's address or a credential id
        which: String,
    },
}

#[derive(Debug, Args)]
pub struct ConsentArgs {
    /// The agent's settings file (its consent socket is beside it, or at
    /// `consent_socket`) [default: $XDG_CONFIG_HOME/doorman/agent.toml,
    /// else ~/.config/doorman/agent.toml]
    #[arg(long, value_name = "FILE", env = "DOORMAN_AGENT_CONFIG")]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: ConsentCommand,
}

#[derive(Debug, Subcommand)]
pub enum ConsentCommand {
    /// The requests waiting for an answer at this computer.
    List {
        /// One JSON object per line.
        #[arg(long)]
        json: bool,
    },
    /// Allow request ID (or a unique prefix of at least 6 characters).
    Allow { id: String },
    /// Deny request ID (or a unique prefix of at least 6 characters).
    Deny { id: String },
    /// Whether the running agent is online, and how many requests wait here.
    Status,
}

#[derive(Debug, Args)]
pub struct ConnectArgs {
    /// The computer's name
    pub computer: String,
    #[command(flatten)]
    pub operator: OperatorOptions,
    /// Forward local connections to HOST:PORT as seen from the computer, like
    /// `ssh -L`; BIND defaults to loopback. Repeatable. Runs until Ctrl-C.
    #[arg(short = 'L', value_name = "[BIND:]PORT:HOST:PORT")]
    pub forward: Vec<doorman_client::ForwardSpec>,
    /// The command to run on the computer (executed directly, not by a shell;
    /// use `sh -c '…'` for shell syntax). Without a command or -L, and on a
    /// terminal: an interactive login shell.
    #[arg(last = true, value_name = "COMMAND")]
    pub command: Vec<String>,
}

#[derive(Debug, Args)]
pub struct CpArgs {
    /// Files to copy, then where to: one side is COMPUTER:PATH, as in scp
    /// (PATH inside the folders the computer shares); one direction per
    /// command
    #[arg(value_name = "PATH", num_args = 2.., required = true)]
    pub paths: Vec<std::ffi::OsString>,
    /// Copy directories with their contents
    #[arg(short = 'r')]
    pub recursive: bool,
    /// Keep mode bits and modification times
    #[arg(short = 'p')]
    pub keep: bool,
    /// Continue files a copy cut short (their start is kept beside them
    /// as .NAME.doorman.part) where their start matches, checked by
    /// SHA-256
    #[arg(long)]
    pub resume: bool,
    #[command(flatten)]
    pub operator: OperatorOptions,
}

/// What every command an operator runs takes: where the server is, who
/// the operator is, why, and how progress is shown.
#[derive(Debug, Args)]
pub struct OperatorOptions {
    // clap adds `[env: DOORMAN_SERVER=]` to the help itself.
    /// The server's URL
    #[arg(long, env = "DOORMAN_SERVER", value_name = "URL")]
    pub server: Option<String>,
    /// The operator token from `doorman admin operator add`
    #[arg(
        long,
        env = "DOORMAN_TOKEN",
        value_name = "TOKEN",
        hide_env_values = true
    )]
    pub token: Option<String>,
    /// Certificates to trust for an https:// server
    #[arg(long, value_name = "PEM")]
    pub ca: Option<PathBuf>,
    /// Why you connect; shown to the recipients
    #[arg(long, value_name = "TEXT", default_value = "")]
    pub reason: String,
    /// Report each state change as one JSON object per line on stderr
    #[arg(long)]
    pub json: bool,
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
