//! The console's Files view on its WebSocket (`kind=files`): the browsing
//! session it asks for (every folder the computer said it shares), the
//! folders the page is told once the session starts, and which of the
//! browser's words go on to the computer.
//!
//! Both ways the words are the wire's own JSON ([`FileMessage`]), names and
//! paths in base64, so that every byte of a name survives the trip, a
//! newline or invalid UTF-8 included: the page shows them escaped and can
//! still fetch them. From the browser, as text: `list`, `get`, `put`,
//! `file_end`, `file_abandoned`, and an upload's bytes as binary messages
//! (`Stdin` frames). From the computer: `listing`, a download's `file`,
//! `file_end` and `file_copied` with its bytes as binary messages, or
//! `file_failed`.

use doorman_broker::broker::Broker;
use doorman_wire::message::{CopyDirection, CopyJob, FileMessage, WirePath};

/// The longest request the browser may make: a path of 4096 bytes in
/// base64, with room to spare. A longer text is no request of the Files
/// view's.
const MAX_REQUEST: usize = 16 * 1024;

/// The browsing session the Files view asks for: every folder the
/// computer said it shares. When it has said none (offline, unknown, or
/// sharing nothing), `~`: the ask still goes through the usual checks, and
/// the answer says why nothing can be browsed.
pub(super) fn browse_job(broker: &Broker, computer: &str) -> CopyJob {
    let shared = broker
        .agents()
        .status(computer)
        .map(|status| status.files)
        .unwrap_or_default();
    let paths = if shared.is_empty() {
        vec![WirePath(b"~".to_vec())]
    } else {
        shared
            .into_iter()
            .map(|root| WirePath(root.into_bytes()))
            .collect()
    };
    CopyJob {
        direction: CopyDirection::Browse,
        paths,
        files: 0,
        bytes: 0,
        dirs: 0,
        sources: 0,
        recursive: false,
        keep: false,
        resume: false,
    }
}

/// What the page is told once the session starts: the folders it may
/// browse, `{"type":"roots","paths":[…]}` (base64, as every path).
pub(super) fn roots_message(job: &CopyJob) -> String {
    serde_json::json!({ "type": "roots", "paths": job.paths }).to_string()
}

/// The browser's text as a request for the computer, when it is one the
/// Files view makes; anything else is not passed on.
pub(super) fn request(text: &str) -> Option<FileMessage> {
    if text.len() > MAX_REQUEST {
        return None;
    }
    match serde_json::from_str::<FileMessage>(text).ok()? {
        request @ (FileMessage::List { .. }
        | FileMessage::Get { .. }
        | FileMessage::Put { .. }
        | FileMessage::FileEnd { .. }
        | FileMessage::FileAbandoned { .. }) => Some(request),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_files_views_requests_go_on() {
        let list = request(r#"{"type":"list","path":"fi9TaGFyZWQ="}"#);
        assert_eq!(
            list,
            Some(FileMessage::List {
                path: WirePath(b"~/Shared".to_vec())
            })
        );
        assert!(request(r#"{"type":"put","dir":"fg==","name":"YQ==","size":1}"#).is_some());
        assert!(request(r#"{"type":"file_end","sha256":"00"}"#).is_some());
        // The computer's words are not the browser's to say.
        for text in [
            r#"{"type":"file_copied","path":"YQ==","size":1,"sha256":"00"}"#,
            r#"{"type":"listing","path":"YQ==","entries":[]}"#,
            r#"{"type":"dir","name":"YQ==","mode":0,"mtime":0}"#,
            r#"{"type":"list","path":"not base64!"}"#,
            r#"{"type":"exit","code":0}"#,
        ] {
            assert_eq!(request(text), None, "{text}");
        }
        let long = format!(
            r#"{{"type":"file_abandoned","message":"{}"}}"#,
            "x".repeat(MAX_REQUEST)
        );
        assert_eq!(request(&long), None);
    }

    #[test]
    fn the_page_is_told_the_folders_in_base64() {
        let job = CopyJob {
            direction: CopyDirection::Browse,
            paths: vec![WirePath(b"~/Shared".to_vec())],
            files: 0,
            bytes: 0,
            dirs: 0,
            sources: 0,
            recursive: false,
            keep: false,
            resume: false,
        };
        let told: serde_json::Value = serde_json::from_str(&roots_message(&job)).unwrap();
        assert_eq!(
            told,
            serde_json::json!({ "type": "roots", "paths": ["fi9TaGFyZWQ="] })
        );
    }
}
