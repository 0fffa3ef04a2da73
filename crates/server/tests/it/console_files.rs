//! Issue 27: the console's Files view. Over its WebSocket: a browsing
//! session of the computer's shared folders, approved by email like any
//! session (the email says which folders), then listings, uploads stored
//! whole under their name only when their SHA-256 matches, downloads with
//! their SHA-256, every way out of the shared folders refused with its own
//! answer, and each file in the audit trail with the way it went. In a real
//! browser (headless Chromium over WebDriver): the folder listed, a file
//! uploaded through the file input landing byte-exact on disk, and a file
//! downloaded and checked by the page.
//!
//! The browser test needs Debian's `chromium` and `chromium-driver`
//! (`.ci/run` installs them).

use crate::console_browser::{ask, sign_in};
use crate::console_terminal::{Socket, console_socket};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use doorman_test_support::World;
use doorman_test_support::raw::{connect, first_answer};
use doorman_test_support::webdriver::Browser;
use doorman_test_support::world::COMPUTER;
use doorman_wire::message::{Refusal, ServerToOperator};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use tokio_tungstenite::tungstenite::Message;

/// A computer sharing one folder, `shared`, which holds `report.txt`, and
/// asking one recipient by email.
struct Setup {
    world: World,
    _dirs: tempfile::TempDir,
    dirs: PathBuf,
    shared: PathBuf,
}

const REPORT: &[u8] = b"the quarterly report\n";

async fn setup() -> Setup {
    let dirs = tempfile::tempdir().unwrap();
    let shared = dirs.path().join("shared");
    std::fs::create_dir(&shared).unwrap();
    std::fs::write(shared.join("report.txt"), REPORT).unwrap();
    let world = World::builder()
        .recipients(&["it@example.com"])
        .files(&[shared.to_str().unwrap()])
        .start()
        .await;
    // The console asks for the folders the computer said it shares: it
    // says so right after it comes online.
    let told = world
        .broker
        .agents()
        .wait_for_status(COMPUTER, |status| !status.files.is_empty());
    tokio::time::timeout(std::time::Duration::from_secs(10), told)
        .await
        .expect("the computer tells its shared folders");
    Setup {
        world,
        dirs: dirs.path().to_path_buf(),
        _dirs: dirs,
        shared,
    }
}

fn b64(bytes: &[u8]) -> String {
    STANDARD.encode(bytes)
}

fn sha256_hex(bytes: &[u8]) -> String {
    ring::digest::digest(&ring::digest::SHA256, bytes)
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Every name in `dir`, sorted: no temporary file may be left.
fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

async fn send(socket: &mut Socket, message: Value) {
    socket
        .send(Message::Text(message.to_string().into()))
        .await
        .unwrap();
}

/// The next text message that is not a ping; binary messages read before
/// it (a download's bytes) are appended to `bytes`.
async fn said(socket: &mut Socket, bytes: &mut Vec<u8>) -> Value {
    let next = async {
        loop {
            match socket.next().await {
                Some(Ok(Message::Text(text))) => {
                    let value: Value = serde_json::from_str(&text).unwrap();
                    if value["type"] != "ping" {
                        return value;
                    }
                }
                Some(Ok(Message::Binary(data))) => bytes.extend_from_slice(&data),
                Some(Ok(_)) => {}
                other => panic!("the socket ended: {other:?}"),
            }
        }
    };
    tokio::time::timeout(std::time::Duration::from_secs(10), next)
        .await
        .expect("a message within 10 s")
}

/// Skips messages (deliveries, approvals) until one of type `kind`.
async fn said_a(socket: &mut Socket, kind: &str) -> Value {
    let mut bytes = Vec::new();
    loop {
        let value = said(socket, &mut bytes).await;
        if value["type"] == kind {
            return value;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_files_view_browses_uploads_and_downloads_over_the_console_socket() {
    let Setup {
        world,
        shared,
        _dirs,
        ..
    } = setup().await;
    let cookie = world.console_cookie(&world.operator_token).await;
    let listed = world
        .http
        .get(format!("{}/console/computers", world.url))
        .header(reqwest::header::COOKIE, cookie)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let listed: Value = serde_json::from_str(&listed).unwrap();
    assert_eq!(listed[0]["files"], true, "{listed}");

    let mut socket = console_socket(&world, "computer=office-pc&kind=files&reason=contract").await;
    said_a(&mut socket, "pending").await;
    let mails = world.smtp.wait_for(1).await;
    let says = format!("browse and copy files in {}", shared.display());
    assert!(mails[0].text().contains(&says), "{}", mails[0].text());
    world.click(&mails[0].link(), "allow").await;
    said_a(&mut socket, "session_started").await;
    let root = b64(shared.to_str().unwrap().as_bytes());
    let roots = said_a(&mut socket, "roots").await;
    assert_eq!(roots["paths"], json!([root]), "{roots}");

    let mut bytes = Vec::new();
    send(&mut socket, json!({"type": "list", "path": root})).await;
    let listing = said(&mut socket, &mut bytes).await;
    assert_eq!(listing["type"], "listing", "{listing}");
    assert_eq!(listing["last"], true);
    assert_eq!(listing["entries"][0]["name"], b64(b"report.txt"));
    assert_eq!(listing["entries"][0]["size"], REPORT.len());

    // An upload, in several binary messages, then its SHA-256.
    let upload: Vec<u8> = (0..600_000u32).map(|i| (i % 251) as u8).collect();
    let put = json!({"type": "put", "dir": root, "name": b64(b"upload.bin"), "size": upload.len()});
    send(&mut socket, put).await;
    for chunk in upload.chunks(200_000) {
        socket
            .send(Message::Binary(chunk.to_vec().into()))
            .await
            .unwrap();
    }
    send(
        &mut socket,
        json!({"type": "file_end", "sha256": sha256_hex(&upload)}),
    )
    .await;
    let stored = said(&mut socket, &mut bytes).await;
    assert_eq!(stored["type"], "file_copied", "{stored}");
    assert_eq!(stored["direction"], "to_computer");
    assert_eq!(std::fs::read(shared.join("upload.bin")).unwrap(), upload);
    // Recorded while the session goes on: a server that stopped now would
    // have it in its audit trail.
    let recorded = world.wait_for_audit("file_copied").await;
    assert!(
        recorded.detail.unwrap_or_default().contains("upload.bin"),
        "the upload, recorded before the session ended"
    );
    assert!(
        !world
            .audit_events()
            .await
            .iter()
            .any(|e| e.event == "session_ended")
    );

    // A download: the file, its bytes, their SHA-256.
    let report = b64(shared.join("report.txt").to_str().unwrap().as_bytes());
    send(&mut socket, json!({"type": "get", "path": report})).await;
    let file = said(&mut socket, &mut bytes).await;
    assert_eq!(file["type"], "file", "{file}");
    assert_eq!(file["size"], REPORT.len());
    let end = said(&mut socket, &mut bytes).await;
    assert_eq!(end["sha256"], sha256_hex(REPORT), "{end}");
    let sent = said(&mut socket, &mut bytes).await;
    assert_eq!(sent["type"], "file_copied", "{sent}");
    assert_eq!(sent["direction"], "from_computer");
    assert_eq!(bytes, REPORT);

    // Bytes that do not match their SHA-256 are not stored.
    let bad = json!({"type": "put", "dir": root, "name": b64(b"bad.bin"), "size": 3});
    send(&mut socket, bad).await;
    socket
        .send(Message::Binary(b"abc".to_vec().into()))
        .await
        .unwrap();
    send(&mut socket, json!({"type": "file_end", "sha256": "00"})).await;
    let refused = said(&mut socket, &mut bytes).await;
    assert_eq!(refused["type"], "file_failed", "{refused}");
    assert_eq!(refused["name"], b64(b"bad.bin"));
    assert!(
        refused["message"]
            .as_str()
            .unwrap()
            .contains("do not match"),
        "{refused}"
    );
    assert_eq!(names(&shared), ["report.txt", "upload.bin"]);

    // Every way out of the shared folder has its one answer: a failure.
    let escape = format!("{}/../escape", shared.display());
    let outside = [
        json!({"type": "list", "path": b64(b"/etc")}),
        json!({"type": "get", "path": b64(escape.as_bytes())}),
        json!({"type": "put", "dir": root, "name": b64(b"../escape"), "size": 1}),
        json!({"type": "put", "dir": b64(b"/tmp"), "name": b64(b"escape"), "size": 1}),
    ];
    for request in outside {
        send(&mut socket, request.clone()).await;
        let answer = said(&mut socket, &mut bytes).await;
        assert_eq!(answer["type"], "file_failed", "{request}: {answer}");
    }
    assert_eq!(names(&shared), ["report.txt", "upload.bin"]);
    assert!(!shared.parent().unwrap().join("escape").exists());

    // Leaving ends the session; each file is in the audit trail.
    drop(socket);
    let audited = world.wait_for_audits("file_copied", 2).await;
    let details: Vec<String> = audited
        .iter()
        .map(|event| event.detail.clone().unwrap_or_default())
        .collect();
    assert_eq!(
        details,
        [
            format!(
                "to the computer: {} (600000 bytes, sha256 {})",
                shared.join("upload.bin").display(),
                sha256_hex(&upload)
            ),
            format!(
                "from the computer: {} ({} bytes, sha256 {})",
                shared.join("report.txt").display(),
                REPORT.len(),
                sha256_hex(REPORT)
            ),
        ]
    );
    let ended = world.wait_for_audit("session_ended").await;
    assert_eq!(ended.user_agent.as_deref(), Some("via console"));
}

/// A Files session covers whole shared folders only: one inside a shared
/// folder (which could be a symbolic link, swapped in at any time) is
/// refused by the computer before anyone is asked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browsing_a_folder_inside_a_shared_one_is_refused_before_any_email() {
    let Setup {
        world,
        shared,
        _dirs,
        ..
    } = setup().await;
    std::fs::create_dir(shared.join("inner")).unwrap();
    let inner = b64(shared.join("inner").to_str().unwrap().as_bytes());
    let service = json!({"kind": "files", "direction": "browse", "paths": [inner]});
    let asked = connect(COMPUTER, "", service);
    match first_answer(&world.url, &world.operator_token, &asked).await {
        ServerToOperator::Refused {
            reason: Refusal::NotOffered,
            message,
        } => assert!(
            message.contains("is not one of the folders this computer shares"),
            "{message}"
        ),
        other => panic!("expected a refusal, got {other:?}"),
    }
    assert_eq!(world.emails_queued().await, 0, "no email was sent");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_files_view_uploads_and_downloads_in_the_browser() {
    let Some(browser) = Browser::start(1100, 800, false).await else {
        return;
    };
    let Setup {
        world,
        dirs,
        shared,
        _dirs,
    } = setup().await;
    let big: Vec<u8> = (0..700_000u32).map(|i| (i % 253) as u8).collect();
    std::fs::write(shared.join("big.bin"), &big).unwrap();
    // The file the operator picks, on the operator's side.
    let contract: Vec<u8> = (0..650_000u32).map(|i| (i % 241) as u8).collect();
    let local = dirs.join("contract.pdf");
    std::fs::write(&local, &contract).unwrap();

    sign_in(&browser, &world).await;
    browser
        .click("li[data-computer=\"office-pc\"] a.files-link")
        .await;
    ask(&browser, "the signed contract").await;
    let mails = world.smtp.wait_for(1).await;
    world.click(&mails[0].link(), "allow").await;
    browser
        .wait_until(
            "return document.querySelector('#listing tr[data-name=\"report.txt\"]') !== null",
            "the shared folder listed",
        )
        .await;

    browser.type_into("#upload", local.to_str().unwrap()).await;
    let upload = browser
        .wait_until(
            "const line = document.querySelector('#transfers li[data-direction=\"up\"]'); \
             return line && ['done', 'failed'].includes(line.dataset.state) ? line.dataset.state + ': ' + line.textContent : null",
            "the upload stored or refused",
        )
        .await;
    assert!(upload.as_str().unwrap().starts_with("done"), "{upload}");
    browser
        .wait_until(
            "return document.querySelector('#listing tr[data-name=\"contract.pdf\"]') !== null",
            "the upload listed",
        )
        .await;
    assert_eq!(
        std::fs::read(shared.join("contract.pdf")).unwrap(),
        contract
    );
    assert_eq!(names(&shared), ["big.bin", "contract.pdf", "report.txt"]);

    browser
        .click("#listing tr[data-name=\"big.bin\"] button.download")
        .await;
    let download = browser
        .wait_until(
            "const line = document.querySelector('#transfers li[data-direction=\"down\"]'); \
             return line && ['done', 'failed'].includes(line.dataset.state) ? line.dataset.state + ' ' + (line.dataset.sha256 || '') + ' ' + line.textContent : null",
            "the download checked",
        )
        .await;
    let expected = format!("done {} ", sha256_hex(&big));
    assert!(
        download.as_str().unwrap().starts_with(&expected),
        "{download}"
    );

    let shot = browser.screenshot().await;
    std::fs::write(
        std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("console-files.png"),
        &shot,
    )
    .expect("save the screenshot");
    // Leaving the page ends the session; both files are audited.
    browser.open(&format!("{}/console", world.url)).await;
    world.wait_for_audits("file_copied", 2).await;
    browser.quit().await;
}
