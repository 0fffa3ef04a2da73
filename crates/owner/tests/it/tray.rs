//! The tray icon on a private D-Bus session bus (a `dbus-daemon` this test
//! starts), with a stand-in StatusNotifierWatcher (the desktop's tray host):
//! the agent's icon registers, and its menu holds Settings… and the
//! computer's state read from the running agent; without a host, no icon
//! and nothing fails.
//!
//! Needs `dbus-daemon` (Debian's dbus, which `.ci/run` installs).

use doorman_test_support::{World, skip_without, which};
use std::collections::HashMap;
use std::process::Stdio;
use std::time::Duration;
use tokio::io::AsyncBufReadExt;
use tokio::sync::mpsc;
use zbus::zvariant::OwnedValue;

/// Stands for the desktop's tray host: records who registers an item.
struct Watcher {
    registered: mpsc::UnboundedSender<(String, String)>,
}

#[zbus::interface(name = "org.kde.StatusNotifierWatcher")]
impl Watcher {
    fn register_status_notifier_item(
        &self,
        service: &str,
        #[zbus(header)] header: zbus::message::Header<'_>,
    ) {
        let sender = header.sender().map(|s| s.to_string()).unwrap_or_default();
        let _ = self.registered.send((sender, service.to_string()));
    }

    fn register_status_notifier_host(&self, _service: &str) {}

    #[zbus(property)]
    fn registered_status_notifier_items(&self) -> Vec<String> {
        Vec::new()
    }

    #[zbus(property)]
    fn is_status_notifier_host_registered(&self) -> bool {
        true
    }

    #[zbus(property)]
    fn protocol_version(&self) -> i32 {
        0
    }
}

type Layout = (u32, (i32, HashMap<String, OwnedValue>, Vec<OwnedValue>));

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agents_tray_icon_registers_with_settings_in_its_menu() {
    if which("dbus-daemon").is_none() {
        skip_without("dbus-daemon", "apt-get install dbus");
        return;
    }
    let mut bus = tokio::process::Command::new("dbus-daemon")
        .args(["--session", "--nofork", "--nopidfile", "--print-address=1"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("dbus-daemon starts");
    let mut lines = tokio::io::BufReader::new(bus.stdout.take().unwrap()).lines();
    let address = tokio::time::timeout(Duration::from_secs(10), lines.next_line())
        .await
        .expect("the bus's address within 10 s")
        .unwrap()
        .expect("an address");
    // This test binary holds this one test: nothing else reads the
    // environment while it is set.
    unsafe { std::env::set_var("DBUS_SESSION_BUS_ADDRESS", &address) };

    let (registered, mut registrations) = mpsc::unbounded_channel();
    let host = zbus::connection::Builder::address(address.as_str())
        .unwrap()
        .name("org.kde.StatusNotifierWatcher")
        .unwrap()
        .serve_at("/StatusNotifierWatcher", Watcher { registered })
        .unwrap()
        .build()
        .await
        .expect("the stand-in host on the bus");

    let world = World::start().await;
    let tray = tokio::spawn(doorman_owner::tray::show(world.agent_config.clone()));
    let (sender, service) = tokio::time::timeout(Duration::from_secs(10), registrations.recv())
        .await
        .expect("the icon registers within 10 s")
        .expect("a registration");
    let destination = if service.starts_with('/') {
        sender
    } else {
        service
    };

    let item = zbus::Proxy::new(
        &host,
        destination.clone(),
        "/StatusNotifierItem",
        "org.kde.StatusNotifierItem",
    )
    .await
    .unwrap();
    let title: String = item.get_property("Title").await.unwrap();
    assert_eq!(title, "Doorman: office-pc");
    let menu_path: zbus::zvariant::OwnedObjectPath = item.get_property("Menu").await.unwrap();
    let menu = zbus::Proxy::new(&host, destination, menu_path, "com.canonical.dbusmenu")
        .await
        .unwrap();
    // The agent is online; the icon says so within a refresh or two.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let layout: Layout = menu
            .call("GetLayout", &(0i32, -1i32, Vec::<String>::new()))
            .await
            .expect("the menu's layout");
        let text = format!("{layout:?}");
        assert!(text.contains("Settings…"), "{text}");
        if text.contains("Online") {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the menu never said Online: {text}"
        );
        // The icon polls the agent; nothing to await from here.
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tray.abort();

    // A desktop without a tray host: no icon, and nothing fails.
    drop(menu);
    drop(item);
    drop(host);
    tokio::time::timeout(
        Duration::from_secs(10),
        doorman_owner::tray::show(world.agent_config.clone()),
    )
    .await
    .expect("without a host, the icon gives up at once");
    let _ = bus.kill().await;
}
