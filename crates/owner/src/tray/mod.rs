//! The tray icon of the agent run as the desktop's user: the computer's
//! online state and the requests waiting for an answer here (from the
//! agent's consent socket or pipe), and **Settings…**, which opens the
//! settings window. A StatusNotifierItem over D-Bus on Unix desktops, the
//! notification area on Windows, where the icon also shows the agent's
//! notifications. Where there is no tray, there is no icon and nothing
//! fails.

use crate::window::{DEFAULT_IDLE, SettingsWindow};
use doorman_agent::consent::{self, ConsentRequest, ConsentResponse};
use std::path::{Path, PathBuf};
use std::time::Duration;

#[cfg(unix)]
mod status_notifier;
#[cfg(unix)]
pub use status_notifier::show;
#[cfg(windows)]
mod notification_area;
#[cfg(windows)]
pub use notification_area::show;

/// How often the icon asks the agent how it is.
const REFRESH: Duration = Duration::from_secs(2);

/// Whether the agent is online, and how many requests wait here (offline
/// and none when the agent does not answer).
async fn status(socket: &Path) -> (bool, usize) {
    match consent::call(socket, &ConsentRequest::Status).await {
        Ok(ConsentResponse::Status { online, waiting }) => (online, waiting),
        _ => (false, 0),
    }
}

/// The state as the icon's menu and tooltip say it.
fn state_line(online: bool, waiting: usize) -> String {
    let state = if online { "Online" } else { "Offline" };
    match waiting {
        0 => state.to_string(),
        1 => format!("{state} · 1 request waiting"),
        n => format!("{state} · {n} requests waiting"),
    }
}

/// Opens the settings window in the desktop's browser, as `doorman
/// settings open` does: the browser gets the path of the owner's redirect
/// file, never the one-time URL.
fn open_settings(config: PathBuf) {
    tokio::spawn(async move {
        match SettingsWindow::open(config, DEFAULT_IDLE).await {
            Ok(mut window) => {
                let opened = match window.default_browser_command() {
                    Ok(command) => tokio::process::Command::from(command)
                        .status()
                        .await
                        .is_ok_and(|status| status.success()),
                    Err(error) => {
                        tracing::warn!(%error, "cannot write the settings window's redirect file");
                        false
                    }
                };
                if !opened {
                    tracing::warn!(
                        "cannot open a browser for the settings; run `doorman settings open`"
                    );
                    return;
                }
                window.closed().await;
            }
            Err(error) => tracing::warn!(%error, "cannot open the settings window"),
        }
    });
}

#[cfg(test)]
mod tests {
    use super::state_line;

    #[test]
    fn the_state_counts_the_requests_waiting() {
        assert_eq!(state_line(true, 0), "Online");
        assert_eq!(state_line(false, 1), "Offline · 1 request waiting");
        assert_eq!(state_line(true, 3), "Online · 3 requests waiting");
    }
}
