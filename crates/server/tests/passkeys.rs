//! Passkey approvals through the real server with a software authenticator:
//! the page carries the request's challenge, the quorum counts only
//! Allows with a recipient's own pinned passkey, the assertions travel to
//! the computer with the outcome, and a Deny needs none.

use doorman_core::passkey::soft::SoftPasskey;
use doorman_core::passkey::{Assertion, B64};
use doorman_test_support::World;
use doorman_test_support::world::extract_nonce;
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
    assert_eq!(world.smtp.wait_for(3).await.len(), 3);
    // Not a recipient: refused at the computer, nothing sent.
    let stranger = doorman_agent::enroll::start(&settings, "eve@example.com").await;
    assert!(matches!(
        stranger,
        Err(doorman_agent::enroll::EnrollError::NotARecipient(_))
    ));
}
