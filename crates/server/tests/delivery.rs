//! Email delivery through faults: temporary SMTP failures are retried until
//! the request expires, permanent ones fail that recipient, the operator sees
//! each recipient's state, and a request nobody can receive ends at once.
//! Emails also go over TLS: implicit (`smtps://`) and STARTTLS
//! (`?tls=required`), verified against the CA the server was given.

use doorman_client::ConnectError;
use doorman_core::RequestState;
use doorman_test_support::World;
use doorman_test_support::world::SmtpTls;

fn deliveries(progress: &str) -> Vec<serde_json::Value> {
    progress
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|e| e["event"] == "delivery")
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_nobody_can_receive_ends_at_once() {
    let world = World::start().await;
    world.smtp.reject_recipient(
        "it@example.com",
        &["550 5.1.1 <it@example.com>: no such user"],
    );
    world
        .smtp
        .reject_recipient("owner@example.com", &["554 5.7.1 relay denied"]);
    let connecting = world.connect(&["true"], "");
    let pending = connecting.event("pending").await;
    let id = pending["request_id"].as_str().unwrap().to_string();
    let progress = connecting.progress.clone();
    let result = connecting.finish().await;
    let Err(ConnectError::Undeliverable(message)) = &result else {
        panic!("expected undeliverable, got {result:?}")
    };
    assert!(
        message.starts_with("no authorization email could be delivered"),
        "{message}"
    );
    assert!(
        message.contains("55"),
        "names the server's reply: {message}"
    );
    assert_eq!(result.as_ref().unwrap_err().exit_code(), 248);
    assert_eq!(world.state_of(&id).await, RequestState::Cancelled);
    let news = deliveries(&progress.text());
    assert_eq!(news.len(), 2, "{news:?}");
    assert!(news.iter().all(|n| n["state"] == "failed"));
    assert!(news.iter().any(|n| n["recipient"] == "i***@example.com"
        && n["detail"].as_str().unwrap().contains("no such user")));
    let failed = world
        .audit_events()
        .await
        .into_iter()
        .filter(|e| e.event == "email_failed")
        .count();
    assert_eq!(failed, 2);
    assert!(world.smtp.mails().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn temporary_failures_are_retried_and_reported() {
    let world = World::start().await;
    world
        .smtp
        .reject_recipient("it@example.com", &["451 4.3.0 mailbox busy, try later"]);
    let connecting = world.connect(&["true"], "");
    connecting.event("pending").await;
    // The other recipient's email arrives first; this one after a retry.
    let mails = world.smtp.wait_for(2).await;
    let mut to: Vec<_> = mails.iter().flat_map(|m| m.to.clone()).collect();
    to.sort();
    assert_eq!(to, ["it@example.com", "owner@example.com"]);
    let text = connecting
        .progress
        .wait_until(|t| {
            deliveries(t)
                .iter()
                .filter(|n| n["state"] == "sent")
                .count()
                == 2
        })
        .await;
    let news = deliveries(&text);
    let for_it: Vec<_> = news
        .iter()
        .filter(|n| n["recipient"] == "i***@example.com")
        .collect();
    assert_eq!(for_it[0]["state"], "retrying");
    assert!(
        for_it[0]["detail"].as_str().unwrap().contains("451"),
        "{for_it:?}"
    );
    assert_eq!(for_it[1]["state"], "sent");
    let kinds: Vec<_> = world.audit_kinds().await;
    assert!(
        kinds.contains(&doorman_core::AuditKind::EmailRetrying),
        "{kinds:?}"
    );
    world.click(&mails[0].link(), "allow").await;
    assert_eq!(connecting.finish().await, Ok(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_smtp_server_is_tried_again() {
    let world = World::builder()
        .recipients(&["it@example.com"])
        .start()
        .await;
    world
        .smtp
        .refuse_connections(&["421 4.3.2 too busy, come back later"]);
    let connecting = world.connect(&["true"], "");
    connecting.event("pending").await;
    let mails = world.smtp.wait_for(1).await;
    let text = connecting
        .progress
        .wait_until(|t| deliveries(t).iter().any(|n| n["state"] == "sent"))
        .await;
    let news = deliveries(&text);
    assert_eq!(news[0]["state"], "retrying", "{news:?}");
    world.click(&mails[0].link(), "deny").await;
    assert!(matches!(
        connecting.finish().await,
        Err(ConnectError::Denied { .. })
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn emails_go_over_smtps_and_starttls_to_a_relay_of_a_private_ca() {
    for (mode, scheme) in [
        (SmtpTls::Implicit, "smtps://"),
        (SmtpTls::StartTls, "?tls=required"),
    ] {
        let world = World::builder()
            .recipients(&["it@example.com"])
            .smtp_tls(mode)
            .start()
            .await;
        assert!(world.smtp.url().contains(scheme), "{}", world.smtp.url());
        let connecting = world.connect(&["echo", "over tls"], "");
        let mails = world.smtp.wait_for(1).await;
        // The STARTTLS sink refuses MAIL FROM before the upgrade, so an
        // email that arrived came encrypted; the flag says so for both.
        assert!(mails[0].encrypted, "{mode:?}");
        assert_eq!(mails[0].to, ["it@example.com"]);
        world.click(&mails[0].link(), "allow").await;
        let stdout = connecting.stdout.clone();
        assert_eq!(connecting.finish().await, Ok(0));
        assert_eq!(stdout.text(), "over tls\n");
    }
}

/// Requests one after another, each with one email, denied at once: the
/// delivery news each one's operator saw.
async fn three_requests_in_turn(world: &World) -> Vec<Vec<serde_json::Value>> {
    let mut seen = Vec::new();
    for n in 1..=3 {
        let connecting = world.connect(&["true"], "");
        let mails = world.smtp.wait_for(n).await;
        let progress = connecting.progress.clone();
        // Reported once the send returned, so after its connection was
        // put back for the next email.
        progress
            .wait_until(|t| deliveries(t).iter().any(|n| n["state"] != "retrying"))
            .await;
        world.click(&mails[n - 1].link(), "deny").await;
        assert!(matches!(
            connecting.finish().await,
            Err(ConnectError::Denied { .. })
        ));
        seen.push(deliveries(&progress.text()));
    }
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn emails_share_one_connection_to_the_relay() {
    let world = World::builder()
        .recipients(&["it@example.com"])
        .start()
        .await;
    three_requests_in_turn(&world).await;
    assert_eq!(world.smtp.connections(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_that_hung_up_gets_the_next_email_without_a_retry() {
    let world = World::builder()
        .recipients(&["it@example.com"])
        .start()
        .await;
    world.smtp.hang_up_after_each_message();
    for news in three_requests_in_turn(&world).await {
        assert!(news.iter().all(|n| n["state"] == "sent"), "{news:?}");
    }
    assert_eq!(world.smtp.connections(), 3);
}
