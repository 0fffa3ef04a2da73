//! `doorman settings` through the real binary: `open --no-browser` prints a
//! one-time address on loopback that opens the settings page once, and
//! `set` changes the services offered as the page does.

use std::process::Stdio;
use tokio::io::AsyncBufReadExt;

const SETTINGS: &str = "server = \"http://127.0.0.1:9\"\nname = \"pc\"\nkey = \"dak_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\"\n\n# What may be reached.\n[services]\nshell = true\n";

fn doorman() -> tokio::process::Command {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_doorman"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settings_open_prints_a_one_time_address_on_loopback() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("agent.toml");
    std::fs::write(&config, SETTINGS).unwrap();
    let mut child = doorman()
        .args(["settings", "--config"])
        .arg(&config)
        .args(["open", "--no-browser"])
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let find = async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if let Some(url) = line.trim().strip_prefix("http://") {
                return format!("http://{url}");
            }
        }
        panic!("no address printed");
    };
    let url = tokio::time::timeout(std::time::Duration::from_secs(20), find)
        .await
        .expect("the address within 20 s");
    assert!(url.starts_with("http://127.0.0.1:"), "{url}");
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let first = http.get(&url).send().await.unwrap();
    assert_eq!(first.status(), 303);
    let cookie = first.headers()["set-cookie"].to_str().unwrap().to_string();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    let page = http
        .get(url.split("/open/").next().unwrap())
        .header("Cookie", cookie.split(';').next().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    assert_eq!(page.headers()["x-frame-options"], "DENY");
    assert!(
        page.text()
            .await
            .unwrap()
            .contains("Require email authorization for incoming connections")
    );
    assert_eq!(http.get(&url).send().await.unwrap().status(), 403, "once");
    child.kill().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settings_set_changes_the_services_and_refuses_a_bad_target() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("agent.toml");
    std::fs::write(&config, SETTINGS).unwrap();
    let set = |args: &[&str]| {
        let mut command = doorman();
        command
            .args(["settings", "--config"])
            .arg(&config)
            .arg("set")
            .args(args);
        command
    };
    let done = set(&[
        "--shell",
        "false",
        "--forward",
        "127.0.0.1:22, 127.0.0.1:3389",
        "--desktop",
        "127.0.0.1:5900",
    ])
    .output()
    .await
    .unwrap();
    assert!(
        done.status.success(),
        "{}",
        String::from_utf8_lossy(&done.stderr)
    );
    let text = std::fs::read_to_string(&config).unwrap();
    assert!(
        text.contains("# What may be reached."),
        "comments kept: {text}"
    );
    let settings = doorman_agent::settings_file::load(&config).unwrap();
    assert!(!settings.services.shell);
    assert_eq!(
        settings.services.forward,
        ["127.0.0.1:22", "127.0.0.1:3389"]
    );
    assert_eq!(settings.services.desktop.as_deref(), Some("127.0.0.1:5900"));

    let refused = set(&["--desktop", "nowhere"]).output().await.unwrap();
    assert_eq!(refused.status.code(), Some(1));
    let said = String::from_utf8_lossy(&refused.stderr);
    assert!(said.contains("services.desktop"), "{said}");
    assert_eq!(
        std::fs::read_to_string(&config).unwrap(),
        text,
        "nothing written"
    );

    let removed = set(&["--desktop", ""]).output().await.unwrap();
    assert!(removed.status.success());
    let settings = doorman_agent::settings_file::load(&config).unwrap();
    assert_eq!(settings.services.desktop, None);
}
