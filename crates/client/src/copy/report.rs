//! How a copy shows itself: a progress bar on a terminal (bytes, rate,
//! time left), nothing but failures otherwise, or one JSON object per file
//! (`--json`).

use crate::Progress;
use doorman_core::display::hidden_kind;
use doorman_wire::message::files::{human_size, plural};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::json;

/// A copy's news, as the operator sees it.
pub(crate) struct CopyReport<'a> {
    progress: &'a mut Progress,
    bar: Option<ProgressBar>,
}

impl<'a> CopyReport<'a> {
    /// `total`: the bytes expected, when known (copying to the computer).
    pub(crate) fn new(progress: &'a mut Progress, total: Option<u64>) -> Self {
        let bar = progress.is_live().then(|| {
            let bar = ProgressBar::with_draw_target(total, ProgressDrawTarget::stderr());
            let template = if total.is_some() {
                "{wide_bar} {binary_bytes}/{binary_total_bytes} {binary_bytes_per_sec} {eta} left"
            } else {
                "{spinner} {binary_bytes} {binary_bytes_per_sec} {msg}"
            };
            if let Ok(style) = ProgressStyle::with_template(template) {
                bar.set_style(style);
            }
            bar
        });
        Self { progress, bar }
    }

    /// `n` more bytes went.
    pub(crate) fn moved(&self, n: u64) {
        if let Some(bar) = &self.bar {
            bar.inc(n);
        }
    }

    /// A file arrives, of `size` bytes (copying from the computer).
    pub(crate) fn expecting(&self, name: &str, size: u64) {
        if let Some(bar) = &self.bar {
            bar.set_message(format!("{} ({})", visible(name), human_size(size)));
        }
    }

    /// A file continues at `offset` (`--resume`): those bytes were there.
    pub(crate) fn resumed(&mut self, name: &str, offset: u64) {
        self.moved(offset);
        if self.progress.is_json() {
            self.progress.event(json!({
                "event": "file_resumed",
                "name": name,
                "offset": offset,
            }));
        }
    }

    /// The file at `path` went whole.
    pub(crate) fn copied(&mut self, path: &str, size: u64, sha256: &str) {
        if self.progress.is_json() {
            self.progress.event(json!({
                "event": "file_copied",
                "path": path,
                "size": size,
                "sha256": sha256,
            }));
        }
    }

    /// `name` could not be copied, for `message`.
    pub(crate) fn failed(&mut self, name: &str, message: &str) {
        if self.progress.is_json() {
            self.progress.event(json!({
                "event": "file_failed",
                "name": name,
                "message": message,
            }));
            return;
        }
        // The computer's words, and names it chose: shown, not obeyed.
        let line = format!("doorman: {}", visible(message));
        match &self.bar {
            Some(bar) => bar.suspend(|| eprintln!("{line}")),
            None => self.progress.say(&line),
        }
    }

    /// The copy ended: `files` and `bytes` went, `failed` did not.
    pub(crate) fn ended(&mut self, files: u64, bytes: u64, failed: u64) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
        let copied = format!("copied {} ({})", plural(files, "file"), human_size(bytes));
        if self.progress.is_json() {
            self.progress.event(json!({
                "event": "copy_ended",
                "files": files,
                "bytes": bytes,
                "failed": failed,
            }));
        } else if failed > 0 {
            let failed = plural(failed, "file");
            self.progress.say(&format!(
                "doorman: partly copied: {copied}; {failed} failed"
            ));
        } else if self.progress.is_live() {
            self.progress.say(&copied);
        }
    }
}

impl Drop for CopyReport<'_> {
    fn drop(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
    }
}

/// `text` with every hidden character spelled out (`\u{1b}`), so that
/// what the computer says cannot move this terminal's cursor or forge a
/// line; backslashes stay as they are (names come escaped already).
fn visible(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if hidden_kind(c).is_some() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn what_the_computer_says_cannot_drive_the_terminal() {
        assert_eq!(
            super::visible("a\u{1b}]0;owned\u{7}\nb \\xff é"),
            "a\\u{1b}]0;owned\\u{7}\\nb \\xff é"
        );
    }
}
