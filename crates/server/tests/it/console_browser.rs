//! The web console in a real browser: headless Chromium over WebDriver signs
//! in, sees the computer online, opens a terminal with a reason, watches the
//! wait for email authorization (countdown, recipients), gets in once the
//! emailed link is allowed, types into xterm.js and reads the shell's answer
//! back from the page, resizes the window and sees `stty size` follow, and
//! reads the exit status; then the computer going offline shows without a
//! reload. The desktop: noVNC reaches a real VNC server (Xtigervnc) through
//! the agent and draws it. Screenshots of both are saved under target/.
//!
//! Needs Debian's `chromium`, `chromium-driver` and
//! `tigervnc-standalone-server` (`.ci/run` installs them).

use doorman_test_support::World;
use doorman_test_support::vnc::Vnc;
use doorman_test_support::webdriver::Browser;

/// The terminal's screen as text, one line per row (a JavaScript
/// expression).
const SCREEN: &str = "Array.from(document.querySelectorAll('.xterm-rows > div')).map(row => row.textContent).join('\\n')";

/// How many `ROWS COLS` lines `stty size` has printed (JavaScript).
const SIZE_LINES: &str = ".split('\\n').filter(line => /^\\d+ \\d+$/.test(line.trim())).length";

/// The `ROWS COLS` lines `stty size` printed so far.
async fn sizes(browser: &Browser) -> Vec<String> {
    let screen = browser.script(&format!("return {SCREEN}")).await;
    screen
        .as_str()
        .unwrap_or_default()
        .lines()
        .map(str::trim)
        .filter(|line| {
            let parts: Vec<&str> = line.split(' ').collect();
            parts.len() == 2 && parts.iter().all(|p| p.parse::<u16>().is_ok())
        })
        .map(String::from)
        .collect()
}

/// Signs in on the console's page and waits for the computer to be listed
/// online.
pub(crate) async fn sign_in(browser: &Browser, world: &World) {
    browser
        .sign_in_to_console(&world.url, &world.operator_token)
        .await;
    browser
        .wait_until(
            "return document.querySelector('li[data-computer=\"office-pc\"] .state')?.textContent === 'online'",
            "the computer listed online",
        )
        .await;
}

/// Gives a reason, asks, and waits for the wait for email authorization.
pub(crate) async fn ask(browser: &Browser, reason: &str) {
    browser.type_into("#reason", reason).await;
    browser.click("#ask button[type=submit]").await;
    browser
        .wait_until(
            "return document.getElementById('status').textContent === 'Waiting for email authorization' && /^\\d+:\\d\\d left$/.test(document.getElementById('countdown').textContent)",
            "the wait with its countdown",
        )
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_works_in_a_terminal_in_the_browser() {
    let Some(browser) = Browser::start(1100, 800, false).await else {
        return;
    };
    let mut world = World::builder()
        .recipients(&["it@example.com"])
        .start()
        .await;

    sign_in(&browser, &world).await;
    browser
        .click("li[data-computer=\"office-pc\"] a.terminal-link")
        .await;
    ask(&browser, "printer ticket 42").await;
    let recipients = browser
        .script("return document.getElementById('recipients').textContent")
        .await;
    assert!(
        recipients.as_str().unwrap().contains("i***@example.com"),
        "{recipients}"
    );

    // The recipient allows it from the emailed link, in a second tab.
    let mails = world.smtp.wait_for(1).await;
    assert!(mails[0].text().contains("printer ticket 42"));
    let console = browser.tab().await;
    browser.new_tab().await;
    browser.open(&mails[0].link()).await;
    browser.click("button[value=allow]").await;
    browser
        .wait_until(
            "return document.querySelector('.status-allowed') !== null",
            "the approval page saying it is allowed",
        )
        .await;
    browser.switch_to(&console).await;
    browser
        .wait_until(
            "return document.getElementById('outcome').textContent.startsWith('Connected')",
            "the session starting",
        )
        .await;

    browser.click("#terminal").await;
    browser.keys("stty size; echo console-$((6*7))\n").await;
    browser
        .wait_until(
            &format!("return {SCREEN}.includes('console-42')"),
            "the shell's answer on the page",
        )
        .await;
    let before = sizes(&browser).await;
    assert_eq!(before.len(), 1, "{before:?}");

    // Pasting goes to the shell as typing does (bash takes a paste
    // without running it: Enter runs it).
    browser
        .script(
            "const data = new DataTransfer(); \
             data.setData('text/plain', 'echo pasted-$((2+3))'); \
             document.querySelector('.xterm-helper-textarea').dispatchEvent( \
               new ClipboardEvent('paste', { clipboardData: data, bubbles: true, cancelable: true }));",
        )
        .await;
    browser.keys("\n").await;
    browser
        .wait_until(
            &format!("return {SCREEN}.includes('pasted-5')"),
            "the pasted command's answer",
        )
        .await;

    let rows = browser
        .script("return document.querySelector('.xterm-rows').children.length")
        .await;
    browser.resize(700, 600).await;
    // The page refits the terminal, then tells the computer before any
    // later keystroke.
    browser
        .wait_until(
            &format!("return document.querySelector('.xterm-rows').children.length !== {rows}"),
            "the terminal refitted to the window",
        )
        .await;
    browser.keys("stty size\n").await;
    browser
        .wait_until(
            &format!("return {SCREEN}{SIZE_LINES} === 2"),
            "the second stty size",
        )
        .await;
    let after = sizes(&browser).await;
    assert_ne!(
        after[1], before[0],
        "stty size follows the window: {after:?}"
    );

    let shot = browser.screenshot().await;
    assert!(shot.starts_with(b"\x89PNG"));
    std::fs::write(
        std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("console-terminal.png"),
        &shot,
    )
    .expect("save the screenshot");

    browser.keys("exit 3\n").await;
    browser
        .wait_until(
            "return document.getElementById('outcome').textContent === 'The shell ended with status 3.'",
            "the exit status shown",
        )
        .await;

    browser.open(&format!("{}/console", world.url)).await;
    world.stop_agent().await;
    browser
        .wait_until(
            "return document.querySelector('li[data-computer=\"office-pc\"] .state')?.textContent === 'offline'",
            "the computer shown offline without a reload",
        )
        .await;
    browser.quit().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_desktop_shows_in_the_browser() {
    let Some(browser) = Browser::start(1100, 800, false).await else {
        return;
    };
    let Some(vnc) = Vnc::start(800, 600, "doorman-console-desktop").await else {
        return;
    };
    let world = World::builder()
        .recipients(&["it@example.com"])
        .desktop(&vnc.target)
        .start()
        .await;
    sign_in(&browser, &world).await;
    browser
        .click("li[data-computer=\"office-pc\"] a.desktop-link")
        .await;
    ask(&browser, "help with the printer dialog").await;
    let mails = world.smtp.wait_for(1).await;
    world.click(&mails[0].link(), "allow").await;
    browser
        .wait_until(
            "return document.getElementById('outcome').textContent === 'Connected to the desktop.'",
            "noVNC connected through the agent",
        )
        .await;
    // The desktop's pixels reach the page: X's weave on the root window,
    // not one flat colour.
    browser
        .wait_until(
            "const canvas = document.querySelector('#screen canvas'); \
             if (!canvas || canvas.width < 100) return false; \
             const pixels = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data; \
             const seen = new Set(); \
             for (let i = 0; i < pixels.length; i += 4 * 97) { \
               seen.add((pixels[i] << 16) | (pixels[i + 1] << 8) | pixels[i + 2]); \
               if (seen.size > 1) return true; \
             } \
             return false;",
            "the desktop drawn on the canvas",
        )
        .await;
    let shot = browser.screenshot().await;
    std::fs::write(
        std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("console-desktop.png"),
        &shot,
    )
    .expect("save the screenshot");
    browser.quit().await;
    vnc.stop().await;
}

/// Issue 31: a desktop whose VNC server does not answer says why, as
/// `connect -L` does, and shows no empty screen.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_desktop_that_cannot_start_says_why() {
    let Some(browser) = Browser::start(1100, 800, false).await else {
        return;
    };
    // A port nobody listens on: bound, then closed.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let target = closed.local_addr().unwrap().to_string();
    drop(closed);
    let world = World::builder()
        .without_email_authorization()
        .desktop(&target)
        .start()
        .await;
    sign_in(&browser, &world).await;
    browser
        .open(&format!("{}/console/desktop/office-pc", world.url))
        .await;
    browser.click("#ask button[type=submit]").await;
    let words = format!("the computer cannot reach its VNC server at {target}: connection refused");
    browser
        .wait_until(
            &format!("return document.getElementById('outcome').textContent === {words:?}"),
            "the desktop's failure told in the computer's words",
        )
        .await;
    assert_eq!(
        browser
            .script("return document.getElementById('screen').hidden")
            .await,
        true,
        "no empty screen"
    );
    browser.quit().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn denial_cancellation_and_expiry_are_told_in_words() {
    let Some(browser) = Browser::start(1100, 800, false).await else {
        return;
    };
    let world = World::builder()
        .recipients(&["it@example.com"])
        .timeout_secs(5)
        .start()
        .await;
    sign_in(&browser, &world).await;
    let terminal = format!("{}/console/terminal/office-pc", world.url);
    let outcome = |words: &str| {
        format!("return document.getElementById('outcome').textContent === {words:?}")
    };

    browser.open(&terminal).await;
    ask(&browser, "denied").await;
    // The wait shows no empty terminal, and the reason sent stays as sent.
    assert_eq!(
        browser
            .script("return document.getElementById('terminal').hidden")
            .await,
        true,
        "no terminal box while waiting"
    );
    assert_eq!(
        browser
            .script("return document.getElementById('reason').readOnly")
            .await,
        true,
        "the reason is read-only once sent"
    );
    let mails = world.smtp.wait_for(1).await;
    world.click(&mails[0].link(), "deny").await;
    browser
        .wait_until(
            "return document.getElementById('outcome').textContent.startsWith('Denied by ')",
            "the denial told",
        )
        .await;

    browser.open(&terminal).await;
    ask(&browser, "cancelled").await;
    browser.click("#cancel").await;
    browser
        .wait_until(
            &outcome("Cancelled: the recipients' links say so."),
            "the cancellation told",
        )
        .await;

    browser.open(&terminal).await;
    ask(&browser, "expired").await;
    // Nobody answers for five seconds of the server's clock.
    world.clock().advance(std::time::Duration::from_secs(5));
    browser
        .wait_until(
            &outcome("Nobody answered in time: the request expired."),
            "the expiry told",
        )
        .await;
    browser.quit().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_fits_a_phone() {
    let Some(browser) = Browser::start(390, 844, true).await else {
        return;
    };
    let world = World::start().await;
    let fits = "return document.documentElement.scrollWidth <= window.innerWidth";
    sign_in(&browser, &world).await;
    assert_eq!(browser.script(fits).await, true, "the computers list fits");
    browser
        .click("li[data-computer=\"office-pc\"] a.terminal-link")
        .await;
    ask(&browser, "from my phone").await;
    assert_eq!(browser.script(fits).await, true, "the wait fits");
    browser.quit().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_connection_says_so() {
    let Some(browser) = Browser::start(1100, 800, false).await else {
        return;
    };
    let mut world = World::builder().without_email_authorization().start().await;
    sign_in(&browser, &world).await;
    browser
        .open(&format!("{}/console/terminal/office-pc", world.url))
        .await;
    browser.click("#ask button[type=submit]").await;
    browser
        .wait_until(
            "return document.getElementById('outcome').textContent === 'Connected.'",
            "the session starting",
        )
        .await;
    // The server goes away under the session, and says so first (issue 26:
    // the session's connection carries the server's word on its end).
    world.stop_server().await;
    browser
        .wait_until(
            "return document.getElementById('outcome').textContent === 'the server is stopping; the session ended'",
            "the cut told",
        )
        .await;
    browser.quit().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recorded_session_plays_back_in_the_browser() {
    let Some(browser) = Browser::start(1100, 800, false).await else {
        return;
    };
    let world = World::builder().without_email_authorization().start().await;
    let input: &[u8] = b"echo played-back-$((6*7)); exit 0\n";
    let connecting = world.connect_shell_unsealed(Box::new(input));
    assert_eq!(connecting.finish().await, Ok(0));
    world.wait_for_audit("session_recorded").await;

    sign_in(&browser, &world).await;
    browser.click("a[href=\"/console/recordings\"]").await;
    browser.click("#recordings li a").await;
    browser
        .wait_until(
            &format!(
                "return ({SCREEN}).includes('played-back-42') && document.getElementById('progress').textContent === 'Played to the end'"
            ),
            "the recorded screen played to its end",
        )
        .await;
    browser.quit().await;
}
