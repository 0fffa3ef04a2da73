//! The computers this operator has met, as ssh's known_hosts: the first
//! session with a computer remembers its identity, and every later one
//! must prove the same ([`Recognition::Changed`] otherwise: exit status
//! 249).
//!
//! One line per computer: `COMPUTER ed25519 KEY`, the key's 32 bytes in
//! base64. A computer is known by its name, whichever server leads to it,
//! as ssh knows the target of a `ProxyJump` by the target's name: a
//! server that is not the one the operator met the computer through still
//! has to prove the same identity. (An operator of two servers that each
//! have a computer of one name keeps a file per server:
//! `--known-computers`.) Lines starting with `#` and lines this version
//! does not read are kept as they are, but a line that names a computer
//! and does not read is an error for that computer, never a first use.
//! The file is written whole to a temporary file beside it (beside the
//! file a symbolic link points to) and renamed into place, under a lock
//! (`FILE.lock`), so that two `connect`s at once lose neither's computer.

use doorman_e2e::PublicIdentity;
use std::io::Write as _;
use std::path::{Path, PathBuf};

const KIND: &str = "ed25519";

/// What the file says of a computer's identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recognition {
    /// The identity remembered for it.
    Known,
    /// Nothing remembered for it yet.
    New,
    /// Another identity remembered for it.
    Changed { known: PublicIdentity },
}

/// The known-computers file that cannot be read or written.
#[derive(Debug, thiserror::Error)]
#[error("known computers file {path}: {source}")]
pub struct KnownError {
    pub path: PathBuf,
    pub source: std::io::Error,
}

/// The known-computers file at a path.
#[derive(Debug, Clone)]
pub struct KnownComputers {
    path: PathBuf,
}

/// One line of the file, read.
struct Entry<'a> {
    computer: &'a str,
    identity: PublicIdentity,
}

fn entry(line: &str) -> Option<Entry<'_>> {
    let mut fields = line.split_whitespace();
    let (computer, kind, key) = (fields.next()?, fields.next()?, fields.next()?);
    if kind != KIND || fields.next().is_some() || computer.starts_with('#') {
        return None;
    }
    Some(Entry {
        computer,
        identity: PublicIdentity::from_base64(key).ok()?,
    })
}

fn is(entry: &Entry<'_>, computer: &str) -> bool {
    entry.computer.eq_ignore_ascii_case(computer)
}

impl KnownComputers {
    pub fn at(path: impl Into<PathBuf>) -> Self {
        KnownComputers { path: path.into() }
    }

    /// Where the file is unless `--known-computers` or
    /// `DOORMAN_KNOWN_COMPUTERS` says: `doorman/known_computers` in the
    /// user's configuration folder (`$XDG_CONFIG_HOME`, `~/.config`;
    /// `%APPDATA%` on Windows).
    pub fn default_path() -> Option<PathBuf> {
        let config = std::env::var_os("XDG_CONFIG_HOME")
            .filter(|dir| !dir.is_empty())
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("APPDATA").map(PathBuf::from))
            .or_else(|| std::env::var_os("HOME").map(|home| Path::new(&home).join(".config")))?;
        Some(config.join("doorman").join("known_computers"))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn read(&self) -> Result<String, KnownError> {
        match std::fs::read_to_string(&self.path) {
            Ok(text) => Ok(text),
            Err(source) if source.kind() == std::io::ErrorKind::NotFound => Ok(String::new()),
            Err(source) => Err(self.error(source)),
        }
    }

    fn error(&self, source: std::io::Error) -> KnownError {
        KnownError {
            path: self.path.clone(),
            source,
        }
    }

    /// What the file says of `computer` proving `identity`.
    pub fn recognise(
        &self,
        computer: &str,
        identity: &PublicIdentity,
    ) -> Result<Recognition, KnownError> {
        let text = self.read()?;
        for (number, line) in text.lines().enumerate() {
            let names = line
                .split_whitespace()
                .next()
                .is_some_and(|first| first.eq_ignore_ascii_case(computer));
            if names && entry(line).is_none() {
                return Err(self.error(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!(
                        "line {} names {computer} but is not `{computer} {KIND} KEY`: mend or remove it",
                        number + 1
                    ),
                )));
            }
        }
        let remembered = text
            .lines()
            .filter_map(entry)
            .find(|entry| is(entry, computer));
        Ok(match remembered {
            None => Recognition::New,
            Some(entry) if entry.identity == *identity => Recognition::Known,
            Some(entry) => Recognition::Changed {
                known: entry.identity,
            },
        })
    }

    /// Remembers `identity` for `computer`, in place of any other.
    pub fn remember(&self, computer: &str, identity: &PublicIdentity) -> Result<(), KnownError> {
        let _lock = self.lock()?;
        let text = self.read()?;
        let mut lines: Vec<String> = text
            .lines()
            .filter(|line| !entry(line).is_some_and(|entry| is(&entry, computer)))
            .map(str::to_string)
            .collect();
        lines.push(format!("{computer} {KIND} {}", identity.to_base64()));
        self.write(&lines)
    }

    /// Forgets `computer`'s identity; whether one was remembered.
    pub fn remove(&self, computer: &str) -> Result<bool, KnownError> {
        let _lock = self.lock()?;
        let text = self.read()?;
        let forgets = |line: &str| entry(line).is_some_and(|entry| is(&entry, computer));
        let kept: Vec<String> = text
            .lines()
            .filter(|line| !forgets(line))
            .map(str::to_string)
            .collect();
        let removed = text.lines().count() > kept.len();
        if removed {
            self.write(&kept)?;
        }
        Ok(removed)
    }

    fn directory(path: &Path) -> PathBuf {
        match path.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
            _ => PathBuf::from("."),
        }
    }

    /// Holds `FILE.lock` while the file is read, changed and written.
    fn lock(&self) -> Result<std::fs::File, KnownError> {
        std::fs::create_dir_all(Self::directory(&self.path)).map_err(|e| self.error(e))?;
        let mut name = self.path.as_os_str().to_owned();
        name.push(".lock");
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(PathBuf::from(name))
            .map_err(|e| self.error(e))?;
        lock.lock().map_err(|e| self.error(e))?;
        Ok(lock)
    }

    fn write(&self, lines: &[String]) -> Result<(), KnownError> {
        // A symbolic link stays one: the file it points to is replaced.
        let path = std::fs::canonicalize(&self.path).unwrap_or_else(|_| self.path.clone());
        let dir = Self::directory(&path);
        std::fs::create_dir_all(&dir).map_err(|e| self.error(e))?;
        let mut file = tempfile::NamedTempFile::new_in(&dir).map_err(|e| self.error(e))?;
        for line in lines {
            writeln!(file, "{line}").map_err(|e| self.error(e))?;
        }
        file.as_file().sync_all().map_err(|e| self.error(e))?;
        file.persist(&path).map_err(|e| self.error(e.error))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use doorman_e2e::Identity;

    #[test]
    fn the_first_identity_is_remembered_and_a_changed_one_is_told_apart() {
        let dir = tempfile::tempdir().unwrap();
        let known = KnownComputers::at(dir.path().join("sub").join("known_computers"));
        let one = Identity::generate().unwrap().public();
        let other = Identity::generate().unwrap().public();
        assert_eq!(known.recognise("pc", &one).unwrap(), Recognition::New);
        known.remember("pc", &one).unwrap();
        assert_eq!(known.recognise("PC", &one).unwrap(), Recognition::Known);
        assert_eq!(
            known.recognise("pc", &other).unwrap(),
            Recognition::Changed { known: one }
        );
        known.remember("laptop", &other).unwrap();
        assert!(known.remove("pc").unwrap());
        assert_eq!(known.recognise("pc", &other).unwrap(), Recognition::New);
        assert_eq!(
            known.recognise("laptop", &other).unwrap(),
            Recognition::Known
        );
        assert!(!known.remove("pc").unwrap());
    }

    /// A damaged line for a computer is not a first use of it.
    #[test]
    fn a_line_that_names_the_computer_but_does_not_read_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("known_computers");
        std::fs::write(&path, "pc ed25519 not-a-key\n").unwrap();
        let known = KnownComputers::at(&path);
        let one = Identity::generate().unwrap().public();
        let error = known.recognise("pc", &one).unwrap_err().to_string();
        assert!(error.contains("line 1 names pc"), "{error}");
        assert_eq!(known.recognise("laptop", &one).unwrap(), Recognition::New);
    }

    #[cfg(unix)]
    #[test]
    fn a_file_behind_a_symbolic_link_stays_behind_it() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("real");
        std::fs::write(&real, "").unwrap();
        let link = dir.path().join("known_computers");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        let known = KnownComputers::at(&link);
        known
            .remember("pc", &Identity::generate().unwrap().public())
            .unwrap();
        assert!(
            std::fs::symlink_metadata(&link)
                .unwrap()
                .file_type()
                .is_symlink()
        );
        assert!(
            std::fs::read_to_string(&real)
                .unwrap()
                .starts_with("pc ed25519 ")
        );
    }

    #[test]
    fn comments_and_lines_of_other_kinds_are_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("known_computers");
        std::fs::write(&path, "# mine\nsomething else entirely\n").unwrap();
        let known = KnownComputers::at(&path);
        let one = Identity::generate().unwrap().public();
        known.remember("pc", &one).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(
            text.starts_with("# mine\nsomething else entirely\npc ed25519 "),
            "{text}"
        );
    }
}
