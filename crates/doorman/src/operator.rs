//! The operator's commands: `doorman connect` and `doorman cp`, each a
//! request for a session on a computer, run as the client library says;
//! and `doorman known`, the computers met before.

use crate::{cli, logging};
use doorman_client::known::KnownComputers;
use std::io::IsTerminal;
use std::path::PathBuf;

pub async fn connect(args: cli::ConnectArgs) -> i32 {
    let session = match (args.command.is_empty(), args.forward.is_empty()) {
        (false, false) => {
            eprintln!("doorman: give either a command or -L forwards, not both");
            return doorman_client::exit::INVALID_REQUEST;
        }
        (false, true) => doorman_client::SessionKind::Command(args.command),
        (true, false) => doorman_client::SessionKind::Forward(args.forward),
        (true, true) if doorman_client::tty::interactive() => {
            let (rows, cols) = doorman_client::tty::size();
            doorman_client::SessionKind::Shell {
                term: std::env::var("TERM").unwrap_or_else(|_| "xterm-256color".into()),
                rows,
                cols,
            }
        }
        (true, true) => {
            eprintln!(
                "doorman: no command and no terminal: give a command after --, or -L forwards"
            );
            return doorman_client::exit::INVALID_REQUEST;
        }
    };
    operate(args.operator, args.computer, session).await
}

/// `doorman cp`.
pub async fn cp(args: cli::CpArgs) -> i32 {
    let options = doorman_client::copy::plan::CopyOptions {
        recursive: args.recursive,
        keep: args.keep,
        resume: args.resume,
    };
    let plan = match doorman_client::copy::plan::CopyPlan::new(&args.paths, options) {
        Ok(plan) => plan,
        Err(error) => {
            eprintln!("doorman: {error}");
            return error.exit_code();
        }
    };
    let computer = plan.computer.clone();
    operate(
        args.operator,
        computer,
        doorman_client::SessionKind::Copy(plan),
    )
    .await
}

/// Asks for `session` on `computer` and runs it, as `options` say; the
/// exit status.
async fn operate(
    options: cli::OperatorOptions,
    computer: String,
    session: doorman_client::SessionKind,
) -> i32 {
    logging::init("warn", logging::LogFormat::Text);
    let Some(server) = options.server else {
        eprintln!("doorman: no server: pass --server URL or set DOORMAN_SERVER");
        return doorman_client::exit::INVALID_REQUEST;
    };
    let Some(token) = options.token else {
        eprintln!(
            "doorman: no operator token: pass --token TOKEN or set DOORMAN_TOKEN (from `doorman admin operator add`)"
        );
        return doorman_client::exit::INVALID_REQUEST;
    };
    let style = if options.json {
        doorman_client::ProgressStyle::Json
    } else {
        doorman_client::ProgressStyle::Human {
            live: std::io::stderr().is_terminal(),
        }
    };
    let Some(known_computers) = known_computers(options.known_computers) else {
        return doorman_client::exit::INVALID_REQUEST;
    };
    let mut progress = doorman_client::Progress::new(style, Box::new(std::io::stderr()));
    let request = doorman_client::ConnectRequest {
        server,
        ca: options.ca,
        token: doorman_core::Secret::new(token),
        computer,
        reason: options.reason,
        session,
        expiry_grace: doorman_client::EXPIRY_GRACE,
        known_computers,
        end_to_end: true,
    };
    let interrupt = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    match doorman_client::connect(
        request,
        &mut progress,
        doorman_client::Terminal::stdio(),
        interrupt,
    )
    .await
    {
        Ok(code) => code,
        Err(error) => {
            eprintln!("doorman: {error}");
            error.exit_code()
        }
    }
}

/// The known-computers file: `given`, else the default; none (said why)
/// when there is no default either.
fn known_computers(given: Option<PathBuf>) -> Option<KnownComputers> {
    match given.or_else(KnownComputers::default_path) {
        Some(path) => Some(KnownComputers::at(path)),
        None => {
            eprintln!(
                "doorman: no known-computers file: pass --known-computers FILE or set DOORMAN_KNOWN_COMPUTERS (neither XDG_CONFIG_HOME nor HOME is set)"
            );
            None
        }
    }
}

/// `doorman known remove`.
pub fn known(args: cli::KnownArgs) -> i32 {
    let Some(known) = known_computers(args.known_computers) else {
        return doorman_client::exit::INVALID_REQUEST;
    };
    match args.command {
        cli::KnownCommand::Remove { computer } => match known.remove(&computer) {
            Ok(true) => {
                println!(
                    "Forgot {computer}'s identity; the next session learns it anew (compare its fingerprint with the one the computer's owner sees)."
                );
                0
            }
            Ok(false) => {
                eprintln!(
                    "doorman: no identity of {computer} is remembered in {}",
                    known.path().display()
                );
                1
            }
            Err(error) => {
                eprintln!("doorman: {error}");
                1
            }
        },
    }
}
