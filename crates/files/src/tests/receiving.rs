//! The receiving side of a copy (to the computer) against an operator
//! that does not keep to what was approved, or to the protocol.

use super::super::place::Roots;
use super::{folders, names, roots};
use bytes::Bytes;
use doorman_wire::connection::{FrameReader, FrameWriter, decode_message};
use doorman_wire::frame::Frame;
use doorman_wire::message::{CopyDirection, CopyJob, FileMessage, SessionEnd, WirePath};

fn job(files: u64, bytes: u64, recursive: bool, resume: bool) -> CopyJob {
    CopyJob {
        direction: CopyDirection::ToComputer,
        paths: vec![WirePath(b"~/Shared".to_vec())],
        files,
        bytes,
        dirs: u64::from(recursive),
        sources: 1,
        recursive,
        keep: false,
        resume,
    }
}

fn message(message: &FileMessage) -> Frame {
    Frame::Message(Bytes::from(serde_json::to_vec(message).unwrap()))
}

fn sha256(bytes: &[u8]) -> String {
    doorman_wire::copying::hex(ring::digest::digest(&ring::digest::SHA256, bytes).as_ref())
}

fn announce(name: &[u8], size: u64) -> Frame {
    message(&FileMessage::File {
        name: WirePath(name.to_vec()),
        size,
        mode: 0o644,
        mtime: 0,
    })
}

/// The data of a file holding `data`, and its end, as an operator
/// sends them after announcing it.
fn data(data: &[u8]) -> [Frame; 2] {
    [
        Frame::Stdin(Bytes::copy_from_slice(data)),
        message(&FileMessage::FileEnd {
            sha256: sha256(data),
        }),
    ]
}

/// A file named `name` holding `bytes`, as an operator sends it.
fn file(name: &[u8], bytes: &[u8]) -> Vec<Frame> {
    let mut frames = vec![announce(name, bytes.len() as u64)];
    frames.extend(data(bytes));
    frames
}

/// Runs the receiving side of `job` on `sent` (then `CopyEnd`): how it
/// ended, and what it answered.
async fn receive(job: &CopyJob, roots: &Roots, sent: Vec<Frame>) -> (SessionEnd, Vec<FileMessage>) {
    let mut input = FrameWriter::new(Vec::new());
    let end = message(&FileMessage::CopyEnd);
    for frame in sent.iter().chain([&end]) {
        input.write_frame(frame).await.unwrap();
    }
    let input = input.into_inner();
    let mut reader = FrameReader::new(input.as_slice());
    let mut writer = FrameWriter::new(Vec::new());
    let end = super::super::receive::run(&mut reader, &mut writer, job, roots)
        .await
        .unwrap();
    let mut out = bytes::BytesMut::from(writer.into_inner().as_slice());
    let mut said = Vec::new();
    while let Some(frame) = Frame::decode(&mut out).unwrap() {
        if let Frame::Message(payload) = frame {
            said.extend(decode_message::<FileMessage>(&payload).ok());
        }
    }
    (end, said)
}

fn failures(said: &[FileMessage]) -> Vec<String> {
    said.iter()
        .filter_map(|m| match m {
            FileMessage::Failed { message, .. } => Some(message.clone()),
            _ => None,
        })
        .collect()
}

/// The email said "copy 1 file (5 B)": a second file, more bytes, or a
/// directory (without -r) is not taken.
#[tokio::test]
async fn a_copy_takes_no_more_than_the_approval_counted() {
    let folders = folders();
    let roots = roots(&folders);
    let mut sent = file(b"a.txt", b"hello");
    sent.extend(file(b"b.txt", b"x"));
    sent.push(message(&FileMessage::Dir {
        name: WirePath(b"d".to_vec()),
        mode: 0o755,
        mtime: 0,
    }));
    let (end, said) = receive(&job(1, 5, false, false), &roots, sent).await;
    assert_eq!(
        end,
        SessionEnd::Copied {
            files: 1,
            bytes: 5,
            failed: 2
        }
    );
    let refused = failures(&said);
    assert!(
        refused[0].contains("more than the 1 file (5 B) approved"),
        "{refused:?}"
    );
    assert!(refused[1].contains("without -r"), "{refused:?}");
    assert_eq!(names(&folders.shared), ["a.txt", "report.txt"]);

    // Nor more bytes than counted, even in one file.
    let (_, said) = receive(&job(1, 2, false, false), &roots, file(b"c", b"abc")).await;
    assert!(failures(&said)[0].contains("approved"), "{said:?}");
    assert!(!folders.shared.join("c").exists());
}

#[tokio::test]
async fn names_that_are_not_plain_relative_paths_are_refused() {
    let folders = folders();
    let roots = roots(&folders);
    let bad: [&[u8]; 5] = [b"", b"../x", b"/x", b"./x", b"a/../../x"];
    let mut sent = Vec::new();
    for name in bad {
        sent.push(message(&FileMessage::Dir {
            name: WirePath(name.to_vec()),
            mode: 0o777,
            mtime: 0,
        }));
        sent.extend(file(name, b""));
    }
    let job = CopyJob {
        dirs: 10,
        ..job(10, 0, true, false)
    };
    let (end, said) = receive(&job, &roots, sent).await;
    assert_eq!(
        end,
        SessionEnd::Copied {
            files: 0,
            bytes: 0,
            failed: 10
        },
        "{said:?}"
    );
    assert_eq!(names(&folders.shared), ["report.txt"]);
    assert_eq!(names(&folders.home), ["Shared"]);
}

/// With `--resume` the sender waits for the answer to each file: one
/// that cannot land is answered too (nothing here), so the copy goes
/// on instead of both sides waiting for ever.
#[tokio::test]
async fn with_resume_a_file_that_cannot_land_is_still_answered() {
    let folders = folders();
    let roots = roots(&folders);
    std::fs::create_dir(folders.shared.join("taken")).unwrap();
    let from_start = message(&FileMessage::Resume { offset: 0 });
    let mut sent = vec![announce(b"taken", 3), from_start.clone()];
    sent.extend(data(b"abc"));
    sent.extend([announce(b"ok", 3), from_start]);
    sent.extend(data(b"def"));
    let (end, said) = receive(&job(2, 6, false, true), &roots, sent).await;
    assert!(matches!(&said[0], FileMessage::Failed { .. }), "{said:?}");
    assert_eq!(
        said[1],
        FileMessage::Have {
            offset: 0,
            sha256: String::new()
        }
    );
    assert!(
        matches!(&said[3], FileMessage::Copied { size: 3, .. }),
        "{said:?}"
    );
    assert_eq!(
        end,
        SessionEnd::Copied {
            files: 1,
            bytes: 3,
            failed: 1
        }
    );
    assert_eq!(std::fs::read(folders.shared.join("ok")).unwrap(), b"def");
}
