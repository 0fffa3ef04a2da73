//! `GET /metrics`: what a Prometheus scrape shows after the story, and who
//! may scrape it.

use doorman_test_support::World;
use reqwest::StatusCode;

/// The value of one series (`name` with its labels, as rendered), if shown.
fn value(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
}

async fn scrape(world: &World) -> String {
    let response = world
        .http
        .get(format!("{}/metrics", world.url))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.headers()["content-type"],
        "text/plain; version=0.0.4; charset=utf-8"
    );
    response.text().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scrape_after_the_story_shows_what_happened() {
    let world = World::start().await;
    let before = scrape(&world).await;
    for series in [
        "doorman_computers_connected",
        "doorman_leader",
        "doorman_emails_sent_total",
        "doorman_authorization_requests_total{outcome=\"allowed\"}",
        "doorman_sessions_active{kind=\"command\"}",
        "doorman_rate_limited_total{limit=\"credentials\"}",
        "doorman_database_errors_total",
    ] {
        assert!(
            value(&before, series).is_some(),
            "{series} is shown before anything happened:\n{before}"
        );
    }
    assert_eq!(value(&before, "doorman_computers_connected"), Some(1.0));
    assert_eq!(value(&before, "doorman_leader"), Some(1.0));
    assert!(before.contains("# HELP doorman_decision_seconds "));

    let connecting = world.connect(&["sh", "-c", "echo hello; exit 3"], "metrics");
    let mails = world.smtp.wait_for(2).await;
    connecting
        .progress
        .wait_until(|t| t.matches("\"state\":\"sent\"").count() == 2)
        .await;
    assert_eq!(
        world.click(&mails[0].link(), "allow").await.status(),
        StatusCode::SEE_OTHER
    );
    assert_eq!(connecting.finish().await, Ok(3));
    // A wrong operator token.
    let wrong = world
        .http
        .get(format!("{}{}", world.url, doorman_wire::CONNECT_PATH))
        .header("authorization", "Bearer dop_wrong")
        .header("connection", "upgrade")
        .header("upgrade", doorman_wire::UPGRADE_PROTOCOL)
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    world.wait_for_audit("session_ended").await;

    let after = scrape(&world).await;
    let moved =
        |series: &str| value(&after, series).unwrap_or(0.0) - value(&before, series).unwrap_or(0.0);
    assert_eq!(
        moved("doorman_authorization_requests_total{outcome=\"allowed\"}"),
        1.0,
        "{after}"
    );
    assert_eq!(moved("doorman_decision_seconds_count"), 1.0);
    assert_eq!(moved("doorman_emails_sent_total"), 2.0);
    assert_eq!(
        moved("doorman_authentication_failures_total{kind=\"operator_token\"}"),
        1.0
    );
    assert_eq!(
        value(&after, "doorman_sessions_active{kind=\"command\"}"),
        Some(0.0)
    );
    assert!(moved("doorman_relay_bytes_total{direction=\"to_operator\"}") >= 6.0);
    assert_eq!(moved("doorman_database_errors_total"), 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_a_trusted_proxy_forwards_gets_no_metrics() {
    let world = World::builder()
        .trusted_proxies(&["127.0.0.1"])
        .start()
        .await;
    let forwarded = world
        .http
        .get(format!("{}/metrics", world.url))
        .header("x-forwarded-for", "203.0.113.9")
        .send()
        .await
        .unwrap();
    assert_eq!(forwarded.status(), StatusCode::NOT_FOUND);
    assert!(!forwarded.text().await.unwrap().contains("doorman_"));
    // A client on this host, named by the trusted proxy, may scrape.
    let local = world
        .http
        .get(format!("{}/metrics", world.url))
        .header("x-forwarded-for", "127.0.0.1")
        .send()
        .await
        .unwrap();
    assert_eq!(local.status(), StatusCode::OK);
}

/// A GET of `path` that says it was forwarded for someone else.
async fn forwarded_get(world: &World, path: &str, header: &str, value: &str) -> reqwest::Response {
    world
        .http
        .get(format!("{}{path}", world.url))
        .header(header, value)
        .send()
        .await
        .unwrap()
}

/// One rule says whether a client is on this host, for `/metrics` as for
/// `/outbox`: a proxy on this host that is not trusted, forwarding someone
/// else, opens neither.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_untrusted_local_proxy_opens_neither_the_metrics_nor_the_outbox() {
    let world = World::start().await;
    for (header, value) in [
        ("x-forwarded-for", "8.8.8.8"),
        ("forwarded", "for=8.8.8.8"),
        ("x-real-ip", "8.8.8.8"),
    ] {
        let metrics = forwarded_get(&world, "/metrics", header, value).await;
        assert_eq!(metrics.status(), StatusCode::NOT_FOUND, "{header}: {value}");
        assert!(!metrics.text().await.unwrap().contains("doorman_"));
        let outbox = forwarded_get(&world, "/outbox", header, value).await;
        assert_eq!(outbox.status(), StatusCode::FORBIDDEN, "{header}: {value}");
    }
    // This host's own requests get both.
    scrape(&world).await;
    let outbox = world
        .http
        .get(format!("{}/outbox", world.url))
        .send()
        .await
        .unwrap();
    assert_eq!(outbox.status(), StatusCode::OK);
}
