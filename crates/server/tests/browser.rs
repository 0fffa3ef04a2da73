//! A real browser: headless Chromium, driven over WebDriver (chromedriver),
//! opens the emailed link at phone size, saves a screenshot (under target/,
//! or into `docs/` with DOORMAN_UPDATE_SCREENSHOT=1),
//! clicks Allow Session, and the operator's session starts. A page of another
//! origin that frames the approval page gets nothing clickable.
//!
//! Needs Debian's `chromium` and `chromium-driver` (`.ci/run` installs them).
//! Without them the test says so and passes, except under CI.

use base64::Engine;
use doorman_core::RequestState;
use doorman_test_support::{World, skip_without, which};
use serde_json::{Value, json};
use std::process::Stdio;
use std::time::Duration;
use tokio::io::AsyncWriteExt;

/// The W3C WebDriver key of an element reference.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// A minimal WebDriver client: just what the test needs.
struct Browser {
    http: reqwest::Client,
    base: String,
}

impl Browser {
    /// One WebDriver command: its `value`, or the error it answered with.
    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, Value> {
        let mut request = self.http.request(method, format!("{}{path}", self.base));
        if let Some(body) = body {
            request = request
                .header("content-type", "application/json")
                .body(body.to_string());
        }
        let response = request.send().await.expect("webdriver answers");
        let ok = response.status().is_success();
        let reply: Value =
            serde_json::from_str(&response.text().await.expect("body")).expect("json");
        if ok { Ok(reply) } else { Err(reply) }
    }

    /// A command that must succeed: a failed one (a frame not switched to,
    /// a click that missed) fails the test rather than passing it quietly.
    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        self.send(method, path, body)
            .await
            .unwrap_or_else(|error| panic!("webdriver {path}: {error}"))
    }

    async fn post(&self, path: &str, body: Value) -> Value {
        self.call(reqwest::Method::POST, path, Some(body)).await
    }

    async fn get(&self, path: &str) -> Value {
        self.call(reqwest::Method::GET, path, None).await
    }

    /// The element's id, or `None` when there is no such element.
    async fn find(&self, session: &str, css: &str) -> Option<String> {
        let found = self
            .send(
                reqwest::Method::POST,
                &format!("/session/{session}/element"),
                Some(json!({"using": "css selector", "value": css})),
            )
            .await;
        match found {
            Ok(found) => Some(
                found["value"][ELEMENT]
                    .as_str()
                    .expect("an element reference")
                    .to_string(),
            ),
            Err(error) if error["value"]["error"] == "no such element" => None,
            Err(error) => panic!("webdriver find {css}: {error}"),
        }
    }
}

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
    let (Some(driver), Some(chromium)) = (which("chromedriver"), which("chromium")) else {
        skip_without(
            "chromium or chromedriver",
            "apt-get install chromium chromium-driver",
        );
        return;
    };
    // Port 0: chromedriver picks a free port and names it, so no port is
    // taken from under it between choosing and binding.
    let mut chromedriver = tokio::process::Command::new(driver)
        .arg("--port=0")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("chromedriver starts");
    let stdout = chromedriver.stdout.take().expect("stdout");
    let mut lines = tokio::io::AsyncBufReadExt::lines(tokio::io::BufReader::new(stdout));
    let started = async {
        while let Some(line) = lines.next_line().await.expect("chromedriver output") {
            if let Some(port) = line
                .split("started successfully on port ")
                .nth(1)
                .map(|rest| rest.trim_end_matches('.').to_string())
            {
                return port;
            }
        }
        panic!("chromedriver ended without starting");
    };
    let port = tokio::time::timeout(Duration::from_secs(20), started)
        .await
        .expect("chromedriver did not start");
    // The rest of its output goes nowhere, without blocking it.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    let browser = Browser { http, base };
    let profile = tempfile::tempdir().unwrap();
    let created = browser
        .post(
            "/session",
            json!({"capabilities": {"alwaysMatch": {
                "browserName": "chrome",
                "goog:chromeOptions": {
                    "binary": chromium,
                    "args": [
                        "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                        "--disable-quic", "--no-first-run", "--disable-background-networking",
                        "--disable-component-update", "--disable-sync", "--hide-scrollbars",
                        format!("--user-data-dir={}", profile.path().display()),
                    ],
                    "mobileEmulation": {"deviceMetrics": {"width": 390, "height": 844, "pixelRatio": 2.0}},
                }
            }}}),
        )
        .await;
    let session = created["value"]["sessionId"]
        .as_str()
        .expect("a browser session")
        .to_string();

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
    let frame = browser
        .find(&session, "iframe")
        .await
        .expect("the attacker's iframe");
    browser
        .post(
            &format!("/session/{session}/frame"),
            json!({"id": {ELEMENT: frame}}),
        )
        .await;
    // The browser refused to render the page in the frame (its own error
    // page stands there instead): none of our form is reachable.
    assert!(
        browser
            .find(&session, "button[value=allow]")
            .await
            .is_none(),
        "Allow is not clickable inside the frame"
    );
    assert!(
        browser.find(&session, "input[name=nonce]").await.is_none(),
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
    let shot = browser.get(&format!("/session/{session}/screenshot")).await;
    let png = base64::engine::general_purpose::STANDARD
        .decode(shot["value"].as_str().expect("a screenshot"))
        .expect("base64 PNG");
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
        .find(&session, "button[value=allow]")
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
    let status = browser.find(&session, ".status-allowed").await;
    assert!(status.is_some(), "the page now shows who allowed");
    browser
        .call(
            reqwest::Method::DELETE,
            &format!("/session/{session}"),
            None,
        )
        .await;
    let _ = chromedriver.kill().await;
}
