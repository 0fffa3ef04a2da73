//! The Windows agent (issue 28): `doorman.exe`, cross-built, run under
//! Wine against the Linux server. Commands run with their output and exit
//! status; a shell runs in a pseudo-console; `settings set|show` and
//! `agent join` work on its files; the person at the computer answers
//! local consent through its pipe; forwards carry bytes both ways; files
//! are copied to and from its shared folder (a path outside it, through
//! `..`, or with a name Windows reads as a device, refused before anyone
//! is asked); the MSI installs the exe. No junction is made in the shared
//! folder here (stable std makes none, and a Linux symbolic link is no
//! reparse point to Wine): the reparse point check stands untested under
//! Wine, and the names the Windows agent refuses are tested in
//! `doorman-files`' `windows_names`. Runs where
//! `.ci/run` built the exe (`DOORMAN_WINDOWS_EXE`) and the installer
//! (`DOORMAN_WINDOWS_MSI`); elsewhere each test says it was skipped (and
//! fails under CI).

use doorman_client::copy::plan::{CopyOptions, CopyPlan};
use doorman_client::{ConnectError, ForwardSpec, SessionKind};
use doorman_test_support::wine::{WindowsAgent, windows_exe};
use doorman_test_support::world::World;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const COMPUTER: &str = "win-pc";

fn exe_or_skip() -> Option<PathBuf> {
    let exe = windows_exe();
    if exe.is_none() {
        doorman_test_support::skip_without(
            "the cross-built doorman.exe (DOORMAN_WINDOWS_EXE)",
            ".ci/run builds it: cargo build --target x86_64-pc-windows-gnu -p doorman",
        );
    }
    exe
}

/// `doorman.exe settings --config agent.toml ARGS` beside the agent.
async fn settings(agent: &WindowsAgent, args: &[&str]) -> (Option<i32>, String, String) {
    let mut all = vec!["settings", "--config", "agent.toml"];
    all.extend_from_slice(args);
    agent.run(&all).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_windows_computer_runs_commands_with_their_output_and_exit_status() {
    let Some(exe) = exe_or_skip() else { return };
    let builder = World::builder()
        .without_email_authorization()
        .notify_command("echo %DOORMAN_EVENT% %DOORMAN_OPERATOR%>> notified.txt");
    let world = builder.clone().start().await;
    let agent = WindowsAgent::start(&world, COMPUTER, &builder, &exe).await;

    let echo = world.connect_to(
        COMPUTER,
        &world.operator_token,
        &["cmd", "/c", "echo hello from windows"],
        "",
    );
    let stdout = echo.stdout.clone();
    assert_eq!(echo.finish().await, Ok(0));
    assert_eq!(stdout.text(), "hello from windows\r\n");

    let failing = world.connect_to(
        COMPUTER,
        &world.operator_token,
        &["cmd", "/c", "exit 7"],
        "",
    );
    assert_eq!(failing.finish().await, Ok(7));

    // The owner's notify_command runs there too, by cmd.exe, for each
    // event in turn.
    let notified = agent.dir.path().join("notified.txt");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let said = loop {
        let said = std::fs::read_to_string(&notified).unwrap_or_default();
        if said.matches("session_ended").count() >= 2 || tokio::time::Instant::now() > deadline {
            break said;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(said.contains("session_started alice"), "{said:?}");
    assert_eq!(said.matches("session_ended").count(), 2, "{said:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_windows_computer_opens_a_shell_in_a_pseudo_console() {
    let Some(exe) = exe_or_skip() else { return };
    let builder = World::builder().without_email_authorization();
    let world = builder.clone().start().await;
    let _agent = WindowsAgent::start(&world, COMPUTER, &builder, &exe).await;

    // Typed ahead, as keys: Enter is a carriage return on a console.
    let typed: &[u8] =
        b"set /a 6*7 > nul & echo shell-%PROCESSOR_ARCHITECTURE%-%CD:~1,1%\rexit 5\r";
    let shell = SessionKind::Shell {
        term: "xterm-256color".into(),
        rows: 24,
        cols: 80,
    };
    let connecting =
        world.connect_with(COMPUTER, &world.operator_token, shell, "", Box::new(typed));
    let stdout = connecting.stdout.clone();
    assert_eq!(connecting.finish().await, Ok(5), "{}", stdout.text());
    // The console's screen, as terminal text: the command echoed at the
    // prompt, then its output, in the user's profile folder (C:\...).
    let screen = stdout.text();
    assert!(screen.contains("shell-AMD64-:"), "{screen:?}");
    assert!(screen.contains("\x1b["), "terminal text: {screen:?}");
}

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

/// `path`, a folder of this side's, as Wine reaches it: its `Z:` drive is
/// this side's `/`.
fn under_wine(path: &Path) -> String {
    format!("Z:{}", path.display()).replace('/', "\\")
}

/// `COMPUTER:PATH` for `path` as Wine reaches it, written with `/` as an
/// operator would.
fn remote(path: &Path) -> OsString {
    OsString::from(format!("{COMPUTER}:Z:{}", path.display()))
}

/// Asks the Windows computer for the copy `args` with `options`, allows
/// it from its recipients' first email (the emails before are `seen`),
/// and returns how it ended.
async fn copy_allowed(
    world: &World,
    args: &[OsString],
    options: CopyOptions,
    seen: usize,
) -> Result<i32, ConnectError> {
    let plan = CopyPlan::new(args, options).expect("a copy plan");
    let copying = world.connect_with(
        COMPUTER,
        &world.operator_token,
        SessionKind::Copy(plan),
        "the figures",
        Box::new(tokio::io::empty()),
    );
    let mails = world.smtp.wait_for_more(seen).await;
    world.click(&mails[0].link(), "allow").await;
    copying.finish().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_windows_computer_copies_files_both_ways() {
    let Some(exe) = exe_or_skip() else { return };
    let dirs = tempfile::tempdir().unwrap();
    let (shared, local, back) = (
        dirs.path().join("shared"),
        dirs.path().join("local"),
        dirs.path().join("back"),
    );
    for dir in [&shared, &local, &back] {
        std::fs::create_dir_all(dir).unwrap();
    }
    let builder = World::builder();
    let world = builder.clone().start().await;
    // Only the Windows computer shares it, by its Windows path; one
    // recipient, one email for each copy.
    let windows = builder
        .files(&[under_wine(&shared).as_str()])
        .recipients(&["it@example.com"]);
    let _agent = WindowsAgent::start(&world, COMPUTER, &windows, &exe).await;

    let sent: Vec<u8> = (0..300_000u32).map(|i| (i % 253) as u8).collect();
    let file = local.join("figures.bin");
    std::fs::write(&file, &sent).unwrap();
    let kept = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000_000);
    std::fs::File::options()
        .write(true)
        .open(&file)
        .unwrap()
        .set_modified(kept)
        .unwrap();

    // Outside the shared folder, through `..`, or a device's name: refused
    // by the computer before anyone is asked.
    let outside = [
        (remote(Path::new("/etc")), "outside the folders"),
        (remote(&shared.join("../local")), "outside the folders"),
        (
            remote(&shared.join("NUL.txt")),
            "Windows reads it as a device",
        ),
    ];
    for (dest, why) in outside {
        let plan = CopyPlan::new(
            &[file.clone().into_os_string(), dest],
            CopyOptions::default(),
        )
        .expect("a copy plan");
        let refused = world.connect_with(
            COMPUTER,
            &world.operator_token,
            SessionKind::Copy(plan),
            "",
            Box::new(tokio::io::empty()),
        );
        match refused.finish().await {
            Err(ConnectError::NotOffered(message)) => assert!(message.contains(why), "{message}"),
            other => panic!("not refused: {other:?}"),
        }
    }
    assert_eq!(world.emails_queued().await, 0, "nobody was asked");

    // To the computer, keeping the time (-p): whole, under its name.
    let keep = CopyOptions {
        keep: true,
        ..CopyOptions::default()
    };
    let to = [file.clone().into_os_string(), remote(&shared)];
    assert_eq!(copy_allowed(&world, &to, keep, 0).await, Ok(0));
    let names: Vec<String> = std::fs::read_dir(&shared)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["figures.bin"], "no temporary file left");
    let landed = shared.join("figures.bin");
    assert_eq!(std::fs::read(&landed).unwrap(), sent);
    let modified = std::fs::metadata(&landed).unwrap().modified().unwrap();
    assert_eq!(modified, kept, "-p kept the modification time");

    // And back from it, the same bytes.
    let from = [remote(&landed), back.clone().into_os_string()];
    let seen = world.smtp.mails().len();
    assert_eq!(
        copy_allowed(&world, &from, CopyOptions::default(), seen).await,
        Ok(0)
    );
    assert_eq!(std::fs::read(back.join("figures.bin")).unwrap(), sent);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_windows_computer_forwards_to_a_local_service() {
    let Some(exe) = exe_or_skip() else { return };
    let echo = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let target = echo.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = echo.accept().await {
            tokio::spawn(async move {
                let (mut reader, mut writer) = stream.split();
                let _ = tokio::io::copy(&mut reader, &mut writer).await;
            });
        }
    });
    let builder = World::builder()
        .without_email_authorization()
        .forward(&[&target]);
    let world = builder.clone().start().await;
    let _agent = WindowsAgent::start(&world, COMPUTER, &builder, &exe).await;

    let spec: ForwardSpec = format!("0:{target}").parse().unwrap();
    let forwarding = world.connect_with(
        COMPUTER,
        &world.operator_token,
        SessionKind::Forward(vec![spec]),
        "",
        Box::new(tokio::io::empty()),
    );
    let local = forwarding.forwarding_address().await;
    let tunnel = TcpStream::connect(local).await.unwrap();
    let (mut reader, mut writer) = tunnel.into_split();
    let sent: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    let mut back = vec![0u8; sent.len()];
    let (written, read) = tokio::join!(writer.write_all(&sent), reader.read_exact(&mut back));
    written.unwrap();
    read.unwrap();
    assert_eq!(back, sent, "the bytes came back through the Windows agent");
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
