//! The documentation users get: every link in the README and the docs
//! resolves to a file inside the repository (people clone the project, not
//! the files beside it) and every web link is https; the shell completions
//! and manual pages the binary generates from its own command line parse
//! (`bash -n`, `groff`).

use std::path::{Path, PathBuf};

fn repository() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("the repository root")
}

/// The Markdown files users read.
fn documents(root: &Path) -> Vec<PathBuf> {
    let mut files = vec![root.join("README.md"), root.join("SECURITY.md")];
    for dir in ["docs", "contrib"] {
        let mut stack = vec![root.join(dir)];
        while let Some(dir) = stack.pop() {
            for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
                let path = entry.path();
                if path.is_dir() {
                    stack.push(path);
                } else if path.extension().is_some_and(|e| e == "md") {
                    files.push(path);
                }
            }
        }
    }
    files
}

/// The targets of `[text](target)` links, code spans left out.
fn links(markdown: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut in_fence = false;
    for line in markdown.lines() {
        if line.trim_start().starts_with("```") {
            in_fence = !in_fence;
            continue;
        }
        if in_fence {
            continue;
        }
        // Inline code is not a link.
        let prose: String = line
            .split('`')
            .enumerate()
            .filter(|(i, _)| i % 2 == 0)
            .map(|(_, part)| part)
            .collect::<Vec<_>>()
            .join(" ");
        let mut rest = prose.as_str();
        while let Some(start) = rest.find("](") {
            let after = &rest[start + 2..];
            let Some(end) = after.find(')') else { break };
            found.push(after[..end].trim().to_string());
            rest = &after[end..];
        }
    }
    found
}

#[test]
fn every_link_in_the_docs_resolves_inside_the_repository() {
    let root = repository();
    let mut checked = 0;
    for document in documents(&root) {
        let text = std::fs::read_to_string(&document).expect("a readable document");
        for target in links(&text) {
            if target.starts_with("https://") || target.starts_with("mailto:") {
                continue;
            }
            assert!(
                !target.starts_with("http://"),
                "{}: {target} is not an https link",
                document.display()
            );
            let file = target.split('#').next().unwrap_or_default();
            if file.is_empty() {
                continue;
            }
            let resolved = document
                .parent()
                .expect("a directory")
                .join(file)
                .canonicalize()
                .unwrap_or_else(|_| {
                    panic!("{}: the link {target} leads nowhere", document.display())
                });
            assert!(
                resolved.starts_with(&root),
                "{}: the link {target} leaves the repository",
                document.display()
            );
            checked += 1;
        }
    }
    assert!(checked > 0, "the docs link to each other");
}

#[test]
fn the_link_finder_finds_links_and_skips_code() {
    let found = links("see [a](docs/a.md) and `[b](c)`\n```\n[d](e)\n```\n[f](g.md#h)");
    assert_eq!(found, ["docs/a.md", "g.md#h"]);
}

/// Runs the binary; its standard output.
fn doorman(args: &[&str]) -> Vec<u8> {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_doorman"))
        .args(args)
        .output()
        .expect("doorman runs");
    assert!(
        output.status.success(),
        "doorman {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    output.stdout
}

/// Pipes `input` into `program args`; whether it succeeded, and its stderr.
fn check(program: &str, args: &[&str], input: &[u8]) -> (bool, String) {
    use std::io::Write;
    let mut child = std::process::Command::new(program)
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{program}: {e}"));
    child.stdin.take().unwrap().write_all(input).unwrap();
    let output = child.wait_with_output().unwrap();
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stderr).to_string(),
    )
}

#[test]
fn the_bash_completion_script_parses_and_knows_the_commands() {
    let script = doorman(&["completions", "bash"]);
    let (ok, said) = check("bash", &["-n"], &script);
    assert!(ok, "{said}");
    let text = String::from_utf8_lossy(&script);
    for command in ["connect", "server", "agent", "settings", "consent", "admin"] {
        assert!(text.contains(command), "{command} missing");
    }
    for shell in ["zsh", "fish"] {
        assert!(!doorman(&["completions", shell]).is_empty());
    }
}

#[test]
fn every_manual_page_renders_without_a_warning() {
    if doorman_test_support::which("groff").is_none() {
        doorman_test_support::skip_without("groff", "apt-get install groff-base");
        return;
    }
    for command in [
        &[][..],
        &["connect"],
        &["server"],
        &["agent"],
        &["agent", "join"],
        &["settings"],
        &["settings", "open"],
        &["consent"],
        &["admin", "operator"],
        &["admin", "agent"],
        &["known"],
        &["demo"],
    ] {
        let mut args = vec!["man"];
        args.extend_from_slice(command);
        let page = doorman(&args);
        let (ok, said) = check("groff", &["-k", "-man", "-Tutf8", "-ww", "-z"], &page);
        assert!(ok && said.is_empty(), "doorman man {command:?}: {said}");
        let name = ["doorman"]
            .iter()
            .chain(command)
            .copied()
            .collect::<Vec<_>>()
            .join("\\-");
        assert!(
            String::from_utf8_lossy(&page).contains(&format!("{name} \\-")),
            "doorman man {command:?} names itself"
        );
    }
}

#[test]
fn man_for_an_unknown_command_says_so() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_doorman"))
        .args(["man", "nothing"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let said = String::from_utf8_lossy(&output.stderr);
    assert!(said.contains("no command doorman nothing"), "{said}");
    assert_eq!(said.trim().lines().count(), 1, "{said}");
}
