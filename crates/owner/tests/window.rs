//! The owner's settings window in real headless Chromium: opened through its
//! one-time URL, the Desktop Sharing settings changed and saved, the
//! settings file changed and the next request using them (the SMTP sink
//! gets the email); a bad recipient shown beside its field with the file
//! unchanged; the address without its secret and a POST without the nonce
//! refused; and a request waiting for local consent allowed from the page.

use doorman_owner::SettingsWindow;
use doorman_test_support::World;
use doorman_test_support::webdriver::Browser;
use std::time::Duration;

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
    assert_eq!(
        browser.script(&value("recipients")).await,
        "not-an-address",
        "what was typed stays"
    );
    assert_eq!(std::fs::read(&world.agent_config).unwrap(), before);

    // A POST with the browser's cookie but without the page's nonce.
    let cookie = browser
        .cookie("doorman_settings")
        .await
        .expect("the session");
    let forged = http
        .post(format!("{}/save", origin(&window)))
        .header("Cookie", format!("doorman_settings={cookie}"))
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
