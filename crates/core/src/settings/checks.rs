//! Checks of single values of the settings, shared with the server (which
//! checks what operators ask for by the same rules).

use crate::display::{check_visible, hidden_kind};
use crate::limits::MAX_ADDRESS_LEN;

/// Checks one recipient as an RFC 5322 mailbox (`a@example.com` or
/// `Name <a@example.com>`).
pub fn validate_recipient(recipient: &str) -> Result<(), String> {
    if recipient.len() > MAX_ADDRESS_LEN {
        return Err(format!(
            "{recipient:?} is longer than {MAX_ADDRESS_LEN} bytes"
        ));
    }
    if let Err(problem) = check_visible(recipient) {
        return Err(format!("{recipient:?} {problem}"));
    }
    recipient
        .parse::<lettre::message::Mailbox>()
        .map(drop)
        .map_err(|_| format!("{recipient:?} is not a valid email address"))
}

/// Checks a forward target: `host:port` with a port from 1 to 65535.
pub fn validate_forward_target(target: &str) -> Result<(), String> {
    let Some((host, port)) = target.rsplit_once(':') else {
        return Err(format!("{target:?} must be host:port"));
    };
    if host.is_empty()
        || host
            .chars()
            .any(|c| c.is_whitespace() || hidden_kind(c).is_some())
    {
        return Err(format!("{target:?} has no valid host"));
    }
    match port.parse::<u16>() {
        Ok(port) if port > 0 => Ok(()),
        _ => Err(format!("{target:?} has no valid port (1-65535)")),
    }
}

/// The longest shared folder's path.
const MAX_FILE_ROOT_LEN: usize = 1024;

/// Checks a shared folder (`[services] files`): an absolute path or one
/// under `~/`, without `..`, on one visible line. On Windows, absolute
/// means with its drive (`C:\Users\Owner\Shared`, `/` or `\` between
/// names), and `~\` is the home as well as `~/`.
pub fn validate_file_root(root: &str) -> Result<(), String> {
    check_file_root(root, cfg!(windows))
}

/// [`validate_file_root`] for a Windows computer (`windows`) or a Unix
/// one, whichever this is: both are tested everywhere.
pub(super) fn check_file_root(root: &str, windows: bool) -> Result<(), String> {
    let separators: &[char] = if windows { &['/', '\\'] } else { &['/'] };
    let home = root == "~"
        || root
            .strip_prefix('~')
            .is_some_and(|rest| rest.starts_with(separators));
    let absolute = if windows {
        with_drive(root)
    } else {
        root.starts_with('/')
    };
    if !(absolute || home) {
        return Err(if windows {
            format!("{root:?} must be an absolute path with its drive (C:\\...) or start with ~/")
        } else {
            format!("{root:?} must be an absolute path or start with ~/")
        });
    }
    if root.len() > MAX_FILE_ROOT_LEN {
        return Err(format!("is longer than {MAX_FILE_ROOT_LEN} bytes"));
    }
    if root.split(separators).any(|part| part == "..") {
        return Err(format!("{root:?} must not contain .."));
    }
    if root == "/" {
        return Err("\"/\" would share the whole computer: name the folders to share".into());
    }
    if windows && with_drive(root) && root.len() == 3 {
        return Err(format!(
            "{root:?} would share the whole drive: name the folders to share"
        ));
    }
    check_visible(root).map_err(|problem| format!("{root:?} {problem}"))
}

/// Whether `root` starts with a drive and its root folder (`C:\`, `C:/`).
fn with_drive(root: &str) -> bool {
    let bytes = root.as_bytes();
    bytes.len() >= 3
        && bytes[0].is_ascii_alphabetic()
        && bytes[1] == b':'
        && (bytes[2] == b'\\' || bytes[2] == b'/')
}

/// The most age recipients a computer's recordings may be sealed to.
pub const MAX_RECORDING_RECIPIENTS: usize = 16;

/// What is wrong with `recordings_to`, each problem with its field.
pub(super) fn recording_problems(recipients: &[String]) -> Vec<super::SettingsProblem> {
    let mut problems = Vec::new();
    if recipients.len() > MAX_RECORDING_RECIPIENTS {
        problems.push(super::SettingsProblem::new(
            "recordings_to",
            format!("at most {MAX_RECORDING_RECIPIENTS} recipients"),
        ));
    }
    for (index, recipient) in recipients.iter().enumerate() {
        if !is_age_recipient(recipient) {
            let shown: String = recipient.chars().take(80).collect();
            problems.push(super::SettingsProblem::new(
                &format!("recordings_to[{index}]"),
                format!(
                    "{:?} is not an age recipient: give the age1… public key that `age-keygen` printed",
                    crate::display::escape_hidden(&shown)
                ),
            ));
        }
    }
    problems
}

/// Whether `text` has the shape of an age X25519 recipient: `age1` and 58
/// bech32 characters (the agent checks its checksum when it seals).
fn is_age_recipient(text: &str) -> bool {
    const BECH32: &str = "qpzry9x8gf2tvdw0s3jn54khce6mua7l";
    text.strip_prefix("age1")
        .is_some_and(|data| data.len() == 58 && data.chars().all(|c| BECH32.contains(c)))
}
