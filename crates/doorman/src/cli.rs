//! The command line as the user types it (step one of two: `main` turns these
//! into validated configurations for the library crates).

use crate::logging::LogFormat;
use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

// What only a Unix build offers: the server side (server, admin, demo) and
// the operator's (connect, cp). A Windows build is the computer's side.
#[cfg(unix)]
mod admin;
#[cfg(unix)]
mod operator;
#[cfg(unix)]
mod server;
#[cfg(unix)]
pub use admin::*;
#[cfg(unix)]
pub use operator::*;
#[cfg(unix)]
pub use server::*;

#[derive(Debug, Parser)]
#[command(
    name = "doorman",
    version,
    about = "Self-hosted remote access that an emailed link must approve",
    long_about = "Doorman lets an operator into an unattended computer only after one of the \
computer's recipients approves the connection from an emailed link."
)]
// Windows builds are the computer's side: no demo to point to.
#[cfg_attr(
    unix,
    command(
        long_about = "Doorman lets an operator into an unattended computer only after one of the \
computer's recipients approves the connection from an emailed link.\n\n\
Start with `doorman demo` to see the whole story on this machine."
    )
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    #[cfg(unix)]
    /// Run the broker: agents, operators, emails, approval pages, relay, audit.
    Server(Box<ServerArgs>),
    #[cfg(unix)]
    /// Add operators and agents, read the audit trail.
    #[command(after_help = ADMIN_FINDS)]
    Admin(AdminArgs),
    /// Run the agent on the remote computer.
    Agent(AgentArgs),
    /// Show or change the agent's settings file.
    Settings(SettingsArgs),
    /// Answer, at the remote computer, the requests waiting for local consent.
    Consent(ConsentArgs),
    #[cfg(unix)]
    /// Connect to a computer (waits for email authorization when it requires it).
    #[command(after_help = CONNECT_EXIT_STATUSES)]
    Connect(ConnectArgs),
    #[cfg(unix)]
    /// Copy files to or from a computer's shared folders, approved like any
    /// connection (`doorman cp report.pdf office-pc:~/Shared/`).
    #[command(after_help = CP_EXIT_STATUSES, override_usage = "doorman cp [OPTIONS] SOURCE... DEST")]
    Cp(CpArgs),
    #[cfg(unix)]
    /// The computers met before, whose identities each session must prove
    /// again (`doorman known remove COMPUTER`).
    Known(KnownArgs),
    #[cfg(unix)]
    /// Run a server and an agent on loopback and print how to connect.
    Demo(DemoArgs),
    #[cfg(windows)]
    /// Show the agent's icon in the notification area: its state, the
    /// requests waiting here, Settings…. For an agent run as the Windows
    /// service (`doorman agent` shows its own); the installer starts it at
    /// every sign-in.
    Tray {
        /// The agent's settings file [default: %ProgramData%\Doorman\agent.toml]
        #[arg(long, value_name = "FILE", env = "DOORMAN_AGENT_CONFIG")]
        config: Option<PathBuf>,
    },
    #[cfg(windows)]
    /// The first process in a shell's pseudo-console: runs PROGRAM with the
    /// console as its standard streams (the agent starts it).
    #[command(name = "console-host", hide = true)]
    ConsoleHost {
        program: std::ffi::OsString,
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<std::ffi::OsString>,
    },
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
    /// Run as the Windows service (the service control manager passes
    /// it; `agent install-service` installs the service)
    #[cfg(windows)]
    #[arg(long, hide = true)]
    pub service: bool,
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
    #[cfg(windows)]
    /// Install the agent as the Windows service DoormanAgent: started with
    /// Windows, as LocalSystem, reading the settings file (checked first),
    /// whose folder %ProgramData%\Doorman is closed to all but SYSTEM and
    /// Administrators. Run as an administrator.
    InstallService(InstallServiceArgs),
    #[cfg(windows)]
    /// Stop and remove the Windows service DoormanAgent. Run as an administrator.
    UninstallService,
}

#[cfg(windows)]
#[derive(Debug, Args)]
pub struct InstallServiceArgs {
    /// The settings file the service reads [default: %ProgramData%\Doorman\agent.toml]
    #[arg(long, value_name = "FILE", env = "DOORMAN_AGENT_CONFIG")]
    pub config: Option<PathBuf>,
    /// Install only; the service starts with Windows, or with `sc start DoormanAgent`
    #[arg(long)]
    pub no_start: bool,
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
