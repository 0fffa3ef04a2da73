//! Where the agent's settings file is when neither `--config` nor
//! `DOORMAN_AGENT_CONFIG` says: `$XDG_CONFIG_HOME/doorman/agent.toml`, else
//! `~/.config/doorman/agent.toml`; on Windows, where the agent is the
//! machine's, `%ProgramData%\Doorman\agent.toml`. One default for
//! `agent`, `agent join`, `settings` (and its window) and `consent`, and
//! the file the packaged user service reads; an agent run as a system
//! service on Linux passes `--config`.

use anyhow::{Result, anyhow};
#[cfg(any(not(windows), test))]
use std::ffi::OsString;
use std::path::PathBuf;

/// The settings file: `given` (the option or its environment variable),
/// else the default of this user.
pub fn agent_config(given: Option<PathBuf>) -> Result<PathBuf> {
    if let Some(path) = given {
        return Ok(path);
    }
    default_here()
}

#[cfg(not(windows))]
fn default_here() -> Result<PathBuf> {
    default_for(
        std::env::var_os("XDG_CONFIG_HOME"),
        std::env::var_os("HOME"),
    )
    .ok_or_else(|| {
        anyhow!(
            "no settings file: neither XDG_CONFIG_HOME nor HOME is set to a directory; pass --config FILE"
        )
    })
}

/// `%ProgramData%\Doorman\agent.toml`: the machine's, as the agent of a
/// Windows computer (a service, in time) is.
#[cfg(windows)]
fn default_here() -> Result<PathBuf> {
    std::env::var_os("ProgramData")
        .map(PathBuf::from)
        .filter(|dir| dir.is_absolute())
        .map(|dir| dir.join("Doorman").join("agent.toml"))
        .ok_or_else(|| anyhow!("no settings file: %ProgramData% is not set; pass --config FILE"))
}

/// The default elsewhere for these values of `XDG_CONFIG_HOME` and `HOME`: a
/// relative or empty `XDG_CONFIG_HOME` counts as unset, as the XDG Base
/// Directory specification says.
#[cfg(any(not(windows), test))]
fn default_for(xdg_config_home: Option<OsString>, home: Option<OsString>) -> Option<PathBuf> {
    let absolute = |value: Option<OsString>| value.map(PathBuf::from).filter(|p| p.is_absolute());
    let config = absolute(xdg_config_home).or_else(|| absolute(home).map(|h| h.join(".config")))?;
    Some(config.join("doorman").join("agent.toml"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xdg_config_home_first_then_home() {
        let os = |s: &str| Some(OsString::from(s));
        let file = |s: &str| Some(PathBuf::from(s));
        assert_eq!(
            default_for(os("/x/config"), os("/home/a")),
            file("/x/config/doorman/agent.toml")
        );
        for xdg in [None, os(""), os("relative")] {
            assert_eq!(
                default_for(xdg, os("/home/a")),
                file("/home/a/.config/doorman/agent.toml")
            );
        }
        assert_eq!(default_for(None, None), None);
        assert_eq!(
            agent_config(file("/etc/doorman/agent.toml")).unwrap(),
            PathBuf::from("/etc/doorman/agent.toml")
        );
    }
}
