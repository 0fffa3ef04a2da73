//! `doorman agent join URL [--config FILE] [--start]`: the terminal's side
//! of a computer joining (the questions, what to do next, the user
//! service); the join itself is `doorman_agent::join`.
//!
//! Everything that can be found wrong before the invitation is used is
//! checked first, in this order: the URL, `--start`'s needs, the files
//! (that they do not exist and can be written), the answers. The code is
//! sent last, so that a refusal leaves the invitation as it was.
//!
//! A command's arguments are visible to every user of the computer (`ps`,
//! `/proc/PID/cmdline`) for as long as it runs, questions included: with
//! `-` for the URL, it is read from standard input instead ([`join_url`]).

use crate::cli::JoinArgs;
use anyhow::{Context, Result, bail};
use doorman_core::join::{JoinAnswers, JoinUrl};
use doorman_core::limits::{
    DEFAULT_TIMEOUT_SECS, MAX_RECIPIENTS, MAX_TIMEOUT_SECS, MIN_TIMEOUT_SECS,
};
use doorman_core::settings::{split_list, validate_recipient};
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};

/// The user service `--start` enables, as the package installs it.
const USER_SERVICE: &str = "doorman-agent";

pub async fn run(args: JoinArgs) -> Result<()> {
    let url = join_url(&args.url)?;
    // The default every other command reads (issue 31: one per install).
    let given = crate::agent_config::agent_config(args.config)?;
    let config = std::path::absolute(&given).unwrap_or(given);
    if args.start {
        check_start(&config)?;
    }
    // The key is written into the folder next: it is closed first.
    #[cfg(windows)]
    crate::on_windows::protect_settings_folder(&config)?;
    let reservation = doorman_agent::join::reserve(&url, &config)?;
    let answers = if std::io::stdin().is_terminal() {
        ask()?
    } else {
        JoinAnswers::default()
    };
    let ca = reservation.ca().map(Path::to_path_buf);
    let joined = reservation.redeem(&url, &answers).await?;
    println!(
        "Joined {} as {:?}: wrote {}",
        url.origin(),
        joined.name,
        config.display()
    );
    if let Some(ca) = ca {
        println!("and the server's CA beside it, {}", ca.display());
    }
    if answers.recipients.is_empty() {
        println!(
            "Email authorization is off (no recipients); turn it on with\n  doorman settings --config {} set --recipients ADDR[,ADDR...] --require-email-authorization true",
            config.display()
        );
    } else {
        println!(
            "Email authorization is on: {} may approve; a request waits {} s.",
            answers.recipients.join(", "),
            answers.timeout
        );
    }
    if args.start {
        return start(&config).await;
    }
    #[cfg(unix)]
    println!(
        "Start the agent:\n  doorman agent --config {}\nor, installed from the package, as your user service (it reads {}):\n  systemctl --user enable --now {USER_SERVICE}",
        config.display(),
        user_service_config().map_or_else(
            || String::from("~/.config/doorman/agent.toml"),
            |path| path.display().to_string()
        )
    );
    #[cfg(not(unix))]
    println!(
        "Start the agent as a Windows service (as an administrator):\n  doorman agent install-service --config {}\nor in this window:\n  doorman agent --config {}",
        config.display(),
        config.display()
    );
    Ok(())
}

/// The join URL: `argument`, or with `-` the first line of standard input
/// (asked for on a terminal), where no other user of the computer can
/// read it. The whole line `invite` printed is taken as well.
fn join_url(argument: &str) -> Result<JoinUrl> {
    if argument != "-" {
        return Ok(JoinUrl::parse(argument)?);
    }
    if std::io::stdin().is_terminal() {
        eprint!("Join URL (what `doorman admin agent invite` printed): ");
        std::io::stderr().flush()?;
    }
    let mut line = String::new();
    std::io::stdin()
        .read_line(&mut line)
        .context("cannot read the join URL from standard input")?;
    let text = line.trim();
    let text = text
        .strip_prefix("doorman agent join ")
        .map_or(text, str::trim);
    Ok(JoinUrl::parse(text.trim_matches('\''))?)
}

/// Where the packaged user service reads its settings: the default
/// settings file, `$XDG_CONFIG_HOME/doorman/agent.toml` (systemd's `%E`),
/// else under `~/.config`.
fn user_service_config() -> Option<PathBuf> {
    crate::agent_config::agent_config(None).ok()
}

/// What `--start` needs, checked before the invitation is used: settings
/// where the user service reads them, and `systemctl`.
fn check_start(config: &Path) -> Result<()> {
    let service = user_service_config().context(
        "--start: neither XDG_CONFIG_HOME nor HOME says where the user service reads its settings",
    )?;
    if config != service {
        bail!(
            "--start starts the user service {USER_SERVICE}, which reads {}: pass --config {} too, or leave --start out and run `doorman agent --config {}`",
            service.display(),
            service.display(),
            config.display()
        );
    }
    let on_path = std::env::var_os("PATH").is_some_and(|paths| {
        std::env::split_paths(&paths).any(|dir| dir.join("systemctl").is_file())
    });
    if !on_path {
        bail!(
            "--start needs systemctl, which is not on PATH: leave --start out, and start the agent with `doorman agent --config {}`",
            config.display()
        );
    }
    Ok(())
}

/// `systemctl --user enable --now doorman-agent`.
async fn start(config: &Path) -> Result<()> {
    let status = tokio::process::Command::new("systemctl")
        .args(["--user", "enable", "--now", USER_SERVICE])
        .status()
        .await
        .context("cannot run systemctl")?;
    if !status.success() {
        bail!(
            "`systemctl --user enable --now {USER_SERVICE}` failed ({status}); the settings are written: start the agent with `doorman agent --config {}`",
            config.display()
        );
    }
    println!(
        "Started the user service {USER_SERVICE}; `systemctl --user status {USER_SERVICE}` shows it."
    );
    Ok(())
}

/// Asks for the recipients and the timeout on the terminal, each with its
/// default (an empty answer keeps it).
fn ask() -> Result<JoinAnswers> {
    eprintln!(
        "Who approves connections to this computer, by email? Addresses, comma-separated; none leaves email authorization off."
    );
    let recipients = ask_until("Recipients [none]: ", Vec::new(), |text| {
        let list = split_list(text);
        if list.len() > MAX_RECIPIENTS {
            return Err(format!("at most {MAX_RECIPIENTS} recipients"));
        }
        for recipient in &list {
            validate_recipient(recipient)?;
        }
        Ok(list)
    })?;
    let question = format!("Seconds a request waits for a decision [{DEFAULT_TIMEOUT_SECS}]: ");
    let timeout = ask_until(&question, DEFAULT_TIMEOUT_SECS, |text| {
        text.parse::<u32>()
            .ok()
            .filter(|seconds| (MIN_TIMEOUT_SECS..=MAX_TIMEOUT_SECS).contains(seconds))
            .ok_or_else(|| {
                format!("give a number of seconds from {MIN_TIMEOUT_SECS} to {MAX_TIMEOUT_SECS}")
            })
    })?;
    let answers = JoinAnswers {
        recipients,
        timeout,
    };
    answers.check()?;
    Ok(answers)
}

/// Asks `question` until the answer passes `parse`, three times at most;
/// an empty answer, or the end of the input, is `default`.
fn ask_until<T>(
    question: &str,
    default: T,
    parse: impl Fn(&str) -> Result<T, String>,
) -> Result<T> {
    for _ in 0..3 {
        eprint!("{question}");
        std::io::stderr().flush()?;
        let mut line = String::new();
        if std::io::stdin().read_line(&mut line)? == 0 {
            eprintln!();
            return Ok(default);
        }
        let line = line.trim();
        if line.is_empty() {
            return Ok(default);
        }
        match parse(line) {
            Ok(value) => return Ok(value),
            Err(problem) => eprintln!("  {problem}"),
        }
    }
    bail!("no valid answer in three tries: nothing was written, and the invitation is unused")
}
