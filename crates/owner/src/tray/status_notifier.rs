//! The tray icon where the desktop has a StatusNotifierItem host (KDE,
//! GNOME with the AppIndicator extension, most others), spoken over D-Bus
//! by ksni (zbus, pure Rust, no GTK). Where there is no session bus or no
//! host, there is no icon and nothing fails.

use super::{REFRESH, open_settings, state_line, status};
use doorman_agent::consent;
use ksni::TrayMethods;
use std::path::PathBuf;

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
            description: state_line(self.online, self.waiting),
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
                label: state_line(self.online, self.waiting),
                enabled: false,
                ..Default::default()
            }
            .into(),
        ]
    }
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
        let (online, waiting) = status(&socket).await;
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
