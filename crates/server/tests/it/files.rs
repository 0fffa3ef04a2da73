//! Issue 27: files copied to and from a computer's shared folders, approved
//! like any session: the email says what and where, each file lands whole
//! under its name or not at all, the audit trail lists each one with its
//! SHA-256, and paths outside the shared folders are refused before
//! anyone is asked.

use doorman_client::copy::plan::{CopyOptions, CopyPlan};
use doorman_client::{ConnectError, SessionKind};
use doorman_test_support::World;
use doorman_test_support::world::COMPUTER;
use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// A computer sharing one folder, `shared`, and a folder of this side's.
struct Setup {
    world: World,
    _dirs: tempfile::TempDir,
    shared: PathBuf,
    local: PathBuf,
}

async fn setup(email: bool) -> Setup {
    let dirs = tempfile::tempdir().unwrap();
    let shared = dirs.path().join("shared");
    let local = dirs.path().join("local");
    std::fs::create_dir_all(&shared).unwrap();
    std::fs::create_dir_all(&local).unwrap();
    let builder = World::builder().files(&[shared.to_str().unwrap()]);
    let builder = if email {
        builder
    } else {
        builder.without_email_authorization()
    };
    Setup {
        world: builder.start().await,
        _dirs: dirs,
        shared,
        local,
    }
}

fn remote(path: &Path) -> OsString {
    let mut arg = OsString::from(format!("{COMPUTER}:"));
    arg.push(path);
    arg
}

fn plan(args: &[&OsStr], recursive: bool, keep: bool) -> SessionKind {
    let options = CopyOptions {
        recursive,
        keep,
        resume: false,
    };
    plan_with(args, options)
}

fn plan_with(args: &[&OsStr], options: CopyOptions) -> SessionKind {
    let args: Vec<OsString> = args.iter().map(|a| a.to_os_string()).collect();
    SessionKind::Copy(CopyPlan::new(&args, options).unwrap())
}

/// Every file's name in `dir`, sorted: what a copy left there.
fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

fn sha256_hex(bytes: &[u8]) -> String {
    ring::digest::digest(&ring::digest::SHA256, bytes)
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_copy_to_the_computer_is_approved_by_email_and_lands_whole() {
    let Setup {
        world,
        shared,
        local,
        _dirs,
    } = setup(true).await;
    let incoming = shared.join("incoming");
    std::fs::create_dir(&incoming).unwrap();
    let (a, b) = (local.join("a.txt"), local.join("b.bin"));
    std::fs::write(&a, "alpha\n").unwrap();
    let big: Vec<u8> = (0..600_000u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(&b, &big).unwrap();

    let session = plan(
        &[a.as_os_str(), b.as_os_str(), &remote(&incoming)],
        false,
        false,
    );
    let copying = world.connect_for(session, "the quarterly figures");
    let id = copying.request_id().await;
    let mails = world.smtp.wait_for(2).await;
    let says = format!("copy 2 files (585.9 KiB) to {}", incoming.display());
    assert!(mails[0].text().contains(&says), "{}", mails[0].text());
    let (_, page) = world.page(&world.link_of(&id, 0)).await;
    assert!(page.contains(&says), "{page}");
    assert!(names(&incoming).is_empty(), "nothing before the Allow");

    world.click(&mails[0].link(), "allow").await;
    let progress = copying.progress.clone();
    assert_eq!(copying.finish().await, Ok(0));
    assert_eq!(
        names(&incoming),
        ["a.txt", "b.bin"],
        "no temporary file left"
    );
    assert_eq!(std::fs::read(incoming.join("b.bin")).unwrap(), big);
    assert!(
        progress.text().contains("\"event\":\"copy_ended\""),
        "{}",
        progress.text()
    );

    let audited = world.wait_for_audits("file_copied", 2).await;
    let detail = audited[1].detail.clone().unwrap_or_default();
    let path = incoming.join("b.bin");
    assert_eq!(
        detail,
        format!(
            "to the computer: {} (600000 bytes, sha256 {})",
            path.display(),
            sha256_hex(&big)
        )
    );
    assert_eq!(audited[1].actor.as_deref(), Some("alice"));
    let ended = world.wait_for_audit("session_ended").await;
    assert_eq!(
        ended.detail.as_deref(),
        Some("ended: copied 2 files (585.9 KiB)")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tree_comes_back_with_r_keeping_modes_and_times_with_p() {
    let Setup {
        world,
        shared,
        local,
        _dirs,
    } = setup(false).await;
    let tree = shared.join("tree");
    std::fs::create_dir_all(tree.join("sub")).unwrap();
    std::fs::write(tree.join("top.txt"), "top").unwrap();
    std::fs::write(tree.join("sub/deep.txt"), "deep").unwrap();
    std::fs::set_permissions(tree.join("top.txt"), PermissionsExt::from_mode(0o640)).unwrap();
    let old = std::fs::File::options()
        .write(true)
        .open(tree.join("sub/deep.txt"))
        .unwrap();
    old.set_modified(std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000_000))
        .unwrap();
    drop(old);

    let session = plan(&[&remote(&tree), local.as_os_str()], true, true);
    let copying = world.connect_for(session, "");
    assert_eq!(copying.finish().await, Ok(0));
    let copy = local.join("tree");
    assert_eq!(
        std::fs::read_to_string(copy.join("top.txt")).unwrap(),
        "top"
    );
    assert_eq!(
        std::fs::read_to_string(copy.join("sub/deep.txt")).unwrap(),
        "deep"
    );
    let top = std::fs::metadata(copy.join("top.txt")).unwrap();
    assert_eq!(top.mode() & 0o7777, 0o640);
    let deep = std::fs::metadata(copy.join("sub/deep.txt")).unwrap();
    assert_eq!(deep.mtime(), 1_000_000_000);
    let audited = world.wait_for_audits("file_copied", 2).await;
    assert!(
        audited.iter().all(|e| e
            .detail
            .as_deref()
            .unwrap_or("")
            .starts_with("from the computer: ")),
        "{audited:?}"
    );

    // Without -r, a directory is not copied, and says so.
    let session = plan(
        &[&remote(&tree), local.join("again").as_os_str()],
        false,
        false,
    );
    let copying = world.connect_for(session, "");
    let progress = copying.progress.clone();
    assert_eq!(
        copying.finish().await,
        Ok(doorman_client::exit::PARTLY_COPIED)
    );
    assert!(
        progress.text().contains("copy it with -r"),
        "{}",
        progress.text()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paths_outside_the_shared_folders_are_refused_before_anyone_is_asked() {
    let Setup {
        world,
        shared,
        local,
        _dirs,
    } = setup(true).await;
    let file = local.join("a");
    std::fs::write(&file, "a").unwrap();
    let escape = shared.join("../elsewhere");
    for dest in [PathBuf::from("/etc"), escape] {
        let session = plan(&[file.as_os_str(), &remote(&dest)], false, false);
        let result = world.connect_for(session, "").finish().await;
        match result {
            Err(ConnectError::NotOffered(message)) => {
                assert!(message.contains("outside the folders"), "{message}")
            }
            other => panic!("not refused: {other:?}"),
        }
    }
    assert_eq!(world.emails_queued().await, 0, "nobody was asked");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_computer_sharing_no_folder_offers_no_copy() {
    let world = World::builder().start().await;
    let dir = tempfile::tempdir().unwrap();
    let session = plan(
        &[&remote(Path::new("/tmp/x")), dir.path().as_os_str()],
        false,
        false,
    );
    let result = world.connect_for(session, "").finish().await;
    assert_eq!(
        result,
        Err(ConnectError::NotOffered(
            "file copies are not offered on this computer".into()
        ))
    );
    assert_eq!(result.unwrap_err().exit_code(), 245);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_symlink_leading_out_of_the_shared_folder_is_not_followed() {
    let Setup {
        world,
        shared,
        local,
        _dirs,
    } = setup(false).await;
    let secret = _dirs.path().join("secret");
    std::fs::create_dir(&secret).unwrap();
    std::fs::write(secret.join("key"), "secret").unwrap();
    std::os::unix::fs::symlink(&secret, shared.join("out")).unwrap();
    std::fs::write(local.join("planted"), "planted").unwrap();

    // Neither read through it…
    let session = plan(
        &[&remote(&shared.join("out/key")), local.as_os_str()],
        false,
        false,
    );
    let copying = world.connect_for(session, "");
    let progress = copying.progress.clone();
    assert_eq!(
        copying.finish().await,
        Ok(doorman_client::exit::PARTLY_COPIED)
    );
    assert!(!local.join("key").exists());
    assert!(
        progress.text().contains("file_failed"),
        "{}",
        progress.text()
    );
    // … nor written through it.
    let session = plan(
        &[
            local.join("planted").as_os_str(),
            &remote(&shared.join("out/planted")),
        ],
        false,
        false,
    );
    let result = world.connect_for(session, "").finish().await;
    assert!(
        result.is_err() || result == Ok(doorman_client::exit::PARTLY_COPIED),
        "{result:?}"
    );
    assert!(!secret.join("planted").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn names_with_newlines_and_invalid_utf8_go_both_ways_byte_exact() {
    let Setup {
        world,
        shared,
        local,
        _dirs,
    } = setup(false).await;
    let odd = OsStr::from_bytes(b"line\nbreak\xff.txt");
    std::fs::write(local.join(odd), "odd").unwrap();
    let session = plan(
        &[local.join(odd).as_os_str(), &remote(&shared)],
        false,
        false,
    );
    let copying = world.connect_for(session, "");
    assert_eq!(copying.finish().await, Ok(0));
    assert_eq!(std::fs::read(shared.join(odd)).unwrap(), b"odd");
    let audited = world.wait_for_audit("file_copied").await;
    let detail = audited.detail.unwrap_or_default();
    assert!(detail.contains("line\\nbreak\\xff.txt"), "{detail}");

    let back = local.join("back");
    std::fs::create_dir(&back).unwrap();
    let session = plan(
        &[&remote(&shared.join(odd)), back.as_os_str()],
        false,
        false,
    );
    assert_eq!(world.connect_for(session, "").finish().await, Ok(0));
    assert_eq!(std::fs::read(back.join(odd)).unwrap(), b"odd");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_file_that_cannot_be_written_leaves_the_others_copied() {
    let Setup {
        world,
        shared,
        local,
        _dirs,
    } = setup(false).await;
    // On the computer, `b` is a directory: the file b cannot land there.
    std::fs::create_dir(shared.join("b")).unwrap();
    for name in ["a", "b", "c"] {
        std::fs::write(local.join(name), name).unwrap();
    }
    let sources: Vec<PathBuf> = ["a", "b", "c"].iter().map(|n| local.join(n)).collect();
    let dest = remote(&shared);
    let mut args: Vec<&OsStr> = sources.iter().map(|p| p.as_os_str()).collect();
    args.push(&dest);
    let copying = world.connect_for(plan(&args, false, false), "");
    let progress = copying.progress.clone();
    let result = copying.finish().await;
    assert_eq!(result, Ok(doorman_client::exit::PARTLY_COPIED));
    assert_eq!(std::fs::read_to_string(shared.join("a")).unwrap(), "a");
    assert_eq!(std::fs::read_to_string(shared.join("c")).unwrap(), "c");
    assert!(shared.join("b").is_dir());
    let text = progress.text();
    assert!(text.contains("is a directory"), "{text}");
    assert!(text.contains("\"failed\":1"), "{text}");
    assert_eq!(names(&shared), ["a", "b", "c"], "no temporary file left");
}

/// `--resume`: a file whose start is already there (left by a copy cut
/// short as `.NAME.doorman.part`) continues from there when that start is
/// the file's own, checked by SHA-256, either way; otherwise it starts
/// afresh.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_continues_a_file_whose_start_matches_and_restarts_one_that_does_not() {
    let Setup {
        world,
        shared,
        local,
        _dirs,
    } = setup(false).await;
    let big: Vec<u8> = (0..700_000u32).map(|i| (i % 253) as u8).collect();
    std::fs::write(local.join("big.bin"), &big).unwrap();
    let resume = CopyOptions {
        resume: true,
        ..CopyOptions::default()
    };

    // To the computer: half of it is there.
    std::fs::write(shared.join(".big.bin.doorman.part"), &big[..300_000]).unwrap();
    let args = [local.join("big.bin").into_os_string(), remote(&shared)];
    let args: Vec<&OsStr> = args.iter().map(|a| a.as_os_str()).collect();
    let copying = world.connect_for(plan_with(&args, resume), "");
    let progress = copying.progress.clone();
    assert_eq!(copying.finish().await, Ok(0));
    assert!(
        progress.text().contains("\"event\":\"file_resumed\"")
            && progress.text().contains("\"offset\":300000"),
        "{}",
        progress.text()
    );
    assert_eq!(std::fs::read(shared.join("big.bin")).unwrap(), big);
    assert_eq!(names(&shared), ["big.bin"], "the part is gone");

    // A start that is not the file's: sent whole.
    std::fs::remove_file(shared.join("big.bin")).unwrap();
    std::fs::write(shared.join(".big.bin.doorman.part"), b"something else").unwrap();
    let copying = world.connect_for(plan_with(&args, resume), "");
    let progress = copying.progress.clone();
    assert_eq!(copying.finish().await, Ok(0));
    assert!(
        !progress.text().contains("file_resumed"),
        "{}",
        progress.text()
    );
    assert_eq!(std::fs::read(shared.join("big.bin")).unwrap(), big);

    // From the computer: a third of it is here.
    let back = local.join("back");
    std::fs::create_dir(&back).unwrap();
    std::fs::write(back.join(".big.bin.doorman.part"), &big[..200_000]).unwrap();
    let args = [
        remote(&shared.join("big.bin")),
        back.clone().into_os_string(),
    ];
    let args: Vec<&OsStr> = args.iter().map(|a| a.as_os_str()).collect();
    let copying = world.connect_for(plan_with(&args, resume), "");
    let progress = copying.progress.clone();
    assert_eq!(copying.finish().await, Ok(0));
    assert!(
        progress.text().contains("\"offset\":200000"),
        "{}",
        progress.text()
    );
    assert_eq!(std::fs::read(back.join("big.bin")).unwrap(), big);
    assert_eq!(names(&back), ["big.bin"]);
}

/// `--resume`: the side that receives answers each file with what it has
/// of it, and the sender waits for that answer. A file that cannot land
/// (a directory in its way) is answered too, so it fails alone, either
/// way, instead of both sides waiting for each other for ever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_resume_a_file_that_cannot_land_fails_alone() {
    let Setup {
        world,
        shared,
        local,
        _dirs,
    } = setup(false).await;
    let resume = CopyOptions {
        resume: true,
        ..CopyOptions::default()
    };
    std::fs::create_dir(shared.join("b")).unwrap();
    for name in ["a", "b"] {
        std::fs::write(local.join(name), name).unwrap();
    }
    let args = [
        local.join("b").into_os_string(),
        local.join("a").into_os_string(),
        remote(&shared),
    ];
    let args: Vec<&OsStr> = args.iter().map(|a| a.as_os_str()).collect();
    let copying = world.connect_for(plan_with(&args, resume), "");
    assert_eq!(
        copying.finish().await,
        Ok(doorman_client::exit::PARTLY_COPIED)
    );
    assert_eq!(std::fs::read_to_string(shared.join("a")).unwrap(), "a");

    // Back: here, `c` is a directory.
    std::fs::write(shared.join("c"), "c").unwrap();
    let back = local.join("back");
    std::fs::create_dir_all(back.join("c")).unwrap();
    let args = [
        remote(&shared.join("c")),
        remote(&shared.join("a")),
        back.clone().into_os_string(),
    ];
    let args: Vec<&OsStr> = args.iter().map(|a| a.as_os_str()).collect();
    let copying = world.connect_for(plan_with(&args, resume), "");
    assert_eq!(
        copying.finish().await,
        Ok(doorman_client::exit::PARTLY_COPIED)
    );
    assert_eq!(std::fs::read_to_string(back.join("a")).unwrap(), "a");
}

/// The email says what will arrive, and the computer takes no more: a file
/// that grew between the asking and the approval fails alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_that_grew_since_the_copy_was_asked_for_is_not_taken() {
    let Setup {
        world,
        shared,
        local,
        _dirs,
    } = setup(true).await;
    let (a, b) = (local.join("a.txt"), local.join("b.log"));
    std::fs::write(&a, "alpha").unwrap();
    std::fs::write(&b, "12345").unwrap();
    let session = plan(
        &[a.as_os_str(), b.as_os_str(), &remote(&shared)],
        false,
        false,
    );
    let copying = world.connect_for(session, "the logs");
    let _id = copying.request_id().await;
    let mails = world.smtp.wait_for(2).await;
    let says = format!("copy 2 files (10 B) to {}", shared.display());
    assert!(mails[0].text().contains(&says), "{}", mails[0].text());
    std::fs::write(&b, "1234567890").unwrap();
    world.click(&mails[0].link(), "allow").await;
    let progress = copying.progress.clone();
    assert_eq!(
        copying.finish().await,
        Ok(doorman_client::exit::PARTLY_COPIED)
    );
    let text = progress.text();
    assert!(
        text.contains("more than the 2 files (10 B) approved"),
        "{text}"
    );
    assert_eq!(names(&shared), ["a.txt"], "no temporary file left");
}
