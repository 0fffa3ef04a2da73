//! Which names a path beneath a shared folder may take on a Windows
//! computer, one component at a time: a pure check, compiled on every
//! system so that its table of cases runs on Linux too (the Windows
//! `place` calls it). A component Windows would read as something other
//! than a plain name in its folder is refused: `.` and `..`, a drive or an
//! alternate data stream (`:`), a separator, a wildcard or another
//! reserved character, a control character, a device (`CON`, `NUL.txt`,
//! `COM1`…), and a name ending in a dot or a space (which Windows drops, so
//! `report.txt.` would be `report.txt`).

use std::fmt;

/// Why a component cannot name a file on Windows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NameProblem {
    /// Empty, `.` or `..`.
    NotAName,
    /// One of `<>:"/\|?*`: a separator, a drive or stream, a wildcard.
    Reserved(char),
    /// A control character (U+0000 to U+001F).
    Control,
    /// A device's name, with or without an extension.
    Device,
    /// A dot or a space at the end, which Windows drops.
    TrailingDotOrSpace,
}

impl fmt::Display for NameProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NameProblem::NotAName => f.write_str("it is not a name"),
            NameProblem::Reserved(c) => write!(f, "Windows reserves {c:?} in names"),
            NameProblem::Control => f.write_str("it holds a control character"),
            NameProblem::Device => f.write_str("Windows reads it as a device"),
            NameProblem::TrailingDotOrSpace => {
                f.write_str("Windows drops a dot or a space at the end of a name")
            }
        }
    }
}

/// The characters Windows reserves in a name.
const RESERVED: &[char] = &['<', '>', ':', '"', '/', '\\', '|', '?', '*'];

/// Devices that are names in every folder.
const DEVICES: &[&str] = &["CON", "PRN", "AUX", "NUL", "CONIN$", "CONOUT$", "CLOCK$"];

/// What follows `COM` or `LPT` in a port's name (Windows counts the
/// superscript digits too).
const PORT_NUMBERS: &[&str] = &[
    "0", "1", "2", "3", "4", "5", "6", "7", "8", "9", "\u{b9}", "\u{b2}", "\u{b3}",
];

/// Whether `name` is one plain component of a Windows path, as itself.
pub fn check_component(name: &str) -> Result<(), NameProblem> {
    if name.is_empty() || name == "." || name == ".." {
        return Err(NameProblem::NotAName);
    }
    if let Some(reserved) = name.chars().find(|c| RESERVED.contains(c)) {
        return Err(NameProblem::Reserved(reserved));
    }
    if name.chars().any(|c| c < ' ') {
        return Err(NameProblem::Control);
    }
    if name.ends_with('.') || name.ends_with(' ') {
        return Err(NameProblem::TrailingDotOrSpace);
    }
    if is_device(name) {
        return Err(NameProblem::Device);
    }
    Ok(())
}

/// Whether Windows reads `name` as a device: what comes before its first
/// dot, less the spaces at its end, compared without case (`nul.txt`,
/// `Com1 .log`).
fn is_device(name: &str) -> bool {
    let stem = name.split_once('.').map_or(name, |(stem, _)| stem);
    let stem = stem.trim_end_matches(' ').to_ascii_uppercase();
    DEVICES.contains(&stem.as_str())
        || ["COM", "LPT"].into_iter().any(|port| {
            stem.strip_prefix(port)
                .is_some_and(|number| PORT_NUMBERS.contains(&number))
        })
}

#[cfg(test)]
mod tests {
    use super::{NameProblem, check_component};

    #[test]
    fn names_windows_reads_as_something_else_are_refused() {
        let cases: &[(&str, Result<(), NameProblem>)] = &[
            ("report.txt", Ok(())),
            ("Quarterly figures (final)", Ok(())),
            ("été.pdf", Ok(())),
            (".hidden", Ok(())),
            ("..dots", Ok(())),
            ("console.log", Ok(())),
            ("COM10", Ok(())),
            ("nullish", Ok(())),
            ("LPT", Ok(())),
            ("", Err(NameProblem::NotAName)),
            (".", Err(NameProblem::NotAName)),
            ("..", Err(NameProblem::NotAName)),
            ("C:", Err(NameProblem::Reserved(':'))),
            ("file.txt:secret", Err(NameProblem::Reserved(':'))),
            ("file::$DATA", Err(NameProblem::Reserved(':'))),
            ("a\\b", Err(NameProblem::Reserved('\\'))),
            ("a/b", Err(NameProblem::Reserved('/'))),
            ("what?", Err(NameProblem::Reserved('?'))),
            ("*.txt", Err(NameProblem::Reserved('*'))),
            ("<x>", Err(NameProblem::Reserved('<'))),
            ("say \"hi\"", Err(NameProblem::Reserved('"'))),
            ("a|b", Err(NameProblem::Reserved('|'))),
            ("line\nbreak", Err(NameProblem::Control)),
            ("tab\there", Err(NameProblem::Control)),
            ("report.txt.", Err(NameProblem::TrailingDotOrSpace)),
            ("report.txt ", Err(NameProblem::TrailingDotOrSpace)),
            ("...", Err(NameProblem::TrailingDotOrSpace)),
            ("CON", Err(NameProblem::Device)),
            ("con", Err(NameProblem::Device)),
            ("NUL.txt", Err(NameProblem::Device)),
            ("nul.tar.gz", Err(NameProblem::Device)),
            ("Com1 .log", Err(NameProblem::Device)),
            ("COM9", Err(NameProblem::Device)),
            ("lpt1", Err(NameProblem::Device)),
            ("LPT\u{b9}", Err(NameProblem::Device)),
            ("AUX", Err(NameProblem::Device)),
            ("PRN.doc", Err(NameProblem::Device)),
            ("CONIN$", Err(NameProblem::Device)),
            ("conout$.txt", Err(NameProblem::Device)),
        ];
        for (name, expected) in cases {
            assert_eq!(check_component(name), *expected, "{name:?}");
        }
    }

    #[test]
    fn each_problem_reads_as_a_reason() {
        let said = check_component("file.txt:secret").unwrap_err().to_string();
        assert_eq!(said, "Windows reserves ':' in names");
        let said = check_component("NUL").unwrap_err().to_string();
        assert_eq!(said, "Windows reads it as a device");
    }
}
