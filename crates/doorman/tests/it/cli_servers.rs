//! `doorman server` as an operator runs it: `kill -9` loses nothing, a
//! standby takes over, a lost database lock or a key that does not match
//! stops it, `admin` never creates a database by accident, one server holds
//! a data directory, and stopping is an ordinary end.

use crate::cli::{
    admin_add, click, deploy, doorman, operator_and_agent, path, start, start_agent, start_connect,
    terminate,
};
use doorman_test_support::SmtpSink;
use doorman_test_support::postgres::Postgres;
use doorman_test_support::process::{after_using_line, listening_address, logged_address};

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
