//! The owner's settings window in real headless Chromium: opened through its
//! one-time URL, the Desktop Sharing settings changed and saved, the
//! settings file changed and the next request using them (the SMTP sink
//! gets the email); a bad recipient shown beside its field with the file
//! unchanged; the address without its secret and a POST without the page's
//! session field refused; and a request waiting for local consent allowed
//! from the page.
//!
//! Over plain HTTP (issue 25: nothing another user or another origin can
//! obtain opens the window): no cookie opens or saves anything, only the
//! page's own session field does; another `Host` is refused; an unopened
//! link expires and the window stops; requests without the session do not
//! keep it open; and the browser is handed a private file, never the link.

use doorman_owner::{Lifetimes, SettingsWindow, Stopped};
use doorman_test_support::World;
use doorman_test_support::webdriver::Browser;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn window(world: &World) -> SettingsWindow {
    SettingsWindow::open(world.agent_config.clone(), Duration::from_secs(600))
        .await
        .expect("the window opens")
}

/// The window's origin, `http://127.0.0.1:PORT`.
fn origin(window: &SettingsWindow) -> String {
    window.url.split("/open/").next().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_owner_changes_desktop_sharing_in_the_browser() {
    let Some(browser) = Browser::start(900, 1200, false).await else {
        return;
    };
    let world = World::start().await;
    let window = window(&world).await;
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let without_secret = http
        .get(format!("{}/", origin(&window)))
        .send()
        .await
        .unwrap();
    assert_eq!(without_secret.status(), 403);
    let wrong_secret = http
        .get(format!("{}/open/not-the-secret", origin(&window)))
        .send()
        .await
        .unwrap();
    assert_eq!(wrong_secret.status(), 403);

    browser.open(&window.url).await;
    let checked = "return document.getElementById('require_email_authorization').checked";
    assert_eq!(browser.script(checked).await, true);
    let value = |id: &str| format!("return document.getElementById('{id}').value");
    assert_eq!(
        browser.script(&value("email_authorization_timeout")).await,
        "180"
    );
    assert_eq!(
        browser.script(&value("recipients")).await,
        "it@example.com\nowner@example.com"
    );
    // Issue 29: the computer's identity, and that sealed shells go
    // unrecorded without recordings_to.
    let identity = browser
        .script("return document.getElementById('identity').textContent")
        .await;
    let own = doorman_agent::identity_file::fingerprint(&world.dir.path().join("identity.key"));
    assert_eq!(identity.as_str(), own.as_deref());
    let metadata_only = "return document.getElementById('recordings-metadata-only') !== null";
    assert_eq!(browser.script(metadata_only).await, true);
    // The URL worked once: opening it again is refused.
    let again = http.get(&window.url).send().await.unwrap();
    assert_eq!(again.status(), 403);

    browser.click("#require_email_authorization").await;
    assert_eq!(browser.script(checked).await, false);
    browser.click("#require_email_authorization").await;
    browser.clear("#email_authorization_timeout").await;
    browser
        .type_into("#email_authorization_timeout", "60")
        .await;
    browser.clear("#recipients").await;
    browser
        .type_into("#recipients", "helpdesk@example.com")
        .await;
    browser.click("#save").await;
    browser
        .wait_until(
            "return document.getElementById('saved')?.textContent.startsWith('Saved at')",
            "the page saying it saved",
        )
        .await;
    std::fs::write(
        std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("settings-window.png"),
        browser.screenshot().await,
    )
    .expect("save the screenshot");
    let saved = doorman_agent::settings_file::load(&world.agent_config).unwrap();
    assert!(saved.desktop_sharing.require_email_authorization);
    assert_eq!(saved.desktop_sharing.email_authorization_timeout, 60);
    assert_eq!(saved.desktop_sharing.recipients, ["helpdesk@example.com"]);

    // The next request uses them, without a restart.
    let connecting = world.connect(&["true"], "after the save");
    let pending = connecting.event("pending").await;
    assert_eq!(pending["recipients"][0], "h***@example.com", "{pending}");
    assert!(pending["expires_in"].as_u64().unwrap() <= 60, "{pending}");
    let mails = world.smtp.wait_for(1).await;
    assert_eq!(mails[0].to, ["helpdesk@example.com"]);
    connecting.kill();

    // A bad recipient: shown beside its field, nothing written.
    let before = std::fs::read(&world.agent_config).unwrap();
    browser.clear("#recipients").await;
    browser.type_into("#recipients", "not-an-address").await;
    browser.click("#save").await;
    let problem = browser
        .wait_until(
            "return document.getElementById('recipients-problem')?.textContent",
            "the problem beside the recipients",
        )
        .await;
    assert!(!problem.as_str().unwrap().is_empty(), "{problem}");
    // Issue 31: "Not saved" at the top, and the focus (so the view) on the
    // first problem.
    browser
        .wait_until(
            "return document.getElementById('not-saved')?.textContent.startsWith('Not saved') && document.activeElement?.id === 'recipients'",
            "Not saved at the top and the recipients box focused",
        )
        .await;
    assert_eq!(
        browser.script(&value("recipients")).await,
        "not-an-address",
        "what was typed stays"
    );
    assert_eq!(std::fs::read(&world.agent_config).unwrap(), before);

    // The browser holds no cookie of the window (any page on 127.0.0.1
    // would receive it), and the page's session secret as a cookie, without
    // the page's form field, saves nothing.
    assert_eq!(browser.cookie("doorman_settings").await, None);
    let session = browser
        .script("return document.querySelector('input[name=session]').value")
        .await;
    let session = session.as_str().expect("the page's session").to_string();
    let forged = http
        .post(format!("{}/save", origin(&window)))
        .header("Cookie", format!("doorman_settings={session}"))
        .form(&[
            ("email_authorization_timeout", "5"),
            ("recipients", "x@example.com"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 403);
    assert_eq!(std::fs::read(&world.agent_config).unwrap(), before);
    browser.quit().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_waiting_for_local_consent_is_allowed_from_the_page() {
    let Some(browser) = Browser::start(900, 1200, false).await else {
        return;
    };
    let world = World::builder()
        .recipients(&["it@example.com"])
        .policy("local_consent", "\"alternative\"")
        .start()
        .await;
    let window = window(&world).await;
    let connecting = world.connect(&["echo", "allowed here"], "at your desk");
    let id = connecting.request_id().await;
    browser.open(&window.url).await;
    let listed = format!("return document.querySelector('[data-request=\"{id}\"]')?.textContent");
    let text = browser.wait_until(&listed, "the waiting request").await;
    let text = text.as_str().unwrap();
    assert!(
        text.contains("alice") && text.contains("at your desk"),
        "{text}"
    );
    browser
        .click(&format!("[data-request=\"{id}\"] button.allow"))
        .await;
    connecting.event("session_started").await;
    let stdout = connecting.stdout.clone();
    assert_eq!(connecting.finish().await, Ok(0));
    assert_eq!(stdout.text(), "allowed here\n");
    browser.quit().await;
}

const SETTINGS: &str = "server = \"http://127.0.0.1:9\"\nname = \"pc\"\nkey = \"dak_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\"\n\n[desktop_sharing]\nrequire_email_authorization = true\nrecipients = [\"it@example.com\"]\n";

/// A settings file of its own, for the tests that need no running agent.
fn settings_file() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("agent.toml");
    std::fs::write(&config, SETTINGS).unwrap();
    (dir, config)
}

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// The value of the page's hidden `session` field.
fn session_of(page: &str) -> String {
    let marker = "name=\"session\" value=\"";
    let start = page
        .find(marker)
        .unwrap_or_else(|| panic!("no session field: {page}"))
        + marker.len();
    let end = start + page[start..].find('"').unwrap();
    page[start..end].to_string()
}

/// The secret part of the window's one-time URL.
fn link_secret(window: &SettingsWindow) -> String {
    window.url.split("/open/").nth(1).unwrap().to_string()
}

/// Every field of the settings form, as the page sends them.
fn form(session: &str, recipients: &str) -> Vec<(&'static str, String)> {
    [
        ("require_email_authorization", "on"),
        ("email_authorization_timeout", "60"),
        ("recipients", recipients),
        ("required_approvals", "1"),
        ("approval_valid_for", "0"),
        ("max_session_seconds", "0"),
        ("local_consent", "off"),
        ("shell", "on"),
        ("forward", ""),
        ("desktop", ""),
        ("session", session),
    ]
    .into_iter()
    .map(|(name, value)| (name, value.to_string()))
    .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_25_no_cookie_opens_or_saves_anything_only_the_pages_session_field() {
    let (_dir, config) = settings_file();
    let window = SettingsWindow::open(config.clone(), Duration::from_secs(600))
        .await
        .unwrap();
    let http = http();
    let opened = http.get(&window.url).send().await.unwrap();
    assert_eq!(opened.status(), 200, "the link shows the page itself");
    assert!(
        opened.headers().get("set-cookie").is_none(),
        "no cookie: any page on 127.0.0.1 would receive it"
    );
    let page = opened.text().await.unwrap();
    assert!(page.contains("Require email authorization for incoming connections"));
    let session = session_of(&page);
    assert_ne!(session, link_secret(&window));
    let before = std::fs::read(&config).unwrap();

    // What another user's page on 127.0.0.1 could have collected, replayed
    // as the window's cookie, opens and saves nothing.
    let cookie = format!("doorman_settings={session}");
    let read = http
        .get(format!("{}/", origin(&window)))
        .header("Cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(read.status(), 403);
    assert!(!read.text().await.unwrap().contains(&session));
    let refreshed = http
        .post(format!("{}/", origin(&window)))
        .header("Cookie", &cookie)
        .form(&[("session", "")])
        .send()
        .await
        .unwrap();
    assert_eq!(refreshed.status(), 403);
    let mut without_field = form("", "attacker@example.com");
    without_field.retain(|(name, _)| *name != "session");
    let forged = http
        .post(format!("{}/save", origin(&window)))
        .header("Cookie", &cookie)
        .form(&without_field)
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 403);
    let wrong = http
        .post(format!("{}/save", origin(&window)))
        .form(&form(&link_secret(&window), "attacker@example.com"))
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 403, "the used link is no session");
    assert_eq!(std::fs::read(&config).unwrap(), before, "nothing written");

    // The page's own form, carrying its session, saves.
    let saved = http
        .post(format!("{}/save", origin(&window)))
        .form(&form(&session, "helpdesk@example.com"))
        .send()
        .await
        .unwrap();
    assert_eq!(saved.status(), 200);
    let page = saved.text().await.unwrap();
    assert!(page.contains("Saved at"), "{page}");
    assert_eq!(session_of(&page), session, "the next page carries it on");
    let settings = doorman_agent::settings_file::load(&config).unwrap();
    assert_eq!(
        settings.desktop_sharing.recipients,
        ["helpdesk@example.com"]
    );
    assert_eq!(settings.desktop_sharing.email_authorization_timeout, 60);
}

/// The status of a request written by hand, so that its `Host` lines are
/// exactly `hosts`.
async fn status_with_hosts(window: &SettingsWindow, path: &str, hosts: &[String]) -> u16 {
    let address = origin(window).trim_start_matches("http://").to_string();
    let mut stream = tokio::net::TcpStream::connect(&address).await.unwrap();
    let mut head = format!("GET {path} HTTP/1.1\r\n");
    for host in hosts {
        head.push_str(&format!("Host: {host}\r\n"));
    }
    head.push_str("Connection: close\r\n\r\n");
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await.unwrap();
    let text = String::from_utf8_lossy(&answer);
    text.split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("no status line: {text}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_25_a_request_naming_another_host_is_refused() {
    let (_dir, config) = settings_file();
    let window = SettingsWindow::open(config, Duration::from_secs(600))
        .await
        .unwrap();
    let port = origin(&window).rsplit(':').next().unwrap().to_string();
    let link = format!("/open/{}", link_secret(&window));
    // A page of another site that DNS pointed at 127.0.0.1, another port,
    // no Host at all, or two.
    for (hosts, status) in [
        (vec![format!("rebound.example:{port}")], 421),
        (vec!["rebound.example".to_string()], 421),
        (vec!["127.0.0.1:1".to_string()], 421),
        (Vec::new(), 400),
        (
            vec![
                format!("127.0.0.1:{port}"),
                format!("rebound.example:{port}"),
            ],
            400,
        ),
    ] {
        assert_eq!(
            status_with_hosts(&window, &link, &hosts).await,
            status,
            "{hosts:?}"
        );
    }
    assert_eq!(
        status_with_hosts(&window, "/style.css", &[format!("rebound.example:{port}")]).await,
        421
    );
    // None of them used the link up; the window's own names reach it.
    assert_eq!(
        status_with_hosts(&window, &link, &[format!("localhost:{port}")]).await,
        200
    );
    assert_eq!(
        status_with_hosts(&window, &link, &[format!("127.0.0.1:{port}")]).await,
        403,
        "once"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_25_an_unopened_link_expires_and_the_window_stops() {
    let (_dir, config) = settings_file();
    let lifetimes = Lifetimes {
        idle: Duration::from_secs(600),
        link: Duration::ZERO,
    };
    let window = SettingsWindow::open_with(config, lifetimes).await.unwrap();
    let url = window.url.clone();
    let stopped = tokio::time::timeout(Duration::from_secs(20), window.closed())
        .await
        .expect("the window stops by itself");
    assert_eq!(stopped, Stopped::LinkExpired);
    let late = http().get(&url).send().await;
    assert!(!late.as_ref().is_ok_and(|r| r.status() == 200), "{late:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_25_requests_without_the_session_do_not_keep_the_window_open() {
    let (_dir, config) = settings_file();
    let window = SettingsWindow::open(config, Duration::from_secs(1))
        .await
        .unwrap();
    let origin = origin(&window);
    let http = http();
    // Another user knocking as fast as it can, with no session, until the
    // window is gone.
    let knocking = async {
        loop {
            let asked = http.get(format!("{origin}/")).send().await;
            let guessed = http.get(format!("{origin}/open/guess")).send().await;
            let forged = http
                .post(format!("{origin}/save"))
                .header("Cookie", "doorman_settings=guess")
                .form(&[("session", "guess")])
                .send()
                .await;
            if asked.is_err() || guessed.is_err() || forged.is_err() {
                break;
            }
        }
    };
    let (stopped, ()) = tokio::time::timeout(Duration::from_secs(30), async {
        tokio::join!(window.closed(), knocking)
    })
    .await
    .expect("the window stops although it was asked things all along");
    assert_eq!(stopped, Stopped::Unused);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_25_the_browser_gets_a_private_file_never_the_link() {
    let (_dir, config) = settings_file();
    let mut window = SettingsWindow::open(config, Duration::from_secs(600))
        .await
        .unwrap();
    let secret = link_secret(&window);
    let command = window.browser_command("xdg-open").unwrap();
    assert_eq!(command.get_program(), "xdg-open");
    let args: Vec<String> = command
        .get_args()
        .map(|arg| arg.to_string_lossy().into_owned())
        .collect();
    assert_eq!(args.len(), 1, "{args:?}");
    assert!(!args[0].contains(&secret), "the secret in argv: {args:?}");
    let file = PathBuf::from(&args[0]);
    assert!(file.is_absolute(), "{args:?}");
    let mode = |path: &Path| std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&file), 0o600);
    let dir = file.parent().unwrap().to_path_buf();
    assert_eq!(mode(&dir), 0o700);
    let redirect = std::fs::read_to_string(&file).unwrap();
    assert!(
        redirect.contains(&format!(
            "http-equiv=\"refresh\" content=\"0;url={}\"",
            window.url
        )),
        "{redirect}"
    );
    // Where it leads, the window opens.
    assert_eq!(http().get(&window.url).send().await.unwrap().status(), 200);
    drop(window);
    assert!(!dir.exists(), "removed with the window");
}
