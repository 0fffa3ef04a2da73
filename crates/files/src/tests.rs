//! The confinement of file paths to the shared folders, against the ways
//! out: `..`, absolute paths elsewhere, and symlinks at any component,
//! including one swapped in after the path was resolved.

use super::place::{Kept, PlaceError, Roots};
use std::ffi::OsStr;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

struct Folders {
    _dir: tempfile::TempDir,
    home: std::path::PathBuf,
    shared: std::path::PathBuf,
    secret: std::path::PathBuf,
}

fn folders() -> Folders {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    let shared = home.join("Shared");
    let secret = dir.path().join("secret");
    for path in [&home, &shared, &secret] {
        std::fs::create_dir_all(path).unwrap();
    }
    std::fs::write(secret.join("key"), "secret").unwrap();
    std::fs::write(shared.join("report.txt"), "report").unwrap();
    Folders {
        _dir: dir,
        home,
        shared,
        secret,
    }
}

fn roots(folders: &Folders) -> Roots {
    Roots::new(&["~/Shared".to_string()], &folders.home)
}

fn refused_outside(result: Result<impl std::fmt::Debug, PlaceError>) {
    match result {
        Err(PlaceError::OutsideRoots { .. }) => {}
        Err(error) if error.io_kind().is_some() => {}
        other => panic!("not refused: {other:?}"),
    }
}

#[test]
fn paths_resolve_inside_the_roots_whichever_way_they_are_written() {
    let folders = folders();
    let roots = roots(&folders);
    let absolute = folders.shared.join("report.txt");
    for remote in [
        absolute.as_os_str().as_bytes(),
        b"~/Shared/report.txt",
        b"Shared/report.txt",
        b"Shared/./report.txt",
    ] {
        let place = roots.resolve(remote).unwrap();
        assert_eq!(place.path(), absolute, "{remote:?}");
        let (file, stat) = place.open_file().unwrap();
        assert_eq!(stat.len, 6);
        drop(file);
    }
}

#[test]
fn dot_dot_and_paths_under_no_root_are_refused() {
    let folders = folders();
    let roots = roots(&folders);
    let secret = folders.secret.join("key");
    for remote in [
        b"~/Shared/../../secret/key".as_slice(),
        b"~/Shared/..",
        secret.as_os_str().as_bytes(),
        b"/etc/passwd",
        b"~/.bashrc",
    ] {
        refused_outside(roots.resolve(remote).map(|_| ()));
    }
    let none = Roots::new(&[], &folders.home);
    assert!(matches!(
        none.resolve(b"~/Shared/report.txt"),
        Err(PlaceError::NoRoots)
    ));
}

#[test]
fn symlinks_that_lead_out_are_refused_at_any_component() {
    let folders = folders();
    let roots = roots(&folders);
    std::os::unix::fs::symlink(&folders.secret, folders.shared.join("out")).unwrap();
    std::os::unix::fs::symlink(folders.secret.join("key"), folders.shared.join("key")).unwrap();
    std::os::unix::fs::symlink("../../secret", folders.shared.join("relative")).unwrap();
    for remote in [
        b"~/Shared/out/key".as_slice(),
        b"~/Shared/key",
        b"~/Shared/relative/key",
    ] {
        let place = roots.resolve(remote).unwrap();
        refused_outside(place.open_file());
        assert!(place.create_file().is_err() || remote == b"~/Shared/key");
    }
    // Writing through a symlinked directory is refused too.
    let place = roots.resolve(b"~/Shared/out/new").unwrap();
    refused_outside(place.create_file());
    assert!(!folders.secret.join("new").exists());
    // A symlink inside the root, to inside the root, is followed.
    std::os::unix::fs::symlink("report.txt", folders.shared.join("alias")).unwrap();
    let (_, stat) = roots
        .resolve(b"~/Shared/alias")
        .unwrap()
        .open_file()
        .unwrap();
    assert_eq!(stat.len, 6);
}

#[test]
fn a_directory_swapped_for_a_symlink_after_resolving_is_not_followed() {
    let folders = folders();
    let roots = roots(&folders);
    std::fs::create_dir(folders.shared.join("incoming")).unwrap();
    let place = roots.resolve(b"~/Shared/incoming/key").unwrap();
    // Between the resolution and the open, someone swaps the folder.
    std::fs::remove_dir(folders.shared.join("incoming")).unwrap();
    std::os::unix::fs::symlink(&folders.secret, folders.shared.join("incoming")).unwrap();
    refused_outside(place.open_file());
    refused_outside(place.create_file());
    assert_eq!(
        std::fs::read_to_string(folders.secret.join("key")).unwrap(),
        "secret"
    );
}

#[test]
fn a_file_appears_under_its_name_only_when_committed() {
    let folders = folders();
    let roots = roots(&folders);
    let place = roots.resolve(b"~/Shared/new.bin").unwrap();
    let mut new = place.create_file().unwrap();
    new.file().unwrap().write_all(b"half").unwrap();
    assert!(!folders.shared.join("new.bin").exists());
    drop(new);
    assert_eq!(
        names(&folders.shared),
        ["report.txt"],
        "an abandoned copy leaves nothing"
    );

    let mut new = place.create_file().unwrap();
    new.file().unwrap().write_all(b"whole").unwrap();
    let kept = Kept {
        mode: 0o640,
        mtime_secs: 1_000_000_000,
    };
    new.commit(Some(kept), 0o022).unwrap();
    let metadata = std::fs::metadata(folders.shared.join("new.bin")).unwrap();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&metadata.permissions()) & 0o7777,
        0o640
    );
    assert_eq!(
        std::os::unix::fs::MetadataExt::mtime(&metadata),
        1_000_000_000
    );
    assert_eq!(names(&folders.shared), ["new.bin", "report.txt"]);
}

#[test]
fn names_with_newlines_and_invalid_utf8_are_kept_byte_exact_and_shown_escaped() {
    let folders = folders();
    let roots = roots(&folders);
    let odd = OsStr::from_bytes(b"line\nbreak\xff.txt");
    let shared = roots.resolve(b"~/Shared").unwrap();
    let place = shared.child(odd).unwrap();
    place.create_file().unwrap().commit(None, 0o022).unwrap();
    assert!(folders.shared.join(odd).exists());
    assert!(shared.list().unwrap().iter().any(|name| name == odd));
    let shown = place.shown();
    assert!(shown.ends_with("line\\nbreak\\xff.txt"), "{shown}");
    assert!(!shown.contains('\n'));
    for bad in [b"..".as_slice(), b"a/b", b"", b"/etc"] {
        refused_outside(shared.child(OsStr::from_bytes(bad)).map(|_| ()));
    }
}

#[test]
fn directories_are_made_and_listed() {
    let folders = folders();
    let roots = roots(&folders);
    let dir = roots.resolve(b"~/Shared/tree").unwrap();
    dir.make_dir().unwrap();
    dir.make_dir().unwrap();
    assert!(dir.is_dir().unwrap());
    dir.child(OsStr::new("b")).unwrap().make_dir().unwrap();
    dir.child(OsStr::new("a"))
        .unwrap()
        .create_file()
        .unwrap()
        .commit(None, 0o022)
        .unwrap();
    assert_eq!(dir.list().unwrap(), ["a", "b"]);
    assert!(
        roots
            .resolve(b"~/Shared/none")
            .unwrap()
            .stat()
            .unwrap()
            .is_none()
    );
}

/// The console's Files view browses whole shared folders, and nothing
/// else: not a folder inside one (which could be a symlink, swapped in at
/// any time), nor one outside.
#[test]
fn browsing_reaches_whole_shared_folders_only() {
    let folders = folders();
    let roots = roots(&folders);
    let only = roots.only([b"~/Shared".as_slice()]).unwrap();
    let report = only.resolve(b"~/Shared/report.txt").unwrap();
    assert_eq!(report.path(), folders.shared.join("report.txt"));
    let absolute = folders.shared.as_os_str().as_bytes();
    assert!(roots.only([absolute]).is_ok());
    std::fs::create_dir(folders.shared.join("sub")).unwrap();
    for asked in [b"~/Shared/sub".as_slice(), b"~", b"/etc", b"~/Shared/.."] {
        assert!(roots.only([asked]).is_err(), "{asked:?}");
    }
    assert!(matches!(
        roots.only([b"~/Shared/sub".as_slice()]),
        Err(PlaceError::NotShared { .. })
    ));
    assert!(matches!(
        roots.only(std::iter::empty::<&[u8]>()),
        Err(PlaceError::NoRoots)
    ));
}

#[test]
fn a_listing_shows_folders_first_and_a_link_out_as_no_folder() {
    let folders = folders();
    std::fs::create_dir(folders.shared.join("zeta")).unwrap();
    std::fs::write(folders.shared.join("alpha.txt"), "a").unwrap();
    std::os::unix::fs::symlink(&folders.secret, folders.shared.join("out")).unwrap();
    std::os::unix::fs::symlink("zeta", folders.shared.join("inside")).unwrap();
    let place = roots(&folders).resolve(b"~/Shared").unwrap();
    let entries = place.entries().unwrap();
    let listed: Vec<(&str, bool)> = entries
        .iter()
        .map(|entry| (entry.name.to_str().unwrap(), entry.dir))
        .collect();
    assert_eq!(
        listed,
        [
            ("inside", true),
            ("zeta", true),
            ("alpha.txt", false),
            ("out", false),
            ("report.txt", false),
        ]
    );
    let report = entries.iter().find(|e| e.name == "report.txt").unwrap();
    assert_eq!(report.size, 6);
    assert!(report.mtime > 0);
}

fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// A writer that appends to `file` once `after` bytes went through it: the
/// file changes while the copy reads it.
struct Meddler {
    out: Vec<u8>,
    file: std::path::PathBuf,
    after: usize,
}

impl tokio::io::AsyncWrite for Meddler {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        self.out.extend_from_slice(buf);
        if self.out.len() > self.after {
            self.after = usize::MAX;
            let mut file = std::fs::OpenOptions::new().append(true).open(&self.file)?;
            file.write_all(b"more")?;
        }
        std::task::Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
}

/// Issue 27: a file that changes while it is read is given up (the
/// operator discards what it got) and counted as failed; the copy goes on.
#[tokio::test]
async fn a_file_that_changes_while_it_is_read_is_given_up_alone() {
    use doorman_wire::connection::{FrameReader, FrameWriter, decode_message};
    use doorman_wire::frame::Frame;
    use doorman_wire::message::{CopyDirection, CopyJob, FileMessage, SessionMessage, WirePath};
    let folders = folders();
    let roots = roots(&folders);
    let big = folders.shared.join("growing.log");
    std::fs::write(&big, vec![b'x'; 600_000]).unwrap();
    let job = CopyJob {
        direction: CopyDirection::FromComputer,
        paths: vec![
            WirePath(b"~/Shared/growing.log".to_vec()),
            WirePath(b"~/Shared/report.txt".to_vec()),
        ],
        files: 0,
        bytes: 0,
        dirs: 0,
        sources: 2,
        recursive: false,
        keep: false,
        resume: false,
    };
    let mut reader = FrameReader::new(tokio::io::empty());
    let mut writer = FrameWriter::new(Meddler {
        out: Vec::new(),
        file: big.clone(),
        after: 100_000,
    });
    let end = super::send::run(&mut reader, &mut writer, &job, &roots)
        .await
        .unwrap();
    assert_eq!(
        end,
        doorman_wire::message::SessionEnd::Copied {
            files: 1,
            bytes: 6,
            failed: 1
        }
    );
    let mut out = bytes::BytesMut::from(writer.into_inner().out.as_slice());
    let mut said = Vec::new();
    while let Some(frame) = Frame::decode(&mut out).unwrap() {
        if let Frame::Message(payload) = frame {
            said.push(String::from_utf8(payload.to_vec()).unwrap());
        }
    }
    let abandoned = said
        .iter()
        .position(|m| {
            matches!(
                decode_message::<FileMessage>(m.as_bytes()),
                Ok(FileMessage::FileAbandoned { .. })
            )
        })
        .expect("the file given up");
    assert!(
        said[abandoned].contains("changed while it was read"),
        "{said:?}"
    );
    assert!(
        said.iter().any(|m| matches!(
            decode_message::<FileMessage>(m.as_bytes()),
            Ok(FileMessage::Copied { size: 6, .. })
        )),
        "the next file went: {said:?}"
    );
    assert!(matches!(
        decode_message::<SessionMessage>(said.last().unwrap().as_bytes()),
        Ok(SessionMessage::Copied { failed: 1, .. })
    ));
}

#[test]
fn a_fifo_in_a_shared_folder_is_refused_without_waiting_for_a_writer() {
    let folders = folders();
    let roots = roots(&folders);
    let pipe = folders.shared.join("pipe");
    rustix::fs::mkfifoat(
        rustix::fs::CWD,
        pipe.as_path(),
        rustix::fs::Mode::from_raw_mode(0o600),
    )
    .unwrap();
    // Were the open to wait for a writer, this would never return.
    let error = roots
        .resolve(b"~/Shared/pipe")
        .unwrap()
        .open_file()
        .unwrap_err();
    assert!(error.to_string().contains("not a regular file"), "{error}");
}

#[test]
fn a_part_file_with_other_names_is_not_resumed() {
    let folders = folders();
    let roots = roots(&folders);
    // Someone links a file from outside as the start of `key`.
    std::fs::hard_link(
        folders.secret.join("key"),
        folders.shared.join(".key.doorman.part"),
    )
    .unwrap();
    let error = roots
        .resolve(b"~/Shared/key")
        .unwrap()
        .resume_file()
        .unwrap_err();
    assert!(error.to_string().contains("hard links"), "{error}");
    assert_eq!(
        std::fs::read_to_string(folders.secret.join("key")).unwrap(),
        "secret"
    );
}

#[test]
fn kept_modes_lose_set_user_id_and_set_group_id() {
    let folders = folders();
    let roots = roots(&folders);
    let kept = Kept {
        mode: 0o6755,
        mtime_secs: 1_000_000_000,
    };
    let place = roots.resolve(b"~/Shared/tool").unwrap();
    place
        .create_file()
        .unwrap()
        .commit(Some(kept), 0o022)
        .unwrap();
    let metadata = std::fs::metadata(folders.shared.join("tool")).unwrap();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&metadata.permissions()) & 0o7777,
        0o755
    );
}

mod receiving;
