//! `--log-format json`: every line of the server's log is a JSON object, and
//! a connection's request id, computer and operator travel as span fields.

use doorman_test_support::SmtpSink;
use doorman_test_support::process::{Process, run, start_agent};

const DOORMAN: &str = env!("CARGO_BIN_EXE_doorman");

fn lines(log: &str) -> Vec<serde_json::Value> {
    log.lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}")))
        .collect()
}

/// The first logged event whose message is `message`.
fn event<'a>(events: &'a [serde_json::Value], message: &str) -> &'a serde_json::Value {
    events
        .iter()
        .find(|e| e["fields"]["message"] == message)
        .unwrap_or_else(|| panic!("no {message:?} in {events:#?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_json_log_carries_request_computer_and_operator_as_span_fields() {
    let smtp = SmtpSink::start().await;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let data = data.to_str().unwrap();
    let admin = |what: &'static [&'static str]| async move {
        let mut args = vec!["admin", "--create", "--data-dir", data];
        args.extend_from_slice(what);
        let (code, out, err) = run(DOORMAN, &args).await;
        assert_eq!(code, 0, "{err}");
        out.trim().to_string()
    };
    let token = admin(&["operator", "add", "alice", "--computers", "*"]).await;
    let key = admin(&["agent", "add", "office-pc"]).await;
    let server = Process::start(
        DOORMAN,
        &[
            "server",
            "--log-format",
            "json",
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
            data,
            "--smtp-url",
            &smtp.url(),
        ],
    );
    let log = server
        .stderr
        .wait_until(|t| t.contains("doorman server listening") && t.ends_with('\n'))
        .await;
    let events = lines(&log);
    let listening = event(&events, "doorman server listening");
    assert_eq!(listening["level"], "INFO");
    let url = format!(
        "http://{}",
        listening["fields"]["address"].as_str().unwrap()
    );

    let _agent = start_agent(
        DOORMAN,
        &dir.path().join("agent.toml"),
        &format!(
            "server = \"{url}\"\nname = \"office-pc\"\nkey = \"{key}\"\n\n[desktop_sharing]\nrequire_email_authorization = true\nrecipients = [\"it@example.com\"]\n"
        ),
    )
    .await;
    let _connect = Process::start(
        DOORMAN,
        &[
            "connect",
            "--server",
            &url,
            "--token",
            &token,
            "office-pc",
            "--",
            "true",
        ],
    );
    smtp.wait_for(1).await;
    let log = server
        .stderr
        .wait_until(|t| {
            t.contains("authorization email sent")
                && t.contains("authorization requested")
                && t.ends_with('\n')
        })
        .await;
    let events = lines(&log);

    let agent_online = event(&events, "agent online");
    assert_eq!(agent_online["spans"][0]["name"], "agent");
    assert_eq!(agent_online["spans"][0]["computer"], "office-pc");

    let sent = event(&events, "authorization email sent");
    let email = &sent["spans"][0];
    assert_eq!(email["name"], "email");
    assert_eq!(email["computer"], "office-pc");
    let request = email["request"].as_str().unwrap();
    assert_eq!(request.len(), 32, "{sent}");
    assert_eq!(sent["fields"]["to"], "it@example.com");
    assert!(
        sent["fields"].get("request").is_none(),
        "the request id is the span's, not repeated on the line: {sent}"
    );

    let requested = event(&events, "authorization requested");
    assert_eq!(requested["fields"]["recipients"], 1);
    let operator = &requested["spans"][0];
    assert_eq!(operator["name"], "operator");
    assert_eq!(operator["operator"], "alice");
    assert_eq!(operator["computer"], "office-pc");
    assert_eq!(operator["request"], request);
}
