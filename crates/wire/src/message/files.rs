//! File transfer on the wire (`doorman cp`, the console's Files view): what
//! an operator asks to copy ([`CopyJob`], the service the recipients
//! approve), and the messages of a copy inside its session connection
//! ([`FileMessage`]). A file's bytes travel as `Stdin` frames to the
//! computer and `Stdout` frames from it, between its [`FileMessage::File`]
//! and its [`FileMessage::FileEnd`].
//!
//! Names travel as bytes ([`WirePath`], base64 in JSON), so that a name
//! with a newline or invalid UTF-8 is kept byte-exact; people see them
//! escaped ([`WirePath::shown`]).

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A path or name as the file system has it: any bytes but NUL.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct WirePath(pub Vec<u8>);

impl WirePath {
    /// The path as people read it: printable ASCII as it is, every other
    /// byte escaped (`\n`, `\xff`), so that no name can forge a line.
    pub fn shown(&self) -> String {
        self.0.escape_ascii().to_string()
    }

    #[cfg(unix)]
    pub fn from_os(path: &std::ffi::OsStr) -> Self {
        WirePath(std::os::unix::ffi::OsStrExt::as_bytes(path).to_vec())
    }

    #[cfg(unix)]
    pub fn as_os(&self) -> &std::ffi::OsStr {
        std::os::unix::ffi::OsStrExt::from_bytes(&self.0)
    }

    /// Elsewhere (Windows), a name's UTF-8: its bytes as the system keeps
    /// them in an `OsStr` (WTF-8, which is UTF-8 for every name that is
    /// Unicode). The other way, the computer takes only UTF-8
    /// (`files::place::os_str`).
    #[cfg(not(unix))]
    pub fn from_os(path: &std::ffi::OsStr) -> Self {
        WirePath(path.as_encoded_bytes().to_vec())
    }
}

impl std::fmt::Debug for WirePath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", self.shown())
    }
}

impl Serialize for WirePath {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&STANDARD.encode(&self.0))
    }
}

impl<'de> Deserialize<'de> for WirePath {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        let bytes = STANDARD
            .decode(text.as_bytes())
            .map_err(serde::de::Error::custom)?;
        if bytes.contains(&0) {
            return Err(serde::de::Error::custom("a path with a NUL byte"));
        }
        if bytes.len() > MAX_PATH_LEN {
            return Err(serde::de::Error::custom("a path of over 4096 bytes"));
        }
        Ok(WirePath(bytes))
    }
}

/// The longest path a copy names (Linux's `PATH_MAX`).
pub const MAX_PATH_LEN: usize = 4096;

/// The most paths one copy names (its sources from the computer).
pub const MAX_COPY_PATHS: usize = 256;

/// The most entries one listing of a directory holds (the console's Files
/// view); the rest are counted, not sent.
pub const MAX_LISTED: usize = 10_000;

/// Which way a copy goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CopyDirection {
    /// From the operator to the computer.
    ToComputer,
    /// From the computer to the operator.
    FromComputer,
    /// Both ways, one file at a time, as the operator browses the shared
    /// folders named (the console's Files view): [`FileMessage::List`],
    /// [`FileMessage::Get`] and [`FileMessage::Put`] until the operator
    /// leaves.
    Browse,
}

/// What an operator asks to copy: the service recipients approve.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CopyJob {
    pub direction: CopyDirection,
    /// To the computer: the one destination. From it: the sources.
    /// Browsing: the shared folders browsed, each one whole.
    pub paths: Vec<WirePath>,
    /// To the computer: how many files, and bytes, the operator sends (as
    /// it counted them when asking; the email says them, and the computer
    /// takes no more).
    #[serde(default)]
    pub files: u64,
    #[serde(default)]
    pub bytes: u64,
    /// To the computer, with `-r`: how many directories the operator
    /// makes; no more are made.
    #[serde(default)]
    pub dirs: u64,
    /// To the computer: how many sources were named (more than one needs
    /// a destination that is a directory).
    #[serde(default)]
    pub sources: u32,
    /// Directories with their contents (`-r`).
    #[serde(default)]
    pub recursive: bool,
    /// Mode bits and modification times kept (`-p`).
    #[serde(default)]
    pub keep: bool,
    /// Files the receiver has a start of continue from there, when that
    /// start matches (`--resume`): the receiver answers each `File` with
    /// `Have`, the sender with `Resume`.
    #[serde(default)]
    pub resume: bool,
}

impl CopyJob {
    /// One line for the email, the page, the notification and the audit
    /// trail, e.g. `copy 3 files (64.0 MiB) to /home/owner/Shared`.
    pub fn describe(&self) -> String {
        let paths: Vec<String> = self.paths.iter().map(WirePath::shown).collect();
        let recursive = if self.recursive {
            " (with folders)"
        } else {
            ""
        };
        match self.direction {
            CopyDirection::ToComputer => format!(
                "copy {} ({}){recursive} to {}",
                plural(self.files, "file"),
                human_size(self.bytes),
                paths.join(", ")
            ),
            CopyDirection::FromComputer => {
                format!("copy from {}{recursive}", paths.join(", "))
            }
            CopyDirection::Browse => format!("browse and copy files in {}", paths.join(", ")),
        }
    }

    /// Whether an approval of `approved` covers this copy: the same
    /// direction, and to the same destination with no more files, bytes
    /// or directories than it counted (what its email said), or from
    /// sources it covered; browsing, the same folders.
    pub fn covered_by(&self, approved: &CopyJob) -> bool {
        self.direction == approved.direction
            && self.recursive <= approved.recursive
            && match self.direction {
                CopyDirection::ToComputer => {
                    self.paths == approved.paths
                        && self.files <= approved.files
                        && self.bytes <= approved.bytes
                        && self.dirs <= approved.dirs
                }
                CopyDirection::Browse => self.paths == approved.paths,
                CopyDirection::FromComputer => {
                    self.paths.iter().all(|path| approved.paths.contains(path))
                }
            }
    }
}

/// `1 file`, `3 files`.
pub fn plural(count: u64, noun: &str) -> String {
    if count == 1 {
        format!("1 {noun}")
    } else {
        format!("{count} {noun}s")
    }
}

/// A size as people read it: `512 B`, `64.0 MiB`, `4.2 GiB`.
pub fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

/// Operator ↔ agent, inside a copy's session connection. The sender of the
/// files (the operator to the computer, the computer back) sends, for
/// each, `Dir`, or `File`, its data frames and `FileEnd`; then `CopyEnd`.
/// The computer says `Copied` of each file that it stored or sent whole
/// (the server audits these), and `Failed` of each that it could not; the
/// copy's last word is [`super::SessionMessage::Copied`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum FileMessage {
    /// A directory, relative to the destination, made before its contents.
    Dir {
        name: WirePath,
        mode: u32,
        mtime: i64,
    },
    /// A file, relative to the destination: `size` bytes follow.
    File {
        name: WirePath,
        size: u64,
        mode: u32,
        mtime: i64,
    },
    /// Receiver → sender, in a copy with `resume`, in answer to every
    /// `File` (the sender waits for it): the first `offset` bytes of the
    /// file are here already (a copy cut short left them), and their
    /// SHA-256. A file the receiver cannot store (it said `Failed`) is
    /// answered with offset 0 too, so that the copy goes on.
    Have { offset: u64, sha256: String },
    /// Sender → receiver, in answer to `Have`: the data that follows starts
    /// at `offset`, which is the receiver's when its bytes match the
    /// sender's start, else 0 (the receiver starts the file afresh).
    Resume { offset: u64 },
    /// The file's bytes are all sent; their SHA-256, in hex.
    FileEnd { sha256: String },
    /// The sender gives the file up (it changed while read, or could not
    /// be read on): the receiver discards what it has of it.
    FileAbandoned { message: String },
    /// Computer → operator: the file at `path` on the computer was stored
    /// (or sent) whole. Browsing, `direction` says which (a copy's own
    /// direction says it otherwise, and it is left out).
    #[serde(rename = "file_copied")]
    Copied {
        path: WirePath,
        size: u64,
        sha256: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        direction: Option<CopyDirection>,
    },
    /// A file or directory that could not be copied, and why.
    #[serde(rename = "file_failed")]
    Failed { name: WirePath, message: String },
    /// The sender has sent everything.
    CopyEnd,
    /// Operator → computer, browsing: what is in the directory at `path`.
    /// Answered with [`FileMessage::Listing`] parts, or `Failed`.
    List { path: WirePath },
    /// Computer → operator, browsing: the entries of the directory at
    /// `path` (as the operator named it), directories first, then by
    /// name; in parts that each fit a frame, the last one `last`. Past
    /// [`MAX_LISTED`] entries, the rest are only counted (`omitted`).
    Listing {
        path: WirePath,
        entries: Vec<ListEntry>,
        #[serde(default)]
        last: bool,
        #[serde(default)]
        omitted: u64,
    },
    /// Operator → computer, browsing: send the file at `path`. Answered
    /// as a copy of that one file from the computer: `File`, its data
    /// frames, `FileEnd` and `Copied`; or `Failed` (after
    /// `FileAbandoned`, when it changed while it was read).
    Get { path: WirePath },
    /// Operator → computer, browsing: a file `name` (one plain name) for
    /// the directory `dir`; its `size` bytes follow as data frames, then
    /// `FileEnd`. Answered with `Copied` once it is stored whole under
    /// that name, or `Failed` (at once, when it cannot even start).
    Put {
        dir: WirePath,
        name: WirePath,
        size: u64,
    },
}

/// One entry of a [`FileMessage::Listing`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListEntry {
    pub name: WirePath,
    /// A directory (a symbolic link that leads to one inside the shared
    /// folder counts as one).
    pub dir: bool,
    pub size: u64,
    /// Modification time, seconds since the epoch.
    pub mtime: i64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_with_newlines_and_invalid_utf8_cross_the_wire_byte_exact() {
        let name = WirePath(b"a\nb\xff".to_vec());
        let message = FileMessage::File {
            name: name.clone(),
            size: 5_000_000_000,
            mode: 0o644,
            mtime: 1,
        };
        let json = serde_json::to_string(&message).unwrap();
        assert_eq!(serde_json::from_str::<FileMessage>(&json).unwrap(), message);
        assert_eq!(name.shown(), "a\\nb\\xff");
        let nul = r#"{"type":"dir","name":"YQBi","mode":0,"mtime":0}"#;
        assert!(serde_json::from_str::<FileMessage>(nul).is_err());
    }

    #[test]
    fn a_copy_says_what_and_where() {
        let to = CopyJob {
            direction: CopyDirection::ToComputer,
            paths: vec![WirePath(b"/home/owner/Shared/incoming".to_vec())],
            files: 3,
            bytes: 64 << 20,
            dirs: 0,
            sources: 3,
            recursive: false,
            keep: false,
            resume: false,
        };
        assert_eq!(
            to.describe(),
            "copy 3 files (64.0 MiB) to /home/owner/Shared/incoming"
        );
        let from = CopyJob {
            direction: CopyDirection::FromComputer,
            paths: vec![WirePath(b"~/Shared/a\nb".to_vec())],
            files: 0,
            bytes: 0,
            dirs: 0,
            sources: 1,
            recursive: true,
            keep: false,
            resume: false,
        };
        assert_eq!(from.describe(), "copy from ~/Shared/a\\nb (with folders)");
        assert_eq!(human_size(512), "512 B");
        assert_eq!(human_size(1536), "1.5 KiB");
        assert_eq!(human_size(5 << 30), "5.0 GiB");
    }

    #[test]
    fn an_approval_covers_the_same_direction_and_places_only() {
        let job = |direction, paths: &[&str]| CopyJob {
            direction,
            paths: paths
                .iter()
                .map(|p| WirePath(p.as_bytes().to_vec()))
                .collect(),
            files: 1,
            bytes: 1,
            dirs: 0,
            sources: 1,
            recursive: false,
            keep: false,
            resume: false,
        };
        use CopyDirection::*;
        let from_ab = job(FromComputer, &["/s/a", "/s/b"]);
        assert!(job(FromComputer, &["/s/a"]).covered_by(&from_ab));
        assert!(!job(FromComputer, &["/s/c"]).covered_by(&from_ab));
        assert!(!job(ToComputer, &["/s/a"]).covered_by(&from_ab));
        assert!(job(ToComputer, &["/s"]).covered_by(&job(ToComputer, &["/s"])));
        assert!(!job(ToComputer, &["/t"]).covered_by(&job(ToComputer, &["/s"])));
        let browse = job(Browse, &["/s", "/t"]);
        assert!(job(Browse, &["/s", "/t"]).covered_by(&browse));
        assert!(
            !job(Browse, &["/s"]).covered_by(&browse),
            "the same folders only"
        );
        assert!(!job(FromComputer, &["/s"]).covered_by(&browse));
        assert!(!browse.covered_by(&job(FromComputer, &["/s", "/t"])));
        assert_eq!(browse.describe(), "browse and copy files in /s, /t");
        // "copy 1 file (1 B)" approved covers no bigger copy to that place.
        let more = CopyJob {
            bytes: 2,
            ..job(ToComputer, &["/s"])
        };
        assert!(!more.covered_by(&job(ToComputer, &["/s"])));
        assert!(job(ToComputer, &["/s"]).covered_by(&more));
    }

    /// A browsing session's messages keep tags of their own: none is taken
    /// for a session's message (`exit`, `error`, `copied`, …) by the relay.
    #[test]
    fn browsing_messages_have_stable_json() {
        let get = FileMessage::Get {
            path: WirePath(b"~/Shared/a".to_vec()),
        };
        let json = serde_json::to_string(&get).unwrap();
        assert_eq!(json, r#"{"type":"get","path":"fi9TaGFyZWQvYQ=="}"#);
        let put: FileMessage =
            serde_json::from_str(r#"{"type":"put","dir":"fg==","name":"YQ==","size":3}"#).unwrap();
        assert_eq!(
            put,
            FileMessage::Put {
                dir: WirePath(b"~".to_vec()),
                name: WirePath(b"a".to_vec()),
                size: 3,
            }
        );
        let listing = FileMessage::Listing {
            path: WirePath(b"~".to_vec()),
            entries: vec![ListEntry {
                name: WirePath(b"d".to_vec()),
                dir: true,
                size: 4096,
                mtime: 1,
            }],
            last: true,
            omitted: 0,
        };
        let json = serde_json::to_string(&listing).unwrap();
        assert!(json.starts_with(r#"{"type":"listing","#), "{json}");
        assert_eq!(serde_json::from_str::<FileMessage>(&json).unwrap(), listing);
        for message in [get, put, listing] {
            let json = serde_json::to_string(&message).unwrap();
            assert!(serde_json::from_str::<super::super::SessionMessage>(&json).is_err());
        }
        // A copy's `Copied` says no direction; a browsing one's does.
        let copied = FileMessage::Copied {
            path: WirePath(b"/s/a".to_vec()),
            size: 1,
            sha256: "00".into(),
            direction: None,
        };
        let json = serde_json::to_string(&copied).unwrap();
        assert!(!json.contains("direction"), "{json}");
        let browsed: FileMessage = serde_json::from_str(
            r#"{"type":"file_copied","path":"L3MvYQ==","size":1,"sha256":"00","direction":"to_computer"}"#,
        )
        .unwrap();
        assert!(matches!(
            browsed,
            FileMessage::Copied {
                direction: Some(CopyDirection::ToComputer),
                ..
            }
        ));
    }
}
