//! The `doorman` binary as a user runs it: real processes for server, agent
//! and operator, a real SMTP exchange, real clicks; and bad input on every
//! command line, which must fail with one clear line and change nothing.

use doorman_test_support::SmtpSink;
use doorman_test_support::postgres::Postgres;
use doorman_test_support::process::{Process, after_using_line, listening_address, logged_address};
use doorman_test_support::world::extract_nonce;
use std::path::{Path, PathBuf};
use tokio::process::Command;

const DOORMAN: &str = env!("CARGO_BIN_EXE_doorman");

/// Runs `doorman ARGS` to completion: (exit code, stdout, stderr).
async fn doorman(args: &[&str]) -> (i32, String, String) {
    doorman_test_support::process::run(DOORMAN, args).await
}

/// `doorman connect --server SERVER --token TOKEN REST…` to completion.
async fn connect_once(server: &str, token: &str, rest: &[&str]) -> (i32, String, String) {
    let mut args = vec!["connect", "--server", server, "--token", token];
    args.extend_from_slice(rest);
    doorman(&args).await
}

/// Starts `doorman connect --server SERVER --token TOKEN REST…`.
fn start_connect(server: &str, token: &str, rest: &[&str]) -> Process {
    let mut args = vec!["connect", "--server", server, "--token", token];
    args.extend_from_slice(rest);
    start(&args)
}

/// The `pending` event a `doorman connect --json` process printed.
async fn pending_event(connect: &Process) -> serde_json::Value {
    let text = connect
        .stderr
        .wait_until(|t| t.contains("\"pending\"") && t.ends_with('\n'))
        .await;
    let line = text.lines().find(|l| l.contains("\"pending\"")).unwrap();
    serde_json::from_str(line).unwrap()
}

/// A long-running `doorman` process whose output the test can await.
fn start(args: &[&str]) -> Process {
    Process::start(DOORMAN, args)
}

struct Deployment {
    dir: tempfile::TempDir,
    data: PathBuf,
    url: String,
    token: String,
    key: String,
    server: Process,
    agent: Option<Process>,
    agent_config: PathBuf,
}

fn path(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// Writes an agent's settings file and starts `doorman agent` with it;
/// returns once the agent is online.
async fn start_agent(config: &Path, settings: String) -> Process {
    doorman_test_support::process::start_agent(DOORMAN, config, &settings).await
}

/// `doorman admin WHERE… operator add alice --computers '*'` and `agent add
/// office-pc` (WHERE: `--data-dir DIR` or `--database-url URL`): the token
/// and the key.
async fn operator_and_agent(place: &[&str]) -> (String, String) {
    let token = admin_add(place, &["operator", "add", "alice", "--computers", "*"]).await;
    let key = admin_add(place, &["agent", "add", "office-pc"]).await;
    (token, key)
}

/// `doorman admin --create PLACE… WHAT…` (the first one makes the
/// database), which must succeed and print one line (a token or a key):
/// that line.
async fn admin_add(place: &[&str], what: &[&str]) -> String {
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
async fn deploy(smtp: Option<&SmtpSink>) -> Deployment {
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

async fn click(link: &str, decision: &str) -> reqwest::StatusCode {
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_whole_story_through_the_binary() {
    let smtp = SmtpSink::start().await;
    let deployment = deploy(Some(&smtp)).await;
    let mut connect = start_connect(
        &deployment.url,
        &deployment.token,
        &[
            "office-pc",
            "--json",
            "--reason",
            "printer is broken",
            "--",
            "sh",
            "-c",
            "echo hi; exit 7",
        ],
    );
    let pending = pending_event(&connect).await;
    assert_eq!(pending["expires_in"], 180);
    assert!(
        pending["request_id"]
            .as_str()
            .is_some_and(|id| id.len() == 32)
    );

    let notification = deployment
        .agent
        .as_ref()
        .unwrap()
        .stderr
        .wait_until(|t| t.contains("Email authorization pending"))
        .await;
    assert!(
        notification.contains("alice (127.0.0.1) is connecting"),
        "{notification}"
    );
    assert!(
        notification.contains("it@example.com, owner@example.com"),
        "{notification}"
    );

    let mails = smtp.wait_for(2).await;
    assert_eq!(
        click(&mails[0].link(), "allow").await,
        reqwest::StatusCode::SEE_OTHER
    );
    assert_eq!(connect.exit_code().await, 7);
    assert_eq!(connect.stdout.text(), "hi\n");
    let events: Vec<String> = connect
        .stderr
        .text()
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).expect(l)["event"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .filter(|event| event != "delivery")
        .collect();
    assert_eq!(
        events,
        ["pending", "allowed", "session_started", "session_ended"]
    );

    let (code, audit, _) = doorman(&[
        "admin",
        "--data-dir",
        path(&deployment.data),
        "audit",
        "--json",
    ])
    .await;
    assert_eq!(code, 0);
    let kinds: Vec<String> = audit
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["event"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    for kind in [
        "requested",
        "email_sent",
        "page_viewed",
        "allowed",
        "session_started",
    ] {
        assert!(
            kinds.iter().any(|k| k == kind),
            "{kind} missing from {kinds:?}"
        );
    }
    let allowed = audit.lines().find(|l| l.contains("\"allowed\"")).unwrap();
    assert!(
        allowed.contains("127.0.0.1") && allowed.contains("cli-test-browser/1.0"),
        "who, from where, with what: {allowed}"
    );
    let (_, human, _) = doorman(&["admin", "--data-dir", path(&deployment.data), "audit"]).await;
    assert!(
        human
            .lines()
            .any(|l| l.contains(" allowed ") && l.contains("UTC")),
        "{human}"
    );

    // A settings change reaches the running agent's next connection.
    let (code, _, err) = doorman(&[
        "settings",
        "--config",
        path(&deployment.agent_config),
        "set",
        "--email-timeout",
        "60",
        "--recipients",
        "new@example.org",
    ])
    .await;
    assert_eq!(code, 0, "{err}");
    let next = start_connect(
        &deployment.url,
        &deployment.token,
        &["office-pc", "--json", "--", "true"],
    );
    let pending = next
        .stderr
        .wait_until(|t| t.contains("\"pending\"") && t.ends_with('\n'))
        .await;
    assert!(
        pending.contains("\"expires_in\":60") && pending.contains("n***@example.org"),
        "{pending}"
    );
    drop(next);

    // No secret ever reaches a log.
    let logs = format!(
        "{}{}",
        deployment.server.stderr.text(),
        deployment.agent.as_ref().unwrap().stderr.text()
    );
    let link_token = mails[0].link().rsplit('/').next().unwrap().to_string();
    for secret in [&deployment.token, &deployment.key, &link_token] {
        assert!(
            !logs.contains(secret.as_str()),
            "a secret leaked into the logs"
        );
    }
    drop(deployment.dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_smtp_emails_land_in_the_outbox_for_loopback_browsers() {
    // The usual umask, under which files are world-readable unless their
    // creator says otherwise.
    // SAFETY: umask has no memory effects; every test here wants 022.
    unsafe { libc::umask(0o022) };
    let deployment = deploy(None).await;
    let mut connect = start_connect(
        &deployment.url,
        &deployment.token,
        &["office-pc", "--json", "--", "true"],
    );
    connect
        .stderr
        .wait_until(|t| t.contains("\"pending\""))
        .await;
    let http = reqwest::Client::new();
    let outbox_dir = deployment.data.join("outbox");
    // The server logs each email it has written.
    deployment
        .server
        .stderr
        .wait_until(|t| {
            t.matches("authorization email written to the outbox")
                .count()
                == 2
        })
        .await;
    let page = http
        .get(format!("{}/outbox", deployment.url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(page.matches(">Check Request</a>").count(), 2, "{page}");
    let emls = std::fs::read_dir(&outbox_dir)
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .path()
                .extension()
                .is_some_and(|x| x == "eml")
        })
        .count();
    assert_eq!(emls, 2);
    // Live links, the key and the database are the server's alone.
    let mode = |path: &Path| {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    };
    let data = &deployment.data;
    for dir in [data.clone(), outbox_dir.clone()] {
        assert_eq!(mode(&dir), 0o700, "{}", dir.display());
    }
    for entry in std::fs::read_dir(data)
        .unwrap()
        .chain(std::fs::read_dir(&outbox_dir).unwrap())
    {
        let path = entry.unwrap().path();
        if path.is_file() {
            assert_eq!(mode(&path), 0o600, "{}", path.display());
        }
    }
    assert!(data.join("doorman.db-wal").exists());
    let start = page.find("class=\"check\" href=\"").unwrap() + "class=\"check\" href=\"".len();
    let link = &page[start..start + page[start..].find('"').unwrap()];
    assert!(link.starts_with(&format!("{}/a/", deployment.url)));
    assert_eq!(click(link, "deny").await, reqwest::StatusCode::SEE_OTHER);
    assert_eq!(connect.exit_code().await, 240);
    let last = connect.stderr.text();
    assert!(last.contains("\"denied\""), "{last}");
    assert!(
        last.lines()
            .last()
            .unwrap()
            .starts_with("doorman: authorization denied by "),
        "{last}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_failures_name_their_cause_with_distinct_statuses() {
    let mut deployment = deploy(None).await;
    let url = deployment.url.clone();
    let token = deployment.token.clone();
    let long_reason = "x".repeat(501);
    // (server, token, arguments after the token, status, what stderr says)
    let cases: [(&str, &str, Vec<&str>, i32, &str); 5] = [
        (
            &url,
            "dop_wrong",
            vec!["office-pc", "--", "true"],
            244,
            "doorman: the server refused the operator token",
        ),
        (
            &url,
            &token,
            vec!["nowhere", "--", "true"],
            242,
            "doorman: unknown computer or not permitted: \"nowhere\"",
        ),
        (
            &url,
            &token,
            vec!["office-pc", "--reason", &long_reason, "--", "true"],
            2,
            "--reason must be at most 500 characters",
        ),
        (&url, &token, vec!["office-pc"], 2, "give a command"),
        (
            "http://127.0.0.1:1",
            "dop_x",
            vec!["office-pc", "--", "true"],
            255,
            "cannot reach the server",
        ),
    ];
    for (server, token, rest, status, says) in cases {
        let (code, _, err) = connect_once(server, token, &rest).await;
        assert_eq!(code, status, "{rest:?}: {err}");
        assert!(err.contains(says), "{rest:?}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
    }

    let mut agent = deployment.agent.take().unwrap();
    agent.child.kill().await.unwrap();
    // The server notices the agent's connection closing.
    let mut offline = (0, String::new());
    for _ in 0..100 {
        offline = {
            let (code, _, err) = connect_once(&url, &token, &["office-pc", "--", "true"]).await;
            (code, err)
        };
        if offline.0 == 243 {
            break;
        }
    }
    assert_eq!(
        (offline.0, offline.1.trim()),
        (243, "doorman: computer \"office-pc\" is offline")
    );

    let (code, help, _) = doorman(&["connect", "--help"]).await;
    assert_eq!(code, 0);
    for status in ["240", "241", "242", "243", "244", "245", "130"] {
        assert!(help.contains(status), "--help lists exit status {status}");
    }
    let _ = deployment.server.child.start_kill();
}

#[tokio::test]
async fn settings_are_validated_and_written_atomically() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("agent.toml");
    let original = "# mine\nserver = \"http://127.0.0.1:8080\"\nname = \"office-pc\"\nkey = \"dak_secret-key-AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\"\n\n[desktop_sharing]\nrequire_email_authorization = false\n";
    std::fs::write(&config, original).unwrap();
    let config = path(&config).to_string();

    let (code, out, _) = doorman(&["settings", "--config", &config, "show"]).await;
    assert_eq!(code, 0);
    assert!(
        out.contains("name = \"office-pc\"") && out.contains("email_authorization_timeout = 180"),
        "{out}"
    );
    assert!(
        !out.contains("dak_secret-key-AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"),
        "show masks the key"
    );

    for (args, needle) in [
        (
            vec!["--email-timeout", "4"],
            "desktop_sharing.email_authorization_timeout: must be between 5 and 3600 seconds",
        ),
        (
            vec!["--email-timeout", "3601"],
            "email_authorization_timeout",
        ),
        (
            vec!["--require-email-authorization", "true"],
            "desktop_sharing.recipients: at least one recipient",
        ),
        (
            vec!["--recipients", "it@example.com,not-an-address"],
            "desktop_sharing.recipients[1]: \"not-an-address\" is not a valid email address",
        ),
        (vec![], "nothing to change"),
    ] {
        let mut full = vec!["settings", "--config", &config, "set"];
        full.extend(args.iter().copied());
        let (code, _, err) = doorman(&full).await;
        assert_eq!(code, 1, "{args:?}");
        assert!(err.contains(needle), "{args:?}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
        assert_eq!(
            std::fs::read_to_string(&config).unwrap(),
            original,
            "the file is untouched"
        );
    }
    let (code, _, err) = doorman(&[
        "settings",
        "--config",
        &config,
        "set",
        "--require-email-authorization",
        "maybe",
    ])
    .await;
    assert_eq!(code, 2, "{err}");
    assert_eq!(std::fs::read_to_string(&config).unwrap(), original);

    let (code, out, err) = doorman(&[
        "settings",
        "--config",
        &config,
        "set",
        "--recipients",
        "a@example.com, b@example.org",
        "--email-timeout",
        "60",
        "--require-email-authorization",
        "true",
    ])
    .await;
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("recipients = [\"a@example.com\", \"b@example.org\"]"),
        "{out}"
    );
    let text = std::fs::read_to_string(&config).unwrap();
    assert!(text.starts_with("# mine\n"), "comments kept");
    assert!(text.contains("key = \"dak_secret-key-AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\""));
    assert!(text.contains("email_authorization_timeout = 60"));
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        1,
        "no temporary file left behind"
    );

    let (code, _, err) =
        doorman(&["settings", "--config", "/nonexistent/agent.toml", "show"]).await;
    assert_eq!(code, 1);
    assert!(
        err.contains("cannot read settings file /nonexistent/agent.toml"),
        "{err}"
    );
    assert!(err.trim().ends_with("(pass --config FILE)"), "{err}");
}

#[tokio::test]
async fn admin_and_server_refuse_bad_input_with_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let data = path(&data);
    let (code, _, _) = doorman(&[
        "admin",
        "--create",
        "--data-dir",
        data,
        "operator",
        "add",
        "alice",
    ])
    .await;
    assert_eq!(code, 0);
    let (code, out, err) =
        doorman(&["admin", "--data-dir", data, "operator", "add", "alice"]).await;
    assert_eq!(
        (code, out.as_str(), after_using_line(&err).trim()),
        (1, "", "doorman: operator \"alice\" already exists")
    );
    let (code, out, err) = doorman(&["admin", "--data-dir", data, "operator", "list"]).await;
    assert_eq!((code, out.lines().count()), (0, 1), "{err}");
    assert!(out.starts_with("alice  added 20"), "{out}");
    let (code, token, err) =
        doorman(&["admin", "--data-dir", data, "operator", "rotate", "alice"]).await;
    assert_eq!(code, 0, "{err}");
    assert!(
        token.starts_with("dop_") && token.trim().lines().count() == 1,
        "{token}"
    );
    for command in ["rotate", "remove"] {
        let (code, out, err) =
            doorman(&["admin", "--data-dir", data, "agent", command, "nobody"]).await;
        assert_eq!(
            (code, out.as_str(), after_using_line(&err).trim()),
            (1, "", "doorman: no agent named \"nobody\"")
        );
    }
    let (code, _, err) =
        doorman(&["admin", "--data-dir", data, "operator", "remove", "alice"]).await;
    assert_eq!(
        (code, after_using_line(&err).trim()),
        (
            0,
            "removed operator \"alice\" with its grants and blocks; 0 pending request(s) cancelled; its sessions end within a heartbeat"
        )
    );
    let (code, out, _) = doorman(&["admin", "--data-dir", data, "operator", "list"]).await;
    assert_eq!((code, out.as_str()), (0, ""));
    let (code, _, err) = doorman(&["admin", "--data-dir", data, "agent", "add", "bad name"]).await;
    assert_eq!(code, 1);
    assert!(
        after_using_line(&err).starts_with("doorman: invalid name \"bad name\""),
        "{err}"
    );

    for (option, value, says) in [
        (
            "--public-url",
            "ftp://x",
            "invalid --public-url \"ftp://x\"",
        ),
        ("--mail-from", "nobody", "invalid --mail-from \"nobody\""),
        (
            "--database-url",
            "mysql://db/doorman",
            "unsupported database URL \"mysql://db/doorman\"",
        ),
    ] {
        let (code, _, err) = doorman(&[
            "server",
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
            data,
            option,
            value,
        ])
        .await;
        assert_eq!(code, 1, "{option}: {err}");
        assert!(err.contains(says), "{option}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
    }
    let bad_config = dir.path().join("server.toml");
    std::fs::write(&bad_config, "listen = \"127.0.0.1:0\"\nsmtp = \"x\"\n").unwrap();
    let (code, _, err) = doorman(&["server", "--config", path(&bad_config)]).await;
    assert_eq!(code, 1);
    assert!(err.contains("unknown field `smtp`"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    for (text, says) in [
        (
            "trusted_proxies = [\"10.0.0.0/33\"]\n",
            "\"10.0.0.0/33\" is not an IP address or ADDRESS/PREFIX network",
        ),
        (
            "max_pending_per_operator = 0\n",
            "max_pending_per_operator = 0: must be 1 to 1000",
        ),
    ] {
        std::fs::write(&bad_config, text).unwrap();
        let (code, _, err) = doorman(&["server", "--config", path(&bad_config)]).await;
        assert_eq!(code, 1, "{text}");
        assert!(err.contains("invalid server config"), "{err}");
        assert!(err.contains(says), "{err}");
        assert_eq!(err.trim().lines().count(), 1, "{err}");
    }
    let (code, _, err) = doorman(&["server", "--trusted-proxy", "proxy.example.com"]).await;
    assert_eq!(code, 2, "a usage error: {err}");
    assert!(
        err.lines().next().unwrap().contains(
            "--trusted-proxy <ADDR[/PREFIX]>': \"proxy.example.com\" is not an IP address"
        ),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_of_the_server_loses_nothing() {
    let smtp = SmtpSink::start().await;
    let mut deployment = deploy(Some(&smtp)).await;
    let mut connect = start_connect(
        &deployment.url,
        &deployment.token,
        &[
            "office-pc",
            "--json",
            "--",
            "sh",
            "-c",
            "echo survived; exit 3",
        ],
    );
    connect
        .stderr
        .wait_until(|t| t.contains("\"pending\""))
        .await;
    let mails = smtp.wait_for(2).await;

    deployment.server.child.kill().await.unwrap(); // SIGKILL: no goodbye to anyone
    let address = deployment.url.trim_start_matches("http://").to_string();
    let smtp_url = smtp.url();
    let server = start(&[
        "server",
        "--listen",
        &address,
        "--data-dir",
        path(&deployment.data),
        "--mail-from",
        "doorman@example.com",
        "--smtp-url",
        &smtp_url,
    ]);
    listening_address(&server).await;
    connect
        .stderr
        .wait_until(|t| t.contains("\"reconnecting\""))
        .await;
    deployment
        .agent
        .as_ref()
        .unwrap()
        .stderr
        .wait_until(|t| t.matches("agent online").count() >= 2)
        .await;
    connect
        .stderr
        .wait_until(|t| t.matches("\"event\":\"pending\"").count() == 2)
        .await;

    assert_eq!(
        click(&mails[0].link(), "allow").await,
        reqwest::StatusCode::SEE_OTHER
    );
    assert_eq!(connect.exit_code().await, 3);
    assert_eq!(connect.stdout.text(), "survived\n");
    deployment.server = server;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_dying_mid_session_ends_it_with_a_clear_message() {
    let smtp = SmtpSink::start().await;
    let mut deployment = deploy(Some(&smtp)).await;
    let mut connect = start_connect(
        &deployment.url,
        &deployment.token,
        &["office-pc", "--", "sh", "-c", "echo started; sleep 60"],
    );
    let mails = smtp.wait_for(2).await;
    click(&mails[0].link(), "allow").await;
    connect.stdout.wait_until(|t| t.contains("started")).await;
    deployment
        .agent
        .as_mut()
        .unwrap()
        .child
        .kill()
        .await
        .unwrap();
    assert_eq!(connect.exit_code().await, 246);
    let err = connect.stderr.text();
    let last = err.lines().last().unwrap_or_default();
    assert_eq!(
        last, "doorman: the connection to office-pc closed before the session ended",
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standby_server_takes_over_when_the_active_one_dies() {
    let postgres = Postgres::start().await;
    let database = postgres.new_database().await;
    let smtp = SmtpSink::start().await;
    let dir = tempfile::tempdir().unwrap();
    // Both replicas read one data directory: the same server key.
    let data = dir.path().join("data");
    let (token, key) = operator_and_agent(&["--database-url", &database]).await;

    // Each replica listens on a port of its own choosing (port 0) once it
    // serves; the front learns it from the log line that names it.
    let front = doorman_test_support::front::Front::start(Vec::new()).await;
    let url = front.url();
    let smtp_url = smtp.url();
    let replica = |more: &[&str]| {
        let mut args = vec![
            "server",
            "--listen",
            "127.0.0.1:0",
            "--public-url",
            &url,
            "--data-dir",
            path(&data),
            "--database-url",
            &database,
            "--smtp-url",
            &smtp_url,
            "--mail-from",
            "doorman@example.com",
        ];
        args.extend_from_slice(more);
        start(&args)
    };
    let mut active = replica(&[]);
    front.add_backend(listening_address(&active).await.parse().unwrap());
    let standby = replica(&["--metrics-listen", "127.0.0.1:0"]);
    standby.stderr.wait_until(|t| t.contains("standby")).await;
    // Its metrics are served from the start, and say that it waits.
    let metrics = format!(
        "http://{}/metrics",
        logged_address(&standby, "serving /metrics").await
    );
    let leader = || async {
        let text = reqwest::get(&metrics).await.unwrap().text().await.unwrap();
        text.lines()
            .find_map(|l| l.strip_prefix("doorman_leader "))
            .map(str::to_string)
    };
    assert_eq!(leader().await.as_deref(), Some("0"));
    assert!(
        !standby.stderr.text().contains("listening"),
        "a standby does not accept connections"
    );
    // A replica with another server key is refused when it starts, not when
    // it would take over.
    let other = dir.path().join("other");
    let (code, _, err) = doorman(&[
        "server",
        "--listen",
        "127.0.0.1:0",
        "--data-dir",
        path(&other),
        "--database-url",
        &database,
    ])
    .await;
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("made with another server key"), "{err}");

    let _agent = start_agent(
        &dir.path().join("agent.toml"),
        format!(
            "server = \"{url}\"\nname = \"office-pc\"\nkey = \"{key}\"\n\n[desktop_sharing]\nrequire_email_authorization = true\nrecipients = [\"it@example.com\"]\n"
        ),
    )
    .await;
    let mut connect = start_connect(
        &url,
        &token,
        &[
            "office-pc",
            "--json",
            "--",
            "sh",
            "-c",
            "echo after-failover",
        ],
    );
    let mails = smtp.wait_for(1).await;

    active.child.kill().await.unwrap();
    front.add_backend(listening_address(&standby).await.parse().unwrap());
    // The link from before the failover works on the replica that took over.
    assert_eq!(
        click(&mails[0].link(), "allow").await,
        reqwest::StatusCode::SEE_OTHER
    );
    assert_eq!(connect.exit_code().await, 0, "{}", connect.stderr.text());
    assert_eq!(connect.stdout.text(), "after-failover\n");
    assert_eq!(leader().await.as_deref(), Some("1"));
    assert!(connect.stderr.text().contains("\"event\":\"reconnecting\""));
    // Waiting for the lock is what a standby does, not a slow statement.
    let log = standby.stderr.text();
    assert!(!log.contains("slow statement"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_loses_its_database_lock_stops_serving() {
    let postgres = Postgres::start().await;
    let database = postgres.new_database().await;
    let dir = tempfile::tempdir().unwrap();
    let mut server = start(&[
        "server",
        "--listen",
        "127.0.0.1:0",
        "--data-dir",
        path(dir.path()),
        "--database-url",
        &database,
    ]);
    listening_address(&server).await;
    // Its lock's connection cut, as by a network failure: a standby could
    // take over now, so this server must not go on.
    doorman_test_support::postgres::execute(
        &database,
        "SELECT pg_terminate_backend(pid) FROM pg_locks WHERE locktype = 'advisory' AND granted",
    )
    .await;
    assert_eq!(server.exit_code().await, 1);
    let err = server.stderr.text();
    assert!(
        err.lines()
            .last()
            .unwrap_or_default()
            .contains("lost the database lock"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_whose_key_does_not_match_the_database_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let database = format!("sqlite://{}", dir.path().join("shared.db").display());
    let first = dir.path().join("first");
    let mut server = start(&[
        "server",
        "--listen",
        "127.0.0.1:0",
        "--data-dir",
        path(&first),
        "--database-url",
        &database,
    ]);
    listening_address(&server).await;
    server.child.kill().await.unwrap();

    // Another data directory has another server key: the links already
    // sent would all fail there.
    let second = dir.path().join("second");
    let (code, _, err) = doorman(&[
        "server",
        "--listen",
        "127.0.0.1:0",
        "--data-dir",
        path(&second),
        "--database-url",
        &database,
    ])
    .await;
    assert_eq!(code, 1);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("another server key"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_rules_through_the_binary() {
    let deployment = deploy(None).await;
    let data = path(&deployment.data);
    let (code, token, err) =
        doorman(&["admin", "--data-dir", data, "operator", "add", "bob"]).await;
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains("reaches no computer until granted: doorman admin access grant bob"),
        "{err}"
    );
    let bob = token.trim();
    // Without a grant: exactly what an unknown computer looks like.
    let forbidden = connect_once(&deployment.url, bob, &["office-pc", "--", "true"]).await;
    let unknown = connect_once(&deployment.url, bob, &["nowhere", "--", "true"]).await;
    assert_eq!(forbidden.0, 242);
    assert_eq!(unknown.0, 242);
    assert_eq!(
        forbidden.2.replace("office-pc", "NAME"),
        unknown.2.replace("nowhere", "NAME")
    );
    assert_eq!(
        forbidden.2.trim(),
        "doorman: unknown computer or not permitted: \"office-pc\""
    );

    let (code, _, err) = doorman(&[
        "admin",
        "--data-dir",
        data,
        "access",
        "grant",
        "bob",
        "--computers",
        "office-*",
        "--services",
        "command",
    ])
    .await;
    assert_eq!(code, 0, "{err}");
    let (code, out, _) = doorman(&["admin", "--data-dir", data, "access", "list", "--json"]).await;
    assert_eq!(code, 0);
    let bobs: Vec<serde_json::Value> = out
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .filter(|grant: &serde_json::Value| grant["operator"] == "bob")
        .collect();
    assert_eq!(bobs.len(), 1, "{out}");
    assert_eq!(bobs[0]["computers"], "office-*");
    assert_eq!(bobs[0]["services"], serde_json::json!(["command"]));
    // A granted computer asks for approval now; a shell is still refused
    // (no terminal here: forward is the other ungranted service).
    let mut asking = start_connect(&deployment.url, bob, &["office-pc", "--json", "--", "true"]);
    asking
        .stderr
        .wait_until(|t| t.contains("\"pending\""))
        .await;
    let forward = connect_once(&deployment.url, bob, &["office-pc", "-L", "0:127.0.0.1:9"]).await;
    assert_eq!(forward.0, 242, "{}", forward.2);

    // Bad input names the problem and changes nothing.
    for (args, says) in [
        (
            vec!["grant", "bob", "--computers", "a b"],
            "computer pattern",
        ),
        (
            vec!["grant", "bob", "--computers", "x", "--services", "desk"],
            "unknown service \"desk\"",
        ),
        (
            vec!["revoke", "bob", "--computers", "lab-*"],
            "no grant of computers named \"lab-*\"",
        ),
        (
            vec!["grant", "nobody", "--computers", "*"],
            "no operator named \"nobody\"",
        ),
    ] {
        let mut full = vec!["admin", "--data-dir", data, "access"];
        full.extend(args.iter().copied());
        let (code, _, err) = doorman(&full).await;
        assert_ne!(code, 0, "{args:?}");
        assert!(err.contains(says), "{args:?}: {err}");
    }
    let (_, after, _) = doorman(&["admin", "--data-dir", data, "access", "list", "--json"]).await;
    assert_eq!(after, out, "refused commands changed nothing");

    let (code, _, err) = doorman(&[
        "admin",
        "--data-dir",
        data,
        "access",
        "revoke",
        "bob",
        "--computers",
        "office-*",
    ])
    .await;
    assert_eq!(code, 0, "{err}");
    // Issue 31: what the revocation did, with words in the right number.
    assert!(
        err.contains("revoked; 1 pending request cancelled; no running session is affected"),
        "{err}"
    );
    // (The waiting connect hears of it within a heartbeat, 20 s here; the
    // in-process tests pin that with a short one.)
    let (_, audit, _) = doorman(&["admin", "--data-dir", data, "audit", "--json"]).await;
    assert!(
        audit
            .lines()
            .any(|line| line.contains("\"event\":\"cancelled\"")
                && line.contains("the operator's access to this computer was revoked")),
        "{audit}"
    );
    asking.child.kill().await.unwrap();

    // Issue 25: a name removed and added again is someone new, who reaches
    // nothing the old one did (the old bob's grants went with him).
    let admin = ["admin", "--data-dir", data];
    let grant = [
        &admin[..],
        &["access", "grant", "bob", "--computers", "*"][..],
    ]
    .concat();
    let (code, _, err) = doorman(&grant).await;
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = doorman(&[&admin[..], &["operator", "remove", "bob"][..]].concat()).await;
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("with its grants and blocks"), "{err}");
    let (code, token, err) = doorman(&[&admin[..], &["operator", "add", "bob"][..]].concat()).await;
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("reaches no computer until granted"), "{err}");
    let (_, list, _) = doorman(&[&admin[..], &["access", "list", "--json"][..]].concat()).await;
    assert!(!list.contains("\"bob\""), "{list}");
    let refused = connect_once(&deployment.url, token.trim(), &["office-pc", "--", "true"]).await;
    assert_eq!(refused.0, 242, "{}", refused.2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_consent_through_the_binary() {
    let deployment = deploy(None).await;
    let config = path(&deployment.agent_config);
    // Set through `doorman settings`, applied to the next request.
    let (code, out, err) = doorman(&[
        "settings",
        "--config",
        config,
        "set",
        "--local-consent",
        "alternative",
        "--max-session-seconds",
        "600",
    ])
    .await;
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("local_consent = \"alternative\""), "{out}");
    let (code, _, err) = doorman(&[
        "settings",
        "--config",
        config,
        "set",
        "--local-consent",
        "sometimes",
    ])
    .await;
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("local consent"), "{err}");

    let (code, _, err) = doorman(&["consent", "--config", config, "list"]).await;
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("no request is waiting"), "{err}");

    let mut connect = start_connect(
        &deployment.url,
        &deployment.token,
        &[
            "office-pc",
            "--json",
            "--reason",
            "at the desk",
            "--",
            "echo",
            "hello",
        ],
    );
    let pending = pending_event(&connect).await;
    let id = pending["request_id"].as_str().unwrap().to_string();
    let (code, out, err) = doorman(&["consent", "--config", config, "list"]).await;
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with(&id), "{out}");
    assert!(
        out.contains("alice (127.0.0.1) wants to run echo hello"),
        "{out}"
    );
    assert!(out.contains("\"at the desk\""), "{out}");
    let (code, out, err) = doorman(&["consent", "--config", config, "status"]).await;
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.trim(), "online; 1 request(s) waiting here");

    let (code, _, err) = doorman(&["consent", "--config", config, "allow", "nope"]).await;
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("no request \"nope\" is waiting"), "{err}");
    let (code, _, err) = doorman(&["consent", "--config", config, "allow", &id[..8]]).await;
    assert_eq!(code, 0, "{err}");
    assert!(err.contains(&format!("allowed request {id}")), "{err}");
    assert_eq!(connect.exit_code().await, 0);
    assert_eq!(connect.stdout.text(), "hello\n");
    let session = connect.stderr.text();
    assert!(session.contains("\"time_limit_secs\":600"), "{session}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_never_creates_a_database_by_accident_and_one_server_holds_a_data_directory() {
    let dir = tempfile::tempdir().unwrap();
    let typo = dir.path().join("dat");
    // Without --create every command refuses a directory without a
    // database, in one line naming it, and creates nothing.
    for command in [
        vec!["audit"],
        vec!["operator", "list"],
        vec!["blocks", "list"],
        vec!["operator", "add", "alice"],
        vec!["agent", "add", "pc"],
    ] {
        let mut args = vec!["admin", "--data-dir", path(&typo)];
        args.extend(command.iter().copied());
        let (code, out, err) = doorman(&args).await;
        assert_eq!((code, out.as_str()), (1, ""), "{command:?}");
        assert!(
            err.contains(&format!(
                "no Doorman database at {}",
                typo.join("doorman.db").display()
            )),
            "{command:?}: {err}"
        );
        assert!(err.contains("pass --create"), "{command:?}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "{command:?}: {err}");
        assert!(!typo.exists(), "{command:?} created {}", typo.display());
    }
    // Asked to, it says which database it made and how the server finds it.
    let data = dir.path().join("data");
    let (code, _, err) = doorman(&[
        "admin",
        "--data-dir",
        path(&data),
        "agent",
        "add",
        "pc",
        "--create",
    ])
    .await;
    assert_eq!(code, 0, "{err}");
    let database = data.join("doorman.db");
    assert_eq!(
        err.lines().next(),
        Some(format!("doorman admin: using {}", database.display()).as_str()),
        "{err}"
    );
    assert!(
        after_using_line(&err).contains(&format!(
            "created a new Doorman database {}; start the server with --data-dir {}",
            database.display(),
            data.display()
        )),
        "{err}"
    );
    let (_, _, err) = doorman(&[
        "admin",
        "--create",
        "--data-dir",
        path(&data),
        "agent",
        "add",
        "pc2",
    ])
    .await;
    assert!(!err.contains("created"), "{err}");
    let (code, _, err) = doorman(&[
        "admin",
        "--data-dir",
        path(&data),
        "blocks",
        "lift",
        "alice",
        "pc",
    ])
    .await;
    assert_eq!(code, 1);
    assert!(err.contains("no block of operator"), "{err}");

    // A second server on the same data directory is refused while the first runs.
    let first = start(&[
        "server",
        "--listen",
        "127.0.0.1:0",
        "--data-dir",
        path(&data),
    ]);
    listening_address(&first).await;
    let (code, _, err) = doorman(&[
        "server",
        "--listen",
        "127.0.0.1:0",
        "--data-dir",
        path(&data),
    ])
    .await;
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("another doorman server is running on this data directory"),
        "{err}"
    );
    assert_eq!(err.trim().lines().count(), 1, "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_whose_key_is_refused_says_how_to_fix_it_and_takes_the_fix_at_once() {
    let mut deployment = deploy(None).await;
    let mut agent = deployment.agent.take().unwrap();
    agent.child.kill().await.unwrap();
    let config = deployment.dir.path().join("wrong.toml");
    let settings = |key: &str| {
        format!(
            "server = \"{}\"\nname = \"office-pc\"\nkey = \"{key}\"\n",
            deployment.url
        )
    };
    let wrong = format!("dak_{}", "B".repeat(43));
    std::fs::write(&config, settings(&wrong)).unwrap();
    let agent = start(&["agent", "--config", path(&config)]);
    let log = agent
        .stderr
        .wait_until(|t| t.contains("the server refused this agent's key"))
        .await;
    assert!(log.contains("ERROR"), "{log}");
    assert!(log.contains("doorman admin agent add"), "{log}");
    // Issue 31: the server's words and the settings file are fields of
    // their own, labelled, not run together with the message.
    let line = log
        .lines()
        .find(|l| l.contains("the server refused this agent's key"))
        .unwrap();
    assert!(
        line.contains(&format!(
            "key there changes server_said=\"invalid agent name or key\" settings={}",
            config.display()
        )),
        "{line}"
    );
    // The right key is taken without waiting out the five minutes.
    std::fs::write(&config, settings(&deployment.key)).unwrap();
    agent
        .stderr
        .wait_until(|t| t.contains("agent online"))
        .await;
}

#[tokio::test]
async fn a_missing_server_or_token_names_its_environment_variable() {
    let (code, _, err) = doorman(&["connect", "office-pc", "--", "true"]).await;
    assert_eq!(code, 2, "{err}");
    assert_eq!(
        err.trim(),
        "doorman: no server: pass --server URL or set DOORMAN_SERVER"
    );
    let (code, _, err) = doorman(&[
        "connect",
        "office-pc",
        "--server",
        "http://127.0.0.1:1",
        "--",
        "true",
    ])
    .await;
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("set DOORMAN_TOKEN"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_agent_with_the_same_key_displaces_the_first_which_says_so_and_stands_aside() {
    let deployment = deploy(None).await;
    let first = deployment.agent.as_ref().unwrap();
    let copy = deployment.dir.path().join("copy.toml");
    std::fs::copy(&deployment.agent_config, &copy).unwrap();
    let second = start(&["agent", "--config", path(&copy)]);
    second
        .stderr
        .wait_until(|t| t.contains("agent online"))
        .await;
    let log = first
        .stderr
        .wait_until(|t| t.contains("took this one's place"))
        .await;
    assert!(log.contains("ERROR"), "{log}");
    assert!(
        log.contains("give each computer its own name and key"),
        "{log}"
    );
    let server_log = deployment
        .server
        .stderr
        .wait_until(|t| t.contains("two agents sharing a key?"))
        .await;
    assert_eq!(server_log.matches("two agents sharing a key?").count(), 1);
}

#[tokio::test]
async fn errors_say_what_to_do_without_repeating_themselves() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope.toml");
    let (code, _, err) = doorman(&["settings", "--config", path(&missing), "show"]).await;
    assert_eq!(code, 1);
    assert_eq!(err.matches("No such file or directory").count(), 1, "{err}");

    let config = dir.path().join("agent.toml");
    let key = format!("dak_{}", "A".repeat(43));
    std::fs::write(
        &config,
        format!(
            "server = \"https://x.example\"\nname = \"pc\"\nkey = \"{key}\"\nca = \"ca.pem\"\n"
        ),
    )
    .unwrap();
    let (code, _, err) = doorman(&["settings", "--config", path(&config), "show"]).await;
    assert_eq!(code, 1);
    assert!(
        err.contains("ca = ") && err.contains("does not exist"),
        "{err}"
    );

    std::fs::write(
        &config,
        format!("server = \"http://x.example\"\nname = \"pc\"\nkey = \"{key}\"\n"),
    )
    .unwrap();
    let (code, _, err) = doorman(&[
        "settings",
        "--config",
        path(&config),
        "set",
        "--email-timeout",
        "2",
    ])
    .await;
    assert_eq!(code, 1);
    assert!(err.contains("nothing was written"), "{err}");

    let data = dir.path().join("data");
    let server_key = data.join("server.key");
    let (code, _, err) = doorman(&[
        "server",
        "--listen",
        "127.0.0.1:0",
        "--data-dir",
        path(&data),
        "--tls-cert",
        path(&server_key),
        "--tls-key",
        path(&server_key),
    ])
    .await;
    assert_eq!(code, 1);
    assert!(err.contains("is DATA_DIR/server.key"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exit_statuses_241_245_and_128_plus_n_through_the_binary() {
    let smtp = SmtpSink::start().await;
    let deployment = deploy(Some(&smtp)).await;
    let config = path(&deployment.agent_config);
    // 245: a forward target the computer does not offer.
    let (code, _, err) = connect_once(
        &deployment.url,
        &deployment.token,
        &["office-pc", "-L", "0:127.0.0.1:9"],
    )
    .await;
    assert_eq!(code, 245, "{err}");
    assert!(err.contains("is not offered on this computer"), "{err}");

    // 128+N: the remote command killed by signal 9.
    let mut connect = start_connect(
        &deployment.url,
        &deployment.token,
        &["office-pc", "--json", "--", "sh", "-c", "kill -9 $$"],
    );
    pending_event(&connect).await;
    let mails = smtp.wait_for(2).await;
    assert_eq!(
        click(&mails[0].link(), "allow").await,
        reqwest::StatusCode::SEE_OTHER
    );
    assert_eq!(connect.exit_code().await, 128 + 9);

    // 241: nobody decides within the (shortest) timeout.
    let (code, _, err) = doorman(&[
        "settings",
        "--config",
        config,
        "set",
        "--email-timeout",
        "5",
    ])
    .await;
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = connect_once(
        &deployment.url,
        &deployment.token,
        &["office-pc", "--", "true"],
    )
    .await;
    assert_eq!(code, 241, "{err}");
    assert!(err.contains("authorization expired"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopping_a_tls_server_or_agent_is_an_ordinary_end_in_both_logs() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let certs = doorman_test_support::tls::generate(&dir.path().join("certs"));
    let key = admin_add(&["--data-dir", path(&data)], &["agent", "add", "office-pc"]).await;
    let mut server = start(&[
        "server",
        "--listen",
        "127.0.0.1:0",
        "--data-dir",
        path(&data),
        "--tls-cert",
        path(&certs.cert),
        "--tls-key",
        path(&certs.key),
    ]);
    let url = format!("https://{}", listening_address(&server).await);
    let config = dir.path().join("agent.toml");
    let settings = format!(
        "server = \"{url}\"\nname = \"office-pc\"\nkey = \"{key}\"\nca = \"{}\"\n",
        path(&certs.ca)
    );
    // A stopped agent is an ordinary end on the server's side.
    let mut agent = start_agent(&config, settings.clone()).await;
    terminate(&agent).await;
    assert_eq!(agent.exit_code().await, 0);
    server
        .stderr
        .wait_until(|t| t.contains("agent offline"))
        .await;
    let logged = server.stderr.text();
    assert!(logged.contains("agent hung up"), "{logged}");
    assert!(!logged.contains("close_notify"), "{logged}");

    let agent = start_agent(&config, settings).await;
    server
        .stderr
        .wait_until(|t| t.matches("agent online").count() == 2)
        .await;

    terminate(&server).await;
    assert_eq!(server.exit_code().await, 0);
    let said = agent
        .stderr
        .wait_until(|t| t.contains("the server closed the connection"))
        .await;
    // Up to that line: a normal end at INFO, not a TLS truncation warning.
    let before_reconnecting = said
        .split("reconnecting")
        .next()
        .expect("the line is there");
    assert!(!before_reconnecting.contains("WARN"), "{said}");
    assert!(!said.contains("close_notify"), "{said}");
    let logged = server.stderr.text();
    assert!(!logged.contains("WARN"), "{logged}");
    assert!(logged.contains("doorman server stopped"), "{logged}");
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_smtps_relay_of_a_private_ca_needs_smtp_ca_and_then_gets_the_emails() {
    use doorman_test_support::smtp::{SinkTls, SmtpTls};
    let dir = tempfile::tempdir().unwrap();
    let certs = doorman_test_support::tls::generate(&dir.path().join("certs"));
    let sink = SmtpSink::start_with(SinkTls::new(SmtpTls::Implicit, &certs)).await;
    let data = dir.path().join("data");
    let (token, key) = operator_and_agent(&["--data-dir", path(&data)]).await;

    // A CA without a server to use it for, or for a plain connection, is a
    // mistake named in one line.
    let server_args = |extra: &[&str]| {
        let mut args = vec![
            "server".to_string(),
            "--listen".into(),
            "127.0.0.1:0".into(),
            "--data-dir".into(),
            path(&data).into(),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        args
    };
    for (extra, says) in [
        (
            vec!["--smtp-ca", path(&certs.ca)],
            "--smtp-ca needs --smtp-url",
        ),
        (
            vec![
                "--smtp-url",
                "smtp://127.0.0.1:25",
                "--smtp-ca",
                path(&certs.ca),
            ],
            "a CA is for a TLS connection",
        ),
    ] {
        let args = server_args(&extra);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let (code, _, err) = doorman(&args).await;
        assert_eq!(code, 1, "{err}");
        assert!(err.contains(says), "{err}");
        assert_eq!(err.trim().lines().count(), 1, "{err}");
    }

    let run = |extra: Vec<String>| {
        let args = server_args(&[]);
        let mut args: Vec<String> = args;
        args.extend(extra);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        start(&args)
    };
    let agent_config = dir.path().join("agent.toml");
    let ask = |url: String| {
        start_connect(
            &url,
            &token,
            &["office-pc", "--json", "--", "echo", "delivered"],
        )
    };

    // Without the CA, the relay's certificate is not trusted: the operator
    // sees the delivery retried with the reason, and nothing arrives.
    let mut server = run(vec!["--smtp-url".into(), sink.url()]);
    let url = format!("http://{}", listening_address(&server).await);
    let settings = format!(
        "server = \"{url}\"\nname = \"office-pc\"\nkey = \"{key}\"\n\n[desktop_sharing]\nrequire_email_authorization = true\nrecipients = [\"it@example.com\"]\n"
    );
    let agent = start_agent(&agent_config, settings).await;
    let untrusted = ask(url);
    let said = untrusted
        .stderr
        .wait_until(|t| t.contains("\"state\":\"retrying\""))
        .await;
    assert!(said.contains("certificate"), "{said}");
    assert!(sink.mails().is_empty());
    drop((untrusted, agent));
    // Gone before the next one takes the data directory.
    server.child.kill().await.unwrap();

    let mut server = run(vec![
        "--smtp-url".into(),
        sink.url(),
        "--smtp-ca".into(),
        path(&certs.ca).into(),
    ]);
    let url = format!("http://{}", listening_address(&server).await);
    let settings = format!(
        "server = \"{url}\"\nname = \"office-pc\"\nkey = \"{key}\"\n\n[desktop_sharing]\nrequire_email_authorization = true\nrecipients = [\"it@example.com\"]\n"
    );
    let _agent = start_agent(&agent_config, settings).await;
    let mut connect = ask(url);
    let mails = sink.wait_for(1).await;
    assert!(mails[0].encrypted);
    assert_eq!(
        click(&mails[0].link(), "allow").await,
        reqwest::StatusCode::SEE_OTHER
    );
    assert_eq!(connect.exit_code().await, 0, "{}", connect.stderr.text());
    assert_eq!(connect.stdout.text(), "delivered\n");
    terminate(&server).await;
    assert_eq!(server.exit_code().await, 0);
}
