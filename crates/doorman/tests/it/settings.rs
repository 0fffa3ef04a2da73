//! `doorman settings` through the real binary: `open --no-browser` prints a
//! one-time address on loopback that opens the settings page once; `open`
//! hands the browser opener a private file that leads there, never the
//! address (issue 25); and `set` changes the services offered as the page
//! does.

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
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
    let page = http.get(&url).send().await.unwrap();
    assert_eq!(page.status(), 200);
    assert!(page.headers().get("set-cookie").is_none(), "no cookie");
    assert_eq!(page.headers()["x-frame-options"], "DENY");
    let text = page.text().await.unwrap();
    assert!(text.contains("Require email authorization for incoming connections"));
    assert!(
        text.contains("name=\"session\""),
        "the page carries its session"
    );
    assert_eq!(http.get(&url).send().await.unwrap().status(), 403, "once");
    child.kill().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_25_settings_open_gives_the_browser_opener_a_private_file_never_the_address() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("agent.toml");
    std::fs::write(&config, SETTINGS).unwrap();
    // The owner's runtime directory, and an `xdg-open` that writes down
    // the arguments it was given (what every user may read in /proc).
    let runtime = dir.path().join("runtime");
    std::fs::create_dir(&runtime).unwrap();
    std::fs::set_permissions(&runtime, std::fs::Permissions::from_mode(0o700)).unwrap();
    let bin = dir.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    let argv = dir.path().join("argv");
    let opener = bin.join("xdg-open");
    std::fs::write(
        &opener,
        format!("#!/bin/sh\nprintf '%s\\n' \"$@\" > '{}'\n", argv.display()),
    )
    .unwrap();
    std::fs::set_permissions(&opener, std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut child = doorman()
        .args(["settings", "--config"])
        .arg(&config)
        .arg("open")
        .env("PATH", path)
        .env("XDG_RUNTIME_DIR", &runtime)
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let mut said = String::new();
    let opened = async {
        while let Some(line) = lines.next_line().await.unwrap() {
            said.push_str(&line);
            said.push('\n');
            if line.contains("open in your browser") {
                return;
            }
        }
        panic!("the browser was not opened: {said}");
    };
    tokio::time::timeout(std::time::Duration::from_secs(20), opened)
        .await
        .expect("the browser opened within 20 s");
    assert!(!said.contains("/open/"), "the address printed: {said}");

    let args = std::fs::read_to_string(&argv).unwrap();
    let args: Vec<&str> = args.lines().collect();
    assert_eq!(args.len(), 1, "{args:?}");
    let file = PathBuf::from(args[0]);
    assert!(
        file.starts_with(&runtime),
        "{} is not in the runtime directory",
        file.display()
    );
    let mode =
        |path: &std::path::Path| std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&file), 0o600);
    assert_eq!(mode(file.parent().unwrap()), 0o700);
    let redirect = std::fs::read_to_string(&file).unwrap();
    let start = redirect.find("url=").expect("a refresh") + "url=".len();
    let url = &redirect[start..start + redirect[start..].find('"').unwrap()];
    let secret = url.split("/open/").nth(1).expect("the one-time address");
    assert!(secret.len() >= 22, "{url}");
    assert!(!args[0].contains(secret), "the secret in argv: {args:?}");

    // Where the file leads, the window opens, once.
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    assert_eq!(http.get(url).send().await.unwrap().status(), 200);
    assert_eq!(http.get(url).send().await.unwrap().status(), 403);
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
