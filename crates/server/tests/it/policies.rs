//! Approval policies set on the remote computer: how many recipients must
//! allow, that a reason is required, and that an operator never approves
//! its own request. Each test goes through the real agent, server, client
//! and emails.

use doorman_agent::consent::{ConsentRequest, ConsentResponse};
use doorman_client::{ConnectError, EndCause};
use doorman_core::{AuditKind, Decision, RequestState};
use doorman_test_support::World;
use doorman_test_support::smtp::ReceivedMail;
use doorman_test_support::world::{COMPUTER, OPERATOR};

fn mail_to<'a>(mails: &'a [ReceivedMail], address: &str) -> &'a ReceivedMail {
    mails
        .iter()
        .find(|mail| mail.to.iter().any(|to| to.contains(address)))
        .unwrap_or_else(|| panic!("no mail to {address}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_approvals_are_needed_and_a_repeated_click_counts_once() {
    let world = World::builder()
        .policy("required_approvals", 2)
        .start()
        .await;
    let connecting = world.connect(&["echo", "in"], "two keys");
    let id = connecting.request_id().await;
    let mails = world.smtp.wait_for(2).await;
    let it = mail_to(&mails, "it@example.com").link();
    let owner = mail_to(&mails, "owner@example.com").link();
    assert!(
        mails[0].text().contains("2 recipients must allow"),
        "{}",
        mails[0].text()
    );

    world.click(&it, "allow").await;
    let approval = connecting.event("approval").await;
    assert_eq!(approval["approvals"], 1);
    assert_eq!(approval["required"], 2);
    assert_eq!(approval["by"], "i***@example.com");
    assert_eq!(world.state_of(&id).await, RequestState::Pending);
    // The same recipient again: still one approval.
    let (_, page) = world.page(&it).await;
    assert!(page.contains("Your approval is counted"), "{page}");
    let nonce = doorman_test_support::world::extract_nonce(&page).unwrap();
    world
        .http
        .post(&it)
        .form(&[("decision", "allow"), ("nonce", nonce.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(world.state_of(&id).await, RequestState::Pending);
    let (_, page) = world.page(&owner).await;
    assert!(page.contains("1 more approval is needed"), "{page}");
    assert!(page.contains("it@example.com at"), "{page}");
    assert!(page.contains("Allow Session"), "{page}");

    world.click(&owner, "allow").await;
    let stdout = connecting.stdout.clone();
    assert_eq!(connecting.finish().await, Ok(0));
    assert_eq!(stdout.text(), "in\n");
    let allowed = world.wait_for_audit("allowed").await;
    assert_eq!(allowed.actor.as_deref(), Some("owner@example.com"));
    let kinds = world.audit_kinds().await;
    assert_eq!(
        kinds.iter().filter(|k| **k == AuditKind::Approved).count(),
        1
    );
    let (_, page) = world.page(&it).await;
    assert!(
        page.contains("Allowed by it@example.com, owner@example.com"),
        "{page}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_deny_vetoes_after_an_approval() {
    let world = World::builder()
        .policy("required_approvals", 2)
        .start()
        .await;
    let connecting = world.connect(&["true"], "");
    let id = connecting.request_id().await;
    let mails = world.smtp.wait_for(2).await;
    world
        .click(&mail_to(&mails, "it@example.com").link(), "allow")
        .await;
    connecting.event("approval").await;
    world
        .click(&mail_to(&mails, "owner@example.com").link(), "deny")
        .await;
    assert_eq!(
        connecting.finish().await,
        Err(ConnectError::Denied {
            by: "owner@example.com".into()
        })
    );
    assert_eq!(world.state_of(&id).await, RequestState::Denied);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operators_own_address_gets_no_email_and_cannot_approve() {
    let world = World::start().await;
    world
        .broker
        .store()
        .set_operator_email(OPERATOR, Some("IT@example.com"), 0)
        .await
        .unwrap();
    let connecting = world.connect(&["true"], "");
    let pending = connecting.event("pending").await;
    assert_eq!(
        pending["recipients"],
        serde_json::json!(["o***@example.com"])
    );
    world.smtp.wait_for(1).await;
    world.wait_for_audit("email_sent").await;
    let queued: Vec<_> = world
        .audit_events()
        .await
        .into_iter()
        .filter(|e| e.event == AuditKind::EmailQueued)
        .map(|e| e.actor)
        .collect();
    assert_eq!(queued, [Some("owner@example.com".to_string())]);
    let mails = world.smtp.mails();
    world.click(&mails[0].link(), "allow").await;
    assert_eq!(connecting.finish().await, Ok(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn too_few_other_approvers_refuses_at_once() {
    let world = World::builder()
        .policy("required_approvals", 2)
        .start()
        .await;
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
        message.contains("needs 2 approvals but only 1 of its recipients may approve"),
        "{message}"
    );
    assert_eq!(result.unwrap_err().exit_code(), 245);
    let kinds = world.audit_kinds().await;
    assert!(!kinds.contains(&AuditKind::Requested), "{kinds:?}");
    assert!(!kinds.contains(&AuditKind::EmailQueued), "{kinds:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_computer_that_requires_a_reason_refuses_a_connect_without_one() {
    let world = World::builder()
        .policy("require_reason", true)
        .start()
        .await;
    let result = world.connect(&["true"], "  ").finish().await;
    let Err(ConnectError::InvalidRequest(message)) = &result else {
        panic!("expected an invalid request, got {result:?}")
    };
    assert_eq!(
        message,
        "computer \"office-pc\" requires a reason: connect again with --reason TEXT"
    );
    assert_eq!(result.unwrap_err().exit_code(), 2);
    let kinds = world.audit_kinds().await;
    assert!(kinds.contains(&AuditKind::Refused), "{kinds:?}");
    assert!(!kinds.contains(&AuditKind::EmailQueued), "{kinds:?}");
    // With a reason it goes ahead.
    let connecting = world.connect(&["true"], "ticket 7");
    connecting.event("pending").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_approval_covers_further_sessions_inside_its_window() {
    let world = World::builder()
        .policy("approval_valid_for", 600)
        .start()
        .await;
    let first = world.connect(&["echo", "one"], "");
    let first_id = first.request_id().await;
    let mails = world.smtp.wait_for(2).await;
    world.click(&mails[0].link(), "allow").await;
    assert_eq!(first.finish().await, Ok(0));

    // Same operator, same service: in at once, no email.
    let second = world.connect(&["echo", "two"], "");
    let earlier = second.event("approved_earlier").await;
    assert_eq!(earlier["request_id"], first_id.as_str());
    assert_eq!(earlier["by"], mails[0].to[0].as_str());
    assert!(earlier["valid_for"].as_u64().unwrap() > 590, "{earlier}");
    let stdout = second.stdout.clone();
    assert_eq!(second.finish().await, Ok(0));
    assert_eq!(stdout.text(), "two\n");
    let reused = world.wait_for_audit("reused").await;
    assert!(
        reused.detail.as_deref().unwrap().contains(&first_id),
        "{reused:?}"
    );
    assert_eq!(world.emails_queued().await, 2, "no new emails");

    // A Deny on the computer (of another operator's request) ends the window.
    let bob = doorman_server::admin::add_operator(world.broker.store(), "bob")
        .await
        .unwrap();
    let denied = world.connect_to(COMPUTER, &bob, &["true"], "");
    denied.event("pending").await;
    let mails = world.smtp.wait_for(4).await;
    world.click(&mails[2].link(), "deny").await;
    assert!(
        matches!(denied.finish().await, Err(ConnectError::Denied { .. })),
        "denied"
    );
    let third = world.connect(&["true"], "");
    third.event("pending").await;
    world.smtp.wait_for(6).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_approval_covers_nothing_after_its_window() {
    let world = World::builder()
        .policy("approval_valid_for", 1)
        .start()
        .await;
    let first = world.connect(&["true"], "");
    first.event("pending").await;
    let mails = world.smtp.wait_for(2).await;
    world.click(&mails[0].link(), "allow").await;
    assert_eq!(first.finish().await, Ok(0));
    // The one-second window passes on the server's clock, which decides:
    // the agent, whose own clock has not moved, still offers the earlier
    // approval, and the server's records refuse it.
    world
        .clock()
        .advance(std::time::Duration::from_millis(1500));
    let second = world.connect(&["true"], "");
    second.event("pending").await;
    world.smtp.wait_for(4).await;
    let kinds = world.audit_kinds().await;
    assert!(!kinds.contains(&AuditKind::Reused), "{kinds:?}");
}

/// Issue 26: the server ends the session at the computer's time limit and
/// says so on the session's own connection; the operator is told the
/// server's words, not a guess from the time that passed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_ends_at_the_computers_time_limit_in_the_servers_words() {
    let world = World::builder()
        .without_email_authorization()
        .policy("max_session_seconds", 2)
        .start()
        .await;
    let connecting = world.connect(&["sleep", "30"], "");
    let started = connecting.event("session_started").await;
    assert_eq!(started["time_limit_secs"], 2);
    // Shorter than a minute: warned at once.
    let warning = connecting.event("time_warning").await;
    assert!(warning["seconds_left"].as_u64().unwrap() <= 2, "{warning}");
    // The two seconds pass on the server's clock, which ends the session.
    world.clock().advance(std::time::Duration::from_secs(2));
    let words = format!("the session reached {COMPUTER}'s time limit of 2 s");
    // `--json` says why, with the exit status.
    let ended = connecting.event("session_ended").await;
    assert_eq!(ended["cause"], "time_limit", "{ended}");
    assert_eq!(ended["message"], words.as_str(), "{ended}");
    assert_eq!(ended["exit_code"], 246, "{ended}");
    let result = connecting.finish().await;
    assert_eq!(
        result,
        Err(ConnectError::Ended {
            cause: EndCause::TimeLimit,
            message: words.clone(),
        })
    );
    // What `doorman connect` prints after "doorman: ", and its status.
    let error = result.unwrap_err();
    assert_eq!(error.to_string(), words);
    assert_eq!(error.exit_code(), 246);
    let audited = world.wait_for_audit("session_ended").await;
    assert_eq!(audited.detail.as_deref(), Some("ended: time limit"));
}

/// Answers at the computer, as `doorman consent` does.
async fn consent(
    world: &World,
    request: ConsentRequest,
) -> Result<ConsentResponse, doorman_agent::consent::ConsentError> {
    let socket = doorman_agent::consent::socket_path(&world.agent_config, None);
    doorman_agent::consent::call(&socket, &request).await
}

fn local_user() -> String {
    // Who the tests run as, as the agent names them.
    use std::os::unix::fs::MetadataExt;
    let uid = std::fs::metadata("/proc/self").expect("/proc/self").uid();
    doorman_agent::consent::user_name(uid)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_local_allow_settles_the_request_where_it_is_an_alternative() {
    let world = World::builder()
        .policy("local_consent", "\"alternative\"")
        .start()
        .await;
    let connecting = world.connect(&["echo", "local"], "at the desk");
    let id = connecting.request_id().await;
    let Ok(ConsentResponse::Waiting { requests }) = consent(&world, ConsentRequest::List).await
    else {
        panic!("no list")
    };
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0].id, id);
    assert_eq!(requests[0].reason, "at the desk");
    // A prefix of the id is enough.
    let answered = consent(&world, ConsentRequest::Allow { id: id[..8].into() })
        .await
        .unwrap();
    assert_eq!(
        answered,
        ConsentResponse::Answered {
            id: id.clone(),
            decision: Decision::Allow
        }
    );
    let stdout = connecting.stdout.clone();
    assert_eq!(connecting.finish().await, Ok(0));
    assert_eq!(stdout.text(), "local\n");
    let allowed = world.wait_for_audit("allowed").await;
    let by = format!("{} (at {COMPUTER})", local_user());
    assert_eq!(allowed.actor.as_deref(), Some(by.as_str()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_required_local_allow_comes_on_top_of_the_email_approval() {
    let world = World::builder()
        .policy("local_consent", "\"required\"")
        .start()
        .await;
    let connecting = world.connect(&["true"], "");
    let id = connecting.request_id().await;
    let mails = world.smtp.wait_for(2).await;
    world.click(&mails[0].link(), "allow").await;
    connecting.event("approval").await;
    assert_eq!(world.state_of(&id).await, RequestState::Pending);
    consent(&world, ConsentRequest::Allow { id: id.clone() })
        .await
        .unwrap();
    assert_eq!(connecting.finish().await, Ok(0));
    assert_eq!(world.state_of(&id).await, RequestState::Allowed);

    // And a local Deny vetoes.
    let connecting = world.connect(&["true"], "");
    let id = connecting.request_id().await;
    consent(&world, ConsentRequest::Deny { id: id.clone() })
        .await
        .unwrap();
    assert!(matches!(
        connecting.finish().await,
        Err(ConnectError::Denied { .. })
    ));
    let denied = world.wait_for_audit("denied").await;
    let detail = format!("local decision by {} at the computer", local_user());
    assert_eq!(denied.detail.as_deref(), Some(detail.as_str()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_computer_without_local_consent_takes_no_local_answer() {
    let world = World::start().await;
    let connecting = world.connect(&["true"], "");
    let id = connecting.request_id().await;
    let error = consent(&world, ConsentRequest::Allow { id: id.clone() })
        .await
        .unwrap_err();
    assert!(
        error.to_string().contains("is waiting for an answer here"),
        "{error}"
    );
    assert_eq!(world.state_of(&id).await, RequestState::Pending);
}

/// Issue 25: a reused approval (`approval_valid_for`) stands in for the
/// recipients, never for the person at the computer: with
/// `local_consent = "required"` the session waits for the local Allow,
/// without emails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reused_approval_still_needs_the_required_local_allow() {
    let world = World::builder()
        .policy("approval_valid_for", 600)
        .policy("local_consent", "\"required\"")
        .start()
        .await;
    let first = world.connect(&["echo", "one"], "");
    let first_id = first.request_id().await;
    let mails = world.smtp.wait_for(2).await;
    world.click(&mails[0].link(), "allow").await;
    consent(
        &world,
        ConsentRequest::Allow {
            id: first_id.clone(),
        },
    )
    .await
    .unwrap();
    assert_eq!(first.finish().await, Ok(0));

    // Same operator, same service, inside the window: no email, but
    // nothing runs until the person at the computer allows.
    let second = world.connect(&["echo", "two"], "");
    let earlier = second.event("approved_earlier").await;
    assert_eq!(earlier["request_id"], first_id.as_str());
    let id = second.request_id().await;
    assert_ne!(id, first_id);
    assert_eq!(world.state_of(&id).await, RequestState::Pending);
    let reused = world.wait_for_audit("reused").await;
    assert_eq!(reused.request_id.as_deref(), Some(id.as_str()));
    assert_eq!(second.stdout.text(), "");
    consent(&world, ConsentRequest::Allow { id: id.clone() })
        .await
        .unwrap();
    let stdout = second.stdout.clone();
    assert_eq!(second.finish().await, Ok(0));
    assert_eq!(stdout.text(), "two\n");
    assert_eq!(world.state_of(&id).await, RequestState::Allowed);
    assert_eq!(world.emails_queued().await, 2, "no new emails");

    // And a local Deny refuses the reuse.
    let third = world.connect(&["echo", "three"], "");
    let id = third.request_id().await;
    consent(&world, ConsentRequest::Deny { id }).await.unwrap();
    assert!(matches!(
        third.finish().await,
        Err(ConnectError::Denied { .. })
    ));
}
