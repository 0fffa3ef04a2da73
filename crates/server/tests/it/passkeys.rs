//! Passkey approvals through the real server with a software authenticator:
//! the page carries the request's challenge, the quorum counts only
//! Allows with a recipient's own pinned passkey, the assertions travel to
//! the computer with the outcome, a Deny needs none, and an approval the
//! computer refuses ends refused. Enrolment reaches only the computer's
//! announced recipients, a few times an hour, audited.

use doorman_client::ConnectError;
use doorman_core::RequestState;
use doorman_core::passkey::soft::SoftPasskey;
use doorman_core::passkey::{Assertion, B64};
use doorman_test_support::World;
use doorman_test_support::world::{COMPUTER, extract_nonce};
use reqwest::StatusCode;

/// A world whose computer requires passkeys from both recipients, each
/// with a key of their own pinned; the keys.
async fn world(required_approvals: u32) -> (World, SoftPasskey, SoftPasskey) {
    let mut it = SoftPasskey::new("http://localhost");
    let mut owner = SoftPasskey::new("http://localhost");
    let pin = |key: &SoftPasskey, recipient: &str| {
        let public = serde_json::to_value(key.public_key()).unwrap();
        format!(
            "{{ recipient = \"{recipient}\", id = \"{}\", public_key = {{ alg = \"es256\", key = \"{}\" }} }}",
            key.id,
            public["key"].as_str().unwrap()
        )
    };
    let world = World::builder()
        .localhost()
        .recipients(&["it@example.com", "owner@example.com"])
        .policy("required_approvals", required_approvals)
        .policy("require_passkey", true)
        .policy(
            "passkeys",
            format!(
                "[{}, {}]",
                pin(&it, "it@example.com"),
                pin(&owner, "owner@example.com")
            ),
        )
        .start()
        .await;
    for key in [&mut it, &mut owner] {
        key.origin = world.url.clone();
    }
    (world, it, owner)
}

/// The page's challenge and nonce.
async fn page(world: &World, link: &str) -> (Vec<u8>, String) {
    let (status, page) = world.page(link).await;
    assert_eq!(status, StatusCode::OK);
    let challenge = page
        .split("data-challenge=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("the page carries a challenge");
    let challenge: B64 = challenge.parse().unwrap();
    (challenge.0, extract_nonce(&page).unwrap())
}

async fn allow(world: &World, link: &str, nonce: &str, assertion: &Assertion) -> reqwest::Response {
    world
        .http
        .post(link)
        .form(&[
            ("decision", "allow"),
            ("nonce", nonce),
            ("assertion", &serde_json::to_string(assertion).unwrap()),
        ])
        .send()
        .await
        .unwrap()
}

/// The email to `recipient` among `mails`.
fn to<'a>(
    mails: &'a [doorman_test_support::smtp::ReceivedMail],
    recipient: &str,
) -> &'a doorman_test_support::smtp::ReceivedMail {
    mails.iter().find(|m| m.to == [recipient]).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_passkey_approvals_make_the_quorum_and_the_computer_checks_both() {
    let (world, mut it, mut owner) = world(2).await;
    let connecting = world.connect(&["sh", "-c", "echo quorum"], "two keys");
    let mails = world.smtp.wait_for(2).await;
    let (it_link, owner_link) = (
        to(&mails, "it@example.com").link(),
        to(&mails, "owner@example.com").link(),
    );

    let (challenge, nonce) = page(&world, &it_link).await;
    let from_it = it.assert(&challenge);
    // Another recipient's assertion is not this one's approval.
    let (_, owner_nonce) = page(&world, &owner_link).await;
    let stolen = allow(&world, &owner_link, &owner_nonce, &from_it).await;
    assert_eq!(stolen.status(), StatusCode::FORBIDDEN);
    assert_eq!(
        stolen.text().await.unwrap(),
        "not counted: that passkey is not one pinned on this computer for you"
    );
    // Made over another challenge: not counted either.
    let elsewhere = it.assert(b"another request");
    let refused = allow(&world, &it_link, &nonce, &elsewhere).await;
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);

    assert_eq!(
        allow(&world, &it_link, &nonce, &from_it).await.status(),
        StatusCode::SEE_OTHER
    );
    let from_owner = owner.assert(&challenge);
    assert_eq!(
        allow(&world, &owner_link, &owner_nonce, &from_owner)
            .await
            .status(),
        StatusCode::SEE_OTHER
    );
    assert_eq!(
        connecting.stdout.wait_until(|t| t.contains("quorum")).await,
        "quorum\n"
    );
    assert_eq!(connecting.finish().await, Ok(0));
    let approvals = world.wait_for_audits("approved", 1).await;
    assert!(
        approvals[0]
            .detail
            .as_deref()
            .unwrap()
            .contains(&it.id.to_string()),
        "{approvals:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deny_needs_no_passkey() {
    let (world, _, _) = world(1).await;
    let connecting = world.connect(&["true"], "deny me");
    let mails = world.smtp.wait_for(2).await;
    let denied = world
        .click(&to(&mails, "owner@example.com").link(), "deny")
        .await;
    assert_eq!(denied.status(), StatusCode::SEE_OTHER);
    assert!(connecting.finish().await.is_err());
    world.wait_for_audit("denied").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_computer_has_at_most_three_enrolments_under_way() {
    let world = World::builder()
        .localhost()
        .recipients(&["it@example.com"])
        .start()
        .await;
    let settings = doorman_agent::settings_file::load(&world.agent_config).unwrap();
    let mut under_way = Vec::new();
    for _ in 0..3 {
        under_way.push(
            doorman_agent::enroll::start(&settings, "it@example.com")
                .await
                .unwrap(),
        );
    }
    let refused = doorman_agent::enroll::start(&settings, "it@example.com").await;
    assert_eq!(
        refused.err().map(|e| e.to_string()).as_deref(),
        Some(
            "the server ended the enrolment: 3 enrolments of this computer are under way already: finish or stop one first"
        )
    );
    let mails = world.smtp.wait_for(3).await;
    assert_eq!(mails.len(), 3);
    // Issue 31: headers as the authorization emails have them, each its
    // own Message-ID, and no line break inside a sentence.
    assert_eq!(mails[0].header("MIME-Version").as_deref(), Some("1.0"));
    let ids: std::collections::HashSet<_> =
        mails.iter().map(|mail| mail.header("Message-ID")).collect();
    assert_eq!(ids.len(), 3, "{ids:?}");
    assert!(
        ids.iter()
            .all(|id| id.as_deref().is_some_and(|id| id.ends_with("@localhost>"))),
        "{ids:?}"
    );
    assert!(
        mails[0]
            .text()
            .contains("Then create the passkey. Its fingerprint"),
        "{}",
        mails[0].text()
    );
    // Not a recipient: refused at the computer, nothing sent.
    let stranger = doorman_agent::enroll::start(&settings, "eve@example.com").await;
    assert!(matches!(
        stranger,
        Err(doorman_agent::enroll::EnrollError::NotARecipient(_))
    ));
}

/// Issue 25: a passkey approval the computer refused (the key's counter
/// went back: a cloned key) ends refused, on the page and in the audit
/// trail, and the outcome is never sent to the agent again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_approval_the_computer_refuses_ends_refused_on_the_page_and_stays_so() {
    let (world, mut it, _) = world(1).await;
    // A first approval: the computer keeps the key's signature counter.
    let first = world.connect(&["true"], "first");
    let mails = world.smtp.wait_for(2).await;
    let link = to(&mails, "it@example.com").link();
    let (challenge, nonce) = page(&world, &link).await;
    let approved = it.assert(&challenge);
    assert_eq!(
        allow(&world, &link, &nonce, &approved).await.status(),
        StatusCode::SEE_OTHER
    );
    assert_eq!(first.finish().await, Ok(0));

    // A clone of the key: its counter went back. The server cannot tell
    // (counters are the computer's to keep); the computer can.
    it.counter = 0;
    let second = world.connect(&["sh", "-c", "echo never"], "second");
    let id = second.request_id().await;
    let mails = world.smtp.wait_for(4).await;
    let link = to(&mails[2..], "it@example.com").link();
    let (challenge, nonce) = page(&world, &link).await;
    let cloned = it.assert(&challenge);
    assert_eq!(
        allow(&world, &link, &nonce, &cloned).await.status(),
        StatusCode::SEE_OTHER
    );
    let stdout = second.stdout.clone();
    let result = second.finish().await;
    let Err(ConnectError::SessionFailed(message)) = &result else {
        panic!("not refused: {result:?}");
    };
    assert!(
        message.starts_with("the computer refused the approval: the signature counter went back"),
        "{message}"
    );
    assert_eq!(stdout.text(), "");
    assert_eq!(world.state_of(&id).await, RequestState::Cancelled);

    // The recipient's page says so, and no longer "Allowed by".
    let (_, shown) = world.page(&link).await;
    assert!(shown.contains("Refused by the computer at "), "{shown}");
    assert!(shown.contains("the signature counter went back"), "{shown}");
    assert!(!shown.contains("Allowed by"), "{shown}");
    // So does the audit trail.
    let refused = world.wait_for_audit("refused").await;
    assert_eq!(refused.request_id.as_deref(), Some(id.as_str()));
    assert_eq!(refused.actor.as_deref(), Some(COMPUTER));
    assert!(
        refused.detail.as_deref().is_some_and(
            |d| d.starts_with("refused by the computer: the signature counter went back")
        ),
        "{refused:?}"
    );
    // Nothing allowed is left for the agent to hear of at its next
    // connection.
    let computer = world.broker.store().computer_id(COMPUTER).await.unwrap();
    let waiting = world
        .broker
        .store()
        .allowed_without_session(computer.unwrap(), 0)
        .await
        .unwrap();
    assert!(
        waiting.iter().all(|request| request.id != id),
        "the refused request would be sent again"
    );
}

/// Issue 25: a computer's key cannot flood a mailbox with enrolment
/// links. The server enrols only the recipients the computer's agent
/// announced, five an hour, and audits each.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enrolment_reaches_only_announced_recipients_a_few_times_an_hour_audited() {
    let world = World::builder()
        .localhost()
        .recipients(&["it@example.com"])
        .start()
        .await;
    let settings = doorman_agent::settings_file::load(&world.agent_config).unwrap();
    // The computer's key asks for an address its agent never announced
    // (skipping the agent's own check, as a stolen key would).
    let mut forged = settings.clone();
    forged
        .desktop_sharing
        .recipients
        .push("eve@example.com".into());
    let stranger = doorman_agent::enroll::start(&forged, "eve@example.com").await;
    assert_eq!(
        stranger.err().map(|e| e.to_string()).as_deref(),
        Some(
            "the server ended the enrolment: eve@example.com is not one of the recipients this computer's agent announced"
        )
    );
    // Five an hour, each stopped before the next.
    for _ in 0..5 {
        let enrolment = doorman_agent::enroll::start(&settings, "it@example.com")
            .await
            .unwrap();
        enrolment.stop().await.unwrap();
    }
    let sixth = doorman_agent::enroll::start(&settings, "it@example.com").await;
    assert_eq!(
        sixth.err().map(|e| e.to_string()).as_deref(),
        Some(
            "the server ended the enrolment: this computer started 5 enrolments in the last hour: try again later"
        )
    );
    let mails = world.smtp.wait_for(5).await;
    assert_eq!(mails.len(), 5);
    assert!(mails.iter().all(|mail| mail.to == ["it@example.com"]));
    let started = world.wait_for_audits("enrolment_started", 5).await;
    assert!(
        started
            .iter()
            .all(|event| event.computer.as_deref() == Some(COMPUTER)
                && event.actor.as_deref() == Some("it@example.com")),
        "{started:?}"
    );
    let refused = world.wait_for_audits("enrolment_refused", 2).await;
    let refused_for = |who: &str| {
        refused
            .iter()
            .find(|event| event.actor.as_deref() == Some(who))
            .and_then(|event| event.detail.clone())
            .unwrap_or_default()
    };
    assert!(
        refused_for("eve@example.com").contains("not one of the recipients"),
        "{refused:?}"
    );
    assert!(
        refused_for("it@example.com").contains("5 enrolments in the last hour"),
        "{refused:?}"
    );
}
