//! Access rules: which operator may reach which computers, for which
//! services. A [`Grant`] pairs a glob on computer names with a set of
//! services; an operator reaches what any of its grants matches, and
//! nothing without one.

use crate::names::validate_name;
use std::fmt;
use std::str::FromStr;

/// What an operator may do on a computer once in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ServiceKind {
    /// An interactive shell in a pseudo-terminal.
    Shell,
    /// One command, its output streamed back.
    Command,
    /// TCP forwarding (`-L`).
    Forward,
    /// Copying files (`doorman cp`, the console's Files view).
    Files,
}

impl ServiceKind {
    pub const ALL: [ServiceKind; 4] = [
        ServiceKind::Shell,
        ServiceKind::Command,
        ServiceKind::Forward,
        ServiceKind::Files,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ServiceKind::Shell => "shell",
            ServiceKind::Command => "command",
            ServiceKind::Forward => "forward",
            ServiceKind::Files => "files",
        }
    }
}

impl fmt::Display for ServiceKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ServiceKind {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ServiceKind::ALL
            .into_iter()
            .find(|kind| kind.as_str() == s)
            .ok_or_else(|| {
                format!("unknown service {s:?}: expected shell, command, forward or files")
            })
    }
}

/// A set of services, written `shell,command,forward,files`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct ServiceSet(u8);

impl ServiceSet {
    /// Every service. Grants are stored by name, so a grant made before a
    /// service existed does not gain it.
    pub const ALL: ServiceSet = ServiceSet(0b1111);

    fn bit(kind: ServiceKind) -> u8 {
        match kind {
            ServiceKind::Shell => 1,
            ServiceKind::Command => 2,
            ServiceKind::Forward => 4,
            ServiceKind::Files => 8,
        }
    }

    pub fn contains(self, kind: ServiceKind) -> bool {
        self.0 & Self::bit(kind) != 0
    }

    pub fn with(self, kind: ServiceKind) -> Self {
        ServiceSet(self.0 | Self::bit(kind))
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    pub fn kinds(self) -> impl Iterator<Item = ServiceKind> {
        ServiceKind::ALL
            .into_iter()
            .filter(move |kind| self.contains(*kind))
    }
}

impl fmt::Display for ServiceSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self.kinds().map(ServiceKind::as_str).collect();
        f.write_str(&names.join(","))
    }
}

impl FromStr for ServiceSet {
    type Err = String;

    /// A comma-separated list of services; at least one.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut set = ServiceSet::default();
        for name in s.split(',').map(str::trim) {
            set = set.with(name.parse()?);
        }
        Ok(set)
    }
}

/// A glob on computer names: name characters, with `*` for any run of them
/// and `?` for one.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ComputerPattern(String);

impl ComputerPattern {
    /// `*`: every computer.
    pub fn any() -> Self {
        ComputerPattern("*".into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn matches(&self, computer: &str) -> bool {
        glob_matches(self.0.as_bytes(), computer.as_bytes())
    }
}

impl fmt::Display for ComputerPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for ComputerPattern {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.is_empty() {
            return Err("computer pattern must not be empty".into());
        }
        // A pattern is a name in which `*` and `?` stand for name characters.
        let probe: String = s
            .chars()
            .map(|c| if matches!(c, '*' | '?') { 'x' } else { c })
            .collect();
        validate_name(&probe).map_err(|e| format!("computer pattern {s:?} {e} (or '*', '?')"))?;
        Ok(ComputerPattern(s.to_string()))
    }
}

/// Iterative glob match with one backtrack point: linear in practice, no
/// recursion an attacker could deepen.
fn glob_matches(pattern: &[u8], name: &[u8]) -> bool {
    let (mut p, mut n) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while n < name.len() {
        match pattern.get(p) {
            Some(b'*') => {
                star = Some((p, n));
                p += 1;
            }
            Some(&c) if c == b'?' || c == name[n] => {
                p += 1;
                n += 1;
            }
            _ => match star {
                Some((star_p, star_n)) => {
                    p = star_p + 1;
                    n = star_n + 1;
                    star = Some((star_p, star_n + 1));
                }
                None => return false,
            },
        }
    }
    pattern[p..].iter().all(|&c| c == b'*')
}

/// One access rule of an operator.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Grant {
    pub computers: ComputerPattern,
    pub services: ServiceSet,
}

impl Grant {
    pub fn permits(&self, computer: &str, service: ServiceKind) -> bool {
        self.services.contains(service) && self.computers.matches(computer)
    }
}

/// Whether any of an operator's grants lets it reach `computer` for `service`.
pub fn permits(grants: &[Grant], computer: &str, service: ServiceKind) -> bool {
    grants.iter().any(|grant| grant.permits(computer, service))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn pattern(s: &str) -> ComputerPattern {
        s.parse().unwrap()
    }

    #[test]
    fn globs_match_whole_names() {
        assert!(pattern("*").matches("office-pc"));
        assert!(pattern("office-*").matches("office-pc"));
        assert!(pattern("office-*").matches("office-"));
        assert!(!pattern("office-*").matches("lab-office-pc"));
        assert!(pattern("*-pc").matches("lab-pc"));
        assert!(pattern("lab-??").matches("lab-01"));
        assert!(!pattern("lab-??").matches("lab-001"));
        assert!(pattern("a*b*c").matches("axxbyyc"));
        assert!(!pattern("a*b*c").matches("axxbyy"));
        assert!(pattern("office-pc").matches("office-pc"));
        assert!(!pattern("office-pc").matches("office-pc2"));
    }

    #[test]
    fn patterns_are_names_with_wildcards() {
        for bad in ["", "a b", "a/b", "-x", "é*"] {
            assert!(bad.parse::<ComputerPattern>().is_err(), "{bad:?}");
        }
        for good in ["*", "office-*", "?x", "web01.example"] {
            assert!(good.parse::<ComputerPattern>().is_ok(), "{good:?}");
        }
    }

    #[test]
    fn service_sets_parse_and_print() {
        let set: ServiceSet = "forward,shell".parse().unwrap();
        assert!(set.contains(ServiceKind::Shell) && set.contains(ServiceKind::Forward));
        assert!(!set.contains(ServiceKind::Command));
        assert_eq!(set.to_string(), "shell,forward");
        assert!("shell,desk".parse::<ServiceSet>().is_err());
        assert!("".parse::<ServiceSet>().is_err());
        assert_eq!(ServiceSet::ALL.to_string(), "shell,command,forward,files");
    }

    #[test]
    fn an_operator_reaches_only_what_a_grant_matches() {
        let grants = vec![
            Grant {
                computers: pattern("office-*"),
                services: "shell,command".parse().unwrap(),
            },
            Grant {
                computers: pattern("lab-pc"),
                services: "forward".parse().unwrap(),
            },
        ];
        assert!(permits(&grants, "office-1", ServiceKind::Shell));
        assert!(!permits(&grants, "office-1", ServiceKind::Forward));
        assert!(permits(&grants, "lab-pc", ServiceKind::Forward));
        assert!(!permits(&grants, "lab-pc", ServiceKind::Shell));
        assert!(!permits(&grants, "home-pc", ServiceKind::Command));
        assert!(!permits(&[], "office-1", ServiceKind::Shell));
    }

    proptest! {
        /// A pattern without wildcards matches exactly itself; `*` matches all.
        #[test]
        fn literal_patterns_match_only_themselves(a in "[a-z0-9]{1,12}", b in "[a-z0-9]{1,12}") {
            prop_assert_eq!(pattern(&a).matches(&b), a == b);
            prop_assert!(pattern("*").matches(&b));
            let prefix = format!("{}*", &a[..1]);
            prop_assert_eq!(pattern(&prefix).matches(&b), b.starts_with(&a[..1]));
        }
    }
}
