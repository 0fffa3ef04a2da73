//! How the settings window reaches the owner's browser without showing its
//! one-time URL to anyone else. A process's arguments are public (every
//! user reads `/proc/PID/cmdline`), so the browser opener never gets the
//! URL: it gets the path of a small HTML file that sends the browser on to
//! it, as Jupyter's `jupyter-*-open.html` does. The file is the owner's
//! alone (0600) in a directory of its own (0700, made afresh, so nothing
//! another user prepared can stand in for it) under the owner's runtime
//! directory, `$XDG_RUNTIME_DIR`, or the system's temporary directory where
//! there is none; it is removed with the window.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};

/// A 0600 file that redirects the browser to the settings window.
pub(crate) struct RedirectFile {
    path: PathBuf,
    /// The private directory that holds it; removing it removes the file.
    _dir: tempfile::TempDir,
}

impl RedirectFile {
    /// Writes the file for `url` under the owner's runtime directory.
    pub fn create(url: &str) -> std::io::Result<RedirectFile> {
        Self::create_in(&runtime_dir(), url)
    }

    /// Writes the file for `url` in a fresh private directory under `base`.
    pub fn create_in(base: &Path, url: &str) -> std::io::Result<RedirectFile> {
        let mut builder = tempfile::Builder::new();
        builder.prefix("doorman-settings-");
        // Windows: the user's temporary directory is theirs alone already.
        #[cfg(unix)]
        builder.permissions(std::os::unix::fs::PermissionsExt::from_mode(0o700));
        let dir = builder.tempdir_in(base)?;
        let path = dir.path().join("open.html");
        let mut options = OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options.open(&path)?;
        file.write_all(redirect_page(url).as_bytes())?;
        file.sync_all()?;
        Ok(RedirectFile { path, _dir: dir })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// The owner's runtime directory, `$XDG_RUNTIME_DIR` (the user's own,
/// 0700, emptied at logout), or the system's temporary directory where it
/// is not set. Either way the file's own directory is made afresh with mode
/// 0700, so the base need not be private.
fn runtime_dir() -> PathBuf {
    std::env::var_os("XDG_RUNTIME_DIR")
        .map(PathBuf::from)
        .filter(|dir| dir.is_absolute() && dir.is_dir())
        .unwrap_or_else(std::env::temp_dir)
}

/// The page: an immediate refresh to `url`, and a link to it for a browser
/// that does not follow refreshes.
fn redirect_page(url: &str) -> String {
    let url = escape(url);
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta http-equiv=\"refresh\" content=\"0;url={url}\">\n\
         <meta name=\"referrer\" content=\"no-referrer\">\n\
         <title>Doorman settings</title>\n</head>\n<body>\n\
         <p>Opening the Doorman settings… If nothing happens, <a href=\"{url}\">open them here</a>.</p>\n\
         </body>\n</html>\n"
    )
}

fn escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => escaped.push_str("&amp;"),
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            '"' => escaped.push_str("&quot;"),
            '\'' => escaped.push_str("&#39;"),
            c => escaped.push(c),
        }
    }
    escaped
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn the_file_is_the_owners_alone_and_leads_to_the_url() {
        let base = tempfile::tempdir().unwrap();
        let url = "http://127.0.0.1:4321/open/secret-part";
        let file = RedirectFile::create_in(base.path(), url).unwrap();
        let mode = |path: &Path| std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(file.path()), 0o600);
        let dir = file.path().parent().unwrap().to_path_buf();
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(dir.parent(), Some(base.path()));
        let page = std::fs::read_to_string(file.path()).unwrap();
        assert!(page.contains(&format!("content=\"0;url={url}\"")), "{page}");
        drop(file);
        assert!(!dir.exists(), "removed with the window");
    }

    #[test]
    fn the_url_cannot_break_out_of_its_attribute() {
        let page = redirect_page("http://x/\"><script>alert(1)</script>");
        assert!(!page.contains("<script>"), "{page}");
        assert!(page.contains("&quot;&gt;&lt;script&gt;"), "{page}");
    }
}
