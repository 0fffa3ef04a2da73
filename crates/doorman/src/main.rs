//! The `doorman` binary: parses the command line, sets up logging, and calls
//! the library crates; `admin`, `agent join` and `demo` are commands of
//! their own. Nothing else lives here.
//!
//! The map:
//!
//! - `cli`: the command line as the user types it (step one of two: `main`
//!   turns it into validated configurations for the library crates);
//! - `logging`: the log on standard error, as text or JSON lines;
//! - `admin`: `doorman admin`: operators, agents, access rules, blocks and
//!   the audit trail, on the database the server uses;
//! - `recordings`: `doorman admin recordings list|prune` and `doorman admin
//!   play`;
//! - `join`: `doorman agent join`: the terminal's side of a computer
//!   joining;
//! - `agent_config`: where the agent's settings file is when neither
//!   `--config` nor `DOORMAN_AGENT_CONFIG` says;
//! - `demo`: `doorman demo`: a server and an agent in one process on
//!   loopback;
//! - `server`: `doorman server`;
//! - `operator`: `doorman connect` and `doorman cp`;
//! - `on_windows`: the Windows service, the settings folder's access
//!   list, and the shell's console host;
//! - `docs`: shell completions and manual pages, generated from the
//!   command line's own definitions.
#![forbid(unsafe_code)]

// The server's side and the operator's are Unix's; a Windows build is the
// computer's side (agent, settings, consent).
#[cfg(unix)]
mod admin;
mod agent_config;
mod cli;
#[cfg(unix)]
mod demo;
mod docs;
mod join;
mod logging;
#[cfg(windows)]
mod on_windows;
#[cfg(unix)]
mod operator;
#[cfg(unix)]
mod recordings;
#[cfg(unix)]
mod server;

/// mimalloc, not glibc's malloc, on Unix: after a burst of connections it
/// gives back what the burst used (docs/BENCHMARKS.md, "Idle computers").
#[cfg(unix)]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use anyhow::Result;
use clap::Parser;
use cli::{Cli, Command, ConsentCommand, SettingsCommand};
use doorman_core::settings::{SettingsChange, split_list};
use std::path::Path;
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Before any runtime: these run on the main thread as they are.
    #[cfg(windows)]
    match &cli.command {
        Command::ConsoleHost { program, args } => {
            std::process::exit(on_windows::console_host(program, args))
        }
        Command::Agent(agent) if agent.service && agent.command.is_none() => {
            if let Err(error) = on_windows::run_service(agent.config.clone(), agent.log_format) {
                eprintln!("doorman: {}", one_line(&error));
                return ExitCode::FAILURE;
            }
            return ExitCode::SUCCESS;
        }
        _ => {}
    }
    // Multi-threaded everywhere: a single-threaded agent and `connect` saved
    // a little round-trip latency but cost bulk throughput (bench/relay.sh).
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("doorman: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let code = runtime.block_on(dispatch(cli));
    // Don't wait for a blocked stdin reader thread (connect) to finish.
    std::process::exit(code);
}

async fn dispatch(cli: Cli) -> i32 {
    let result = match cli.command {
        #[cfg(unix)]
        Command::Connect(args) => return operator::connect(args).await,
        #[cfg(unix)]
        Command::Cp(args) => return operator::cp(args).await,
        #[cfg(unix)]
        Command::Known(args) => return operator::known(args),
        #[cfg(unix)]
        Command::Server(args) => {
            logging::init("info", args.log_format);
            server::server(*args).await
        }
        Command::Agent(mut args) => match args.command.take() {
            Some(cli::AgentCommand::Join(join)) => join::run(join).await,
            #[cfg(windows)]
            Some(cli::AgentCommand::InstallService(install)) => {
                on_windows::install_service(install.config, !install.no_start)
            }
            #[cfg(windows)]
            Some(cli::AgentCommand::UninstallService) => on_windows::uninstall_service(),
            None => {
                logging::init("info", args.log_format);
                agent(args).await
            }
        },
        #[cfg(unix)]
        Command::Admin(args) => admin::admin(args).await,
        Command::Consent(args) => consent(args).await,
        Command::Settings(args) => settings(args).await,
        #[cfg(unix)]
        Command::Demo(args) => {
            logging::init("info", args.log_format);
            demo::run(args).await
        }
        Command::Completions { shell } => {
            docs::completions(shell);
            Ok(())
        }
        Command::Man { command } => docs::man(&command),
        #[cfg(windows)]
        Command::Tray { config } => {
            logging::init("info", logging::LogFormat::Text);
            match agent_config::agent_config(config) {
                Ok(config) => {
                    doorman_owner::tray::show(config).await;
                    Err(anyhow::anyhow!(
                        "no notification area to show the icon in (no desktop in this session), or no settings file"
                    ))
                }
                Err(error) => Err(error),
            }
        }
        // Run in `main`, before the runtime.
        #[cfg(windows)]
        Command::ConsoleHost { .. } => Ok(()),
    };
    match result {
        Ok(()) => 0,
        Err(error) => {
            eprintln!("doorman: {}", one_line(&error));
            1
        }
    }
}

/// An error chain on one line; a cause its wrapper already quotes is not
/// repeated.
fn one_line(error: &anyhow::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    for cause in error.chain().map(ToString::to_string) {
        if !parts.iter().any(|part| part.contains(&cause)) {
            parts.push(cause);
        }
    }
    parts
        .join(": ")
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

/// Completes on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
}

async fn agent(args: cli::AgentArgs) -> Result<()> {
    let config = agent_config::agent_config(args.config)?;
    // The owner's tray icon, where the agent runs on a desktop that has a
    // tray; it ends with the agent.
    let tray = tokio::spawn(doorman_owner::tray::show(config.clone()));
    let ran = doorman_agent::run(config, shutdown_signal()).await;
    tray.abort();
    ran?;
    Ok(())
}

/// `doorman consent`: talks to the running agent over its socket.
async fn consent(args: cli::ConsentArgs) -> Result<()> {
    use doorman_agent::consent::{self, ConsentRequest, ConsentResponse};
    let config = agent_config::agent_config(args.config)?;
    let settings = doorman_agent::settings_file::load(&config)?;
    let socket = consent::socket_path(&config, settings.consent_socket.as_deref());
    let (request, json) = match args.command {
        ConsentCommand::List { json } => (ConsentRequest::List, json),
        ConsentCommand::Allow { id } => (ConsentRequest::Allow { id }, false),
        ConsentCommand::Deny { id } => (ConsentRequest::Deny { id }, false),
        ConsentCommand::Status => (ConsentRequest::Status, false),
    };
    match consent::call(&socket, &request).await? {
        ConsentResponse::Waiting { requests } => {
            if requests.is_empty() && !json {
                eprintln!("no request is waiting for an answer at this computer");
            }
            for waiting in requests {
                if json {
                    println!("{}", serde_json::to_string(&waiting)?);
                } else {
                    let reason = if waiting.reason.is_empty() {
                        "(no reason given)".to_string()
                    } else {
                        format!("{:?}", waiting.reason)
                    };
                    println!(
                        "{}  {} ({}) wants to {}; reason {reason}; expires in {} s",
                        waiting.id,
                        waiting.operator,
                        waiting.operator_ip,
                        waiting.service,
                        waiting.expires_in
                    );
                }
            }
        }
        ConsentResponse::Answered { id, decision } => {
            let done = match decision {
                doorman_core::Decision::Allow => "allowed",
                _ => "denied",
            };
            eprintln!("{done} request {id}");
        }
        ConsentResponse::Status { online, waiting } => {
            let state = if online { "online" } else { "offline" };
            println!("{state}; {waiting} request(s) waiting here");
        }
        ConsentResponse::Error { message } => anyhow::bail!(message),
    }
    Ok(())
}

async fn settings(args: cli::SettingsArgs) -> Result<()> {
    let config = agent_config::agent_config(args.config)?;
    match args.command {
        SettingsCommand::Open { no_browser } => open_settings(&config, no_browser).await?,
        SettingsCommand::Show => {
            let settings = doorman_agent::settings_file::load(&config)?;
            print!("{}", show_settings(&config, settings)?);
        }
        SettingsCommand::Set {
            require_email_authorization,
            email_timeout,
            recipients,
            required_approvals,
            require_reason,
            approval_valid_for,
            max_session_seconds,
            local_consent,
            shell,
            forward,
            desktop,
            files,
            require_passkey,
        } => {
            let change = SettingsChange {
                require_passkey,
                passkeys: None,
                shell,
                forward: forward.as_deref().map(split_list),
                desktop: desktop.map(|target| Some(target).filter(|t| !t.trim().is_empty())),
                files: files.as_deref().map(split_list),
                require_email_authorization,
                email_authorization_timeout: email_timeout,
                recipients: recipients.as_deref().map(split_list),
                required_approvals,
                require_reason,
                approval_valid_for,
                max_session_seconds,
                local_consent,
            };
            let settings = doorman_agent::settings_file::apply(&config, &change)?;
            println!(
                "saved {}; the agent uses it for the next connection",
                config.display()
            );
            print!("{}", show_settings(&config, settings)?);
        }
        SettingsCommand::Approvers(command) => approvers(&config, command).await?,
    }
    Ok(())
}

/// `doorman settings approvers …`.
async fn approvers(config: &Path, command: cli::ApproversCommand) -> Result<()> {
    use doorman_agent::enroll;
    match command {
        cli::ApproversCommand::List => {
            let settings = doorman_agent::settings_file::load(config)?;
            for key in &settings.desktop_sharing.passkeys {
                println!(
                    "{}  {}  key {}",
                    key.recipient,
                    key.id,
                    key.public_key.fingerprint()
                );
            }
        }
        cli::ApproversCommand::Remove { which } => {
            let removed = enroll::unpin(config, &which)?;
            if removed == 0 {
                anyhow::bail!(
                    "no pinned passkey of {which:?}: `doorman settings approvers list` shows them"
                );
            }
            println!("unpinned {removed} passkey(s) of {which}");
        }
        cli::ApproversCommand::Enroll { address } => {
            let settings = doorman_agent::settings_file::load(config)?;
            let enrolment = enroll::start(&settings, &address).await?;
            println!(
                "An enrolment link is on its way to {address}; it works for {} minutes.\n\
                 Code: {}  (the recipient's page must show the same code)\n\
                 Waiting for the passkey…",
                enrolment.expires_in / 60,
                enrolment.code
            );
            let passkey = enrolment.passkey().await?;
            println!(
                "{address} created a passkey. Fingerprint: {}\n\
                 Compare it with the one the recipient's page shows.",
                passkey.public_key.fingerprint()
            );
            print!("Pin this passkey for {address}? Type yes to pin: ");
            use std::io::Write;
            std::io::stdout().flush()?;
            let mut answer = String::new();
            std::io::stdin().read_line(&mut answer)?;
            if answer.trim() != "yes" {
                anyhow::bail!("not pinned");
            }
            let id = passkey.id.clone();
            enroll::pin(config, passkey)?;
            println!("pinned passkey {id} for {address} in {}", config.display());
        }
    }
    Ok(())
}

/// `doorman settings open`: the settings window, in the desktop's browser
/// (which gets the path of a redirect file of the owner's, never the
/// one-time address: a process's arguments are public) or at an address
/// printed for the owner alone.
async fn open_settings(config: &Path, no_browser: bool) -> Result<()> {
    use doorman_owner::Stopped;
    let mut window = doorman_owner::SettingsWindow::open(
        config.to_path_buf(),
        doorman_owner::window::DEFAULT_IDLE,
    )
    .await?;
    let link_minutes = doorman_owner::DEFAULT_LINK_LIFETIME.as_secs() / 60;
    let opened = !no_browser
        && match window.default_browser_command() {
            Ok(mut command) => command.status().is_ok_and(|status| status.success()),
            Err(error) => {
                eprintln!("doorman: cannot write the file that opens the browser: {error}");
                false
            }
        };
    if opened {
        println!(
            "The settings of {} are open in your browser.\n\
             (No page? Run `doorman settings open --no-browser` and open the address it prints.)",
            config.display()
        );
    } else {
        println!(
            "Open this address in a browser on this computer, within {link_minutes} minutes (it works once):\n\n  {}\n",
            window.url
        );
    }
    println!("It stops after 15 minutes without use, or press Ctrl-C.");
    tokio::select! {
        stopped = window.closed() => match stopped {
            Stopped::LinkExpired => println!("The settings window stopped: its address was not opened within {link_minutes} minutes."),
            Stopped::Unused => println!("The settings window stopped: unused for 15 minutes."),
            _ => println!("The settings window stopped."),
        },
        _ = tokio::signal::ctrl_c() => {}
    }
    Ok(())
}

fn show_settings(path: &Path, mut settings: doorman_core::AgentSettings) -> Result<String> {
    settings.key = doorman_core::Secret::new("MASKED");
    Ok(format!(
        "# effective settings of {}\n{}",
        path.display(),
        toml::to_string(&settings)?
    ))
}
