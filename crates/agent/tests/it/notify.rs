//! The remote computer is told: `notify_command` runs for every event with
//! the event's details in `DOORMAN_*` environment variables.

use doorman_client::ConnectError;
use doorman_test_support::World;
use std::path::Path;
use std::time::Duration;

/// The events written so far, one map of variables per event.
fn events(file: &Path) -> Vec<std::collections::BTreeMap<String, String>> {
    let text = std::fs::read_to_string(file).unwrap_or_default();
    text.split("---\n")
        .filter(|block| !block.trim().is_empty())
        .map(|block| {
            block
                .lines()
                .filter_map(|line| line.split_once('='))
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        })
        .collect()
}

/// Waits (10 s at most) until `n` events were written. The commands run as
/// separate processes the agent does not wait for, so there is no event to
/// await in-process; the file is checked every 20 ms.
async fn wait_for_events(file: &Path, n: usize) -> Vec<std::collections::BTreeMap<String, String>> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let found = events(file);
        if found.len() >= n || tokio::time::Instant::now() > deadline {
            return found;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notify_command_gets_every_event_with_its_details() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("events");
    let command = format!(
        "env | grep ^DOORMAN_ | sort >> {0}; echo --- >> {0}",
        file.display()
    );
    let world = World::builder()
        .recipients(&["it@example.com"])
        .notify_command(&command)
        .start()
        .await;
    let connecting = world.connect(&["sh", "-c", "exit 4"], "printer");
    connecting.event("pending").await;
    let waiting = wait_for_events(&file, 1).await;
    let first = &waiting[0];
    assert_eq!(first["DOORMAN_EVENT"], "waiting_for_authorization");
    assert_eq!(first["DOORMAN_OPERATOR"], "alice");
    assert_eq!(first["DOORMAN_OPERATOR_IP"], "127.0.0.1");
    assert_eq!(first["DOORMAN_REASON"], "printer");
    assert_eq!(first["DOORMAN_RECIPIENTS"], "it@example.com");
    assert_eq!(first["DOORMAN_EXPIRES_IN"], "180");

    let mails = world.smtp.wait_for(1).await;
    world.click(&mails[0].link(), "allow").await;
    assert_eq!(connecting.finish().await, Ok(4));
    let all = wait_for_events(&file, 4).await;
    let names: Vec<&str> = all.iter().map(|e| e["DOORMAN_EVENT"].as_str()).collect();
    assert_eq!(
        names,
        [
            "waiting_for_authorization",
            "allowed",
            "session_started",
            "session_ended"
        ]
    );
    assert_eq!(all[1]["DOORMAN_DECIDED_BY"], "it@example.com");
    assert!(all[3]["DOORMAN_STATUS"].contains('4'), "{:?}", all[3]);

    let denied = world.connect(&["true"], "again");
    denied.event("pending").await;
    let mails = world.smtp.wait_for(2).await;
    world.click(&mails[1].link(), "deny").await;
    assert!(
        matches!(denied.finish().await, Err(ConnectError::Denied { by }) if by == "it@example.com"),
        "denied by the recipient who clicked"
    );
    let all = wait_for_events(&file, 6).await;
    assert_eq!(all[5]["DOORMAN_EVENT"], "denied");
    assert_eq!(all[5]["DOORMAN_REASON"], "again");
}
