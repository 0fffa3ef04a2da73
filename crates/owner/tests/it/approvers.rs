//! Issue 31 in the settings window: a refused save says "Not saved" at the
//! top and puts the focus on the first problem (the page has no script);
//! the window shows `require_passkey` and the pinned approvers, starts an
//! enrolment as `doorman settings approvers enroll` does (the code, then
//! the new passkey's fingerprint, pinned only when the owner says so), and
//! removes a pinned passkey unless `require_passkey` needs it.

use doorman_core::passkey::B64;
use doorman_core::passkey::soft::SoftPasskey;
use doorman_owner::SettingsWindow;
use doorman_test_support::World;
use doorman_test_support::world::extract_nonce;
use std::time::Duration;

/// The window's origin, `http://127.0.0.1:PORT`.
fn origin(window: &SettingsWindow) -> String {
    window.url.split("/open/").next().unwrap().to_string()
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

/// Opens the window's page: the window, its origin and the page's session.
async fn opened(config: std::path::PathBuf) -> (SettingsWindow, String, String) {
    let window = SettingsWindow::open(config, Duration::from_secs(600))
        .await
        .expect("the window opens");
    let page = reqwest::get(&window.url)
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let session = session_of(&page);
    let origin = origin(&window);
    (window, origin, session)
}

/// Posts `form` to the window's `path`: the status and the page.
async fn post(origin: &str, path: &str, form: &[(&str, &str)]) -> (u16, String) {
    let response = reqwest::Client::new()
        .post(format!("{origin}{path}"))
        .form(form)
        .send()
        .await
        .unwrap();
    (response.status().as_u16(), response.text().await.unwrap())
}

/// A settings file of its own, for the tests that need no server.
fn settings_file() -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("agent.toml");
    std::fs::write(
        &config,
        "server = \"http://127.0.0.1:9\"\nname = \"pc\"\nkey = \"dak_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\"\n\n[desktop_sharing]\nrequire_email_authorization = true\nrecipients = [\"it@example.com\"]\n",
    )
    .unwrap();
    (dir, config)
}

/// The settings form as the page sends it, with `extra` fields.
fn form<'a>(
    session: &'a str,
    recipients: &'a str,
    extra: &[(&'a str, &'a str)],
) -> Vec<(&'a str, &'a str)> {
    let mut fields = vec![
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
    ];
    fields.extend_from_slice(extra);
    fields
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_save_says_not_saved_at_the_top_and_focuses_the_first_problem() {
    let (_dir, config) = settings_file();
    let before = std::fs::read(&config).unwrap();
    let (_window, origin, session) = opened(config.clone()).await;
    let session = session.as_str();
    let mut fields = form(session, "not-an-address", &[]);
    // Two problems: the recipients box comes first in the page.
    fields.retain(|(name, _)| *name != "desktop");
    fields.push(("desktop", "no port"));
    let (status, page) = post(&origin, "/save", &fields).await;
    assert_eq!(status, 400);
    let not_saved = page.find("id=\"not-saved\">Not saved.").expect(&page);
    assert!(
        not_saved < page.find("id=\"settings\"").unwrap(),
        "at the top, before the form"
    );
    assert!(
        page.contains("<a href=\"#recipients\">See the problems below.</a>"),
        "{page}"
    );
    assert_eq!(page.matches(" autofocus").count(), 1, "{page}");
    assert!(
        page.contains("<textarea id=\"recipients\" name=\"recipients\" rows=\"4\" autofocus>"),
        "{page}"
    );
    assert!(page.contains("id=\"desktop-problem\""), "{page}");
    assert_eq!(std::fs::read(&config).unwrap(), before, "nothing written");
    // A good save shows none of it.
    let (status, page) = post(&origin, "/save", &form(session, "it@example.com", &[])).await;
    assert_eq!(status, 200, "{page}");
    assert!(!page.contains("Not saved"), "{page}");
    assert!(!page.contains(" autofocus"), "{page}");
}

/// The page again (its Refresh button) until `done` holds.
async fn refresh_until(origin: &str, session: &str, done: impl Fn(&str) -> bool) -> String {
    let wait = async {
        loop {
            let (_, page) = post(origin, "/", &[("session", session)]).await;
            if done(&page) {
                return page;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(10), wait)
        .await
        .expect("the page changed in time")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_window_enrols_pins_and_removes_an_approvers_passkey() {
    let world = World::builder()
        .localhost()
        .recipients(&["it@example.com"])
        .start()
        .await;
    let (_window, origin, session) = opened(world.agent_config.clone()).await;
    let session = session.as_str();
    let (_, page) = post(&origin, "/", &[("session", session)]).await;
    assert!(page.contains("id=\"no-passkeys\""), "{page}");
    assert!(
        page.contains("id=\"require_passkey\">"),
        "shown, not checked: {page}"
    );
    assert!(page.contains("<option value=\"it@example.com\">"), "{page}");

    // The owner starts an enrolment; the page shows the code.
    let (status, page) = post(
        &origin,
        "/approvers/enroll",
        &[("session", session), ("recipient", "it@example.com")],
    )
    .await;
    assert_eq!(status, 200, "{page}");
    assert!(
        page.contains("An enrolment link is on its way to it@example.com."),
        "{page}"
    );
    assert!(page.contains("id=\"enrolment-waiting\""), "{page}");
    let code = page
        .split("id=\"enrolment-code\">")
        .nth(1)
        .and_then(|rest| rest.split('<').next())
        .expect("the code")
        .to_string();

    // The recipient's page shows the same code and takes a passkey.
    let mails = world.smtp.wait_for(1).await;
    let link = mails[0].enrolment_link();
    let (_, enrol_page) = world.page(&link).await;
    assert!(
        enrol_page.contains(&format!("id=\"code\">{code}<")),
        "{enrol_page}"
    );
    let challenge: B64 = enrol_page
        .split("data-challenge=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("a challenge")
        .parse()
        .unwrap();
    let key = SoftPasskey::new(&world.url);
    let (object, client) = key.register(&challenge.0);
    // base64url needs no escaping in JSON.
    let credential = format!(
        "{{\"attestation_object\":\"{}\",\"client_data_json\":\"{}\"}}",
        B64(object),
        B64(client)
    );
    let nonce = extract_nonce(&enrol_page).expect("the page's nonce");
    let made = world
        .http
        .post(&link)
        .form(&[
            ("nonce", nonce.as_str()),
            ("credential", credential.as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(made.status(), 200);
    let fingerprint = key.public_key().fingerprint();
    assert!(made.text().await.unwrap().contains(&fingerprint));

    // The window shows the same fingerprint; nothing is pinned until the
    // owner says so.
    let page = refresh_until(&origin, session, |page| {
        page.contains("id=\"enrolment-fingerprint\"")
    })
    .await;
    assert!(
        page.contains(&format!("class=\"fingerprint\">{fingerprint}</strong>")),
        "{page}"
    );
    let settings = doorman_agent::settings_file::load(&world.agent_config).unwrap();
    assert!(settings.desktop_sharing.passkeys.is_empty());
    let id = key.id.to_string();
    let id = id.as_str();
    let (status, page) = post(
        &origin,
        "/approvers/pin",
        &[("session", session), ("id", id)],
    )
    .await;
    assert_eq!(status, 200, "{page}");
    assert!(
        page.contains("Pinned the passkey of it@example.com."),
        "{page}"
    );
    assert!(page.contains(&format!("data-passkey=\"{id}\"")), "{page}");
    assert!(
        !page.contains("id=\"enrolment\""),
        "the enrolment is over: {page}"
    );
    let settings = doorman_agent::settings_file::load(&world.agent_config).unwrap();
    assert_eq!(
        settings.desktop_sharing.passkeys,
        [key.pinned("it@example.com")]
    );

    // Approvals now require it; while they do, it cannot go.
    let with_passkey = form(session, "it@example.com", &[("require_passkey", "on")]);
    let (status, page) = post(&origin, "/save", &with_passkey).await;
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("id=\"require_passkey\" checked>"), "{page}");
    let (status, page) = post(
        &origin,
        "/approvers/remove",
        &[("session", session), ("id", id)],
    )
    .await;
    assert_eq!(status, 409, "{page}");
    assert!(page.contains("fewer than required_approvals"), "{page}");
    assert_eq!(
        doorman_agent::settings_file::load(&world.agent_config)
            .unwrap()
            .desktop_sharing
            .passkeys
            .len(),
        1
    );
    let (status, _) = post(&origin, "/save", &form(session, "it@example.com", &[])).await;
    assert_eq!(status, 200);
    let (status, page) = post(
        &origin,
        "/approvers/remove",
        &[("session", session), ("id", id)],
    )
    .await;
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("id=\"no-passkeys\""), "{page}");
    let settings = doorman_agent::settings_file::load(&world.agent_config).unwrap();
    assert!(settings.desktop_sharing.passkeys.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approvers_forms_without_the_pages_session_change_nothing() {
    let (_dir, config) = settings_file();
    let before = std::fs::read(&config).unwrap();
    let (_window, origin, _session) = opened(config.clone()).await;
    for path in [
        "/approvers/enroll",
        "/approvers/pin",
        "/approvers/discard",
        "/approvers/remove",
    ] {
        let (status, _) = post(
            &origin,
            path,
            &[
                ("session", "guess"),
                ("recipient", "it@example.com"),
                ("id", "x"),
            ],
        )
        .await;
        assert_eq!(status, 403, "{path}");
    }
    assert_eq!(std::fs::read(&config).unwrap(), before, "nothing written");
}

/// Issue 27: the shared folders `doorman cp` reaches are set in the window
/// too, checked as `settings set --files` checks them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shared_folders_are_saved_and_a_bad_one_is_refused() {
    let (_dir, config) = settings_file();
    let (_window, origin, session) = opened(config.clone()).await;
    let session = session.as_str();
    let bad = form(session, "it@example.com", &[("files", "~/Shared\n../up")]);
    let (status, page) = post(&origin, "/save", &bad).await;
    assert_eq!(status, 400, "{page}");
    assert!(page.contains("id=\"files-problem\""), "{page}");
    assert!(
        page.contains("must be an absolute path or start with ~/"),
        "{page}"
    );
    let good = form(
        session,
        "it@example.com",
        &[("files", "~/Shared\n/srv/drop")],
    );
    let (status, page) = post(&origin, "/save", &good).await;
    assert_eq!(status, 200, "{page}");
    let settings = doorman_agent::settings_file::load(&config).unwrap();
    assert_eq!(settings.services.files, ["~/Shared", "/srv/drop"]);
    assert!(page.contains("~/Shared\n/srv/drop</textarea>"), "{page}");
}
