//! What is settled before any email: the computer's settings as they are
//! now (a change applies to the next connection, without restart; without
//! email authorization the session starts and is audited; a service the
//! computer does not offer is refused), and unknown or offline computers
//! and bad tokens, each named with its own exit status.

use doorman_client::ConnectError;
use doorman_test_support::World;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settings_changes_apply_to_the_next_connection_without_restart() {
    let world = World::start().await;
    let change = doorman_core::SettingsChange {
        recipients: Some(vec!["new@example.org".into()]),
        email_authorization_timeout: Some(60),
        ..Default::default()
    };
    doorman_agent::settings_file::apply(&world.agent_config, &change).unwrap();
    let connecting = world.connect(&["true"], "");
    let pending = connecting.event("pending").await;
    assert_eq!(pending["expires_in"], 60);
    assert_eq!(
        pending["recipients"],
        serde_json::json!(["n***@example.org"])
    );
    let mails = world.smtp.wait_for(1).await;
    assert_eq!(mails[0].to, ["new@example.org"]);

    // Turning authorization off lets the next connection in without email.
    let off = doorman_core::SettingsChange {
        require_email_authorization: Some(false),
        ..Default::default()
    };
    doorman_agent::settings_file::apply(&world.agent_config, &off).unwrap();
    let second = world.connect(&["sh", "-c", "echo open"], "");
    assert_eq!(second.finish().await, Ok(0));
    assert_eq!(
        world.emails_queued().await,
        1,
        "no email when authorization is off"
    );
    drop(connecting);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_email_authorization_the_session_starts_and_is_audited() {
    let world = World::builder().without_email_authorization().start().await;
    let connecting = world.connect(&["sh", "-c", "echo direct; exit 3"], "maintenance");
    let stdout = connecting.stdout.clone();
    assert_eq!(connecting.finish().await, Ok(3));
    assert_eq!(stdout.text(), "direct\n");
    assert_eq!(world.emails_queued().await, 0);
    let admitted = world
        .audit_events()
        .await
        .into_iter()
        .find(|e| e.event == "admitted")
        .expect("admitted event");
    assert_eq!(admitted.actor.as_deref(), Some("alice"));
    assert_eq!(admitted.address.as_deref(), Some("127.0.0.1"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_the_computer_does_not_offer_is_refused_before_any_email() {
    let world = World::builder().without_shell().start().await;
    let result = world.connect(&["true"], "").finish().await;
    let Err(ConnectError::NotOffered(message)) = result else {
        panic!("expected a refusal, got {result:?}")
    };
    assert!(message.contains("not offered"), "{message}");
    assert_eq!(world.emails_queued().await, 0);
    assert!(
        world
            .broker
            .store()
            .pending_requests()
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_offline_computers_and_bad_tokens_are_named() {
    let mut world = World::start().await;
    let unknown = world
        .connect_to("no-such-pc", &world.operator_token, &["true"], "")
        .finish()
        .await;
    assert_eq!(
        unknown,
        Err(ConnectError::UnknownComputer("no-such-pc".into()))
    );
    let bad_token = world
        .connect_to("office-pc", "dop_not-a-real-token", &["true"], "")
        .finish()
        .await;
    assert_eq!(bad_token, Err(ConnectError::BadToken));
    world.stop_agent().await;
    let offline = world.connect(&["true"], "").finish().await;
    assert_eq!(offline, Err(ConnectError::Offline("office-pc".into())));
    assert_eq!(world.emails_queued().await, 0);
    let codes: Vec<i32> = [unknown, bad_token, offline]
        .into_iter()
        .map(|r| r.unwrap_err().exit_code())
        .collect();
    assert_eq!(codes, [242, 244, 243]);
}
