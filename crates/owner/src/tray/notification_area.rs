//! The tray icon in the Windows notification area: its tooltip says the
//! state, its menu opens the settings window, and it shows the agent's
//! notifications (in the agent's own process) and, in any process, that
//! a request waits for an answer here, as toasts. Under a desktop-less
//! session (a service, or Wine without a display) there is no icon.

use super::{REFRESH, open_settings, state_line, status};
use doorman_agent::consent;
use std::path::PathBuf;

/// Shows the icon for the agent whose settings file is `config` and keeps
/// it current until the process ends; returns at once, quietly, where
/// there is no notification area.
pub async fn show(config: PathBuf) {
    // A standard user cannot read the service's settings (their folder is
    // the administrators'): the default pipe then, and no name.
    let (socket, title) = match doorman_agent::settings_file::load(&config) {
        Ok(settings) => (
            consent::socket_path(&config, settings.consent_socket.as_deref()),
            format!("Doorman: {}", settings.name),
        ),
        Err(_) => (consent::socket_path(&config, None), "Doorman".to_string()),
    };
    let (choose, mut chosen) = tokio::sync::mpsc::unbounded_channel();
    let menu = vec!["Settings…".to_string()];
    let icon = match doorman_windows::tray::show(&title, menu, move |item| {
        let _ = choose.send(item);
    }) {
        Ok(icon) => icon,
        Err(error) => {
            tracing::debug!(%error, "no tray icon (no notification area here)");
            return;
        }
    };
    tracing::info!(%title, "tray icon shown in the notification area");
    let mut notes = doorman_agent::notify::desktop_notes();
    let mut waited = 0;
    let mut refresh = tokio::time::interval(REFRESH);
    loop {
        tokio::select! {
            Some(_) = chosen.recv() => open_settings(config.clone()),
            note = notes.recv() => match note {
                Ok(text) => icon.notify("Doorman", &text),
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                Err(tokio::sync::broadcast::error::RecvError::Closed) => {
                    notes = doorman_agent::notify::desktop_notes();
                }
            },
            _ = refresh.tick() => {
                let (online, waiting) = status(&socket).await;
                icon.set_tip(&format!("{title} · {}", state_line(online, waiting)));
                if waiting > waited {
                    icon.notify("Doorman", "A connection request waits for your answer here: Settings…");
                }
                waited = waiting;
            }
        }
    }
}
