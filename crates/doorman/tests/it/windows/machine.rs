//! What the owner of a Windows computer does there: answers local consent
//! through the named pipe, changes settings (and opens the settings
//! window), joins from invitations into
//! the machine's folder (closed to others), runs the agent as a service,
//! installs the MSI, and sees the tray icon on a desktop.

use super::{COMPUTER, exe_or_skip, settings};
use doorman_test_support::wine::WindowsAgent;
use doorman_test_support::world::World;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Local consent through the named pipe: `doorman consent list` shows
/// the request waiting at the computer, `allow` lets it in, and the audit
/// names the Windows account that answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_person_at_a_windows_computer_answers_through_the_consent_pipe() {
    let Some(exe) = exe_or_skip() else { return };
    let builder = World::builder().policy("local_consent", "\"alternative\"");
    let world = builder.clone().start().await;
    let agent = WindowsAgent::start(&world, COMPUTER, &builder, &exe).await;
    let consent = |args: &'static [&'static str]| {
        let mut all = vec!["consent", "--config", "agent.toml"];
        all.extend_from_slice(args);
        let agent = &agent;
        async move { agent.run(&all).await }
    };

    let connecting = world.connect_to(
        COMPUTER,
        &world.operator_token,
        &["cmd", "/c", "echo local"],
        "at the desk",
    );
    let id = connecting.request_id().await;
    let (status, listed, stderr) = consent(&["list"]).await;
    assert_eq!(status, Some(0), "{stderr}");
    assert!(listed.starts_with(&id), "{listed}");
    assert!(listed.contains("\"at the desk\""), "{listed}");

    let allow = id[..8].to_string();
    let mut all = vec!["consent", "--config", "agent.toml", "allow"];
    all.push(&allow);
    let (status, _, said) = agent.run(&all).await;
    assert_eq!(status, Some(0), "{said}");
    assert!(said.contains(&format!("allowed request {id}")), "{said}");
    let stdout = connecting.stdout.clone();
    assert_eq!(connecting.finish().await, Ok(0));
    assert_eq!(stdout.text(), "local\r\n");
    let allowed = world.wait_for_audit("allowed").await;
    let actor = allowed.actor.unwrap_or_default();
    assert!(actor.ends_with(&format!(" (at {COMPUTER})")), "{actor}");
    assert!(!actor.starts_with("S-1-"), "named by account: {actor}");

    // Nothing waits now.
    let (status, _, stderr) = consent(&["list"]).await;
    assert_eq!(status, Some(0), "{stderr}");
    assert!(stderr.contains("no request is waiting"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_windows_computer_changes_its_settings_and_joins_from_invitations() {
    let Some(exe) = exe_or_skip() else { return };
    let builder = World::builder().without_email_authorization();
    let world = builder.clone().start().await;
    let agent = WindowsAgent::start(&world, COMPUTER, &builder, &exe).await;

    let (status, _, stderr) = settings(&agent, &["set", "--email-timeout", "240"]).await;
    assert_eq!(status, Some(0), "{stderr}");
    let written = std::fs::read_to_string(agent.dir.path().join("agent.toml")).unwrap();
    assert!(
        written.contains("email_authorization_timeout = 240"),
        "{written}"
    );
    let (status, shown, stderr) = settings(&agent, &["show"]).await;
    assert_eq!(status, Some(0), "{stderr}");
    assert!(
        shown.contains("email_authorization_timeout = 240"),
        "{shown}"
    );
    let (status, _, stderr) = settings(&agent, &["set", "--email-timeout", "0"]).await;
    assert_ne!(status, Some(0), "a bad value is refused");
    assert!(stderr.contains("email"), "{stderr}");

    // A second computer joins from an invitation: its key is written
    // beside the first's, and the hint names no Linux service.
    let invitation = doorman_server::admin::invite(
        world.broker.store(),
        "win-joined",
        Duration::from_secs(86_400),
        None,
    )
    .await
    .expect("an invitation");
    let url = invitation.url.expose();
    let (status, said, stderr) = agent
        .run(&["agent", "join", &url, "--config", "joined.toml"])
        .await;
    assert_eq!(status, Some(0), "{stderr}");
    assert!(
        said.contains("doorman agent install-service --config ") && said.contains("joined.toml"),
        "{said}"
    );
    assert!(!said.contains("systemctl"), "{said}");
    let joined = std::fs::read_to_string(agent.dir.path().join("joined.toml")).unwrap();
    assert!(joined.contains("name = \"win-joined\""), "{joined}");
    assert!(joined.contains("key = \"dak_"), "the key is written");

    // Without --config, the machine's file: %ProgramData%\Doorman\agent.toml.
    let invitation = doorman_server::admin::invite(
        world.broker.store(),
        "win-machine",
        Duration::from_secs(86_400),
        None,
    )
    .await
    .expect("an invitation");
    let url = invitation.url.expose();
    let (status, _, stderr) = agent.run(&["agent", "join", &url]).await;
    assert_eq!(status, Some(0), "{stderr}");
    let machine = agent
        .dir
        .path()
        .join("prefix/drive_c/ProgramData/Doorman/agent.toml");
    let written =
        std::fs::read_to_string(&machine).unwrap_or_else(|e| panic!("{}: {e}", machine.display()));
    assert!(written.contains("name = \"win-machine\""), "{written}");
    let (status, shown, stderr) = agent.run(&["settings", "show"]).await;
    assert_eq!(status, Some(0), "{stderr}");
    assert!(shown.contains("win-machine"), "{shown}");
    assert_closed_to_others(&machine);
}

/// The machine's settings folder is closed to all but SYSTEM and
/// Administrators. Wine keeps no access lists: it renders one as the
/// folder's Unix mode, which then gives other users nothing.
fn assert_closed_to_others(settings: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let folder = settings.parent().unwrap();
    let mode = std::fs::metadata(folder).unwrap().permissions().mode();
    assert_eq!(mode & 0o007, 0, "{} is {mode:o}", folder.display());
}

/// The settings window there: `settings open --no-browser` prints its
/// one-time address on loopback, and the page opens once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_windows_computer_opens_its_settings_window() {
    use tokio::io::AsyncBufReadExt;
    let Some(exe) = exe_or_skip() else { return };
    let builder = World::builder().without_email_authorization();
    let world = builder.clone().start().await;
    let agent = WindowsAgent::start(&world, COMPUTER, &builder, &exe).await;
    let mut window = agent.start_program(
        "doorman.exe",
        &["settings", "--config", "agent.toml", "open", "--no-browser"],
    );
    let output = window.stdout.take().unwrap();
    let mut lines = tokio::io::BufReader::new(output).lines();
    let find = async {
        while let Ok(Some(line)) = lines.next_line().await {
            if let Some(url) = line.trim().strip_prefix("http://") {
                return format!("http://{url}");
            }
        }
        panic!("no address printed");
    };
    let url = tokio::time::timeout(Duration::from_secs(60), find)
        .await
        .expect("the address within 60 s");
    assert!(url.starts_with("http://127.0.0.1:"), "{url}");
    let page = world.http.get(&url).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let text = page.text().await.unwrap();
    assert!(text.contains("Require email authorization for incoming connections"));
    assert!(text.contains(COMPUTER), "the computer's name");
    assert_eq!(
        world.http.get(&url).send().await.unwrap().status(),
        403,
        "once"
    );
}

/// `agent install-service` installs and starts the service, which runs
/// the agent of the machine's settings (online at the server), and
/// `uninstall-service` stops and removes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_windows_computer_runs_its_agent_as_a_service() {
    let Some(exe) = exe_or_skip() else { return };
    let builder = World::builder().without_email_authorization();
    let world = builder.clone().start().await;
    let agent = WindowsAgent::start(&world, COMPUTER, &builder, &exe).await;
    let invitation = doorman_server::admin::invite(
        world.broker.store(),
        "win-service",
        Duration::from_secs(86_400),
        None,
    )
    .await
    .expect("an invitation");
    let (status, _, stderr) = agent
        .run(&["agent", "join", &invitation.url.expose()])
        .await;
    assert_eq!(status, Some(0), "{stderr}");

    // Wine stops its services once no other program runs: one waits.
    let _session = agent.start_program("cmd.exe", &[]);
    let (status, said, stderr) = agent.run(&["agent", "install-service"]).await;
    assert_eq!(status, Some(0), "{stderr}");
    assert!(
        said.contains("Installed the service DoormanAgent"),
        "{said}"
    );
    let online = world.broker.agents().wait_for("win-service", true);
    if tokio::time::timeout(Duration::from_secs(60), online)
        .await
        .is_err()
    {
        let log = agent
            .dir
            .path()
            .join("prefix/drive_c/ProgramData/Doorman/agent.log");
        panic!(
            "the service did not come online: {:?}",
            std::fs::read_to_string(log)
        );
    }
    let settings = agent
        .dir
        .path()
        .join("prefix/drive_c/ProgramData/Doorman/agent.toml");
    assert_closed_to_others(&settings);
    // The file `join` wrote before, with the folder: Wine passes no list
    // on to new files, so this is `install-service` closing what was there.
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&settings).unwrap().permissions().mode();
    assert_eq!(mode & 0o007, 0, "agent.toml is {mode:o}");
    let (status, _, stderr) = agent.run(&["agent", "install-service"]).await;
    assert_ne!(status, Some(0), "installed twice");
    assert!(stderr.contains("cannot install the service"), "{stderr}");

    let (status, said, stderr) = agent.run(&["agent", "uninstall-service"]).await;
    assert_eq!(status, Some(0), "{stderr}");
    assert!(said.contains("Removed the service DoormanAgent"), "{said}");
    world.broker.agents().wait_for("win-service", false).await;
    let (status, _, stderr) = agent.run(&["agent", "uninstall-service"]).await;
    assert_ne!(status, Some(0));
    assert!(stderr.contains("is not installed"), "{stderr}");
}

/// The installer (`contrib/windows/msi`, which `.ci/run` makes as
/// `DOORMAN_WINDOWS_MSI`) installs `doorman.exe` under Program Files,
/// and it runs from there; the tray icon starts at every sign-in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_msi_installs_doorman_under_program_files() {
    let Some(msi) = std::env::var_os("DOORMAN_WINDOWS_MSI").map(PathBuf::from) else {
        doorman_test_support::skip_without(
            "the Windows installer (DOORMAN_WINDOWS_MSI)",
            ".ci/run makes it: contrib/windows/msi --debug",
        );
        return;
    };
    let prefix = doorman_test_support::wine::WinePrefix::new();
    std::fs::copy(&msi, prefix.dir.path().join("doorman.msi")).unwrap();
    let (status, _, stderr) = prefix.run("msiexec", &["/i", "doorman.msi", "/qn"]).await;
    assert_eq!(status, Some(0), "{stderr}");
    let installed = prefix.drive_c().join("Program Files").join("Doorman");
    assert!(
        installed.join("doorman.exe").is_file(),
        "{}",
        installed.display()
    );
    prefix.add_shim(&installed);
    let (status, said, stderr) = prefix
        .run("C:\\Program Files\\Doorman\\doorman.exe", &["--version"])
        .await;
    assert_eq!(status, Some(0), "{stderr}");
    assert!(said.starts_with("doorman "), "{said}");
    let startup = prefix
        .drive_c()
        .join("ProgramData/Microsoft/Windows/Start Menu/Programs/StartUp/Doorman.lnk");
    assert!(startup.is_file(), "{}", startup.display());
}

/// On a desktop (an X display, under Wine), the agent shows its icon in
/// the notification area, and its notifications go there while sessions
/// run as before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_windows_computer_shows_its_tray_icon_on_a_desktop() {
    let Some(exe) = exe_or_skip() else { return };
    let Some(display) = doorman_test_support::display::Display::start().await else {
        return;
    };
    let builder = World::builder().without_email_authorization();
    let world = builder.clone().start().await;
    let desktop = [("DISPLAY", display.name.as_str())];
    let agent = WindowsAgent::start_with(&world, COMPUTER, &builder, &exe, &desktop).await;
    agent
        .wait_for_log("tray icon shown in the notification area")
        .await;
    let echo = world.connect_to(
        COMPUTER,
        &world.operator_token,
        &["cmd", "/c", "echo shown"],
        "",
    );
    let stdout = echo.stdout.clone();
    assert_eq!(echo.finish().await, Ok(0));
    assert_eq!(stdout.text(), "shown\r\n");
    let log = agent.wait_for_log("session of alice").await;
    assert!(!log.contains("panicked"), "{log}");
}
