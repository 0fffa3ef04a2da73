//! A server restart loses nothing: the waiting operator reconnects by itself
//! and its session starts after the Allow click; the links keep working; a
//! request that expired while the server was down is expired, not allowed.
//! Nor does a database that fails for a while: an expiry it could not
//! record at the deadline lands once it can.

use doorman_client::ConnectError;
use doorman_core::RequestState;
use doorman_store::NewRequest;
use doorman_test_support::World;
use doorman_test_support::world::COMPUTER;
use reqwest::StatusCode;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiting_operator_survives_a_server_restart() {
    let mut world = World::start().await;
    let connecting = world.connect(&["sh", "-c", "echo after-restart"], "");
    let pending = connecting.event("pending").await;
    let id = pending["request_id"].as_str().unwrap().to_string();
    let mails = world.smtp.wait_for(2).await;

    world.restart_server().await;
    connecting.event("reconnecting").await;
    world.wait_for_agent(COMPUTER, true).await;
    // The operator is back and waiting for the same request.
    connecting
        .progress
        .wait_until(|t| t.matches("\"event\":\"pending\"").count() == 2)
        .await;
    assert_eq!(world.state_of(&id).await, RequestState::Pending);

    assert_eq!(
        world.click(&mails[1].link(), "allow").await.status(),
        StatusCode::SEE_OTHER
    );
    let stdout = connecting.stdout.clone();
    assert_eq!(connecting.finish().await, Ok(0));
    assert_eq!(stdout.text(), "after-restart\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_while_the_server_is_away_still_cancels_the_request() {
    let mut world = World::start().await;
    let mut connecting = world.connect(&["true"], "");
    let pending = connecting.event("pending").await;
    let id = pending["request_id"].as_str().unwrap().to_string();
    let mails = world.smtp.wait_for(2).await;

    world.stop_server().await;
    connecting.event("reconnecting").await;
    connecting.interrupt();
    // The server is back within the few seconds `connect` keeps trying.
    world.start_server().await;
    let progress = connecting.progress.clone();
    assert_eq!(connecting.finish().await, Err(ConnectError::Cancelled));
    assert!(progress.text().contains("\"event\":\"cancelled\""));
    assert_eq!(world.state_of(&id).await, RequestState::Cancelled);
    let (_, page) = world.page(&mails[0].link()).await;
    assert!(page.contains("Cancelled"), "{page}");
    assert!(!page.contains("<form"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_that_expired_while_the_server_was_down_is_expired() {
    let mut world = World::start().await;
    world.stop_server().await;
    // Asked just before the server went down; its time ran out meanwhile.
    let now = world.clock().now_millis();
    let token = world.broker.key().link_token("r-expired", 0);
    let store = &world.broker.store();
    let operator_id = store.operator_id("alice").await.unwrap().unwrap();
    let computer_id = store.computer_id(COMPUTER).await.unwrap().unwrap();
    world
        .broker
        .store()
        .create_request(&NewRequest {
            id: "r-expired".into(),
            computer: COMPUTER.into(),
            operator: "alice".into(),
            operator_id,
            computer_id,
            operator_ip: "127.0.0.1".into(),
            reason: String::new(),
            service: "run true".into(),
            service_json: r#"{"kind":"command","argv":["true"]}"#.into(),
            created_at: now - 200_000,
            expires_at: now - 20_000,
            required_approvals: 1,
            approval_valid_for: 0,
            max_session_seconds: 0,
            local_consent: doorman_core::LocalConsent::Off,
            recipients: vec![(
                "it@example.com".into(),
                doorman_runtime::secrets::hash(&token),
            )],
            passkey: None,
            computer_identity: None,
            sealed: false,
        })
        .await
        .unwrap();
    world.start_server().await;
    let link = format!("{}/a/{token}", world.url);
    // A click that was waiting for the server to come back decides nothing.
    let (status, page) = world.page(&link).await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains("Expired at"), "{page}");
    assert!(!page.contains("<form"));
    let late = world
        .http
        .post(&link)
        .form(&[
            ("decision", "allow"),
            (
                "nonce",
                world
                    .broker
                    .key()
                    .page_nonce(&doorman_runtime::secrets::hash(&token))
                    .as_str(),
            ),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(late.status(), StatusCode::SEE_OTHER);
    assert_eq!(world.state_of("r-expired").await, RequestState::Expired);
}

/// Issue 26: the database refused every write from before the deadline
/// until 5 s after it, longer than the expiry timer used to retry (50 × 20
/// ms), after which it gave up and the operator waited forever. The time
/// passes on the server's clock.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expiry_the_database_refused_at_the_deadline_lands_once_it_can_write() {
    let world = World::start().await;
    let connecting = world.connect(&["true"], "");
    let id = connecting.request_id().await;
    // The emails are out and recorded before the disk fills.
    connecting
        .progress
        .wait_until(|t| t.matches("\"state\":\"sent\"").count() == 2)
        .await;
    let expires_at = world
        .broker
        .store()
        .request(&id)
        .await
        .expect("store")
        .expect("the request")
        .expires_at;

    let faults = world.faults();
    faults.fail_writes(true);
    world.clock().advance_to(expires_at);
    // Each second of the outage brings another try, which fails.
    for _ in 0..5 {
        let refused = faults.writes_refused();
        world.clock().advance(Duration::from_secs(1));
        tried_again(faults, refused).await;
    }
    assert_eq!(
        world.state_of(&id).await,
        RequestState::Pending,
        "nothing could be written"
    );
    assert!(faults.writes_refused() > 0, "the expiry was tried");

    faults.fail_writes(false);
    let progress = connecting.progress.clone();
    let result = connecting.finish().await;
    assert_eq!(result, Err(ConnectError::Expired));
    assert_eq!(result.unwrap_err().exit_code(), 241);
    assert!(progress.text().contains("\"event\":\"expired\""));
    assert_eq!(world.state_of(&id).await, RequestState::Expired);
    // Expired at its deadline, not when the disk had room again.
    assert_eq!(world.wait_for_audit("expired").await.at, expires_at);
}

/// Waits (20 s at most, then fails) until the database refused a write
/// after the first `refused`: a count with nothing to await, read every
/// 10 ms.
async fn tried_again(faults: &doorman_store::Faults, refused: u64) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while faults.writes_refused() <= refused {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no new try within 20 s"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
