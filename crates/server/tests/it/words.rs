//! Issue 31, "Words", in the server: a count of one takes the singular, the
//! page after "I did not expect this" tells of the report and the block, and
//! an operator whose grant is revoked during a forward (`-L`) session hears
//! why, while `access revoke` names the session it ends.

use doorman_client::{ConnectError, EndCause, ForwardSpec, SessionKind};
use doorman_core::access::ComputerPattern;
use doorman_server::admin;
use doorman_store::CutSession;
use doorman_test_support::World;
use doorman_test_support::world::{COMPUTER, OPERATOR};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_computer_that_needs_one_approval_says_approval() {
    let world = World::builder()
        .recipients(&["owner@example.com"])
        .start()
        .await;
    // The only recipient is the operator's own address, which never counts.
    world
        .broker
        .store()
        .set_operator_email(OPERATOR, Some("owner@example.com"), 0)
        .await
        .unwrap();
    let result = world.connect(&["true"], "").finish().await;
    let Err(ConnectError::NotOffered(message)) = &result else {
        panic!("expected a refusal, got {result:?}")
    };
    assert!(
        message.contains(&format!(
            "computer {COMPUTER:?} needs 1 approval but only 0 of its recipients may approve"
        )),
        "{message}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_after_i_did_not_expect_this_tells_of_the_report_and_the_block() {
    let world = World::builder()
        .recipients(&["owner@example.com"])
        .start()
        .await;
    let connecting = world.connect(&["true"], "surprise");
    connecting.request_id().await;
    let mails = world.smtp.wait_for(1).await;
    let link = mails[0].link();
    world.click(&link, "report").await;
    let _ = connecting.finish().await;

    let (_, page) = world.page(&link).await;
    let blocked = format!("{OPERATOR} may not ask {COMPUTER} again until ");
    let lift = format!("doorman admin blocks lift {OPERATOR} {COMPUTER}");
    for says in [
        "owner@example.com reported this request as unexpected",
        "the report is recorded in the audit trail.",
        blocked.as_str(),
        lift.as_str(),
    ] {
        assert!(page.contains(says), "{says}: {page}");
    }

    // Lifted: the page says the block is over.
    let now = world.clock().now_millis();
    world
        .broker
        .store()
        .lift_block(OPERATOR, COMPUTER, now)
        .await
        .unwrap();
    let (_, page) = world.page(&link).await;
    assert!(
        page.contains(&format!(
            "The block that kept {OPERATOR} from asking {COMPUTER} again is over."
        )),
        "{page}"
    );
    assert!(!page.contains("may not ask"), "{page}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_denied_request_that_was_not_reported_says_nothing_of_a_report() {
    let world = World::builder()
        .recipients(&["owner@example.com"])
        .start()
        .await;
    let connecting = world.connect(&["true"], "");
    connecting.request_id().await;
    let mails = world.smtp.wait_for(1).await;
    world.click(&mails[0].link(), "deny").await;
    let _ = connecting.finish().await;
    let (_, page) = world.page(&mails[0].link()).await;
    assert!(page.contains("Denied by owner@example.com"), "{page}");
    assert!(!page.contains("reported this request"), "{page}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forward_session_cut_by_a_revoked_grant_is_told_why() {
    let world = World::builder()
        .heartbeat(Duration::from_millis(200))
        .without_email_authorization()
        .forward(&["127.0.0.1:9"])
        .start()
        .await;
    let spec: ForwardSpec = "0:127.0.0.1:9".parse().unwrap();
    let forwarding = world.connect_for(SessionKind::Forward(vec![spec]), "");
    forwarding.forwarding_address().await;

    let revoked = admin::revoke_grant(world.broker.store(), OPERATOR, &[ComputerPattern::any()])
        .await
        .unwrap();
    // Without email authorization no request recorded the service; the
    // computer is out of reach for every service, so the session ends.
    assert_eq!(
        revoked.sessions,
        [CutSession {
            operator: OPERATOR.into(),
            computer: COMPUTER.into(),
            service: None,
        }]
    );
    assert_eq!(
        admin::describe_revocation(&revoked),
        format!(
            "revoked; no pending request cancelled; 1 running session ends within a heartbeat (20 s): {OPERATOR} → {COMPUTER}"
        )
    );

    // In the server's words, not as a computer that ended the session.
    let result = forwarding.finish().await;
    assert_eq!(
        result,
        Err(ConnectError::Ended {
            cause: EndCause::AccessRevoked,
            message: format!("your access to {COMPUTER} was revoked"),
        })
    );
    assert_eq!(result.unwrap_err().exit_code(), 242);
}
