//! File copies with a Windows computer: to and from its shared folder,
//! and a path outside it, through `..`, or with a name Windows reads as a
//! device, refused before anyone is asked. No junction is made in the
//! shared folder here (stable std makes none, and a Linux symbolic link
//! is no reparse point to Wine): the reparse point check stands untested
//! under Wine, and the names the Windows agent refuses are tested in
//! `doorman-files`' `windows_names`.

use super::{COMPUTER, exe_or_skip};
use doorman_client::copy::plan::{CopyOptions, CopyPlan};
use doorman_client::{ConnectError, SessionKind};
use doorman_test_support::wine::WindowsAgent;
use doorman_test_support::world::World;
use std::ffi::OsString;
use std::path::Path;
use std::time::{Duration, SystemTime};

/// `path`, a folder of this side's, as Wine reaches it: its `Z:` drive is
/// this side's `/`.
fn under_wine(path: &Path) -> String {
    format!("Z:{}", path.display()).replace('/', "\\")
}

/// `COMPUTER:PATH` for `path` as Wine reaches it, written with `/` as an
/// operator would.
fn remote(path: &Path) -> OsString {
    OsString::from(format!("{COMPUTER}:Z:{}", path.display()))
}

/// Asks the Windows computer for the copy `args` with `options`, allows
/// it from its recipients' first email (the emails before are `seen`),
/// and returns how it ended.
async fn copy_allowed(
    world: &World,
    args: &[OsString],
    options: CopyOptions,
    seen: usize,
) -> Result<i32, ConnectError> {
    let plan = CopyPlan::new(args, options).expect("a copy plan");
    let copying = world.connect_with(
        COMPUTER,
        &world.operator_token,
        SessionKind::Copy(plan),
        "the figures",
        Box::new(tokio::io::empty()),
    );
    let mails = world.smtp.wait_for_more(seen).await;
    world.click(&mails[0].link(), "allow").await;
    copying.finish().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_windows_computer_copies_files_both_ways() {
    let Some(exe) = exe_or_skip() else { return };
    let dirs = tempfile::tempdir().unwrap();
    let (shared, local, back) = (
        dirs.path().join("shared"),
        dirs.path().join("local"),
        dirs.path().join("back"),
    );
    for dir in [&shared, &local, &back] {
        std::fs::create_dir_all(dir).unwrap();
    }
    let builder = World::builder();
    let world = builder.clone().start().await;
    // Only the Windows computer shares it, by its Windows path; one
    // recipient, one email for each copy.
    let windows = builder
        .files(&[under_wine(&shared).as_str()])
        .recipients(&["it@example.com"]);
    let _agent = WindowsAgent::start(&world, COMPUTER, &windows, &exe).await;

    let sent: Vec<u8> = (0..300_000u32).map(|i| (i % 253) as u8).collect();
    let file = local.join("figures.bin");
    std::fs::write(&file, &sent).unwrap();
    let kept = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000_000);
    std::fs::File::options()
        .write(true)
        .open(&file)
        .unwrap()
        .set_modified(kept)
        .unwrap();

    // Outside the shared folder, through `..`, or a device's name: refused
    // by the computer before anyone is asked.
    let outside = [
        (remote(Path::new("/etc")), "outside the folders"),
        (remote(&shared.join("../local")), "outside the folders"),
        (
            remote(&shared.join("NUL.txt")),
            "Windows reads it as a device",
        ),
    ];
    for (dest, why) in outside {
        let plan = CopyPlan::new(
            &[file.clone().into_os_string(), dest],
            CopyOptions::default(),
        )
        .expect("a copy plan");
        let refused = world.connect_with(
            COMPUTER,
            &world.operator_token,
            SessionKind::Copy(plan),
            "",
            Box::new(tokio::io::empty()),
        );
        match refused.finish().await {
            Err(ConnectError::NotOffered(message)) => assert!(message.contains(why), "{message}"),
            other => panic!("not refused: {other:?}"),
        }
    }
    assert_eq!(world.emails_queued().await, 0, "nobody was asked");

    // To the computer, keeping the time (-p): whole, under its name.
    let keep = CopyOptions {
        keep: true,
        ..CopyOptions::default()
    };
    let to = [file.clone().into_os_string(), remote(&shared)];
    assert_eq!(copy_allowed(&world, &to, keep, 0).await, Ok(0));
    let names: Vec<String> = std::fs::read_dir(&shared)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["figures.bin"], "no temporary file left");
    let landed = shared.join("figures.bin");
    assert_eq!(std::fs::read(&landed).unwrap(), sent);
    let modified = std::fs::metadata(&landed).unwrap().modified().unwrap();
    assert_eq!(modified, kept, "-p kept the modification time");

    // And back from it, the same bytes.
    let from = [remote(&landed), back.clone().into_os_string()];
    let seen = world.smtp.mails().len();
    assert_eq!(
        copy_allowed(&world, &from, CopyOptions::default(), seen).await,
        Ok(0)
    );
    assert_eq!(std::fs::read(back.join("figures.bin")).unwrap(), sent);
}
