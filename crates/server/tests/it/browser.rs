//! A real browser: headless Chromium, driven over WebDriver (chromedriver),
//! opens the emailed link at phone size, saves a screenshot (under target/,
//! or into `docs/` with DOORMAN_UPDATE_SCREENSHOT=1),
//! clicks Allow Session, and the operator's session starts. A page of another
//! origin that frames the approval page gets nothing clickable.
//!
//! Needs Debian's `chromium` and `chromium-driver` (`.ci/run` installs them).
//! Without them the test says so and passes, except under CI.

use doorman_core::RequestState;
use doorman_test_support::World;
use doorman_test_support::webdriver::{Browser, ELEMENT};
use serde_json::json;
use tokio::io::AsyncWriteExt;

/// Serves one page of HTML on another origin (another port of loopback).
async fn other_origin(html: String) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let html = html.clone();
            tokio::spawn(async move {
                let mut request = [0u8; 4096];
                let _ = tokio::io::AsyncReadExt::read(&mut stream, &mut request).await;
                let response = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: text/html\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{html}",
                    html.len()
                );
                let _ = stream.write_all(response.as_bytes()).await;
            });
        }
    });
    format!("http://localhost:{}/", address.port())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_phone_browser_allows_the_session_and_framing_gets_nothing() {
    let Some(browser) = Browser::start(390, 844, true).await else {
        return;
    };
    let session = browser.session.clone();

    let world = World::builder()
        .recipients(&["owner@example.com"])
        .start()
        .await;
    let connecting = world.connect(&["sh", "-c", "echo allowed from a phone"], "printer setup");
    let pending = connecting.event("pending").await;
    let id = pending["request_id"].as_str().unwrap().to_string();
    let link = world.smtp.wait_for(1).await[0].link();

    // Clickjacking: another origin frames the page; nothing inside is reachable.
    let attacker = other_origin(format!(
        "<html><body><iframe id=f src=\"{link}\" width=390 height=800></iframe></body></html>"
    ))
    .await;
    browser
        .post(&format!("/session/{session}/url"), json!({"url": attacker}))
        .await;
    let frame = browser.find("iframe").await.expect("the attacker's iframe");
    browser
        .post(
            &format!("/session/{session}/frame"),
            json!({"id": {ELEMENT: frame}}),
        )
        .await;
    // The browser refused to render the page in the frame (its own error
    // page stands there instead): none of our form is reachable.
    assert!(
        browser.find("button[value=allow]").await.is_none(),
        "Allow is not clickable inside the frame"
    );
    assert!(
        browser.find("input[name=nonce]").await.is_none(),
        "the form is not in the frame"
    );
    let location = browser
        .post(
            &format!("/session/{session}/execute/sync"),
            json!({"script": "return document.location.href", "args": []}),
        )
        .await;
    assert!(
        !location["value"]
            .as_str()
            .unwrap_or_default()
            .contains("/a/"),
        "{location}"
    );
    browser
        .post(&format!("/session/{session}/frame"), json!({"id": null}))
        .await;
    assert_eq!(world.state_of(&id).await, RequestState::Pending);

    // The recipient opens the link on a phone.
    browser
        .post(&format!("/session/{session}/url"), json!({"url": link}))
        .await;
    let png = browser.screenshot().await;
    assert!(png.starts_with(b"\x89PNG"));
    // Every run leaves its screenshot under target/; the one in docs/ is
    // replaced only on request, so that running the tests changes no
    // tracked file.
    let shot_path = if std::env::var_os("DOORMAN_UPDATE_SCREENSHOT").is_some() {
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/approval-page.png")
    } else {
        std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("approval-page.png")
    };
    std::fs::write(&shot_path, &png).expect("save the screenshot");

    let allow = browser
        .find("button[value=allow]")
        .await
        .expect("the Allow Session button");
    browser
        .post(
            &format!("/session/{session}/element/{allow}/click"),
            json!({}),
        )
        .await;
    let started = connecting.event("session_started").await;
    assert_eq!(started["event"], "session_started");
    let stdout = connecting.stdout.clone();
    assert_eq!(connecting.finish().await, Ok(0));
    assert_eq!(stdout.text(), "allowed from a phone\n");
    let status = browser.find(".status-allowed").await;
    assert!(status.is_some(), "the page now shows who allowed");
    browser.quit().await;
}
