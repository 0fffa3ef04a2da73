//! Sessions sealed end to end (issue 29): `connect` remembers the
//! computer's identity and refuses a changed one (249) until told with
//! `doorman known remove`; a server in the middle that uses keys of its
//! own is refused; a sealed shell is recorded on the computer, sealed
//! with age, and plays only with the key.

use doorman_client::ConnectError;
use doorman_test_support::World;
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
    for forgery in [Forgery::OwnKey, Forgery::ComputersSignature] {
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
            Forgery::ComputersSignature => {
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
