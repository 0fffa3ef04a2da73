//! A file being received on this side: written under a name of its own
//! beside its final one (`.NAME.doorman-RANDOM.part`, or with `--resume`
//! `.NAME.doorman.part`, which a copy cut short leaves for the next), and
//! renamed over the final name only when complete. Dropped otherwise, it is
//! removed, unless it is a start to resume.

use std::ffi::OsString;
use std::fs::{File, OpenOptions};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

pub(super) struct PartFile {
    file: File,
    path: PathBuf,
    /// Left where it is when dropped.
    kept_if_cut: bool,
}

impl PartFile {
    /// A new part file for `target`; with `resume`, the one a copy cut
    /// short left, if any, and its length.
    pub(super) fn open(target: &Path, resume: bool) -> std::io::Result<(PartFile, u64)> {
        let dir = target
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let mut name = OsString::from(".");
        name.push(target.file_name().unwrap_or_default());
        let mut options = OpenOptions::new();
        options
            .mode(0o600)
            .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32);
        if resume {
            name.push(".doorman.part");
            let path = dir.join(name);
            let file = options.read(true).write(true).create(true).open(&path)?;
            let metadata = file.metadata()?;
            if !metadata.is_file() {
                return Err(std::io::Error::other(
                    "its .doorman.part is not a regular file",
                ));
            }
            let part = PartFile {
                file,
                path,
                kept_if_cut: true,
            };
            return Ok((part, metadata.len()));
        }
        name.push(".doorman-");
        for byte in random_bytes() {
            name.push(format!("{byte:02x}"));
        }
        name.push(".part");
        let path = dir.join(name);
        let file = options.write(true).create_new(true).open(&path)?;
        let part = PartFile {
            file,
            path,
            kept_if_cut: false,
        };
        Ok((part, 0))
    }

    pub(super) fn file(&mut self) -> &mut File {
        &mut self.file
    }

    /// Renames the file over `target`.
    pub(super) fn persist(mut self, target: &Path) -> std::io::Result<()> {
        std::fs::rename(&self.path, target)?;
        self.path = PathBuf::new();
        Ok(())
    }

    /// Removes the file: what it holds is not to be resumed.
    pub(super) fn discard(mut self) {
        self.kept_if_cut = false;
    }
}

impl Drop for PartFile {
    fn drop(&mut self) {
        if !self.kept_if_cut && !self.path.as_os_str().is_empty() {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

fn random_bytes() -> [u8; 8] {
    let mut bytes = [0u8; 8];
    let _ = ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes);
    bytes
}
