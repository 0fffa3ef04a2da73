//! The tray icon of the agent run as the desktop's user, where the desktop
//! has a StatusNotifierItem host (KDE, GNOME with the AppIndicator
//! extension, most others): the computer's online state and the requests
//! waiting for an answer here, from the agent's consent socket, and
//! **Settings…**, which opens the settings window. Spoken over D-Bus by
//! ksni (zbus, pure Rust, no GTK). Where there is no session bus or no
//! host, there is no icon and nothing fails.

use crate::window::{DEFAULT_IDLE, SettingsWindow};
use doorman_agent::consent::{self, ConsentRequest, ConsentResponse};
use ksni::TrayMethods;
use std::path::PathBuf;
use std::time::Duration;

/// How often the icon asks the agent how it is.
const REFRESH: Duration = Duration::from_secs(2);

/// What the icon shows.
#[derive(Debug)]
pub struct DoormanTray {
    computer: String,
    config: PathBuf,
    online: bool,
    waiting: usize,
}

impl ksni::Tray for DoormanTray {
    fn id(&self) -> String {
        "doorman".into()
    }

    fn title(&self) -> String {
        format!("Doorman: {}", self.computer)
    }

    fn icon_name(&self) -> String {
        if self.online {
            "network-transmit-receive".into()
        } else {
            "network-offline".into()
        }
    }

    fn status(&self) -> ksni::Status {
        if self.waiting > 0 {
            ksni::Status::NeedsAttention
        } else {
            ksni::Status::Active
        }
    }

    fn tool_tip(&self) -> ksni::ToolTip {
        ksni::ToolTip {
            title: self.title(),
            description: self.state_line(),
            ..Default::default()
        }
    }

    fn menu(&self) -> Vec<ksni::MenuItem<Self>> {
        use ksni::menu::StandardItem;
        vec![
            StandardItem {
                label: "Settings…".into(),
                activate: Box::new(|tray: &mut Self| open_settings(tray.config.clone())),
                ..Default::default()
            }
            .into(),
            StandardItem {
                label: self.state_line(),
                enabled: false,
                ..Default::default()
            }
            .into(),
        ]
    }
}

impl DoormanTray {
    fn state_line(&self) -> String {
        let state = if self.online { "Online" } else { "Offline" };
        match self.waiting {
            0 => state.to_string(),
            1 => format!("{state} · 1 request waiting"),
            n => format!("{state} · {n} requests waiting"),
        }
    }
}

/// Opens the settings window in the desktop's browser, as `doorman
/// settings open` does: `xdg-open` gets the path of the owner's redirect
/// file, never the one-time URL.
fn open_settings(config: PathBuf) {
    tokio::spawn(async move {
        match SettingsWindow::open(config, DEFAULT_IDLE).await {
            Ok(mut window) => {
                let opened = match window.browser_command("xdg-open") {
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
                        "cannot open a browser for the settings (xdg-open failed); run `doorman settings open`"
                    );
                    return;
                }
                window.closed().await;
            }
            Err(error) => tracing::warn!(%error, "cannot open the settings window"),
        }
    });
}

/// Shows the icon for the agent whose settings file is `config` and keeps
/// it current until the process ends; returns at once, quietly, where
/// there is no tray.
pub async fn show(config: PathBuf) {
    if std::env::var_os("DBUS_SESSION_BUS_ADDRESS").is_none() {
        return;
    }
    let Ok(settings) = doorman_agent::settings_file::load(&config) else {
        return;
    };
    let socket = consent::socket_path(&config, settings.consent_socket.as_deref());
    let tray = DoormanTray {
        computer: settings.name,
        config,
        online: false,
        waiting: 0,
    };
    let handle = match tray.spawn().await {
        Ok(handle) => handle,
        Err(error) => {
            tracing::debug!(%error, "no tray icon (no StatusNotifierItem host on this desktop)");
            return;
        }
    };
    loop {
        let (online, waiting) = match consent::call(&socket, &ConsentRequest::Status).await {
            Ok(ConsentResponse::Status { online, waiting }) => (online, waiting),
            _ => (false, 0),
        };
        let shown = handle
            .update(|tray| {
                tray.online = online;
                tray.waiting = waiting;
            })
            .await;
        if shown.is_none() {
            return;
        }
        tokio::time::sleep(REFRESH).await;
    }
}
