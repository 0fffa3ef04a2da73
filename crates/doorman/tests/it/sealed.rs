//! Sessions sealed end to end (issue 29): `connect` remembers the
//! computer's identity and refuses a changed one (249) until told with
//! `doorman known remove`; a server in the middle that uses keys of its
//! own is refused; a sealed shell is recorded on the computer, sealed
//! with age, and plays only with the key; and the server, a process of its
//! own, holds none of a sealed session's text, in memory or on disk.

use doorman_client::{ConnectError, ForwardSpec, SessionKind};
use doorman_test_support::World;
use doorman_test_support::connecting::Connecting;
use doorman_test_support::mitm::{Forgery, ManInTheMiddle};
use doorman_test_support::process::{after_using_line, run};

const DOORMAN: &str = env!("CARGO_BIN_EXE_doorman");

/// The `identity` event of a finished connect.
fn identity_event(progress: &str) -> serde_json::Value {
    let line = progress
        .lines()
        .find(|l| l.contains("\"identity\""))
        .unwrap_or_else(|| panic!("no identity event: {progress}"));
    serde_json::from_str(line).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_identity_is_refused_until_the_operator_forgets_the_old_one() {
    let mut world = World::builder().without_email_authorization().start().await;
    let connecting = world.connect(&["echo", "one"], "");
    let progress = connecting.progress.clone();
    assert_eq!(connecting.finish().await, Ok(0));
    let first = identity_event(&progress.text());
    assert_eq!(first["known"], false);
    let fingerprint = first["fingerprint"].as_str().unwrap().to_string();
    assert!(fingerprint.starts_with("SHA256:"), "{fingerprint}");
    let connecting = world.connect(&["echo", "two"], "");
    let progress = connecting.progress.clone();
    assert_eq!(connecting.finish().await, Ok(0));
    let again = identity_event(&progress.text());
    assert_eq!(again["known"], true);
    assert_eq!(again["fingerprint"], fingerprint.as_str());

    // The computer is set up again: a new identity key.
    world.stop_agent().await;
    std::fs::remove_file(world.dir.path().join("identity.key")).unwrap();
    tokio::spawn(doorman_agent::run(
        world.agent_config.clone(),
        std::future::pending::<()>(),
    ));
    world.wait_for_agent("office-pc", true).await;
    let connecting = world.connect(&["echo", "three"], "");
    let stdout = connecting.stdout.clone();
    let refused = connecting.finish().await.unwrap_err();
    assert_eq!(refused.exit_code(), 249);
    let ConnectError::IdentityChanged { known, .. } = &refused else {
        panic!("{refused:?}");
    };
    assert_eq!(known, &fingerprint);
    let message = refused.to_string();
    assert!(
        message.contains("doorman known remove office-pc"),
        "{message}"
    );
    assert_eq!(stdout.text(), "", "no session ran");

    let known = world.dir.path().join("known_computers");
    let known = known.to_str().unwrap();
    let args = ["known", "remove", "office-pc", "--known-computers", known];
    let (code, out, err) = run(DOORMAN, &args).await;
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("Forgot office-pc's identity"), "{out}");
    let (code, _, err) = run(DOORMAN, &args).await;
    assert_eq!(code, 1);
    assert!(
        err.contains("no identity of office-pc is remembered"),
        "{err}"
    );
    let connecting = world.connect(&["echo", "four"], "");
    let progress = connecting.progress.clone();
    assert_eq!(connecting.finish().await, Ok(0));
    let learned = identity_event(&progress.text());
    assert_eq!(learned["known"], false);
    assert_ne!(learned["fingerprint"], fingerprint.as_str());
}

/// A server that puts keys of its own between the operator and the
/// computer, to read the session, is refused whichever way it answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_man_in_the_middle_is_refused() {
    let world = World::builder().without_email_authorization().start().await;
    // The operator has met the computer before.
    assert_eq!(world.connect(&["true"], "").finish().await, Ok(0));
    for forgery in [
        Forgery::OwnKey,
        Forgery::ComputersSignature,
        Forgery::OtherCommand,
    ] {
        let middle = ManInTheMiddle::start(world.address, forgery).await;
        let connecting = world.connect_through(&middle.url(), &["echo", "secret"]);
        let stdout = connecting.stdout.clone();
        let refused = connecting.finish().await.unwrap_err();
        assert_eq!(refused.exit_code(), 249, "{forgery:?}: {refused}");
        match forgery {
            Forgery::OwnKey => {
                assert!(
                    matches!(refused, ConnectError::IdentityChanged { .. }),
                    "{refused:?}"
                );
            }
            Forgery::ComputersSignature | Forgery::OtherCommand => {
                assert!(
                    matches!(refused, ConnectError::IdentityUnproven { .. }),
                    "{refused:?}"
                );
                assert!(
                    refused.to_string().contains("did not prove its identity"),
                    "{refused}"
                );
            }
        }
        assert_eq!(stdout.text(), "", "{forgery:?}: no session ran");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sealed_shell_is_recorded_on_the_computer_and_plays_with_the_key_only() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("key.txt");
    let recipient = doorman_test_support::age_key(&key);
    let world = World::builder()
        .without_email_authorization()
        .recordings_to(&recipient)
        .start()
        .await;
    let input: &[u8] = b"stty -echo; echo sealed-$((6*7)); exit 0\n";
    let connecting = world.connect_shell(Box::new(input));
    let stdout = connecting.stdout.clone();
    assert_eq!(connecting.finish().await, Ok(0));
    let screen = stdout.text();
    assert!(screen.contains("sealed-42"), "{screen}");
    let recorded = world.wait_for_audit("session_recorded").await;
    let detail = recorded.detail.unwrap();
    assert!(detail.contains("sealed on the computer"), "{detail}");

    let data = world.config.data_dir.to_str().unwrap().to_string();
    let admin = |args: &[&str]| {
        let mut all = vec!["admin", "--data-dir", data.as_str()];
        all.extend_from_slice(args);
        all.into_iter().map(String::from).collect::<Vec<_>>()
    };
    let args = admin(&["recordings", "list", "--json"]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (code, list, err) = run(DOORMAN, &args).await;
    assert_eq!(code, 0, "{err}");
    let row: serde_json::Value = serde_json::from_str(list.trim()).unwrap();
    assert_eq!(row["sealed"], true, "{row}");
    let id = row["id"].as_i64().unwrap().to_string();
    assert!(detail.ends_with(&format!("sha256 {}", row["sha256"].as_str().unwrap())));

    // The server cannot play it; the key's holder can.
    let args = admin(&["play", &id, "--speed", "1000"]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (code, _, err) = run(DOORMAN, &args).await;
    assert_eq!(code, 1);
    assert!(
        after_using_line(&err).contains("was sealed on the computer"),
        "{err}"
    );
    let key_path = key.to_str().unwrap();
    let args = admin(&["play", &id, "--speed", "1000", "--identity", key_path]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (code, played, err) = run(DOORMAN, &args).await;
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        played, screen,
        "the playback is the screen the operator saw"
    );
    let other = dir.path().join("other.txt");
    doorman_test_support::age_key(&other);
    let args = admin(&["play", &id, "--identity", other.to_str().unwrap()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (code, _, err) = run(DOORMAN, &args).await;
    assert_eq!(code, 1);
    assert!(err.contains("cannot open recording"), "{err}");

    // Nothing the shell printed is in the server's database files.
    for entry in std::fs::read_dir(&world.config.data_dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file() {
            let bytes = std::fs::read(&path).unwrap();
            assert!(
                !bytes.windows(9).any(|w| w == b"sealed-42"),
                "{} holds the session's text",
                path.display()
            );
        }
    }

    // Standard age tools open it too.
    let Some(age) = doorman_test_support::which("age") else {
        doorman_test_support::skip_without("age", "apt-get install age");
        return;
    };
    let exported = dir.path().join("recording.age");
    let args = admin(&["recordings", "export", &id]);
    let output = std::process::Command::new(DOORMAN)
        .args(&args)
        .output()
        .unwrap();
    assert!(output.status.success());
    std::fs::write(&exported, &output.stdout).unwrap();
    let opened = std::process::Command::new(age)
        .args(["-d", "-i", key_path, exported.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(opened.status.success(), "{opened:?}");
    let (_, events) = doorman_recordings::cast::decode(&opened.stdout).unwrap();
    let text: String = events.iter().map(|e| e.text.as_str()).collect();
    assert_eq!(text, screen);
}

/// Issue 29: "after a command session, a core dump of the server process
/// held the command's output in clear". Now, after a command, a shell and
/// a forward, neither the server's memory nor its database files hold any
/// of their text: the server (a process of its own) relayed, and stored,
/// only what it cannot open.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn neither_the_servers_memory_nor_its_files_hold_a_sealed_sessions_text() {
    let Some(gcore) = doorman_test_support::which("gcore") else {
        doorman_test_support::skip_without("gcore", "apt-get install gdb");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    // The sessions' text, made where only the computer reads it: it never
    // appears in what the operator asks for.
    let marker = |what: &str| format!("{what}-{}", hex(&rand_bytes()));
    let (command_text, shell_text, forward_text) =
        (marker("command"), marker("shell"), marker("forward"));
    let secrets = dir.path().join("secrets");
    std::fs::create_dir(&secrets).unwrap();
    std::fs::write(secrets.join("command"), &command_text).unwrap();
    std::fs::write(secrets.join("shell"), &shell_text).unwrap();
    // A forward target that says its text to whoever connects.
    let target = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let target_address = target.local_addr().unwrap().to_string();
    let said = forward_text.clone();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = target.accept().await {
            let said = said.clone();
            tokio::spawn(async move {
                use tokio::io::AsyncWriteExt;
                let _ = stream.write_all(said.as_bytes()).await;
                let _ = stream.shutdown().await;
            });
        }
    });

    let data = dir.path().join("data");
    let data_arg = data.to_str().unwrap();
    let add = |what: &'static [&'static str]| {
        let mut args = vec!["admin", "--data-dir", data_arg];
        args.extend_from_slice(what);
        args.into_iter().map(String::from).collect::<Vec<_>>()
    };
    let args = add(&[
        "--create",
        "operator",
        "add",
        "alice",
        "--computers",
        "office-*",
    ]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (code, token, err) = run(DOORMAN, &args).await;
    assert_eq!(code, 0, "{err}");
    let token = token.trim().to_string();
    let args = add(&["agent", "add", "office-pc"]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (code, key, err) = run(DOORMAN, &args).await;
    assert_eq!(code, 0, "{err}");
    let server = doorman_test_support::process::Process::start(
        DOORMAN,
        &["server", "--listen", "127.0.0.1:0", "--data-dir", data_arg],
    );
    let url = format!(
        "http://{}",
        doorman_test_support::process::listening_address(&server).await
    );
    let recipient = doorman_test_support::age_key(&dir.path().join("key.txt"));
    let agent_config = dir.path().join("agent.toml");
    let _agent = doorman_test_support::process::start_agent(
        DOORMAN,
        &agent_config,
        &format!(
            "server = \"{url}\"\nname = \"office-pc\"\nkey = \"{}\"\nrecordings_to = [\"{recipient}\"]\n\n[services]\nshell = true\nforward = [\"{target_address}\"]\n",
            key.trim()
        ),
    )
    .await;

    let request = |session| doorman_client::ConnectRequest {
        server: url.clone(),
        ca: None,
        token: doorman_core::Secret::new(&token),
        computer: "office-pc".into(),
        reason: String::new(),
        session,
        expiry_grace: doorman_client::EXPIRY_GRACE,
        known_computers: doorman_client::known::KnownComputers::at(
            dir.path().join("known_computers"),
        ),
        end_to_end: true,
    };
    let path = |name: &str| secrets.join(name).to_str().unwrap().to_string();
    let command = Connecting::start(
        request(SessionKind::Command(vec!["cat".into(), path("command")])),
        Box::new(tokio::io::empty()),
    );
    let stdout = command.stdout.clone();
    assert_eq!(command.finish().await, Ok(0));
    assert_eq!(stdout.text(), command_text);
    let typed = format!("stty -echo; cat {}; echo; exit 0\n", path("shell"));
    let shell = Connecting::start(
        request(SessionKind::Shell {
            term: "xterm".into(),
            rows: 24,
            cols: 80,
        }),
        Box::new(std::io::Cursor::new(typed.into_bytes())),
    );
    let stdout = shell.stdout.clone();
    assert_eq!(shell.finish().await, Ok(0));
    assert!(stdout.text().contains(&shell_text), "{}", stdout.text());
    let spec: ForwardSpec = format!("0:{target_address}").parse().unwrap();
    let mut forward = Connecting::start(
        request(SessionKind::Forward(vec![spec])),
        Box::new(tokio::io::empty()),
    );
    let local = forward.forwarding_address().await;
    let mut stream = tokio::net::TcpStream::connect(local).await.unwrap();
    let mut got = String::new();
    tokio::io::AsyncReadExt::read_to_string(&mut stream, &mut got)
        .await
        .unwrap();
    assert_eq!(got, forward_text);
    forward.interrupt();
    assert_eq!(forward.finish().await, Ok(0));

    // The server's memory, as it is now.
    let pid = server.child.id().expect("the server runs").to_string();
    let core = dir.path().join("core");
    let dumped = tokio::process::Command::new(gcore)
        .args(["-o", core.to_str().unwrap(), &pid])
        .output()
        .await
        .unwrap();
    assert!(dumped.status.success(), "{dumped:?}");
    let memory = dir.path().join(format!("core.{pid}"));
    // What the server may know, it holds: the search can find things.
    assert!(
        holds(&memory, "office-pc"),
        "the dump holds the computer's name"
    );
    for text in [&command_text, &shell_text, &forward_text] {
        assert!(!holds(&memory, text), "the server's memory holds {text}");
        for entry in std::fs::read_dir(&data).unwrap() {
            let file = entry.unwrap().path();
            if file.is_file() {
                assert!(!holds(&file, text), "{} holds {text}", file.display());
            }
        }
    }
    drop(server);
}

/// Whether `file` holds `text` (grep: a dump is hundreds of megabytes).
fn holds(file: &std::path::Path, text: &str) -> bool {
    let status = std::process::Command::new("grep")
        .args(["-q", "-a", "-F", "--", text])
        .arg(file)
        .status()
        .unwrap();
    assert!(status.code().is_some_and(|code| code <= 1), "grep failed");
    status.success()
}

fn rand_bytes() -> [u8; 12] {
    let mut bytes = [0u8; 12];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes).unwrap();
    bytes
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
