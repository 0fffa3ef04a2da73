//! What the tests of the `doorman` binary share: running it (to completion
//! or as a process whose output a test awaits), a deployment of `doorman
//! server` and `doorman agent` as real processes registered with `doorman
//! admin`, and a recipient's click. The tests are the `cli_*` modules.

use doorman_test_support::SmtpSink;
use doorman_test_support::process::{Process, listening_address};
use doorman_test_support::world::extract_nonce;
use std::path::{Path, PathBuf};
use tokio::process::Command;

const DOORMAN: &str = env!("CARGO_BIN_EXE_doorman");

/// Runs `doorman ARGS` to completion: (exit code, stdout, stderr).
pub(crate) async fn doorman(args: &[&str]) -> (i32, String, String) {
    doorman_test_support::process::run(DOORMAN, args).await
}

/// `doorman connect --server SERVER --token TOKEN REST…` to completion.
pub(crate) async fn connect_once(
    server: &str,
    token: &str,
    rest: &[&str],
) -> (i32, String, String) {
    let mut args = vec!["connect", "--server", server, "--token", token];
    args.extend_from_slice(rest);
    doorman(&args).await
}

/// Starts `doorman connect --server SERVER --token TOKEN REST…`.
pub(crate) fn start_connect(server: &str, token: &str, rest: &[&str]) -> Process {
    let mut args = vec!["connect", "--server", server, "--token", token];
    args.extend_from_slice(rest);
    start(&args)
}

/// The `pending` event a `doorman connect --json` process printed.
pub(crate) async fn pending_event(connect: &Process) -> serde_json::Value {
    let text = connect
        .stderr
        .wait_until(|t| t.contains("\"pending\"") && t.ends_with('\n'))
        .await;
    let line = text.lines().find(|l| l.contains("\"pending\"")).unwrap();
    serde_json::from_str(line).unwrap()
}

/// A long-running `doorman` process whose output the test can await.
pub(crate) fn start(args: &[&str]) -> Process {
    Process::start(DOORMAN, args)
}

pub(crate) struct Deployment {
    pub(crate) dir: tempfile::TempDir,
    pub(crate) data: PathBuf,
    pub(crate) url: String,
    pub(crate) token: String,
    pub(crate) key: String,
    pub(crate) server: Process,
    pub(crate) agent: Option<Process>,
    pub(crate) agent_config: PathBuf,
}

pub(crate) fn path(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// Writes an agent's settings file and starts `doorman agent` with it;
/// returns once the agent is online.
pub(crate) async fn start_agent(config: &Path, settings: String) -> Process {
    doorman_test_support::process::start_agent(DOORMAN, config, &settings).await
}

/// `doorman admin WHERE… operator add alice --computers '*'` and `agent add
/// office-pc` (WHERE: `--data-dir DIR` or `--database-url URL`): the token
/// and the key.
pub(crate) async fn operator_and_agent(place: &[&str]) -> (String, String) {
    let token = admin_add(place, &["operator", "add", "alice", "--computers", "*"]).await;
    let key = admin_add(place, &["agent", "add", "office-pc"]).await;
    (token, key)
}

/// `doorman admin --create PLACE… WHAT…` (the first one makes the
/// database), which must succeed and print one line (a token or a key):
/// that line.
pub(crate) async fn admin_add(place: &[&str], what: &[&str]) -> String {
    let args: Vec<&str> = ["admin", "--create"]
        .iter()
        .chain(place)
        .chain(what)
        .copied()
        .collect();
    let (code, out, err) = doorman(&args).await;
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.lines().count(), 1, "one line: {out}");
    out.trim().to_string()
}

/// Registers an operator and an agent with `doorman admin`, starts `doorman
/// server` on a free port and `doorman agent` against it.
pub(crate) async fn deploy(smtp: Option<&SmtpSink>) -> Deployment {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let place = ["--data-dir", path(&data)];
    let token = admin_add(
        &place,
        &["operator", "add", "alice", "--computers", "office-*"],
    )
    .await;
    let key = admin_add(&place, &["agent", "add", "office-pc"]).await;

    let smtp_url = smtp.map(SmtpSink::url);
    let mut args = vec![
        "server",
        "--listen",
        "127.0.0.1:0",
        "--data-dir",
        path(&data),
        "--mail-from",
        "doorman@example.com",
    ];
    if let Some(url) = &smtp_url {
        args.extend(["--smtp-url", url.as_str()]);
    }
    let server = start(&args);
    let url = format!("http://{}", listening_address(&server).await);

    let agent_config = dir.path().join("agent.toml");
    let agent = start_agent(
        &agent_config,
        format!(
            "# the office computer\nserver = \"{url}\"\nname = \"office-pc\"\nkey = \"{key}\"\n\n[desktop_sharing]\nrequire_email_authorization = true\nemail_authorization_timeout = 180\nrecipients = [\"it@example.com\", \"owner@example.com\"]\n"
        ),
    )
    .await;
    Deployment {
        dir,
        data,
        url,
        token,
        key,
        server,
        agent: Some(agent),
        agent_config,
    }
}

pub(crate) async fn click(link: &str, decision: &str) -> reqwest::StatusCode {
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .user_agent("cli-test-browser/1.0")
        .build()
        .unwrap();
    let page = http.get(link).send().await.unwrap().text().await.unwrap();
    let nonce = extract_nonce(&page).expect("a form");
    http.post(link)
        .form(&[("decision", decision), ("nonce", nonce.as_str())])
        .send()
        .await
        .unwrap()
        .status()
}

/// Sends SIGTERM, as systemd stops a service.
pub(crate) async fn terminate(process: &Process) {
    let pid = process.pid().expect("running").to_string();
    let status = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .await
        .unwrap();
    assert!(status.success());
}
