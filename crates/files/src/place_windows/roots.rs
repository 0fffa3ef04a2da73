//! The folders a Windows computer shares, and how an operator's path
//! resolves to a place inside one of them (Windows's half of what Unix's
//! `place` does in one file): `~` is the home directory, `/` and `\` both
//! separate, a `..` anywhere is refused, the shared folder's part compares
//! without case, and every name beneath it must be one Windows reads as
//! itself ([`crate::windows_names`]).

use super::{Place, PlaceError, check_name, utf8};
use std::path::{Component, Path, PathBuf};

/// The folders the owner shares, as configured (`~` expanded).
#[derive(Clone, Debug)]
pub struct Roots {
    roots: Vec<PathBuf>,
    home: PathBuf,
}

impl Roots {
    /// The roots as the settings name them; `~` is `home`.
    pub fn new(configured: &[String], home: &Path) -> Self {
        let roots = configured.iter().map(|root| expand(root, home)).collect();
        Self {
            roots,
            home: home.to_path_buf(),
        }
    }

    /// Resolves `remote` (absolute with its drive, `~/…`, or relative to
    /// the home directory) to a place inside a root. Refused: a `..`
    /// anywhere, a path under no root, and a name beneath the root that
    /// Windows would read as something else.
    pub fn resolve(&self, remote: &[u8]) -> Result<Place, PlaceError> {
        if self.roots.is_empty() {
            return Err(PlaceError::NoRoots);
        }
        let path = expand(utf8(remote)?, &self.home);
        let outside = || PlaceError::OutsideRoots {
            path: remote.escape_ascii().to_string(),
        };
        if path.components().any(|c| c == Component::ParentDir) {
            return Err(outside());
        }
        // The longest root that holds it (roots may nest).
        let (root, rest) = self
            .roots
            .iter()
            .filter_map(|root| Some((root, strip_root(&path, root)?)))
            .max_by_key(|(root, _)| root.as_os_str().len())
            .ok_or_else(outside)?;
        let mut beneath = PathBuf::new();
        for component in rest {
            match component {
                Component::Normal(name) => {
                    check_name(name)?;
                    beneath.push(name);
                }
                Component::CurDir => {}
                Component::Prefix(_) | Component::RootDir | Component::ParentDir => {
                    return Err(outside());
                }
            }
        }
        Ok(Place {
            root: root.clone(),
            beneath,
        })
    }

    /// The roots among these that `paths` name, each exactly: what a
    /// browsing session (the console's Files view) may reach. A path
    /// inside a root is refused as well as one outside: a root is opened
    /// by its path, which a folder inside one must never be.
    pub fn only<'a>(&self, paths: impl IntoIterator<Item = &'a [u8]>) -> Result<Roots, PlaceError> {
        let mut roots = Vec::new();
        for path in paths {
            let place = self.resolve(path)?;
            if place.name().is_some() {
                return Err(PlaceError::NotShared {
                    path: path.escape_ascii().to_string(),
                });
            }
            roots.push(place.root);
        }
        if roots.is_empty() {
            return Err(PlaceError::NoRoots);
        }
        Ok(Roots {
            roots,
            home: self.home.clone(),
        })
    }
}

/// `~`, `~/…` and `~\…` under `home`; anything else not absolute is
/// relative to `home` as well.
fn expand(path: &str, home: &Path) -> PathBuf {
    if path == "~" {
        return home.to_path_buf();
    }
    if let Some(rest) = path.strip_prefix("~/").or_else(|| path.strip_prefix("~\\")) {
        return home.join(rest);
    }
    let path = Path::new(path);
    if path.is_absolute() {
        path.to_path_buf()
    } else {
        home.join(path)
    }
}

/// What of `path` lies beneath `root`, when `root` holds it: component by
/// component, without case (Windows's names are), so that `c:/users/x`
/// is under `C:\Users`.
fn strip_root<'a>(path: &'a Path, root: &Path) -> Option<std::path::Components<'a>> {
    let mut rest = path.components();
    for part in root.components() {
        let next = rest.next()?;
        let same = match (part.as_os_str().to_str(), next.as_os_str().to_str()) {
            (Some(part), Some(next)) => part.to_lowercase() == next.to_lowercase(),
            _ => part == next,
        };
        if !same {
            return None;
        }
    }
    Some(rest)
}
