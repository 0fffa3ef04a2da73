//! The agent's settings through the `doorman` binary: validated and written
//! atomically, access rules, and local consent.

use crate::cli::{connect_once, deploy, doorman, path, pending_event, start_connect};

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
