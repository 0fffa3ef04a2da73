//! The whole story through the `doorman` binary: real processes for server,
//! agent and operator, a real SMTP exchange (plain, and SMTPS to a relay of
//! a private CA), real clicks; and without SMTP, the outbox.

use crate::cli::{
    click, deploy, doorman, operator_and_agent, path, pending_event, start, start_agent,
    start_connect, terminate,
};
use doorman_test_support::SmtpSink;
use doorman_test_support::process::listening_address;
use std::path::Path;

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
        [
            "pending",
            "allowed",
            "identity",
            "session_started",
            "session_ended"
        ]
    );
    // The email shows the start of the fingerprint the computer proved to
    // the operator, for both to compare.
    let stderr = connect.stderr.text();
    let identity = stderr.lines().find(|l| l.contains("\"identity\"")).unwrap();
    let identity: serde_json::Value = serde_json::from_str(identity).unwrap();
    assert_eq!(identity["known"], false, "{identity}");
    let fingerprint = identity["fingerprint"].as_str().unwrap();
    let text = mails[0].text();
    let shown = text
        .lines()
        .find_map(|l| l.strip_prefix("Identity:   "))
        .and_then(|l| l.split(' ').next())
        .unwrap_or_else(|| panic!("no identity in the email: {text}"));
    assert!(shown.len() > "SHA256:".len() + 8, "{shown}");
    assert!(fingerprint.starts_with(shown), "{fingerprint} vs {shown}");

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
