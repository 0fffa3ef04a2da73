//! Session recordings the server makes: the screen of a shell session it
//! can read (the web console's: here an operator that does not seal its
//! session) is recorded as the server relays it, listed and played back
//! by `doorman admin`, pruned, and left readable when the session is cut
//! short; `--record-sessions false` and other kinds of session record
//! nothing. Sessions sealed end to end are recorded by the computer
//! (`sealed.rs`).

use doorman_test_support::World;
use doorman_test_support::process::{after_using_line, run};

const DOORMAN: &str = env!("CARGO_BIN_EXE_doorman");

/// `doorman admin --data-dir WORLD'S ARGS…`: (exit code, stdout, stderr).
async fn admin(world: &World, args: &[&str]) -> (i32, String, String) {
    let data = world.config.data_dir.to_str().unwrap().to_string();
    let mut all = vec!["admin", "--data-dir", &data];
    all.extend_from_slice(args);
    run(DOORMAN, &all).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recorded_shell_session_plays_back_the_same_text() {
    let world = World::builder().without_email_authorization().start().await;
    let input: &[u8] = b"stty -echo; echo recorded-$((6*7)); printf 'caf\\303\\251\\n'; exit 0\n";
    let connecting = world.connect_shell_unsealed(Box::new(input));
    let stdout = connecting.stdout.clone();
    assert_eq!(connecting.finish().await, Ok(0));
    let screen = stdout.text();
    assert!(screen.contains("recorded-42"), "{screen}");
    let recorded = world.wait_for_audit("session_recorded").await;

    let (code, list, err) = admin(&world, &["recordings", "list", "--json"]).await;
    assert_eq!(code, 0, "{err}");
    let rows: Vec<serde_json::Value> = list
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), 1, "{list}");
    let row = &rows[0];
    assert_eq!(row["computer"], "office-pc");
    assert_eq!(row["operator"], "alice");
    let id = row["id"].as_i64().unwrap().to_string();
    let sha256 = row["sha256"].as_str().unwrap();
    let detail = recorded.detail.unwrap();
    assert!(
        detail.starts_with(&format!("recording {id}: {} bytes, ", row["size"])),
        "{detail}"
    );
    assert!(detail.ends_with(&format!("sha256 {sha256}")), "{detail}");

    let (code, played, err) = admin(&world, &["play", &id, "--speed", "1000"]).await;
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        played, screen,
        "the playback is the screen the operator saw"
    );
    assert!(played.contains("café"));

    let (code, text, _) = admin(&world, &["recordings", "list", "--computer", "other"]).await;
    assert_eq!((code, text.as_str()), (0, ""));
    let (code, text, _) = admin(&world, &["recordings", "list"]).await;
    assert_eq!(code, 0);
    assert!(text.starts_with(&format!("{id}  ")), "{text}");
    assert!(text.contains("  office-pc  alice  "), "{text}");

    // Pruned, it is gone.
    let (code, _, err) = admin(&world, &["recordings", "prune", "--older-than", "1"]).await;
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        after_using_line(&err).trim(),
        "deleted 0 recordings of sessions older than 1 days"
    );
    let (code, _, err) = admin(&world, &["recordings", "prune", "--older-than", "0"]).await;
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        after_using_line(&err).trim(),
        "deleted 1 recordings of sessions older than 0 days"
    );
    let (code, text, _) = admin(&world, &["recordings", "list"]).await;
    assert_eq!((code, text.as_str()), (0, ""));
    let (code, _, err) = admin(&world, &["play", &id]).await;
    assert_eq!(code, 1);
    assert_eq!(
        after_using_line(&err).trim(),
        format!(
            "doorman: no recording {id}: `doorman admin recordings list` shows those there are"
        )
    );
    let (code, _, err) = admin(&world, &["play", &id, "--speed", "0"]).await;
    assert_eq!(code, 2);
    assert!(err.contains("\"0\" is not a speed"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_cut_short_leaves_a_readable_recording() {
    let mut world = World::builder().without_email_authorization().start().await;
    // The shell waits on input that never ends.
    let (input, mut typing) = tokio::io::duplex(64);
    let connecting = world.connect_shell_unsealed(Box::new(input));
    let stdout = connecting.stdout.clone();
    tokio::io::AsyncWriteExt::write_all(&mut typing, b"echo before-the-cut\n")
        .await
        .unwrap();
    stdout
        .wait_until(|t| t.contains("before-the-cut\r\n"))
        .await;
    // The server stops in the middle of the session.
    world.stop_server().await;
    let (code, list, err) = admin(&world, &["recordings", "list", "--json"]).await;
    assert_eq!(code, 0, "{err}");
    let row: serde_json::Value = serde_json::from_str(list.trim()).unwrap();
    assert!(row["duration_ms"].is_i64(), "{row}");
    let id = row["id"].as_i64().unwrap().to_string();
    let (code, played, err) = admin(&world, &["play", &id, "--speed", "1000"]).await;
    assert_eq!(code, 0, "{err}");
    assert!(played.contains("before-the-cut\r\n"), "{played}");
    drop(typing);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_is_recorded_when_recording_is_off_or_the_session_is_a_command() {
    let world = World::builder()
        .without_email_authorization()
        .recordings(doorman_server::Recordings {
            enabled: false,
            keep_days: 1,
            ..Default::default()
        })
        .start()
        .await;
    let input: &[u8] = b"exit 0\n";
    let connecting = world.connect_shell(Box::new(input));
    assert_eq!(connecting.finish().await, Ok(0));
    let connecting = world.connect(&["echo", "hi"], "");
    assert_eq!(connecting.finish().await, Ok(0));
    world.wait_for_audits("session_ended", 2).await;
    let kinds = world.audit_kinds().await;
    assert!(!kinds.contains(&doorman_core::AuditKind::SessionRecorded));
    assert!(
        world
            .broker
            .store()
            .recordings(None, None)
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_postgresql_recordings_live_in_the_database() {
    let postgres = doorman_test_support::postgres::Postgres::start().await;
    let database = postgres.new_database().await;
    let world = World::builder()
        .without_email_authorization()
        .database(&database)
        .start()
        .await;
    let input: &[u8] = b"echo in-postgres; exit 0\n";
    let connecting = world.connect_shell_unsealed(Box::new(input));
    let stdout = connecting.stdout.clone();
    assert_eq!(connecting.finish().await, Ok(0));
    world.wait_for_audit("session_recorded").await;
    // Another replica reads it from the database alone.
    let store = doorman_store::Store::open(&database).await.unwrap();
    let rows = store.recordings(Some("office-pc"), None).await.unwrap();
    assert_eq!(rows.len(), 1);
    assert!(rows[0].stored > 0);
    let (_, stored) = store.recording(rows[0].id).await.unwrap().unwrap();
    let (_, events) = doorman_recordings::cast::decode(&stored).unwrap();
    let text: String = events.iter().map(|e| e.text.as_str()).collect();
    assert_eq!(text, stdout.text());
    assert_eq!(store.prune_recordings(i64::MAX).await.unwrap(), 1);
    assert!(store.recording(rows[0].id).await.unwrap().is_none());
}
