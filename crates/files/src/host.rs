//! What a copy takes from the agent's process: the home directory `~/`
//! stands for, and the umask new files and directories honour.

use std::path::PathBuf;

/// The home directory `~/` stands for: the agent's user's.
pub(crate) fn home_dir() -> Option<PathBuf> {
    std::env::var_os("HOME")
        .filter(|home| !home.is_empty())
        .map(PathBuf::from)
        .or_else(|| {
            uzers::get_user_by_uid(uzers::get_current_uid())
                .map(|u| uzers::os::unix::UserExt::home_dir(&u).to_path_buf())
        })
}

/// The process's umask, which new files and directories honour.
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
