//! The repository stands alone: every link in the README and the docs
//! resolves to a file inside the repository (people clone the project, not
//! the files beside it), and every web link is one a reader can open.

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
