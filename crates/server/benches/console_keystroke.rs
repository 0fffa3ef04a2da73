//! Keystroke to echo in the web console's terminal, through Chromium, beside
//! `connect`'s for the same shell on the same server and computer. Email
//! authorization is off: this measures the session, not the approval.
//!
//! In the browser, a keystroke is an `input` event on xterm.js's textarea
//! (what typing produces); its echo is the moment xterm.js has drawn the
//! character (a `MutationObserver` on its rows), so the figure includes the
//! page's rendering. For `connect`, a byte written to the client library's
//! stdin until the echoed byte reaches its stdout.
//!
//! Run: `cargo bench -p doorman-server --bench console_keystroke`

use doorman_test_support::World;
use doorman_test_support::figures::{ms, summary};
use doorman_test_support::webdriver::Browser;
use serde_json::json;
use std::time::{Duration, Instant};

const SAMPLES: usize = 300;

/// Types one character at a time and resolves with each echo's delay in
/// milliseconds.
const TYPE_AND_TIME: &str = r#"
const [samples, done] = arguments;
const area = document.querySelector('.xterm-helper-textarea');
const rows = document.querySelector('.xterm-rows');
const count = () => rows.textContent.split('q').length - 1;
const times = [];
let expected = count();
let started = 0;
const observer = new MutationObserver(() => {
  if (count() < expected) return;
  times.push(performance.now() - started);
  if (times.length === samples) {
    observer.disconnect();
    done(times);
  } else {
    type();
  }
});
observer.observe(rows, { subtree: true, childList: true, characterData: true });
function type() {
  expected += 1;
  started = performance.now();
  area.dispatchEvent(new InputEvent('input', { data: 'q', inputType: 'insertText' }));
}
type();
"#;

fn row(path: &str, figures: [Duration; 5]) {
    let [min, median, p90, p99, max] = figures.map(ms);
    println!("{path:<46} {min:>10} {median:>10} {p90:>10} {p99:>10} {max:>10}");
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let world = World::builder().without_email_authorization().start().await;
    println!("Keystroke → echo, {SAMPLES} keystrokes each, same shell, loopback");
    println!(
        "{:<46} {:>10} {:>10} {:>10} {:>10} {:>10}",
        "path", "min", "median", "p90", "p99", "max"
    );

    match Browser::start(1100, 800, false).await {
        Some(browser) => {
            browser
                .sign_in_to_console(&world.url, &world.operator_token)
                .await;
            browser
                .open(&format!("{}/console/terminal/office-pc", world.url))
                .await;
            browser.click("#ask button[type=submit]").await;
            browser
                .wait_until(
                    "return document.getElementById('outcome').textContent === 'Connected.' && /[#$]/.test(document.querySelector('.xterm-rows').textContent)",
                    "the shell's prompt in the console",
                )
                .await;
            let times = browser.script_async(TYPE_AND_TIME, json!([SAMPLES])).await;
            let times: Vec<Duration> = times
                .as_array()
                .expect("the delays")
                .iter()
                .map(|ms| Duration::from_secs_f64(ms.as_f64().expect("a number") / 1000.0))
                .collect();
            row(
                "console (Chromium → WebSocket → agent → echo)",
                summary(times),
            );
            browser.quit().await;
        }
        None => println!(
            "{:<46} not run: Chromium or chromedriver is not installed",
            "console"
        ),
    }

    let (mut typing, stdin) = tokio::io::duplex(1024);
    let connecting = world.connect_with(
        doorman_test_support::world::COMPUTER,
        &world.operator_token,
        doorman_client::SessionKind::Shell {
            term: "xterm-256color".into(),
            rows: 24,
            cols: 80,
        },
        "",
        Box::new(stdin),
    );
    connecting.event("session_started").await;
    let stdout = connecting.stdout.clone();
    stdout
        .wait_until(|text| text.contains('$') || text.contains('#'))
        .await;
    let count = |text: &str| text.matches('q').count();
    let before = count(&stdout.text());
    let mut times = Vec::with_capacity(SAMPLES);
    for typed in 1..=SAMPLES {
        let expected = before + typed;
        let start = Instant::now();
        tokio::io::AsyncWriteExt::write_all(&mut typing, b"q")
            .await
            .expect("type");
        stdout.wait_until(|text| count(text) >= expected).await;
        times.push(start.elapsed());
    }
    row("connect (client library → agent → echo)", summary(times));
    connecting.kill();
}
