//! Issue 31, "Words", through the binary: what a new user read where they
//! stopped. `connect --help` names each environment variable once, `blocks
//! list` with none says so, `doorman consent` says the agent is not running
//! (whose socket goes when it stops), `settings show` and `settings set`
//! print `ca` alike, and the README says recipients' phones need the
//! private CA.

use doorman_test_support::process::{Process, listening_address, output_of, run};
use std::path::Path;
use tokio::process::Command;

const DOORMAN: &str = env!("CARGO_BIN_EXE_doorman");
const KEY: &str = "dak_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";

fn path(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

#[tokio::test]
async fn connect_help_names_each_environment_variable_once() {
    let (code, help, err) = run(DOORMAN, &["connect", "--help"]).await;
    assert_eq!(code, 0, "{err}");
    for variable in ["DOORMAN_SERVER", "DOORMAN_TOKEN"] {
        assert_eq!(help.matches(variable).count(), 1, "{variable}: {help}");
    }
}

#[tokio::test]
async fn blocks_list_with_none_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let place = ["admin", "--data-dir", path(&data)];
    let add = [&place[..], &["--create", "operator", "add", "alice"][..]].concat();
    output_of(DOORMAN, &add).await;
    let list = [&place[..], &["blocks", "list"][..]].concat();
    let (code, out, err) = run(DOORMAN, &list).await;
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, "", "stdout stays empty for scripts");
    assert!(
        err.contains("no block is in force: no operator is kept from any computer"),
        "{err}"
    );
    // A script asking for JSON gets no line at all.
    let json = [&place[..], &["blocks", "list", "--json"][..]].concat();
    let (code, out, err) = run(DOORMAN, &json).await;
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, "");
    assert!(!err.contains("no block is in force"), "{err}");
}

/// Sends SIGTERM, as systemd stops a service.
async fn terminate(process: &Process) {
    let pid = process.pid().expect("running").to_string();
    let status = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .await
        .unwrap();
    assert!(status.success());
}

/// `doorman consent --config CONFIG status`: (exit code, stdout, stderr).
async fn consent_status(config: &Path) -> (i32, String, String) {
    run(DOORMAN, &["consent", "--config", path(config), "status"]).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consent_says_the_agent_is_not_running_once_it_stopped_or_died() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let key = output_of(
        DOORMAN,
        &[
            "admin",
            "--data-dir",
            path(&data),
            "--create",
            "agent",
            "add",
            "office-pc",
        ],
    )
    .await;
    let server = Process::start(
        DOORMAN,
        &[
            "server",
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
            path(&data),
        ],
    );
    let url = format!("http://{}", listening_address(&server).await);
    let config = dir.path().join("agent.toml");
    let settings = format!("server = \"{url}\"\nname = \"office-pc\"\nkey = \"{key}\"\n");
    let socket = dir.path().join("agent.consent.sock");

    let mut agent = doorman_test_support::process::start_agent(DOORMAN, &config, &settings).await;
    assert!(socket.exists(), "the running agent listens on its socket");
    let (code, out, err) = consent_status(&config).await;
    assert_eq!(code, 0, "{err}");
    // (It may not say online yet: the agent marks itself so a moment after
    // its log line.)
    assert!(out.contains("waiting here"), "the agent answered: {out}");

    // Stopped: the socket goes with it.
    terminate(&agent).await;
    assert_eq!(agent.exit_code().await, 0);
    assert!(!socket.exists(), "the stopped agent removed its socket");
    let (code, _, err) = consent_status(&config).await;
    assert_eq!(code, 1);
    let not_running = format!(
        "doorman: the agent is not running: nothing answers at {}",
        socket.display()
    );
    assert!(err.starts_with(&not_running), "{err}");
    assert!(err.contains("start `doorman agent`"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");

    // Killed: its socket stays behind, and nothing answers there either.
    let mut agent = doorman_test_support::process::start_agent(DOORMAN, &config, &settings).await;
    agent.child.kill().await.unwrap();
    assert!(socket.exists(), "a killed agent cannot remove its socket");
    let (code, _, err) = consent_status(&config).await;
    assert_eq!(code, 1);
    assert!(err.starts_with(&not_running), "{err}");
    drop(server);
}

#[tokio::test]
async fn settings_show_and_set_print_ca_alike() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("agent.toml");
    std::fs::write(dir.path().join("ca.pem"), "checked when dialing, not here").unwrap();
    std::fs::write(
        &config,
        format!(
            "server = \"https://x.example\"\nname = \"pc\"\nkey = \"{KEY}\"\nca = \"ca.pem\"\n"
        ),
    )
    .unwrap();
    let ca_line = |out: &str| {
        out.lines()
            .find(|line| line.starts_with("ca = "))
            .unwrap_or_else(|| panic!("no ca line: {out}"))
            .to_string()
    };
    let (code, shown, err) = run(DOORMAN, &["settings", "--config", path(&config), "show"]).await;
    assert_eq!(code, 0, "{err}");
    let (code, set, err) = run(
        DOORMAN,
        &[
            "settings",
            "--config",
            path(&config),
            "set",
            "--email-timeout",
            "60",
        ],
    )
    .await;
    assert_eq!(code, 0, "{err}");
    // Both print the path the agent uses: beside the settings file.
    assert_eq!(ca_line(&shown), ca_line(&set));
    let beside = dir.path().join("ca.pem");
    assert!(ca_line(&shown).contains(path(&beside)), "{shown}");
    // The file itself keeps what was written.
    let text = std::fs::read_to_string(&config).unwrap();
    assert!(text.contains("ca = \"ca.pem\""), "{text}");
}

#[test]
fn the_readme_says_recipients_phones_need_the_private_ca() {
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../README.md");
    let readme = std::fs::read_to_string(file).expect("the README");
    let tls_init = readme
        .find("tls init --name doorman.internal")
        .expect("the README shows tls init");
    let after = &readme[tls_init..];
    let phones = after
        .find("Recipients' phones need the private CA too")
        .expect("the phones are mentioned after tls init");
    let paragraph = after[phones..].split("\n\n").next().unwrap_or_default();
    assert!(paragraph.contains("--acme-domain"), "{paragraph}");
    assert!(paragraph.contains("certificate warning"), "{paragraph}");
}
