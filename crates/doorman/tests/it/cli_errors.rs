//! Bad input and failures on the `doorman` command line: each fails with
//! one clear line that says what to do, a distinct exit status, and
//! changes nothing.

use crate::cli::{click, connect_once, deploy, doorman, path, pending_event, start_connect};
use doorman_test_support::SmtpSink;
use doorman_test_support::process::after_using_line;

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
