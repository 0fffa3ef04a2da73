//! What only a Windows build does: the agent as a Windows service
//! (`agent install-service`, `uninstall-service`, and `agent --service`,
//! which the service control manager runs), the machine's settings folder
//! closed to all but SYSTEM and Administrators, and `console-host`, the
//! first process in a shell's pseudo-console.

use crate::logging::LogFormat;
use anyhow::{Context, Result, anyhow, bail};
use doorman_windows::access_list;
use doorman_windows::service;
use std::ffi::OsString;
use std::path::{Path, PathBuf};

/// `doorman console-host PROGRAM [ARG...]`: runs the shell on this
/// process's console (see `doorman_windows::console_host`).
pub fn console_host(program: &OsString, args: &[OsString]) -> i32 {
    match doorman_windows::console_host::run(program, args) {
        Ok(code) => code,
        Err(error) => {
            eprintln!(
                "doorman: cannot start {}: {error}",
                program.to_string_lossy()
            );
            127
        }
    }
}

/// The machine's settings folder, `%ProgramData%\Doorman`.
fn machines_folder() -> Result<PathBuf> {
    let default = crate::agent_config::agent_config(None)?;
    default
        .parent()
        .map(Path::to_path_buf)
        .ok_or_else(|| anyhow!("no folder for the machine's settings"))
}

/// Whether `folder` (which exists) is the machine's settings folder, by
/// the paths Windows resolves (8.3 names, `\\?\` prefixes and case).
fn is_machines_folder(folder: &Path) -> Result<bool> {
    let machines = machines_folder()?;
    let (Ok(folder), Ok(machines)) = (
        std::fs::canonicalize(folder),
        std::fs::canonicalize(&machines),
    ) else {
        return Ok(false);
    };
    Ok(folder
        .as_os_str()
        .eq_ignore_ascii_case(machines.as_os_str()))
}

/// Closes the folder of `config`, when it is the machine's
/// (`%ProgramData%\Doorman`), to all but SYSTEM and Administrators, made
/// its owner, and what it holds already with it: the key and the identity
/// live there, and `%ProgramData%` lets every user read and make folders.
/// A folder named with `--config` elsewhere is its owner's to protect.
pub fn protect_settings_folder(config: &Path) -> Result<()> {
    let Some(folder) = config.parent() else {
        return Ok(());
    };
    let machines = machines_folder()?;
    if folder
        .as_os_str()
        .eq_ignore_ascii_case(machines.as_os_str())
    {
        std::fs::create_dir_all(folder)
            .with_context(|| format!("cannot create {}", folder.display()))?;
    }
    if !folder.is_dir() || !is_machines_folder(folder)? {
        return Ok(());
    }
    access_list::protect_folder(folder, access_list::ADMINISTRATORS_ONLY).with_context(|| {
        format!(
            "cannot close {} to all but SYSTEM and Administrators (run this as an administrator)",
            folder.display()
        )
    })
}

/// `doorman agent install-service`: checks the settings, closes their
/// folder, and installs (and starts) the service that runs the agent.
pub fn install_service(config: Option<PathBuf>, start: bool) -> Result<()> {
    let config = crate::agent_config::agent_config(config)?;
    let config = std::path::absolute(&config).unwrap_or(config);
    doorman_agent::settings_file::load(&config)?;
    // The service runs as LocalSystem: what it reads must be a folder no
    // other user can write, so only the machine's.
    let machines = machines_folder()?;
    if !config
        .parent()
        .is_some_and(|folder| is_machines_folder(folder).unwrap_or(false))
    {
        bail!(
            "the service reads its settings from {} only (closed to all but SYSTEM and Administrators); put {} there, or leave --config out",
            machines.display(),
            config.display()
        );
    }
    protect_settings_folder(&config)?;
    let exe = std::env::current_exe().context("cannot find doorman.exe")?;
    let arguments: Vec<OsString> = vec![
        "agent".into(),
        "--service".into(),
        "--config".into(),
        config.clone().into_os_string(),
    ];
    service::install(exe, arguments, start)
        .map_err(service_error)
        .context("cannot install the service (run this as an administrator)")?;
    println!(
        "Installed the service {} (starts with Windows, as LocalSystem), reading {}{}.",
        service::NAME,
        config.display(),
        if start { "; started" } else { "" }
    );
    Ok(())
}

/// `doorman agent uninstall-service`.
pub fn uninstall_service() -> Result<()> {
    if service::state().map_err(service_error)?.is_none() {
        return Err(anyhow!("the service {} is not installed", service::NAME));
    }
    match service::uninstall() {
        Ok(()) => {}
        // Removed a moment ago, its process still stopping: not installed.
        Err(error) if service::is_being_removed(&error) => {
            return Err(anyhow!(
                "the service {} is not installed (its removal is under way)",
                service::NAME
            ));
        }
        Err(error) => {
            return Err(service_error(error))
                .context("cannot remove the service (run this as an administrator)");
        }
    }
    println!("Removed the service {}.", service::NAME);
    Ok(())
}

/// `doorman agent --service`: the agent, run by the service control
/// manager until it asks the service to stop. It logs to `agent.log`
/// beside the settings (a service has no standard error).
pub fn run_service(config: Option<PathBuf>, format: LogFormat) -> Result<()> {
    let config = crate::agent_config::agent_config(config)?;
    if let Some(folder) = config.parent() {
        let log = folder.join("agent.log");
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .with_context(|| format!("cannot open the log {}", log.display()))?;
        crate::logging::init_file("info", format, file);
    }
    service::run(move |stop| {
        let runtime = match tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
        {
            Ok(runtime) => runtime,
            Err(error) => {
                tracing::error!(%error, "cannot start the async runtime");
                return false;
            }
        };
        // A thread of its own, not the runtime's: the runtime stops
        // without waiting for it.
        let (stopping, stop_asked) = tokio::sync::oneshot::channel::<()>();
        std::thread::spawn(move || {
            if stop.recv().is_ok() {
                let _ = stopping.send(());
            }
        });
        let stop_asked = async {
            let _ = stop_asked.await;
        };
        let ran = runtime.block_on(doorman_agent::run(config.clone(), stop_asked));
        runtime.shutdown_timeout(std::time::Duration::from_secs(5));
        match ran {
            Ok(()) => true,
            Err(error) => {
                tracing::error!(error = %error, "the agent stopped");
                false
            }
        }
    })
    .map_err(service_error)
    .context("not started by the service control manager (`doorman agent --service` is the service's own; run `doorman agent` instead)")
}

fn service_error(error: service::Error) -> anyhow::Error {
    match error {
        service::Error::Winapi(error) => anyhow::Error::new(error),
        other => anyhow!("{other}"),
    }
}
