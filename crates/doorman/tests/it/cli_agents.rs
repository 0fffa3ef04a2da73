//! `doorman agent` as the computer's owner runs it: its death ends a
//! session with a clear message, a refused key says how to fix it, and a
//! second agent with the same key displaces the first.

use crate::cli::{click, deploy, path, start, start_connect};
use doorman_test_support::SmtpSink;

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
