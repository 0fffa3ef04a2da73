//! Connections that go dead without closing (a NAT that forgot them, a host
//! that vanished, a proxy that stopped forwarding): the server's pings let
//! both ends notice within a few heartbeats, and each side carries on over
//! a new connection. Without the pings each would wait forever. An operator
//! that resumes over a new connection supersedes the dead one. And a peer
//! that stops reading while still alive (issue 26): it is dropped within
//! the write deadline, and nothing waits on it meanwhile.

use doorman_test_support::World;
use doorman_test_support::front::Front;
use doorman_test_support::raw;
use doorman_test_support::world::extract_nonce;
use doorman_wire::message::{AgentToServer, Refusal, ServerToAgent, ServerToOperator};
use std::sync::Arc;
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

/// The computer whose agent stops reading.
const STUCK: &str = "stuck-pc";
/// Operators that ask for it at once, a wave after another until the server
/// gives its agent up, and at most this many in all.
const WAVE: usize = 100;
const MAX_ASKERS: usize = 600;

/// Waits for `future`, 20 s at most, then fails naming `what`.
async fn within<T>(what: &str, future: impl Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(20), future)
        .await
        .unwrap_or_else(|_| panic!("not within 20 s: {what}"))
}

/// An operator asks for the computer with `connect`: the server's answer,
/// if it gives one.
async fn ask(
    server: String,
    token: String,
    connect: Arc<serde_json::Value>,
) -> Option<ServerToOperator> {
    let mut connection = raw::operator(&server, &token).await;
    connection.write_message(&*connect).await.ok()?;
    loop {
        match connection.read_message::<ServerToOperator>().await {
            Ok(Some(ServerToOperator::Ping)) => {}
            answer => return answer.ok().flatten(),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_that_stops_reading_is_dropped_and_holds_up_no_approval() {
    let world = World::builder().heartbeat(HEARTBEAT).start().await;
    let key = doorman_server::admin::add_agent(world.broker.store(), STUCK)
        .await
        .expect("agent added");
    let (mut reader, writer) = raw::agent(&world.url, STUCK, &key).await.split();
    let writer = Arc::new(tokio::sync::Mutex::new(writer));
    // It says it is alive throughout, as an agent whose reading hangs
    // might: the server must notice that it takes nothing, not that it is
    // silent.
    let pongs = tokio::spawn({
        let writer = Arc::clone(&writer);
        async move {
            let mut ticks = tokio::time::interval(HEARTBEAT / 2);
            loop {
                ticks.tick().await;
                let pong = writer
                    .lock()
                    .await
                    .write_message(&AgentToServer::Pong)
                    .await;
                if pong.is_err() {
                    return;
                }
            }
        }
    });
    let welcome = within("the welcome", reader.read_message::<ServerToAgent>()).await;
    assert!(
        matches!(welcome, Ok(Some(ServerToAgent::Welcome { .. }))),
        "{welcome:?}"
    );

    // A request for the computer, pending: its agent answers the offer
    // as one that requires email authorization does …
    let connecting = world.connect_to(STUCK, &world.operator_token, &["true"], "");
    let request_id = within("the offer", async {
        loop {
            match reader.read_message::<ServerToAgent>().await {
                Ok(Some(ServerToAgent::Offer { request_id, .. })) => return request_id,
                Ok(Some(_)) => {}
                other => panic!("no offer: {other:?}"),
            }
        }
    })
    .await;
    let reply = serde_json::json!({
        "type": "offer_reply",
        "request_id": request_id,
        "reply": {
            "answer": "require_authorization",
            "recipients": ["it@example.com"],
            "timeout_secs": 180,
        },
    });
    writer
        .lock()
        .await
        .write_message(&reply)
        .await
        .expect("the answer is sent");
    assert_eq!(connecting.request_id().await, request_id);
    let link = world.link_of(&request_id, 0);
    let (_, page) = world.page(&link).await;
    let nonce = extract_nonce(&page).expect("the page has a form with a nonce");

    // … and from now on reads nothing. Operators ask for the computer: each
    // offer (64 KiB, the longest command) waits for the agent, until its
    // socket's buffers and then its queue at the server are full.
    let argv = vec!["echo".to_string(), "x".repeat(64 * 1024 - 4)];
    let connect = Arc::new(raw::connect(
        STUCK,
        "",
        serde_json::json!({"kind": "command", "argv": argv}),
    ));
    let mut askers = Vec::new();
    let mut approval = None;
    while world.broker.agents().is_online(STUCK) {
        assert!(
            askers.len() < MAX_ASKERS,
            "the server still counts on an agent that took nothing of {} offers",
            askers.len()
        );
        for _ in 0..WAVE {
            let (server, token) = (world.url.clone(), world.operator_token.clone());
            askers.push(tokio::spawn(ask(server, token, Arc::clone(&connect))));
        }
        // A recipient allows the request meanwhile: settling it sends the
        // outcome to the agent, which takes nothing.
        if approval.is_none() {
            let post = world
                .http
                .post(link.clone())
                .form(&[("decision", "allow"), ("nonce", nonce.as_str())])
                .send();
            approval = Some(tokio::spawn(tokio::time::timeout(
                Duration::from_secs(10),
                post,
            )));
        }
        let offline = world.broker.agents().wait_for(STUCK, false);
        let _ = tokio::time::timeout(Duration::from_secs(2), offline).await;
    }

    // The approval's POST answered, though the computer's agent took nothing.
    let answered = approval
        .expect("an approval")
        .await
        .expect("the POST's task");
    let response = answered
        .expect("the approval answers within 10 s")
        .expect("the approval's response");
    assert!(
        !response.status().is_server_error(),
        "{}",
        response.status()
    );
    // The server closed the agent's connection: what it had sent arrives,
    // then the end.
    within("the end of the stuck agent's connection", async {
        while let Ok(Some(_)) = reader.read_frame().await {}
    })
    .await;
    // No operator was left waiting on the stuck agent: each was told the
    // computer is offline.
    for asker in askers {
        let answer = within("an answer to each operator", asker)
            .await
            .expect("the operator's task");
        assert!(
            matches!(
                answer,
                Some(ServerToOperator::Refused {
                    reason: Refusal::ComputerOffline,
                    ..
                })
            ),
            "{answer:?}"
        );
    }
    pongs.abort();
}
