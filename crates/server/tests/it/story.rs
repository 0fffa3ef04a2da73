//! The email-authorization story end to end: a real server, a real agent, a
//! real SMTP exchange and real HTTP clicks, all on loopback. Allow, Deny,
//! nobody deciding, Ctrl-C, two recipients at once, and a restart in the
//! middle; the approval pages' own rules are `story_pages`, what happens
//! before any email `story_before_email`.

use doorman_client::ConnectError;
use doorman_core::RequestState;
use doorman_test_support::World;
use doorman_test_support::world::{extract_nonce, request_id};
use reqwest::StatusCode;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allow_runs_the_command_and_returns_its_exit_status() {
    let world = World::start().await;
    let connecting = world.connect(
        &["sh", "-c", "echo hi; echo oops >&2; exit 7"],
        "printer is broken",
    );
    let pending = connecting.event("pending").await;
    assert_eq!(pending["expires_in"], 180);
    assert_eq!(
        pending["recipients"],
        serde_json::json!(["i***@example.com", "o***@example.com"])
    );

    let mails = world.smtp.wait_for(2).await;
    let mut to: Vec<_> = mails.iter().flat_map(|m| m.to.clone()).collect();
    to.sort();
    assert_eq!(to, ["it@example.com", "owner@example.com"]);
    assert_ne!(
        mails[0].link(),
        mails[1].link(),
        "each recipient has a link of its own"
    );

    // The operator hears of each delivery (the sink has the mail a moment
    // before the server records it as sent).
    connecting
        .progress
        .wait_until(|t| t.matches("\"state\":\"sent\"").count() == 2)
        .await;
    // The page shows the start of the computer's fingerprint.
    let (_, page) = world.page(&mails[0].link()).await;
    let shown = page
        .split("<dt>Identity</dt><dd><code>")
        .nth(1)
        .and_then(|rest| rest.split("</code>").next())
        .unwrap_or_else(|| panic!("no identity on the page: {page}"))
        .to_string();
    let response = world.click(&mails[0].link(), "allow").await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    let status = connecting.stdout.wait_until(|t| t.contains("hi")).await;
    assert_eq!(status, "hi\n");
    let progress = connecting.progress.clone();
    let stderr = connecting.stderr.clone();
    assert_eq!(connecting.finish().await, Ok(7));
    assert_eq!(stderr.text(), "oops\n");
    let events: Vec<String> = progress
        .text()
        .lines()
        .map(|line| {
            serde_json::from_str::<serde_json::Value>(line).unwrap()["event"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    // Delivery news interleaves with the rest; the states come in order.
    let states: Vec<&String> = events.iter().filter(|e| *e != "delivery").collect();
    assert_eq!(
        states,
        [
            "pending",
            "allowed",
            "identity",
            "session_started",
            "session_ended"
        ]
    );
    assert_eq!(events[0], "pending");
    // The operator's `connect` showed the same computer.
    let identity: serde_json::Value = serde_json::from_str(
        progress
            .text()
            .lines()
            .find(|l| l.contains("\"identity\""))
            .unwrap(),
    )
    .unwrap();
    assert!(shown.starts_with("SHA256:"), "{shown}");
    assert!(
        identity["fingerprint"]
            .as_str()
            .unwrap()
            .starts_with(&shown),
        "{identity} vs {shown}"
    );
    // Each email: `sending` as the attempt starts, then `sent`.
    assert_eq!(events.iter().filter(|e| *e == "delivery").count(), 4);
    assert_eq!(progress.text().matches("\"state\":\"sending\"").count(), 2);
    let allowed: serde_json::Value = serde_json::from_str(
        progress
            .text()
            .lines()
            .find(|l| l.contains("\"allowed\""))
            .unwrap(),
    )
    .unwrap();
    assert_eq!(allowed["by"], mails[0].to[0].as_str());

    // Stopping the server waits for the relay to finish and record its end.
    let mut world = world;
    world.stop_server().await;
    let kinds: Vec<String> = world
        .audit_events()
        .await
        .into_iter()
        .map(|e| e.event.to_string())
        .collect();
    for expected in [
        "requested",
        "email_queued",
        "email_sent",
        "page_viewed",
        "allowed",
        "session_started",
        "session_ended",
    ] {
        assert!(
            kinds.iter().any(|k| k == expected),
            "audit lacks {expected}: {kinds:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn email_names_the_request_and_cannot_be_broken_by_operator_text() {
    let world = World::start().await;
    let connecting = world.connect(&["true"], "fix <b>printer</b> & \"scanner\"");
    let pending = connecting.event("pending").await;
    let mails = world.smtp.wait_for(2).await;
    let mail = &mails[0];
    assert_eq!(mail.from, "doorman@example.com");
    assert_eq!(
        mail.subject(),
        "Doorman: alice asks to connect to office-pc"
    );
    assert!(mail.header("Date").is_some(), "Date header");
    let message_id = mail.header("Message-ID").expect("Message-ID header");
    assert!(message_id.contains(&request_id(&pending)), "{message_id}");
    let text = mail.text();
    for needle in [
        "alice",
        "127.0.0.1",
        "fix <b>printer</b> & \"scanner\"",
        "office-pc",
        "Asked at:",
        "Expires at:",
        "Check Request: http://",
    ] {
        assert!(
            text.contains(needle),
            "plain text lacks {needle:?}:\n{text}"
        );
    }
    let html = mail.html();
    assert!(
        html.contains("fix &#60;b&#62;printer&#60;/b&#62; &#38; &#34;scanner&#34;"),
        "html must escape:\n{html}"
    );
    assert!(html.contains(">Check Request</a>"));
    assert!(!html.contains("<b>printer"));
    let (_, page) = world.page(&mail.link()).await;
    assert!(page.contains("fix &#60;b&#62;printer"), "page must escape");
    drop(connecting);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deny_ends_the_request_without_a_session() {
    let world = World::start().await;
    let connecting = world.connect(&["sh", "-c", "echo should-not-run"], "");
    let pending = connecting.event("pending").await;
    assert_eq!(world.broker.expiries().running(), 1, "its expiry timer");
    let mails = world.smtp.wait_for(2).await;
    world.click(&mails[1].link(), "deny").await;
    // Settled long before its deadline: its timer is not kept to the end.
    assert_eq!(world.broker.expiries().running(), 0);
    let stdout = connecting.stdout.clone();
    let result = connecting.finish().await;
    assert_eq!(
        result,
        Err(ConnectError::Denied {
            by: mails[1].to[0].clone()
        })
    );
    assert_eq!(result.unwrap_err().exit_code(), 240);
    assert_eq!(stdout.text(), "");
    assert_eq!(
        world.state_of(&request_id(&pending)).await,
        RequestState::Denied
    );
    // The other recipient sees who decided, and no buttons.
    let (status, page) = world.page(&mails[0].link()).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        page.contains(&format!("Denied by {}", mails[1].to[0])),
        "{page}"
    );
    assert!(!page.contains("<form"), "settled page has no buttons");
    assert!(
        !world
            .audit_events()
            .await
            .iter()
            .any(|e| e.event == "session_started")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nobody_deciding_expires_the_request() {
    let world = World::builder().timeout_secs(5).start().await;
    let connecting = world.connect(&["true"], "");
    let pending = connecting.event("pending").await;
    assert_eq!(pending["expires_in"], 5);
    let mails = world.smtp.wait_for(2).await;
    // Nobody decides for five seconds of the server's clock.
    world.clock().advance(std::time::Duration::from_secs(5));
    assert_eq!(connecting.finish().await, Err(ConnectError::Expired));
    assert_eq!(
        world.state_of(&request_id(&pending)).await,
        RequestState::Expired
    );
    // A click after expiry decides nothing.
    let (_, page) = world.page(&mails[0].link()).await;
    assert!(page.contains("Expired at"), "{page}");
    assert!(!page.contains("<form"));
    // With the form's real nonce, as a page loaded before expiry would send.
    let link = mails[0].link();
    let token = link.rsplit('/').next().unwrap();
    let nonce = world
        .broker
        .key()
        .page_nonce(&doorman_runtime::secrets::hash(token));
    let late = world
        .http
        .post(&link)
        .form(&[("decision", "allow"), ("nonce", nonce.as_str())])
        .send()
        .await
        .unwrap();
    // Sent back to the page, which still says expired.
    assert_eq!(late.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        world.state_of(&request_id(&pending)).await,
        RequestState::Expired
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_cancels_the_request_and_the_links_say_so() {
    let world = World::start().await;
    let mut connecting = world.connect(&["true"], "");
    let pending = connecting.event("pending").await;
    let mails = world.smtp.wait_for(2).await;
    let open_page = world.page(&mails[1].link()).await.1;
    connecting.interrupt();
    let result = connecting.finish().await;
    assert_eq!(result, Err(ConnectError::Cancelled));
    assert_eq!(result.unwrap_err().exit_code(), 130);
    assert_eq!(
        world.state_of(&request_id(&pending)).await,
        RequestState::Cancelled
    );
    let (_, page) = world.page(&mails[0].link()).await;
    assert!(page.contains("Cancelled by the operator"), "{page}");
    assert!(!page.contains("<form"));
    // A page opened before the cancellation can no longer allow.
    let nonce = extract_nonce(&open_page).unwrap();
    let late = world
        .http
        .post(mails[1].link())
        .form(&[("decision", "allow"), ("nonce", nonce.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(late.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        world.state_of(&request_id(&pending)).await,
        RequestState::Cancelled
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_recipients_clicking_at_once_give_exactly_one_decision() {
    let world = World::start().await;
    for round in 0..5 {
        let connecting = world.connect(&["true"], "");
        let pending = connecting.event("pending").await;
        let mails = world.smtp.wait_for(2 * (round + 1)).await;
        let mails = &mails[2 * round..];
        // Both pages are open; both buttons are pressed in the same instant.
        let (link_a, link_b) = (mails[0].link(), mails[1].link());
        let nonce_a = extract_nonce(&world.page(&link_a).await.1).unwrap();
        let nonce_b = extract_nonce(&world.page(&link_b).await.1).unwrap();
        let (first, second) = tokio::join!(
            world
                .http
                .post(&link_a)
                .form(&[("decision", "allow"), ("nonce", nonce_a.as_str())])
                .send(),
            world
                .http
                .post(&link_b)
                .form(&[("decision", "deny"), ("nonce", nonce_b.as_str())])
                .send(),
        );
        let (first, second) = (first.unwrap(), second.unwrap());
        assert_eq!(first.status(), StatusCode::SEE_OTHER);
        assert_eq!(second.status(), StatusCode::SEE_OTHER);
        let id = request_id(&pending);
        let decisions: Vec<_> = world
            .audit_events()
            .await
            .into_iter()
            .filter(|e| {
                e.request_id.as_deref() == Some(id.as_str())
                    && (e.event == "allowed" || e.event == "denied")
            })
            .collect();
        assert_eq!(decisions.len(), 1, "round {round}: {decisions:?}");
        let state = world.state_of(&id).await;
        let result = connecting.finish().await;
        match state {
            RequestState::Allowed => assert_eq!(result, Ok(0)),
            RequestState::Denied => assert!(matches!(result, Err(ConnectError::Denied { .. }))),
            other => panic!("unexpected state {other}"),
        }
        // Both pages show the one outcome.
        let (_, a) = world.page(&mails[0].link()).await;
        let (_, b) = world.page(&mails[1].link()).await;
        let line = |page: &str| {
            page.lines()
                .find(|l| l.contains("class=\"status"))
                .unwrap()
                .to_string()
        };
        assert_eq!(line(&a), line(&b));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_loses_no_request_link_or_audit_event() {
    let mut world = World::start().await;
    let connecting = world.connect(&["true"], "");
    let pending = connecting.event("pending").await;
    let id = request_id(&pending);
    let mails = world.smtp.wait_for(2).await;
    let before = world.audit_events().await;
    world.restart_server().await;
    let after = world.audit_events().await;
    assert_eq!(
        &after[..before.len()],
        &before[..],
        "the audit trail survives"
    );
    assert_eq!(
        world.state_of(&id).await,
        RequestState::Pending,
        "the request survives"
    );
    let (status, page) = world.page(&mails[0].link()).await;
    assert_eq!(
        status,
        StatusCode::OK,
        "the link still works after a restart"
    );
    assert!(page.contains("Waiting for a decision"), "{page}");
    assert_eq!(
        world.click(&mails[0].link(), "deny").await.status(),
        StatusCode::SEE_OTHER
    );
    assert_eq!(world.state_of(&id).await, RequestState::Denied);
    assert!(
        matches!(connecting.finish().await, Err(ConnectError::Denied { .. })),
        "the operator reconnected and was told the decision"
    );
}
