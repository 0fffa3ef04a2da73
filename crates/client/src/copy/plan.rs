//! What `doorman cp SOURCE... DEST` asks for, from its arguments: which
//! side each is on (`COMPUTER:PATH` is the computer's, as in scp), one
//! direction per command, and, copying to the computer, the files and
//! bytes that will go, counted before asking so that the email can say
//! them.

use crate::ConnectError;
use doorman_core::names::validate_name;
use doorman_wire::message::files::MAX_COPY_PATHS;
use doorman_wire::message::{CopyDirection, CopyJob, WirePath};
use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// One argument of `doorman cp`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CopyArg {
    Local(PathBuf),
    /// `COMPUTER:PATH`; an empty path is the home directory.
    Remote {
        computer: String,
        path: WirePath,
    },
}

impl CopyArg {
    /// `COMPUTER:PATH` when a `:` comes before any `/` (as scp reads it;
    /// `./a:b` is a local file), else a local path.
    pub fn parse(arg: &OsStr) -> CopyArg {
        let bytes = arg.as_bytes();
        let colon = bytes.iter().position(|&b| b == b':');
        let slash = bytes.iter().position(|&b| b == b'/');
        match colon {
            Some(at) if at > 0 && slash.is_none_or(|slash| at < slash) => CopyArg::Remote {
                computer: String::from_utf8_lossy(&bytes[..at]).into_owned(),
                path: WirePath(match &bytes[at + 1..] {
                    b"" => b"~".to_vec(),
                    path => path.to_vec(),
                }),
            },
            _ => CopyArg::Local(PathBuf::from(arg)),
        }
    }
}

/// A copy, ready to ask for: the computer, the job its recipients
/// approve, and this side of it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CopyPlan {
    pub computer: String,
    pub job: CopyJob,
    pub(crate) local: LocalSide,
}

/// This computer's side of a copy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum LocalSide {
    /// Copying to the computer: what goes, in order.
    Send(Vec<Entry>),
    /// Copying from it: where the files land.
    Receive { dest: PathBuf, into_dir: bool },
}

/// One directory or file to send, and the name it goes by (its source's
/// own name, then the path beneath it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Entry {
    pub path: PathBuf,
    pub name: WirePath,
    pub kind: EntryKind,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum EntryKind {
    Dir,
    File {
        size: u64,
    },
    /// Cannot be sent, and why (said when the copy runs, counted as failed).
    Unsendable(String),
}

fn invalid(message: impl Into<String>) -> ConnectError {
    ConnectError::InvalidRequest(message.into())
}

/// `doorman cp`'s switches.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CopyOptions {
    /// `-r`: directories with their contents.
    pub recursive: bool,
    /// `-p`: modes and modification times kept.
    pub keep: bool,
    /// `--resume`: files cut short continue where they stopped.
    pub resume: bool,
}

impl CopyPlan {
    /// The plan for `args` (SOURCE... DEST).
    pub fn new(args: &[OsString], options: CopyOptions) -> Result<CopyPlan, ConnectError> {
        let CopyOptions {
            recursive,
            keep,
            resume,
        } = options;
        let Some((dest, sources)) = args.split_last().filter(|(_, s)| !s.is_empty()) else {
            return Err(invalid(
                "give at least one SOURCE and a DEST, e.g. `doorman cp report.pdf office-pc:~/Shared/`",
            ));
        };
        let dest = CopyArg::parse(dest);
        let sources: Vec<CopyArg> = sources.iter().map(|s| CopyArg::parse(s)).collect();
        let mut job = CopyJob {
            direction: CopyDirection::ToComputer,
            paths: Vec::new(),
            files: 0,
            bytes: 0,
            dirs: 0,
            sources: u32::try_from(sources.len()).unwrap_or(u32::MAX),
            recursive,
            keep,
            resume,
        };
        match dest {
            CopyArg::Remote { computer, path } => {
                let local: Option<Vec<PathBuf>> = sources
                    .into_iter()
                    .map(|s| match s {
                        CopyArg::Local(path) => Some(path),
                        CopyArg::Remote { .. } => None,
                    })
                    .collect();
                let local = local.ok_or_else(|| {
                    invalid("copy one way at a time: every SOURCE on this side when DEST is on the computer")
                })?;
                let entries = walk(&local, recursive);
                // The computer takes no more than these (what the email
                // says), so every entry that goes is counted.
                for entry in &entries {
                    match entry.kind {
                        EntryKind::File { size } => {
                            job.files += 1;
                            job.bytes = job.bytes.saturating_add(size);
                        }
                        EntryKind::Dir => job.dirs += 1,
                        EntryKind::Unsendable(_) => {}
                    }
                }
                job.paths = vec![path];
                Self::checked(computer, job, LocalSide::Send(entries))
            }
            CopyArg::Local(dest) => {
                let mut computers = sources.iter().map(|s| match s {
                    CopyArg::Remote { computer, .. } => Some(computer.clone()),
                    CopyArg::Local(_) => None,
                });
                let first = computers.next().flatten();
                let computer = first
                    .filter(|first| computers.all(|c| c.as_ref() == Some(first)))
                    .ok_or_else(|| {
                        invalid("copy one way at a time: every SOURCE on one computer (COMPUTER:PATH) when DEST is on this side")
                    })?;
                job.direction = CopyDirection::FromComputer;
                job.paths = sources
                    .into_iter()
                    .filter_map(|s| match s {
                        CopyArg::Remote { path, .. } => Some(path),
                        CopyArg::Local(_) => None,
                    })
                    .collect();
                if job.paths.len() > MAX_COPY_PATHS {
                    return Err(invalid(format!(
                        "at most {MAX_COPY_PATHS} sources at a time"
                    )));
                }
                let into_dir = dest.is_dir();
                if !into_dir && job.paths.len() > 1 {
                    return Err(invalid(format!("{} is not a directory", dest.display())));
                }
                Self::checked(computer, job, LocalSide::Receive { dest, into_dir })
            }
        }
    }

    fn checked(computer: String, job: CopyJob, local: LocalSide) -> Result<CopyPlan, ConnectError> {
        validate_name(&computer).map_err(|e| invalid(format!("computer name {e}")))?;
        Ok(CopyPlan {
            computer,
            job,
            local,
        })
    }
}

/// The entries to send for `sources`, depth first; a directory without
/// `-r`, or one that cannot be read, is an entry that cannot be sent.
fn walk(sources: &[PathBuf], recursive: bool) -> Vec<Entry> {
    let mut entries = Vec::new();
    let mut visited = std::collections::HashSet::new();
    for source in sources {
        let name = source
            .file_name()
            .map_or_else(|| OsString::from("root"), OsStr::to_os_string);
        walk_one(
            source,
            WirePath::from_os(&name),
            recursive,
            &mut visited,
            &mut entries,
        );
    }
    entries
}

fn walk_one(
    path: &Path,
    name: WirePath,
    recursive: bool,
    visited: &mut std::collections::HashSet<(u64, u64)>,
    entries: &mut Vec<Entry>,
) {
    use std::os::unix::fs::MetadataExt;
    let unsendable = |why: String| Entry {
        path: path.to_path_buf(),
        name: name.clone(),
        kind: EntryKind::Unsendable(why),
    };
    let metadata = match std::fs::metadata(path) {
        Ok(metadata) => metadata,
        Err(error) => return entries.push(unsendable(format!("{}: {error}", path.display()))),
    };
    if metadata.is_file() {
        let kind = EntryKind::File {
            size: metadata.len(),
        };
        return entries.push(Entry {
            path: path.to_path_buf(),
            name,
            kind,
        });
    }
    if !metadata.is_dir() {
        let why = format!("{}: not a regular file or directory", path.display());
        return entries.push(unsendable(why));
    }
    if !recursive {
        let why = format!("{} is a directory (copy it with -r)", path.display());
        return entries.push(unsendable(why));
    }
    if !visited.insert((metadata.dev(), metadata.ino())) {
        return entries.push(unsendable(format!("{}: a loop of links", path.display())));
    }
    let children = std::fs::read_dir(path).and_then(|dir| {
        let mut names: Vec<OsString> = dir
            .map(|entry| entry.map(|e| e.file_name()))
            .collect::<Result<_, _>>()?;
        names.sort();
        Ok(names)
    });
    let children = match children {
        Ok(children) => children,
        Err(error) => return entries.push(unsendable(format!("{}: {error}", path.display()))),
    };
    entries.push(Entry {
        path: path.to_path_buf(),
        name: name.clone(),
        kind: EntryKind::Dir,
    });
    for child in children {
        let mut child_name = name.clone();
        child_name.0.push(b'/');
        child_name.0.extend_from_slice(child.as_bytes());
        walk_one(&path.join(&child), child_name, recursive, visited, entries);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn os(args: &[&str]) -> Vec<OsString> {
        args.iter().map(OsString::from).collect()
    }

    #[test]
    fn remote_paths_are_computer_colon_path_as_in_scp() {
        let remote = |computer: &str, path: &[u8]| CopyArg::Remote {
            computer: computer.into(),
            path: WirePath(path.to_vec()),
        };
        assert_eq!(CopyArg::parse(OsStr::new("pc:~/a")), remote("pc", b"~/a"));
        assert_eq!(CopyArg::parse(OsStr::new("pc:")), remote("pc", b"~"));
        assert_eq!(
            CopyArg::parse(OsStr::new("./a:b")),
            CopyArg::Local("./a:b".into())
        );
        assert_eq!(
            CopyArg::parse(OsStr::new(":x")),
            CopyArg::Local(":x".into())
        );
        assert_eq!(
            CopyArg::parse(OsStr::new("/tmp/a")),
            CopyArg::Local("/tmp/a".into())
        );
    }

    #[test]
    fn one_direction_per_command() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a");
        std::fs::write(&a, "12345").unwrap();
        let a = a.to_str().unwrap();
        let plan = CopyPlan::new(&os(&[a, a, "pc:~/Shared"]), CopyOptions::default()).unwrap();
        assert_eq!(plan.computer, "pc");
        assert_eq!(
            (plan.job.files, plan.job.bytes, plan.job.sources),
            (2, 10, 2)
        );
        assert_eq!(plan.job.direction, CopyDirection::ToComputer);
        for bad in [
            vec!["pc:a", "b:c"],
            vec!["pc:a", a, "/tmp"],
            vec!["pc:a", "other:b", "/tmp"],
            vec![a, "/tmp"],
            vec!["pc:a"],
            vec!["bad name:a", "/tmp"],
        ] {
            assert!(
                matches!(
                    CopyPlan::new(&os(&bad), CopyOptions::default()),
                    Err(ConnectError::InvalidRequest(_))
                ),
                "{bad:?}"
            );
        }
        let dest = dir.path().join("none");
        let error = CopyPlan::new(
            &os(&["pc:a", "pc:b", dest.to_str().unwrap()]),
            CopyOptions::default(),
        );
        assert!(
            matches!(error, Err(ConnectError::InvalidRequest(m)) if m.contains("not a directory"))
        );
    }

    #[test]
    fn files_over_4_gib_are_counted_whole() {
        let dir = tempfile::tempdir().unwrap();
        let big = dir.path().join("disk.img");
        // Sparse: nothing is written.
        std::fs::File::create(&big)
            .unwrap()
            .set_len(5 << 30)
            .unwrap();
        let args = os(&[big.to_str().unwrap(), "pc:~/Shared"]);
        let plan = CopyPlan::new(&args, CopyOptions::default()).unwrap();
        assert_eq!((plan.job.files, plan.job.bytes), (1, 5 << 30));
        assert_eq!(plan.job.describe(), "copy 1 file (5.0 GiB) to ~/Shared");
    }

    #[test]
    fn a_tree_is_walked_depth_first_with_its_names() {
        let dir = tempfile::tempdir().unwrap();
        let top = dir.path().join("top");
        std::fs::create_dir_all(top.join("b")).unwrap();
        std::fs::write(top.join("a"), "1").unwrap();
        std::fs::write(top.join("b/c"), "22").unwrap();
        let names =
            |entries: &[Entry]| -> Vec<String> { entries.iter().map(|e| e.name.shown()).collect() };
        let entries = walk(std::slice::from_ref(&top), true);
        assert_eq!(names(&entries), ["top", "top/a", "top/b", "top/b/c"]);
        let args = os(&[top.to_str().unwrap(), "pc:~/Shared"]);
        let options = CopyOptions {
            recursive: true,
            ..CopyOptions::default()
        };
        let job = CopyPlan::new(&args, options).unwrap().job;
        assert_eq!((job.files, job.bytes, job.dirs), (2, 3, 2));
        let flat = walk(&[top], false);
        assert!(matches!(&flat[0].kind, EntryKind::Unsendable(why) if why.contains("-r")));
    }
}
