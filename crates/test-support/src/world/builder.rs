//! How a [`World`]'s computer and server are set up: its recipients,
//! services, policies and limits, and the agent settings file they make.

use super::{COMPUTER, World};
use crate::smtp::SmtpTls;

/// How the world's computer is set up.
#[derive(Clone, Debug)]
pub struct WorldBuilder {
    pub require_email_authorization: bool,
    pub recipients: Vec<String>,
    pub timeout_secs: u32,
    pub shell: bool,
    pub forward: Vec<String>,
    /// The VNC server of `[services] desktop`.
    pub desktop: Option<String>,
    /// The folders of `[services] files`.
    pub files: Vec<String>,
    pub notify_command: Option<String>,
    pub tls: bool,
    pub limits: doorman_server::Limits,
    pub trusted_proxies: Vec<String>,
    pub heartbeat: std::time::Duration,
    pub connections: doorman_http::serve::ConnectionLimits,
    pub recordings: doorman_server::Recordings,
    /// The public URL names `localhost`, not the address.
    pub localhost: bool,
    /// More `[desktop_sharing]` lines (approval policies), as TOML.
    pub policies: Vec<String>,
    /// The SMTP sink speaks TLS this way, with a certificate of the test
    /// CA, which the server is given as `smtp_ca`.
    pub smtp_tls: Option<SmtpTls>,
    /// The server's database; SQLite in its data directory when `None`.
    pub database_url: Option<String>,
    /// `recordings_to`: the age recipients of the computer's recordings.
    pub recordings_to: Vec<String>,
}

impl Default for WorldBuilder {
    fn default() -> Self {
        Self {
            require_email_authorization: true,
            recipients: vec!["it@example.com".into(), "owner@example.com".into()],
            timeout_secs: 180,
            shell: true,
            forward: Vec::new(),
            desktop: None,
            files: Vec::new(),
            notify_command: None,
            tls: false,
            limits: doorman_server::Limits::default(),
            trusted_proxies: Vec::new(),
            heartbeat: doorman_server::DEFAULT_HEARTBEAT,
            connections: doorman_http::serve::ConnectionLimits::default(),
            recordings: doorman_server::Recordings::default(),
            localhost: false,
            policies: Vec::new(),
            smtp_tls: None,
            database_url: None,
            recordings_to: Vec::new(),
        }
    }
}

impl WorldBuilder {
    pub fn recipients(mut self, recipients: &[&str]) -> Self {
        self.recipients = recipients.iter().map(|r| r.to_string()).collect();
        self
    }

    pub fn timeout_secs(mut self, secs: u32) -> Self {
        self.timeout_secs = secs;
        self
    }

    pub fn without_email_authorization(mut self) -> Self {
        self.require_email_authorization = false;
        self
    }

    /// Shares these folders for copies (`[services] files`).
    pub fn files(mut self, roots: &[&str]) -> Self {
        self.files = roots.iter().map(|r| r.to_string()).collect();
        self
    }

    /// Lets operators forward to these `host:port` targets.
    pub fn forward(mut self, targets: &[&str]) -> Self {
        self.forward = targets.iter().map(|t| t.to_string()).collect();
        self
    }

    /// Offers the desktop at this VNC server (`host:port`).
    pub fn desktop(mut self, target: &str) -> Self {
        self.desktop = Some(target.to_string());
        self
    }

    /// Serves over TLS with certificates made now; agent and operator trust
    /// the test CA.
    pub fn tls(mut self) -> Self {
        self.tls = true;
        self
    }

    pub fn smtp_tls(mut self, mode: SmtpTls) -> Self {
        self.smtp_tls = Some(mode);
        self
    }

    pub fn limits(mut self, limits: doorman_server::Limits) -> Self {
        self.limits = limits;
        self
    }

    /// The server's connection limits and request-head deadline.
    pub fn connections(mut self, limits: doorman_http::serve::ConnectionLimits) -> Self {
        self.connections = limits;
        self
    }

    /// Keeps the server's state in this database (e.g. PostgreSQL) instead
    /// of SQLite in its data directory.
    pub fn database(mut self, url: &str) -> Self {
        self.database_url = Some(url.to_string());
        self
    }

    /// Pings agents and waiting operators this often.
    /// The public URL is `http://localhost:PORT` (passkeys need a domain).
    pub fn localhost(mut self) -> Self {
        self.localhost = true;
        self
    }

    /// Whether and how long the server records shell sessions.
    pub fn recordings(mut self, recordings: doorman_server::Recordings) -> Self {
        self.recordings = recordings;
        self
    }

    pub fn heartbeat(mut self, every: std::time::Duration) -> Self {
        self.heartbeat = every;
        self
    }

    /// Believes `X-Forwarded-For` from these proxies.
    pub fn trusted_proxies(mut self, proxies: &[&str]) -> Self {
        self.trusted_proxies = proxies.iter().map(|p| p.to_string()).collect();
        self
    }

    pub fn notify_command(mut self, command: &str) -> Self {
        self.notify_command = Some(command.to_string());
        self
    }

    /// Adds an approval policy to the computer's `[desktop_sharing]`,
    /// e.g. `policy("required_approvals", 2)`.
    pub fn policy(mut self, key: &str, value: impl std::fmt::Display) -> Self {
        self.policies.push(format!("{key} = {value}"));
        self
    }

    /// The computer seals its recordings of sealed shells to `recipient`.
    pub fn recordings_to(mut self, recipient: &str) -> Self {
        self.recordings_to.push(recipient.to_string());
        self
    }

    pub fn without_shell(mut self) -> Self {
        self.shell = false;
        self
    }

    pub fn settings_text(&self, server: &str, key: &str) -> String {
        self.settings_text_for(COMPUTER, server, key)
    }

    /// The settings file of computer `name`.
    pub fn settings_text_for(&self, name: &str, server: &str, key: &str) -> String {
        let recipients = self
            .recipients
            .iter()
            .map(|r| format!("{r:?}"))
            .collect::<Vec<_>>()
            .join(", ");
        let notify = self
            .notify_command
            .as_ref()
            .map(|command| format!("notify_command = {command:?}\n"))
            .unwrap_or_default();
        // Relative to the settings file, which sits beside the certificates.
        let notify = if self.tls {
            format!("{notify}ca = \"ca.pem\"\n")
        } else {
            notify
        };
        let notify = if self.recordings_to.is_empty() {
            notify
        } else {
            format!("{notify}recordings_to = {:?}\n", self.recordings_to)
        };
        format!(
            "server = \"{server}\"\nname = \"{name}\"\nkey = \"{key}\"\n{notify}\n\
             [desktop_sharing]\nrequire_email_authorization = {}\nemail_authorization_timeout = {}\nrecipients = [{recipients}]\n{}\n\
             [services]\nshell = {}\nforward = [{}]\nfiles = [{}]\n{}",
            self.require_email_authorization,
            self.timeout_secs,
            self.policies
                .iter()
                .map(|line| format!("{line}\n"))
                .collect::<String>(),
            self.shell,
            self.forward
                .iter()
                .map(|t| format!("{t:?}"))
                .collect::<Vec<_>>()
                .join(", "),
            self.files
                .iter()
                .map(|t| format!("{t:?}"))
                .collect::<Vec<_>>()
                .join(", "),
            self.desktop
                .as_ref()
                .map(|target| format!("desktop = {target:?}\n"))
                .unwrap_or_default()
        )
    }

    pub async fn start(self) -> World {
        World::from_builder(self).await
    }
}
