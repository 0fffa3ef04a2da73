//! `doorman admin`'s command line: operators, agents, access rules,
//! blocks, TLS, recordings and the audit trail.

use clap::{Args, Subcommand};
use doorman_core::access::{ComputerPattern, ServiceSet};
use std::path::PathBuf;

#[derive(Debug, Args)]
pub struct AdminArgs {
    /// The server's data directory [env: DOORMAN_DATA_DIR]
    #[arg(
        long,
        value_name = "DIR",
        global = true,
        conflicts_with = "database_url"
    )]
    pub data_dir: Option<PathBuf>,
    /// The server's database URL [env: DOORMAN_DATABASE_URL]
    #[arg(long, value_name = "URL", global = true)]
    pub database_url: Option<String>,
    /// The server's settings file (e.g. /etc/doorman/server.toml): its
    /// data_dir and database_url, unless an option or the environment
    /// names one
    #[arg(long, value_name = "FILE", global = true)]
    pub config: Option<PathBuf>,
    /// Make a new database (and the data directory) if there is none there;
    /// without it, a missing database is an error
    #[arg(long, global = true)]
    pub create: bool,
    #[command(subcommand)]
    pub command: AdminCommand,
}

pub const ADMIN_FINDS: &str = "\
Where the database is, first found first:
  --data-dir DIR or --database-url URL
  DOORMAN_DATA_DIR or DOORMAN_DATABASE_URL
  data_dir and database_url in --config FILE (the server's settings file)
  the default data directory, ./doorman-data
Each command that uses the database names it first, on stderr. A SQLite
database that does not exist is an error unless --create is given.";

#[derive(Debug, Subcommand)]
pub enum AdminCommand {
    /// Operators: people who connect.
    #[command(subcommand)]
    Operator(OperatorCommand),
    /// Agents: computers that can be connected to.
    #[command(subcommand)]
    Agent(PrincipalCommand),
    /// Which operators may reach which computers, for which services.
    #[command(subcommand)]
    Access(AccessCommand),
    /// The blocks "I did not expect this" left: operator kept from computer.
    #[command(subcommand)]
    Blocks(BlocksCommand),
    /// TLS without a public CA: `tls init` makes a private CA and a
    /// server certificate in the data directory.
    #[command(subcommand)]
    Tls(TlsCommand),
    /// Session recordings: what shell sessions displayed.
    #[command(subcommand)]
    Recordings(RecordingsCommand),
    /// Play a session recording in this terminal, at the pace it happened.
    Play {
        /// The recording's id, as `recordings list` shows it
        id: i64,
        /// An age identity file (`age-keygen` made it) whose key opens a
        /// recording the computer sealed
        #[arg(long, value_name = "FILE")]
        identity: Option<std::path::PathBuf>,
        /// Faster (2) or slower (0.5) than it happened
        #[arg(long, value_name = "N", default_value_t = 1.0, value_parser = speed)]
        speed: f64,
    },
    /// List the audit trail, oldest first (`audit prune` deletes old events).
    #[command(args_conflicts_with_subcommands = true)]
    Audit {
        /// One JSON object per line.
        #[arg(long)]
        json: bool,
        #[command(subcommand)]
        prune: Option<AuditCommand>,
    },
}

#[derive(Debug, Subcommand)]
pub enum RecordingsCommand {
    /// List the recordings, newest first: id, start, computer, operator,
    /// duration, size and SHA-256 of the recorded text.
    List {
        /// Only this computer's
        #[arg(long, value_name = "NAME")]
        computer: Option<String>,
        /// One JSON object per line.
        #[arg(long)]
        json: bool,
    },
    /// Write a recording as stored to standard output: a sealed one as the
    /// age file it is (`age -d -i KEY`), else gzip-compressed asciicast
    Export {
        /// The recording's id, as `recordings list` shows it
        id: i64,
    },
    /// Delete the recordings of sessions started more than DAYS ago (the
    /// server itself deletes those older than its --recordings-keep-days).
    Prune {
        #[arg(long, value_name = "DAYS", value_parser = clap::value_parser!(u32).range(0..=36500))]
        older_than: u32,
    },
}

/// A playback speed: a positive number up to 1000.
fn speed(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(n) if n > 0.0 && n <= 1000.0 => Ok(n),
        _ => Err(format!(
            "{text:?} is not a speed: give a number above 0, up to 1000"
        )),
    }
}

/// A duration: a whole number and a unit, s, m, h or d (`30m`, `24h`, `7d`).
fn duration(text: &str) -> Result<std::time::Duration, String> {
    let bad =
        || format!("{text:?} is not a duration: give a number and a unit, such as 30m, 24h or 7d");
    let unit = text.chars().last().ok_or_else(bad)?;
    let seconds: u64 = match unit {
        's' => 1,
        'm' => 60,
        'h' => 3600,
        'd' => 86_400,
        _ => return Err(bad()),
    };
    let digits = &text[..text.len() - 1];
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let count: u64 = digits.parse().map_err(|_| bad())?;
    count
        .checked_mul(seconds)
        .map(std::time::Duration::from_secs)
        .ok_or_else(bad)
}

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Delete the events older than DAYS (the server itself deletes those
    /// older than its --audit-retention-days, 365 unless told otherwise).
    Prune {
        #[arg(long, value_name = "DAYS", value_parser = clap::value_parser!(u32).range(1..=36500))]
        older_than: u32,
    },
}

#[derive(Debug, Subcommand)]
pub enum TlsCommand {
    /// Make a private CA (kept if there is one) and a server certificate it
    /// signs, in DATA_DIR/tls/; the server serves with it when given no
    /// --tls-cert. Run again, it adds names: the certificate is for every
    /// name given so far. Prints the CA file for agents and operators, and
    /// its SHA-256 fingerprint.
    Init {
        /// A DNS name the server is reached by; repeatable
        #[arg(long = "name", value_name = "DNS-NAME")]
        names: Vec<String>,
        /// An IP address the server is reached by; repeatable
        #[arg(long = "ip", value_name = "ADDRESS")]
        ips: Vec<std::net::IpAddr>,
        /// Start over: a new CA (every agent and operator then needs the
        /// new ca.pem) and a certificate for the names given now only
        #[arg(long)]
        replace: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum OperatorCommand {
    /// Register NAME and print its token, once, on one line. Without
    /// --computers it reaches nothing until `access grant`.
    Add {
        name: String,
        /// Computers it may reach: name patterns (`*`, `office-*`), comma-separated
        #[arg(long, value_name = "PATTERN[,PATTERN...]", value_delimiter = ',')]
        computers: Vec<ComputerPattern>,
        /// Services granted with --computers [default: shell,command,forward,files]
        #[arg(long, value_name = "SERVICE[,SERVICE...]", requires = "computers")]
        services: Option<ServiceSet>,
        /// The operator's own address: never an approver of its requests
        #[arg(long, value_name = "ADDR")]
        email: Option<String>,
    },
    /// List the operators, with their email addresses and when each was added.
    List,
    /// Print a new token for NAME, once, on one line. The old one stops
    /// working: its connections are closed within a heartbeat (20 s) and its
    /// pending requests cancelled.
    Rotate { name: String },
    /// Remove NAME, with the same effects on its connections and requests.
    Remove { name: String },
    /// Set the operator's own address (never an approver of its requests);
    /// without ADDR, clear it.
    SetEmail { name: String, email: Option<String> },
}

#[derive(Debug, Subcommand)]
pub enum AccessCommand {
    /// Let OPERATOR reach the computers the patterns match, for the services.
    Grant {
        operator: String,
        /// Name patterns (`*`, `office-*`, `lab-??`), comma-separated
        #[arg(
            long,
            required = true,
            value_name = "PATTERN[,PATTERN...]",
            value_delimiter = ','
        )]
        computers: Vec<ComputerPattern>,
        /// [default: shell,command,forward,files]
        #[arg(long, value_name = "SERVICE[,SERVICE...]")]
        services: Option<ServiceSet>,
    },
    /// Take grants away: pending requests and running sessions on computers
    /// OPERATOR no longer reaches end (sessions within a heartbeat); says
    /// which running sessions end.
    Revoke {
        operator: String,
        /// The patterns granted before, comma-separated
        #[arg(
            long,
            required = true,
            value_name = "PATTERN[,PATTERN...]",
            value_delimiter = ','
        )]
        computers: Vec<ComputerPattern>,
    },
    /// List every grant.
    List {
        /// One JSON object per line.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum BlocksCommand {
    /// The blocks in force (none: says so on stderr).
    List {
        /// One JSON object per line.
        #[arg(long)]
        json: bool,
    },
    /// Let OPERATOR ask COMPUTER again at once.
    Lift { operator: String, computer: String },
}

#[derive(Debug, Subcommand)]
pub enum PrincipalCommand {
    /// Register NAME and print its secret, once, on one line.
    Add { name: String },
    /// Invite a computer to join as NAME: print the one line to run on it,
    /// `doorman agent join URL`. The URL holds a single-use code and, when
    /// the server presents a private CA (`tls init`), that CA's SHA-256.
    Invite {
        name: String,
        /// How long the invitation works: 30m, 24h, 7d (1 minute to 30 days)
        #[arg(long, value_name = "DURATION", default_value = "24h", value_parser = duration)]
        expires: std::time::Duration,
        /// The server's public URL [default: the one the server recorded
        /// in the database when it started]
        #[arg(long, value_name = "URL")]
        public_url: Option<String>,
    },
    /// List the names, with when each was added.
    List,
    /// Print a new secret for NAME, once, on one line. The old one stops
    /// working: its connections are closed within a heartbeat (20 s) and its
    /// pending requests cancelled.
    Rotate { name: String },
    /// Remove NAME, with the same effects on its connections and requests.
    Remove { name: String },
}
