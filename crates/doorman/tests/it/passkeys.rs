//! Passkey approvals end to end, in real headless Chromium with WebDriver's
//! virtual authenticator (CTAP2, built in, resident keys, user
//! verification): `doorman settings approvers enroll` emails the link and
//! shows a code, the recipient's page shows the same code and creates the
//! passkey, the computer shows its fingerprint and pins it once the person
//! there types yes; then a request to the computer is allowed with the
//! passkey and the session runs, while an Allow without one is not counted.
//!
//! Needs Debian's `chromium` and `chromium-driver` (`.ci/run` installs them).

use doorman_core::passkey::PinnedPasskey;
use doorman_test_support::World;
use doorman_test_support::webdriver::Browser;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::Command;

const DOORMAN: &str = env!("CARGO_BIN_EXE_doorman");

/// Reads lines of `doorman`'s output until one contains `marker`; that line.
async fn line_with(
    lines: &mut tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
    marker: &str,
) -> String {
    let read = async {
        while let Some(line) = lines.next_line().await.expect("stdout") {
            if line.contains(marker) {
                return line;
            }
        }
        panic!("doorman ended before printing {marker:?}");
    };
    tokio::time::timeout(std::time::Duration::from_secs(60), read)
        .await
        .expect("in time")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recipient_enrols_a_passkey_and_approves_with_it() {
    let Some(browser) = Browser::start(1000, 800, false).await else {
        return;
    };
    browser.add_virtual_authenticator().await;
    let world = World::builder()
        .localhost()
        .recipients(&["it@example.com", "owner@example.com"])
        .start()
        .await;

    // At the computer: enrol it@example.com.
    let mut enroll = Command::new(DOORMAN)
        .args(["settings", "--config"])
        .arg(&world.agent_config)
        .args(["approvers", "enroll", "it@example.com"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(enroll.stdout.take().unwrap()).lines();
    let code_line = line_with(&mut lines, "Code: ").await;
    let code = code_line
        .split_whitespace()
        .nth(1)
        .expect("the code")
        .to_string();
    let mails = world.smtp.wait_for(1).await;
    assert_eq!(mails[0].to, ["it@example.com"]);

    // The recipient's page shows the same code, and makes the passkey.
    browser.open(&mails[0].enrolment_link()).await;
    let shown = browser
        .script("return document.getElementById('code').textContent")
        .await;
    assert_eq!(shown.as_str(), Some(code.as_str()));
    browser.click("#enroll").await;
    let fingerprint = browser
        .wait_until(
            "return document.getElementById('fingerprint')?.textContent",
            "the passkey made and its fingerprint shown",
        )
        .await;
    let fingerprint = fingerprint.as_str().unwrap().to_string();
    // It wraps on a phone rather than run off the screen.
    assert_eq!(
        browser
            .script("return getComputedStyle(document.getElementById('fingerprint')).overflowWrap")
            .await,
        "anywhere"
    );

    // The computer shows the same fingerprint; the person there pins it.
    let shown = line_with(&mut lines, "Fingerprint: ").await;
    assert!(shown.ends_with(&fingerprint), "{shown} vs {fingerprint}");
    let mut stdin = enroll.stdin.take().unwrap();
    stdin.write_all(b"yes\n").await.unwrap();
    line_with(&mut lines, "pinned passkey").await;
    assert!(enroll.wait().await.unwrap().success());
    let (code, list, _) = doorman_test_support::process::run(
        DOORMAN,
        &[
            "settings",
            "--config",
            world.agent_config.to_str().unwrap(),
            "approvers",
            "list",
        ],
    )
    .await;
    assert_eq!(code, 0);
    assert!(list.starts_with("it@example.com  "), "{list}");
    assert!(list.trim_end().ends_with(&fingerprint), "{list}");
    let settings = doorman_agent::settings_file::load(&world.agent_config).unwrap();
    let pinned: &PinnedPasskey = &settings.desktop_sharing.passkeys[0];
    assert_eq!(pinned.public_key.fingerprint(), fingerprint);

    // Now the computer requires passkey approvals.
    let (code, _, err) = doorman_test_support::process::run(
        DOORMAN,
        &[
            "settings",
            "--config",
            world.agent_config.to_str().unwrap(),
            "set",
            "--require-passkey",
            "true",
        ],
    )
    .await;
    assert_eq!(code, 0, "{err}");
    let connecting = world.connect(&["sh", "-c", "echo passkey-approved"], "with passkey");
    let mails = world.smtp.wait_for(3).await;
    let to_it = mails[1..]
        .iter()
        .find(|m| m.to == ["it@example.com"])
        .expect("an email to it@");
    assert!(
        to_it
            .text()
            .contains("requires the approval to be made with your")
    );
    let to_owner = mails[1..]
        .iter()
        .find(|m| m.to == ["owner@example.com"])
        .expect("an email to owner@");
    // owner@ has no passkey pinned: its email does not ask for one.
    assert!(
        !to_owner.text().contains("with your"),
        "{}",
        to_owner.text()
    );
    assert!(
        to_owner.text().contains("none of yours is"),
        "{}",
        to_owner.text()
    );

    // An Allow without a passkey is not counted.
    let refused = world.click(&to_owner.link(), "allow").await;
    assert_eq!(refused.status(), reqwest::StatusCode::FORBIDDEN);
    let text = refused.text().await.unwrap();
    assert!(
        text.starts_with("not counted: no passkey of yours is pinned on office-pc"),
        "{text}"
    );
    let (_, owners_page) = world.page(&to_owner.link()).await;
    assert!(
        owners_page.contains("No passkey of yours is pinned on this computer"),
        "{owners_page}"
    );

    // it@ allows with the passkey: the ceremony runs on the page.
    browser.open(&to_it.link()).await;
    browser.click("#passkey-allow").await;
    browser
        .wait_until(
            "return document.querySelector('.status')?.textContent.startsWith('Allowed')",
            "the request allowed",
        )
        .await;
    assert_eq!(
        connecting
            .stdout
            .wait_until(|t| t.contains("passkey-approved"))
            .await,
        "passkey-approved\n"
    );
    assert_eq!(connecting.finish().await, Ok(0));
    let allowed = world.wait_for_audit("allowed").await;
    assert!(
        allowed
            .detail
            .as_deref()
            .is_some_and(|d| d.starts_with(&format!("allowed with passkey {}", pinned.id))),
        "{allowed:?}"
    );
    // The only pinned key cannot go while the computer requires passkeys;
    // once it does not, it can.
    let settings_cmd = |args: &'static [&'static str]| {
        let config = world.agent_config.to_str().unwrap().to_string();
        async move {
            let mut all = vec!["settings", "--config", config.as_str()];
            all.extend_from_slice(args);
            doorman_test_support::process::run(DOORMAN, &all).await
        }
    };
    let (code, _, err) = settings_cmd(&["approvers", "remove", "it@example.com"]).await;
    assert_eq!(code, 1);
    assert!(err.contains("fewer than required_approvals"), "{err}");
    assert_eq!(
        settings_cmd(&["set", "--require-passkey", "false"]).await.0,
        0
    );
    let (code, out, err) = settings_cmd(&["approvers", "remove", "it@example.com"]).await;
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.trim(), "unpinned 1 passkey(s) of it@example.com");
    let (_, list, _) = settings_cmd(&["approvers", "list"]).await;
    assert_eq!(list, "");
    browser.quit().await;
}
