//! The operator's command lines: `doorman connect`, `doorman cp` and
//! `doorman known`, and the exit statuses they document.

use clap::{Args, Subcommand};
use std::path::PathBuf;

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
  249    the computer's identity is not the one remembered for it (see
         --known-computers; `doorman known remove COMPUTER` accepts a
         legitimate change), or it could not prove its identity for the
         session: someone between, such as the server, changed its keys
  255    cannot reach or talk to the server, or it did not confirm the
         request's expiry within 10 s of its deadline";

pub const CP_EXIT_STATUSES: &str = "\
Exit status:
  0      every file was copied
  250    partly copied: some files were, others not (each one's reason is said)
  2-255  as `doorman connect --help` lists (2 also for arguments that name
         both sides, or neither, as COMPUTER:PATH)";

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
    /// The computers met before and their identities, which each session
    /// must prove again (like ssh's known_hosts)
    /// [default: $XDG_CONFIG_HOME/doorman/known_computers]
    #[arg(long, env = "DOORMAN_KNOWN_COMPUTERS", value_name = "FILE")]
    pub known_computers: Option<PathBuf>,
}

/// `doorman known`: the computers met before.
#[derive(Debug, Args)]
pub struct KnownArgs {
    #[command(subcommand)]
    pub command: KnownCommand,
    /// The known-computers file [default: $XDG_CONFIG_HOME/doorman/known_computers]
    #[arg(
        long,
        global = true,
        env = "DOORMAN_KNOWN_COMPUTERS",
        value_name = "FILE"
    )]
    pub known_computers: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum KnownCommand {
    /// Forget a computer's identity, so that the next session learns it
    /// anew (after its agent was reinstalled, or its key replaced)
    Remove {
        /// The computer's name
        computer: String,
    },
}
