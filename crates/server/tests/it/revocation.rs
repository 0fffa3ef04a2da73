//! Replacing or removing a secret (`doorman admin operator|agent
//! rotate|remove`) kills it: new connections with it are refused, the
//! server closes the connections opened with it within a heartbeat, and the
//! requests pending with it are cancelled. A computer removed and added
//! again under its name is another computer, with none of the old one's
//! blocks.

use doorman_client::{ConnectError, EndCause, ForwardSpec, SessionKind};
use doorman_core::RequestState;
use doorman_core::access::ComputerPattern;
use doorman_server::admin;
use doorman_store::Principal;
use doorman_test_support::World;
use doorman_test_support::front::Front;
use doorman_test_support::world::{COMPUTER, OPERATOR};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replaced_agent_key_takes_the_computer_offline_and_cancels_its_requests() {
    let world = World::builder().start().await;
    let connecting = world.connect(&["true"], "");
    let id = connecting.request_id().await;
    let mails = world.smtp.wait_for(2).await;

    let new_key = admin::replace_secret(world.broker.store(), Principal::Agent, COMPUTER)
        .await
        .unwrap();
    world.pass_a_heartbeat();
    assert!(new_key.starts_with("dak_"), "an agent key: {new_key}");
    assert_ne!(new_key, world.agent_key);
    world.wait_for_agent(COMPUTER, false).await;
    // The operator is told what happened, not just "cancelled".
    let result = connecting.finish().await;
    assert_eq!(
        result,
        Err(ConnectError::WentOffline(
            "computer \"office-pc\" was removed from the server".into()
        ))
    );
    assert_eq!(result.unwrap_err().exit_code(), 243);
    assert_eq!(world.state_of(&id).await, RequestState::Cancelled);
    // The links say so, and cannot allow it any more.
    let (_, page) = world.page(&mails[0].link()).await;
    assert!(page.contains("cancelled"), "{page}");
    assert!(!page.contains("Allow Session"), "{page}");
    let events = world.audit_events().await;
    assert!(
        events
            .iter()
            .any(|e| e.event == "agent_replaced" && e.actor.as_deref() == Some(COMPUTER))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_operator_loses_its_session_and_its_token() {
    let world = World::builder().start().await;
    let connecting = world.connect(&["sleep", "60"], "");
    connecting.event("pending").await;
    let mails = world.smtp.wait_for(2).await;
    world.click(&mails[0].link(), "allow").await;
    connecting.event("session_started").await;

    let cancelled = admin::remove(world.broker.store(), Principal::Operator, OPERATOR)
        .await
        .unwrap();
    world.pass_a_heartbeat();
    assert_eq!(cancelled, 0, "nothing was pending");
    let ended = world.wait_for_audit("session_ended").await;
    assert_eq!(
        ended.detail.as_deref(),
        Some("ended: the operator's token was replaced or removed")
    );
    // Told why, with the bad-token status, not as a lost connection (246).
    let result = connecting.finish().await;
    assert_eq!(result, Err(token_revoked()));
    assert_eq!(result.unwrap_err().exit_code(), 244);
    let again = world.connect(&["true"], "");
    assert_eq!(again.finish().await, Err(ConnectError::BadToken));
    let error = admin::remove(world.broker.store(), Principal::Operator, OPERATOR)
        .await
        .unwrap_err();
    assert_eq!(error.to_string(), "no operator named \"alice\"");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_operator_token_cancels_the_wait_made_with_the_old_one() {
    let world = World::builder().start().await;
    let connecting = world.connect(&["true"], "");
    let id = connecting.request_id().await;
    let token = admin::replace_secret(world.broker.store(), Principal::Operator, OPERATOR)
        .await
        .unwrap();
    world.pass_a_heartbeat();
    // Told why, with the bad-token status rather than Ctrl-C's.
    let result = connecting.finish().await;
    assert_eq!(result, Err(ConnectError::TokenRevoked));
    assert_eq!(result.unwrap_err().exit_code(), 244);
    assert_eq!(world.state_of(&id).await, RequestState::Cancelled);
    // The new token works.
    let connecting = world.connect_to(COMPUTER, &token, &["echo", "new"], "");
    let id = connecting.request_id().await;
    // (The first request's emails may never have gone out.)
    world.click(&world.link_of(&id, 0), "allow").await;
    let stdout = connecting.stdout.clone();
    assert_eq!(connecting.finish().await, Ok(0));
    assert_eq!(stdout.text(), "new\n");
    let names = admin::list(world.broker.store(), Principal::Operator)
        .await
        .unwrap();
    assert_eq!(
        names
            .iter()
            .map(|(name, _)| name.as_str())
            .collect::<Vec<_>>(),
        [OPERATOR]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_open_tunnels_of_a_removed_operator_close() {
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
    let world = World::builder().forward(&[&target]).start().await;
    let spec: ForwardSpec = format!("0:{target}").parse().unwrap();
    let connecting = world.connect_for(SessionKind::Forward(vec![spec]), "");
    connecting.event("pending").await;
    let mails = world.smtp.wait_for(2).await;
    world.click(&mails[0].link(), "allow").await;
    let local = connecting.forwarding_address().await;
    let mut tunnel = TcpStream::connect(local).await.unwrap();
    tunnel.write_all(b"ping").await.unwrap();
    let mut answer = [0u8; 4];
    tunnel.read_exact(&mut answer).await.unwrap();
    assert_eq!(&answer, b"ping");

    admin::remove(world.broker.store(), Principal::Operator, OPERATOR)
        .await
        .unwrap();
    world.pass_a_heartbeat();
    // The tunnel ends with its session: the operator reads its end.
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(10), tunnel.read_to_end(&mut rest))
        .await
        .expect("the tunnel closes with its session");
    match closed {
        Ok(_) => assert!(rest.is_empty(), "{rest:?}"),
        Err(error) => assert_eq!(error.kind(), std::io::ErrorKind::ConnectionReset),
    }
    let ended = world.wait_for_audit("session_ended").await;
    assert_eq!(
        ended.detail.as_deref(),
        Some("ended: the operator's token was replaced or removed")
    );
    assert_eq!(connecting.finish().await, Err(token_revoked()));
}

/// How the server ends a session whose operator's token was replaced or
/// removed.
fn token_revoked() -> ConnectError {
    ConnectError::Ended {
        cause: EndCause::TokenRevoked,
        message: "your operator token was replaced or removed".into(),
    }
}

/// Issue 26: the session's own connection carries why it ended. The
/// operator's network takes no new connection meanwhile, so the client
/// could not have learnt it by dialing again with its token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_command_cut_by_a_rotated_token_says_so_without_dialing_again() {
    let world = World::builder().start().await;
    let front = Front::start(vec![world.address]).await;
    let connecting = world.connect_through(&front.url(), &["sleep", "60"]);
    let id = connecting.request_id().await;
    world.click(&world.link_of(&id, 0), "allow").await;
    connecting.event("session_started").await;
    front.hold();

    admin::replace_secret(world.broker.store(), Principal::Operator, OPERATOR)
        .await
        .unwrap();
    world.pass_a_heartbeat();
    let result = connecting.finish().await;
    assert_eq!(result, Err(token_revoked()));
    let error = result.unwrap_err();
    assert_eq!(
        error.to_string(),
        "your operator token was replaced or removed"
    );
    assert_eq!(error.exit_code(), 244);
}

/// Issue 26: a session cut because the operator's grant was revoked says
/// so in the server's words, on the session's own connection, while the
/// operator's network takes no new connection (old clients dialed again to
/// find out, and could not tell a revoked grant from a lost connection).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_cut_by_a_revoked_grant_is_told_so_without_dialing_again() {
    let world = World::builder().without_email_authorization().start().await;
    let front = Front::start(vec![world.address]).await;
    let connecting = world.connect_through(&front.url(), &["sleep", "60"]);
    connecting.event("session_started").await;
    front.hold();

    admin::revoke_grant(world.broker.store(), OPERATOR, &[ComputerPattern::any()])
        .await
        .unwrap();
    world.pass_a_heartbeat();
    let words = format!("your access to {COMPUTER} was revoked");
    let ended = connecting.event("session_ended").await;
    assert_eq!(ended["cause"], "access_revoked", "{ended}");
    assert_eq!(ended["message"], words.as_str(), "{ended}");
    let result = connecting.finish().await;
    assert_eq!(
        result,
        Err(ConnectError::Ended {
            cause: EndCause::AccessRevoked,
            message: words,
        })
    );
    // Not permitted any more: the status of a computer without a grant.
    assert_eq!(result.unwrap_err().exit_code(), 242);
    let audited = world.wait_for_audit("session_ended").await;
    assert_eq!(
        audited.detail.as_deref(),
        Some("ended: the operator's access to this computer was revoked")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forward_session_ends_when_its_computer_is_removed() {
    let world = World::builder()
        .without_email_authorization()
        .forward(&["127.0.0.1:9"])
        .start()
        .await;
    let spec: ForwardSpec = "0:127.0.0.1:9".parse().unwrap();
    let forwarding = world.connect_for(SessionKind::Forward(vec![spec]), "");
    forwarding.forwarding_address().await;
    admin::remove(world.broker.store(), Principal::Agent, COMPUTER)
        .await
        .unwrap();
    world.pass_a_heartbeat();
    let ended = world.wait_for_audit("session_ended").await;
    assert_eq!(
        ended.detail.as_deref(),
        Some("ended: the computer was removed")
    );
    // Told in the server's words, with the status of a computer gone.
    let result = forwarding.finish().await;
    assert_eq!(
        result,
        Err(ConnectError::Ended {
            cause: EndCause::ComputerRemoved,
            message: format!("computer {COMPUTER:?} was removed from the server"),
        })
    );
    assert_eq!(result.unwrap_err().exit_code(), 243);
}

/// Issue 25, for computers: what a removed computer had goes with it. The
/// old office-pc's owner did not expect alice and blocked her; the new
/// office-pc asks its recipient about her afresh.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_computer_removed_and_added_again_keeps_none_of_the_old_ones_blocks() {
    let mut world = World::builder()
        .recipients(&["owner@example.com"])
        .start()
        .await;
    let connecting = world.connect(&["true"], "");
    let id = connecting.request_id().await;
    world.click(&world.link_of(&id, 0), "report").await;
    assert!(matches!(
        connecting.finish().await,
        Err(ConnectError::Denied { .. })
    ));
    let blocked = world.connect(&["true"], "").finish().await;
    assert!(
        matches!(blocked, Err(ConnectError::Limited(_))),
        "{blocked:?}"
    );

    world.stop_agent().await;
    admin::remove(world.broker.store(), Principal::Agent, COMPUTER)
        .await
        .unwrap();
    let now = world.clock().now_millis();
    assert!(world.broker.store().blocks(now).await.unwrap().is_empty());
    let again = World::builder().recipients(&["owner@example.com"]);
    world.add_agent(COMPUTER, &again).await;
    let asking = world.connect(&["true"], "");
    asking.event("pending").await;
    assert_eq!(
        world.emails_queued().await,
        2,
        "one email for each computer"
    );
}
