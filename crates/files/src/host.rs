//! What a copy takes from the agent's process: the home directory `~/`
//! stands for (`HOME` on Unix, else the user's entry; `USERPROFILE` on
//! Windows), and the umask new files and directories honour (on Unix;
//! Windows has none: a new file takes its folder's access list).

use std::path::PathBuf;

/// The variable that names the home directory.
#[cfg(unix)]
pub(crate) const HOME_VARIABLE: &str = "HOME";
#[cfg(windows)]
pub(crate) const HOME_VARIABLE: &str = "USERPROFILE";

/// The home directory `~/` stands for: the agent's user's.
#[cfg(unix)]
pub(crate) fn home_dir() -> Option<PathBuf> {
    std::env::var_os(HOME_VARIABLE)
        .filter(|home| !home.is_empty())
        .map(PathBuf::from)
        .or_else(|| {
            uzers::get_user_by_uid(uzers::get_current_uid())
                .map(|u| uzers::os::unix::UserExt::home_dir(&u).to_path_buf())
        })
}

/// The home directory `~/` stands for: the agent's user's profile folder
/// (`C:\Users\NAME`; a service's is under `C:\Windows`).
#[cfg(windows)]
pub(crate) fn home_dir() -> Option<PathBuf> {
    std::env::var_os(HOME_VARIABLE)
        .filter(|home| !home.is_empty())
        .map(PathBuf::from)
}

/// The process's umask, which new files and directories honour.
#[cfg(unix)]
pub(crate) fn umask() -> u32 {
    // Linux says it in /proc (since 4.7) without changing it. Setting it
    // to read it would change it, for a moment, for every thread of the
    // agent: a shell session starting then would keep 0o022 for good.
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let said = status
        .lines()
        .find_map(|line| line.strip_prefix("Umask:"))
        .and_then(|mask| u32::from_str_radix(mask.trim(), 8).ok());
    if let Some(mask) = said {
        return mask;
    }
    // Else read by setting it, then put back: there is no read-only call.
    let old = rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o022));
    rustix::process::umask(old);
    old.bits()
}

/// No umask on Windows: none is taken from new files' modes (which
/// Windows has none of either).
#[cfg(windows)]
pub(crate) fn umask() -> u32 {
    0
}
