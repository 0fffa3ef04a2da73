//! Connections that go dead without closing (a NAT that forgot them, a host
//! that vanished, a proxy that stopped forwarding): the server's pings let
//! both ends notice within a few heartbeats, and each side carries on over
//! a new connection. Without the pings each would wait forever. An operator
//! that resumes over a new connection supersedes the dead one.

use doorman_test_support::World;
use doorman_test_support::front::Front;
use std::time::Duration;

// Short, so that a dead connection is noticed in well under a second;
// long enough that a busy test machine does not miss a ping.
const HEARTBEAT: Duration = Duration::from_millis(200);

/// Runs `echo WORD` on `computer` after an approval; its output.
async fn echo_on(world: &World, computer: &str, word: &str) -> String {
    let before = world.smtp.mails().len();
    let connecting = world.connect_to(computer, &world.operator_token, &["echo", word], "");
    connecting.event("pending").await;
    let mails = world.smtp.wait_for(before + 2).await;
    world.click(&mails[before].link(), "allow").await;
    let stdout = connecting.stdout.clone();
    assert_eq!(connecting.finish().await, Ok(0));
    stdout.text()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_whose_connection_goes_dead_goes_offline_and_dials_again() {
    let builder = World::builder().heartbeat(HEARTBEAT);
    let world = builder.clone().start().await;
    let front = Front::start(vec![world.address]).await;
    world.add_agent_via("lab-pc", &builder, &front.url()).await;
    assert_eq!(echo_on(&world, "lab-pc", "before").await, "before\n");

    front.freeze();
    // The server stops counting on the silent agent …
    world.wait_for_agent("lab-pc", false).await;
    // … and the agent gives the dead connection up and dials again.
    world.wait_for_agent("lab-pc", true).await;
    assert_eq!(echo_on(&world, "lab-pc", "after").await, "after\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_whose_wait_goes_dead_resumes_and_gets_the_session() {
    let world = World::builder().heartbeat(HEARTBEAT).start().await;
    let front = Front::start(vec![world.address]).await;
    let connecting = world.connect_through(&front.url(), &["echo", "allowed"]);
    let request_id = connecting.request_id().await;

    front.freeze();
    connecting.event("reconnecting").await;
    // Picked up again over a new connection: the server says it is pending.
    connecting
        .progress
        .wait_until(|text| text.matches("\"pending\"").count() == 2)
        .await;
    let mails = world.smtp.wait_for(2).await;
    world.click(&mails[0].link(), "allow").await;
    let stdout = connecting.stdout.clone();
    let progress = connecting.progress.clone();
    assert_eq!(connecting.finish().await, Ok(0));
    assert_eq!(stdout.text(), "allowed\n");
    // One request, picked up again: not a second one.
    let pending_ids: Vec<String> = progress
        .text()
        .lines()
        .filter(|line| line.contains("\"pending\""))
        .map(|line| doorman_test_support::world::request_id(&serde_json::from_str(line).unwrap()))
        .collect();
    assert_eq!(pending_ids, [request_id.clone(), request_id]);
    assert_eq!(world.emails_queued().await, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_that_started_on_the_dead_connection_ends_when_the_operator_resumes() {
    let world = World::builder().heartbeat(HEARTBEAT).start().await;
    let front = Front::start(vec![world.address]).await;
    let connecting = world.connect_through(&front.url(), &["sleep", "60"]);
    connecting.event("pending").await;

    // The operator's network goes down; the approval comes meanwhile, and
    // the session starts on the dead connection.
    front.hold();
    front.freeze();
    let mails = world.smtp.wait_for(2).await;
    world.click(&mails[0].link(), "allow").await;
    world.wait_for_audit("session_started").await;
    front.release();

    let result = connecting.finish().await;
    let Err(doorman_client::ConnectError::SessionFailed(message)) = &result else {
        panic!("expected a failed session, got {result:?}");
    };
    assert!(
        message.contains("started while the connection to the server was lost"),
        "{message}"
    );
    // The session nobody could see was ended, not left running.
    let ended = world.wait_for_audit("session_ended").await;
    assert_eq!(
        ended.detail.as_deref(),
        Some("ended: the operator resumed on another connection")
    );
}
