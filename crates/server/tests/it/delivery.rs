//! Email delivery through faults: temporary SMTP failures are retried until
//! the request expires, permanent ones fail that recipient, the operator sees
//! each recipient's state (`sending` at each attempt, then the relay's
//! answer), a request nobody can receive ends at once, and a slow recipient
//! delays only its own emails. Emails also go over TLS: implicit
//! (`smtps://`) and STARTTLS (`?tls=required`), verified against the CA the
//! server was given.

use doorman_client::ConnectError;
use doorman_core::RequestState;
use doorman_server::Limits;
use doorman_test_support::World;
use doorman_test_support::world::SmtpTls;

fn deliveries(progress: &str) -> Vec<serde_json::Value> {
    progress
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|e| e["event"] == "delivery")
        .collect()
}

/// The relay's answers (`sent`, `retrying`, `failed`): the delivery news
/// without the `sending` that precedes each attempt.
fn answers(progress: &str) -> Vec<serde_json::Value> {
    deliveries(progress)
        .into_iter()
        .filter(|e| e["state"] != "sending")
        .collect()
}

/// The states the operator was told for one (masked) recipient, in order.
fn states_of(progress: &str, recipient: &str) -> Vec<String> {
    deliveries(progress)
        .iter()
        .filter(|e| e["recipient"] == recipient)
        .map(|e| e["state"].as_str().unwrap_or_default().to_string())
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
    let news = answers(&progress.text());
    assert_eq!(news.len(), 2, "{news:?}");
    assert!(news.iter().all(|n| n["state"] == "failed"));
    assert_eq!(
        states_of(&progress.text(), "i***@example.com"),
        ["sending", "failed"]
    );
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
    let news = answers(&text);
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
    // Each attempt is announced as it starts.
    assert_eq!(
        states_of(&text, "i***@example.com"),
        ["sending", "retrying", "sending", "sent"]
    );
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
    let news = answers(&text);
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
            .wait_until(|t| {
                answers(t)
                    .iter()
                    .any(|n| n["state"] == "sent" || n["state"] == "failed")
            })
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
        let states: Vec<_> = news.iter().map(|n| n["state"].clone()).collect();
        assert_eq!(states, ["sending", "sent"], "{news:?}");
    }
    assert_eq!(world.smtp.connections(), 3);
}

/// Issue 26: three requests whose recipient's mail server took 25 s an
/// email held another computer's email back by more than 20 s. Each email
/// is now delivered on its own: the slow server delays only its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_recipient_delays_only_its_own_emails() {
    let limits = Limits {
        max_pending_per_operator: 10,
        ..Limits::default()
    };
    let world = World::builder()
        .recipients(&["slow@example.com"])
        .limits(limits)
        .start()
        .await;
    world
        .add_agent("home-pc", &World::builder().recipients(&["it@example.com"]))
        .await;
    let slow = world.smtp.stall_recipient("slow@example.com");

    // Three requests whose emails the recipient's server holds, all at once.
    let mut held = Vec::new();
    for n in 1..=3 {
        let connecting = world.connect(&["true"], "");
        connecting.event("pending").await;
        slow.wait_for_held(n).await;
        held.push(connecting);
    }
    // Their operators see the emails being sent.
    for connecting in &held {
        connecting
            .progress
            .wait_until(|t| states_of(t, "s***@example.com") == ["sending"])
            .await;
    }

    // Another computer's email goes out meanwhile, and its session runs.
    let other = world.connect_to("home-pc", &world.operator_token, &["echo", "home"], "");
    other.event("pending").await;
    let mails = world.smtp.wait_for(1).await;
    assert_eq!(mails[0].to, ["it@example.com"]);
    other
        .progress
        .wait_until(|t| states_of(t, "i***@example.com") == ["sending", "sent"])
        .await;
    world.click(&mails[0].link(), "allow").await;
    let stdout = other.stdout.clone();
    assert_eq!(other.finish().await, Ok(0));
    assert_eq!(stdout.text(), "home\n");
    // The slow server still holds its three.
    assert_eq!(world.smtp.mails().len(), 1);
    for connecting in &held {
        assert_eq!(
            states_of(&connecting.progress.text(), "s***@example.com"),
            ["sending"]
        );
    }

    // Once it answers, they arrive and their operators hear so.
    slow.release();
    let mails = world.smtp.wait_for(4).await;
    assert!(mails[1..].iter().all(|m| m.to == ["slow@example.com"]));
    for connecting in &held {
        connecting
            .progress
            .wait_until(|t| states_of(t, "s***@example.com") == ["sending", "sent"])
            .await;
    }
    for mail in &mails[1..] {
        world.click(&mail.link(), "deny").await;
    }
    for connecting in held {
        assert!(matches!(
            connecting.finish().await,
            Err(ConnectError::Denied { .. })
        ));
    }
}

/// Emails beyond the sixteen under way wait for a slot: each goes out as
/// soon as one frees, with no new email queued to wake the worker.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn emails_beyond_those_under_way_go_out_as_slots_free() {
    const UNDER_WAY: usize = 16;
    const REQUESTS: usize = UNDER_WAY + 3;
    let limits = Limits {
        max_pending_per_operator: 32,
        ..Limits::default()
    };
    let world = World::builder()
        .recipients(&["slow@example.com"])
        .limits(limits)
        .start()
        .await;
    let slow = world.smtp.stall_recipient("slow@example.com");
    let mut waiting = Vec::new();
    for n in 1..=REQUESTS {
        let connecting = world.connect(&["true"], "");
        connecting.event("pending").await;
        if n <= UNDER_WAY {
            slow.wait_for_held(n).await;
        }
        waiting.push(connecting);
    }
    // The three beyond the slots are queued, not yet being sent.
    for connecting in &waiting[UNDER_WAY..] {
        assert_eq!(
            states_of(&connecting.progress.text(), "s***@example.com"),
            Vec::<String>::new()
        );
    }

    slow.release();
    let mails = world.smtp.wait_for(REQUESTS).await;
    assert!(mails.iter().all(|m| m.to == ["slow@example.com"]));
    for connecting in &waiting {
        connecting
            .progress
            .wait_until(|t| states_of(t, "s***@example.com") == ["sending", "sent"])
            .await;
    }
    for mail in &mails {
        world.click(&mail.link(), "deny").await;
    }
    for connecting in waiting {
        assert!(matches!(
            connecting.finish().await,
            Err(ConnectError::Denied { .. })
        ));
    }
}
