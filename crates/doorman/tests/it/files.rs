//! Issue 27, through the real agent process: a copy that cannot be written
//! whole on the computer (here its file size limit stands in for a full
//! disk: the write fails as it would with ENOSPC) fails that file alone,
//! says why, leaves nothing half-written, and the agent goes on serving.

use doorman_client::copy::plan::{CopyOptions, CopyPlan};
use doorman_client::{SessionKind, exit};
use doorman_store::Principal;
use doorman_test_support::World;
use doorman_test_support::process::Process;

const DOORMAN: &str = env!("CARGO_BIN_EXE_doorman");

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_the_computer_cannot_write_whole_fails_alone_and_leaves_nothing() {
    if std::process::Command::new("prlimit")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("SKIPPED: prlimit (util-linux) is not installed");
        return;
    }
    let world = World::builder().without_email_authorization().start().await;
    let dir = tempfile::tempdir().unwrap();
    let shared = dir.path().join("shared");
    let local = dir.path().join("local");
    std::fs::create_dir_all(&shared).unwrap();
    std::fs::create_dir_all(&local).unwrap();
    let key = doorman_server::admin::add(world.broker.store(), Principal::Agent, "lab-pc")
        .await
        .unwrap();
    let config = dir.path().join("agent.toml");
    std::fs::write(
        &config,
        format!(
            "server = \"{}\"\nname = \"lab-pc\"\nkey = \"{key}\"\n\n[desktop_sharing]\nrequire_email_authorization = false\n\n[services]\nfiles = [{:?}]\n",
            world.url,
            shared.to_str().unwrap()
        ),
    )
    .unwrap();
    // Files of at most 64 KiB on the computer.
    let _agent = Process::start(
        "prlimit",
        &[
            "--fsize=65536",
            DOORMAN,
            "agent",
            "--config",
            config.to_str().unwrap(),
        ],
    );
    world.wait_for_agent("lab-pc", true).await;

    std::fs::write(local.join("small.txt"), "small").unwrap();
    std::fs::write(local.join("large.bin"), vec![7u8; 200_000]).unwrap();
    let args = [
        local.join("large.bin").into_os_string(),
        local.join("small.txt").into_os_string(),
        format!("lab-pc:{}", shared.display()).into(),
    ];
    let plan = CopyPlan::new(&args, CopyOptions::default()).unwrap();
    let copying = world.connect_with(
        "lab-pc",
        &world.operator_token,
        SessionKind::Copy(plan.clone()),
        "",
        Box::new(tokio::io::empty()),
    );
    let progress = copying.progress.clone();
    assert_eq!(copying.finish().await, Ok(exit::PARTLY_COPIED));
    let said = progress.text();
    assert!(said.contains("large.bin: File too large"), "{said}");
    let names: Vec<String> = std::fs::read_dir(&shared)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["small.txt"], "nothing half-written: {names:?}");

    // The agent is still there for the next copy.
    std::fs::remove_file(local.join("large.bin")).unwrap();
    std::fs::write(local.join("large.bin"), "now small").unwrap();
    let copying = world.connect_with(
        "lab-pc",
        &world.operator_token,
        SessionKind::Copy(plan),
        "",
        Box::new(tokio::io::empty()),
    );
    assert_eq!(copying.finish().await, Ok(0));
    assert_eq!(
        std::fs::read_to_string(shared.join("large.bin")).unwrap(),
        "now small"
    );
}
