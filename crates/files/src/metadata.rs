//! What a copy tells and keeps of a file or folder, the same on every
//! system: each system's `place` fills [`Metadata`] and [`Entry`] in (Unix
//! from `fstat`, Windows from its metadata) and takes [`Kept`], and
//! `send`, `receive` and `browse` see only these.

/// What is at a place, as a copy sends it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Metadata {
    /// A directory.
    pub dir: bool,
    /// Its size in bytes.
    pub len: u64,
    /// Its permission bits with set-user-ID, set-group-ID and sticky
    /// (`& 0o7777`), as a copy sends them. Windows has none: 0644 (0444
    /// when read-only) for a file and 0755 for a folder stand in.
    pub mode: u32,
    /// Its modification time, seconds since the epoch…
    pub mtime_secs: i64,
    /// …and nanoseconds past that second.
    pub mtime_nanos: i64,
    /// Device and file number, which tell one directory from another: a
    /// tree is sent with none twice (a loop of symbolic links ends). `None`
    /// where the system says none (Windows, through std): there no walk
    /// follows a link, so no tree loops.
    pub id: Option<(u64, u64)>,
}

impl Metadata {
    /// Whether a file read while it was `self` is `after` now another:
    /// its size or modification time moved.
    pub fn changed(&self, after: &Metadata) -> bool {
        (self.len, self.mtime_secs, self.mtime_nanos)
            != (after.len, after.mtime_secs, after.mtime_nanos)
    }
}

/// One name in a directory, as a listing shows it (`Place::entries`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub name: std::ffi::OsString,
    pub dir: bool,
    pub size: u64,
    /// Modification time, seconds since the epoch.
    pub mtime: i64,
}

/// The mode and times a copy keeps (`cp -p`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Kept {
    /// The sender's mode bits; Windows keeps none (it has no modes).
    #[cfg_attr(windows, allow(dead_code))]
    pub mode: u32,
    pub mtime_secs: i64,
}
