//! `doorman admin agent invite` and `doorman agent join` as people run them
//! (issue 31): the one line the administrator gets, the settings it writes
//! on the computer (0600), the agent that then comes online; over TLS with
//! `tls init`'s private CA, which the URL pins; `--start` and what it
//! needs; and every refusal in one line, with nothing written.

use doorman_test_support::process::{Process, listening_address};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

const DOORMAN: &str = env!("CARGO_BIN_EXE_doorman");
/// A code of the right form that no invitation has.
const UNKNOWN: &str = "dji_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";

fn path(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// `doorman ARGS…` to completion, with stdin closed and these environment
/// variables set: (exit code, stdout, stderr).
async fn doorman_with(args: &[&str], env: &[(&str, &Path)]) -> (i32, String, String) {
    let mut command = tokio::process::Command::new(DOORMAN);
    command
        .args(args)
        .env_remove("DOORMAN_AGENT_CONFIG")
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    for (name, value) in env {
        command.env(name, value);
    }
    let output = tokio::time::timeout(Duration::from_secs(60), command.output())
        .await
        .unwrap_or_else(|_| panic!("doorman {args:?} did not finish within 60 s"))
        .expect("doorman runs");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).to_string(),
        String::from_utf8_lossy(&output.stderr).to_string(),
    )
}

/// `doorman admin --data-dir DATA ARGS…`.
async fn admin(data: &Path, args: &[&str]) -> (i32, String, String) {
    let mut all = vec!["admin", "--data-dir", path(data)];
    all.extend_from_slice(args);
    doorman_with(&all, &[]).await
}

/// `doorman agent join URL --config CONFIG`.
async fn join(url: &str, config: &Path) -> (i32, String, String) {
    doorman_with(&["agent", "join", url, "--config", path(config)], &[]).await
}

/// Invites NAME: the URL on the one line printed.
async fn invite(data: &Path, name: &str) -> String {
    let (code, out, err) = admin(data, &["agent", "invite", name]).await;
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.lines().count(), 1, "{out}");
    assert!(err.contains("the code works once"), "{err}");
    out.trim()
        .strip_prefix("doorman agent join '")
        .and_then(|quoted| quoted.strip_suffix('\''))
        .expect("the line to run on the computer")
        .to_string()
}

/// `doorman server` on a free loopback port with DATA; it and its URL.
async fn start_server(data: &Path) -> (Process, String) {
    let server = Process::start(
        DOORMAN,
        &[
            "server",
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
            path(data),
        ],
    );
    let address = listening_address(&server).await;
    (server, address)
}

/// A refusal: one line, exit status 1.
fn refused(code: i32, err: &str, says: &str) {
    assert_eq!(code, 1, "{err}");
    // `doorman admin` says first which database it used.
    let err = match err.split_once('\n') {
        Some((first, rest)) if first.starts_with("doorman admin: using ") => rest,
        _ => err,
    };
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains(says), "not {says:?}: {err}");
}

/// No file in the directory `config` was to be written in.
fn nothing_written(config: &Path) {
    let left: Vec<PathBuf> = std::fs::read_dir(config.parent().unwrap())
        .map(|entries| entries.flatten().map(|entry| entry.path()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "written: {left:?}");
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

async fn agent_online(config: &Path) -> Process {
    let agent = Process::start(DOORMAN, &["agent", "--config", path(config)]);
    agent
        .stderr
        .wait_until(|t| t.contains("agent online"))
        .await;
    agent
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_computer_joins_with_the_one_line_the_administrator_got() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    // Before the server has started, nothing says where it is.
    let (code, _, err) = admin(&data, &["--create", "operator", "add", "carol"]).await;
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = admin(&data, &["agent", "invite", "lab-pc"]).await;
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("start the server once, or pass --public-url"),
        "{err}"
    );
    let (_server, address) = start_server(&data).await;
    let server = format!("http://{address}");
    let url = invite(&data, "lab-pc").await;
    assert!(url.starts_with(&format!("{server}/join/dji_")), "{url}");

    // Damaged URLs are refused before anything is sent or written.
    let config = dir.path().join("lab/agent.toml");
    for (bad, says) in [
        (
            url[..url.len() - 1].to_string(),
            "the join URL's code is damaged",
        ),
        (url.replace("/join/", "/joins/"), "not a join URL"),
        (
            format!("{url}#ca=sha256:12"),
            "the join URL's CA hash is damaged",
        ),
        (
            url.replace("127.0.0.1", "doorman.example.com"),
            "refusing http:// to doorman.example.com",
        ),
    ] {
        let (code, _, err) = join(&bad, &config).await;
        refused(code, &err, says);
        assert!(!config.parent().unwrap().exists(), "{bad}");
    }
    // A code the server does not know.
    let (code, _, err) = join(&format!("{server}/join/{UNKNOWN}"), &config).await;
    refused(code, &err, "(404 Not Found): no such invitation");
    nothing_written(&config);

    let (code, out, err) = join(&url, &config).await;
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("Joined"), "{out}");
    assert!(out.contains("Email authorization is off"), "{out}");
    assert!(
        out.contains(&format!("doorman agent --config {}", config.display())),
        "{out}"
    );
    assert!(
        out.contains("systemctl --user enable --now doorman-agent"),
        "{out}"
    );
    assert_eq!(mode(&config), 0o600);
    let text = std::fs::read_to_string(&config).unwrap();
    assert!(text.contains("name = \"lab-pc\""), "{text}");
    assert!(text.contains(&format!("server = \"{server}\"")), "{text}");

    // Once only; and a settings file is never replaced.
    let again = dir.path().join("again/agent.toml");
    let (code, _, err) = join(&url, &again).await;
    refused(code, &err, "this invitation was used at");
    nothing_written(&again);
    let (code, _, err) = join(&url, &config).await;
    refused(
        code,
        &err,
        "already exists: nothing was written; pass --config for another file",
    );
    assert_eq!(std::fs::read_to_string(&config).unwrap(), text);

    let _agent = agent_online(&config).await;

    let (code, audit, err) = admin(&data, &["audit", "--json"]).await;
    assert_eq!(code, 0, "{err}");
    for kind in [
        "invitation_created",
        "invitation_redeemed",
        "invitation_refused",
    ] {
        assert!(audit.contains(&format!("\"event\":\"{kind}\"")), "{audit}");
    }
    let code_part = url.rsplit('/').next().unwrap();
    assert!(!audit.contains(code_part), "the code is never audited");

    // --expires takes 30m, 24h, 7d; from a minute to 30 days.
    let (code, _, err) = admin(&data, &["agent", "invite", "x", "--expires", "5y"]).await;
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("is not a duration"), "{err}");
    let (code, _, err) = admin(&data, &["agent", "invite", "x", "--expires", "31d"]).await;
    refused(code, &err, "an invitation is valid for 1 minute to 30 days");
    let (code, out, err) = admin(&data, &["agent", "invite", "x", "--expires", "30m"]).await;
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("doorman agent join "), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_tls_the_join_url_pins_the_private_ca_of_tls_init() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (code, out, err) = admin(
        &data,
        &["tls", "init", "--name", "localhost", "--ip", "127.0.0.1"],
    )
    .await;
    assert_eq!(code, 0, "{err}");
    let fingerprint = out
        .lines()
        .find_map(|l| l.strip_prefix("SHA-256 fingerprint: "))
        .expect("a fingerprint")
        .replace(':', "")
        .to_ascii_lowercase();
    let (_server, address) = start_server(&data).await;
    let url = invite(&data, "lab-pc").await;
    assert!(
        url.starts_with(&format!("https://{address}/join/")),
        "{url}"
    );
    let (_, hash) = url.split_once("#ca=sha256:").expect("the URL pins the CA");
    assert_eq!(hash, fingerprint);

    // Another CA's hash: the server does not present it, so the code is
    // never sent and nothing is written.
    let last = if hash.ends_with('0') { "1" } else { "0" };
    let altered = format!("{}{last}", &url[..url.len() - 1]);
    let config = dir.path().join("lab/agent.toml");
    let (code, _, err) = join(&altered, &config).await;
    refused(code, &err, "does not come with the CA the join URL pins");
    nothing_written(&config);

    let (code, out, err) = join(&url, &config).await;
    assert_eq!(code, 0, "{err}");
    let ca = dir.path().join("lab/agent.ca.pem");
    assert!(out.contains(&ca.display().to_string()), "{out}");
    assert_eq!((mode(&config), mode(&ca)), (0o600, 0o600));
    let load = doorman_wire::tls::load_certificates;
    assert_eq!(load(&ca).unwrap(), load(&data.join("tls/ca.pem")).unwrap());
    let text = std::fs::read_to_string(&config).unwrap();
    assert!(text.contains("ca = \"agent.ca.pem\""), "{text}");
    let _agent = agent_online(&config).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn join_start_checks_what_it_needs_before_the_invitation_is_used() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (_server, _) = start_server(&data).await;
    let url = invite(&data, "lab-pc").await;
    let xdg = dir.path().join("xdg");
    let service_config = xdg.join("doorman/agent.toml");
    let bin = dir.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    let calls = dir.path().join("systemctl-calls");
    let systemctl = bin.join("systemctl");
    std::fs::write(
        &systemctl,
        format!("#!/bin/sh\necho \"$@\" >> '{}'\n", path(&calls)),
    )
    .unwrap();
    std::fs::set_permissions(&systemctl, std::fs::Permissions::from_mode(0o755)).unwrap();
    let empty = dir.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let start = |config: &Path, path_dir: &Path| {
        let args = [
            "agent",
            "join",
            url.as_str(),
            "--config",
            path(config),
            "--start",
        ]
        .map(str::to_string);
        let env = [
            ("XDG_CONFIG_HOME", xdg.clone()),
            ("PATH", path_dir.to_path_buf()),
        ];
        async move {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            let env: Vec<(&str, &Path)> = env.iter().map(|(k, v)| (*k, v.as_path())).collect();
            doorman_with(&args, &env).await
        }
    };

    // Another file than the one the user service reads.
    let other = dir.path().join("other/agent.toml");
    let (code, _, err) = start(&other, &bin).await;
    refused(
        code,
        &err,
        &format!(
            "--start starts the user service doorman-agent, which reads {}",
            service_config.display()
        ),
    );
    assert!(!other.exists());
    // No systemctl.
    let (code, _, err) = start(&service_config, &empty).await;
    refused(code, &err, "--start needs systemctl, which is not on PATH");
    assert!(!service_config.exists());

    // The invitation was never used: with both, it joins and starts.
    let (code, out, err) = start(&service_config, &bin).await;
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("Started the user service doorman-agent"),
        "{out}"
    );
    assert_eq!(
        std::fs::read_to_string(&calls).unwrap(),
        "--user enable --now doorman-agent\n"
    );
    assert_eq!(mode(&service_config), 0o600);
}

/// `-` reads the URL from standard input, where other users of the
/// computer cannot read it as they can a command's arguments (`ps`); the
/// whole line `invite` printed is taken too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn join_reads_the_url_from_standard_input_with_a_dash() {
    use tokio::io::AsyncWriteExt;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (_server, _) = start_server(&data).await;
    let url = invite(&data, "lab-pc").await;
    let config = dir.path().join("lab/agent.toml");
    let mut child = tokio::process::Command::new(DOORMAN)
        .args(["agent", "join", "-", "--config", path(&config)])
        .env_remove("DOORMAN_AGENT_CONFIG")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("doorman runs");
    let mut stdin = child.stdin.take().expect("its standard input");
    let line = format!("doorman agent join '{url}'\n");
    stdin.write_all(line.as_bytes()).await.unwrap();
    drop(stdin);
    let output = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
        .await
        .expect("doorman agent join finished within 60 s")
        .expect("doorman agent join ran");
    let err = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{err}");
    let text = std::fs::read_to_string(&config).unwrap();
    assert!(text.contains("name = \"lab-pc\""), "{text}");
    assert_eq!(mode(&config), 0o600);
}
