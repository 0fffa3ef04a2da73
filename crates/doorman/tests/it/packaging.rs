//! Issue 31, "The packaged services": the server unit's port-443 lines
//! work once uncommented as its comment says (read with systemd's rules
//! for capability sets), and the agent's user service, `settings` (and its
//! window), `consent` and `agent join` all use one default settings file;
//! an error about it names `--config`.

use doorman_test_support::process::run_in;
use std::collections::BTreeSet;
use std::path::Path;

const DOORMAN: &str = env!("CARGO_BIN_EXE_doorman");

fn unit(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../contrib/systemd")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The capabilities `key` (CapabilityBoundingSet= or AmbientCapabilities=)
/// leaves in the [Service] section, as systemd reads it: an empty
/// assignment resets the set, each other one adds to it. `None` when the
/// unit never sets it (every capability for the bounding set, none
/// ambient).
fn capabilities(unit: &str, key: &str) -> Option<BTreeSet<String>> {
    let mut set: Option<BTreeSet<String>> = None;
    let mut in_service = false;
    for line in unit.lines().map(str::trim) {
        if line.starts_with('[') {
            in_service = line == "[Service]";
            continue;
        }
        let Some(value) = line
            .strip_prefix(key)
            .and_then(|rest| rest.strip_prefix('='))
        else {
            continue;
        };
        if !in_service {
            continue;
        }
        assert!(
            !value.starts_with('~'),
            "{key}: an inverted set is not read here"
        );
        let set = set.get_or_insert_with(BTreeSet::new);
        if value.is_empty() {
            set.clear();
        } else {
            set.extend(value.split_whitespace().map(String::from));
        }
    }
    set
}

#[test]
fn the_server_units_port_443_lines_grant_the_capability_once_uncommented() {
    let shipped = unit("doorman-server.service");
    assert_eq!(
        capabilities(&shipped, "CapabilityBoundingSet"),
        Some(BTreeSet::new()),
        "no capabilities as shipped"
    );
    assert_eq!(capabilities(&shipped, "AmbientCapabilities"), None);
    assert!(shipped.contains("uncomment"), "the comment says what to do");

    // What the comment asks: uncomment the two lines that name the capability.
    let edited: String = shipped
        .lines()
        .map(|line| match line.strip_prefix('#') {
            Some(rest) if rest.contains("=CAP_NET_BIND_SERVICE") => rest,
            _ => line,
        })
        .collect::<Vec<_>>()
        .join("\n");
    assert_eq!(
        edited
            .lines()
            .filter(|l| l.contains("=CAP_NET_BIND_SERVICE"))
            .count(),
        2,
        "{edited}"
    );
    let wanted = BTreeSet::from(["CAP_NET_BIND_SERVICE".to_string()]);
    assert_eq!(
        capabilities(&edited, "CapabilityBoundingSet"),
        Some(wanted.clone())
    );
    assert_eq!(capabilities(&edited, "AmbientCapabilities"), Some(wanted));
}

#[test]
fn capability_sets_are_read_with_systemds_rules() {
    let unit = "[Unit]\nCapabilityBoundingSet=CAP_X\n[Service]\nCapabilityBoundingSet=CAP_A\n\
                CapabilityBoundingSet=\nCapabilityBoundingSet=CAP_B CAP_C\n";
    let set = capabilities(unit, "CapabilityBoundingSet").unwrap();
    assert_eq!(set.into_iter().collect::<Vec<_>>(), ["CAP_B", "CAP_C"]);
}

#[test]
fn the_agents_user_service_reads_the_default_settings_file() {
    let agent = unit("doorman-agent.service");
    let exec = agent
        .lines()
        .find(|l| l.starts_with("ExecStart="))
        .expect("ExecStart");
    assert_eq!(exec, "ExecStart=/usr/bin/doorman agent");
    assert!(!agent.contains("DOORMAN_AGENT_CONFIG"), "{agent}");
}

const KEY: &str = "dak_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";

fn text(path: &Path) -> String {
    path.to_str().expect("utf-8 path").to_string()
}

/// The first line of `settings show` for the file at `path`.
fn effective(path: &Path) -> String {
    format!("# effective settings of {}\n", path.display())
}

/// Writes a valid settings file at `path`.
fn settings_at(path: &Path) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let text =
        format!("server = \"https://doorman.example.com\"\nname = \"pc\"\nkey = \"{KEY}\"\n");
    std::fs::write(path, text).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_command_reads_one_default_settings_file_and_errors_name_config() {
    let dir = tempfile::tempdir().unwrap();
    let xdg = dir.path().join("xdg");
    let home = dir.path().join("home");
    std::fs::create_dir_all(&home).unwrap();
    let show = |env: Vec<(&'static str, String)>| async move {
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        run_in(DOORMAN, &["settings", "show"], &env, None).await
    };

    // $XDG_CONFIG_HOME/doorman/agent.toml first.
    let in_xdg = xdg.join("doorman/agent.toml");
    settings_at(&in_xdg);
    let (code, out, err) = show(vec![("XDG_CONFIG_HOME", text(&xdg)), ("HOME", text(&home))]).await;
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with(&effective(&in_xdg)), "{out}");

    // Else ~/.config/doorman/agent.toml.
    let in_home = home.join(".config/doorman/agent.toml");
    settings_at(&in_home);
    let (code, out, err) = show(vec![
        ("XDG_CONFIG_HOME", String::new()),
        ("HOME", text(&home)),
    ])
    .await;
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with(&effective(&in_home)), "{out}");

    // DOORMAN_AGENT_CONFIG still names another.
    let elsewhere = dir.path().join("elsewhere.toml");
    settings_at(&elsewhere);
    let (code, out, err) = show(vec![
        ("XDG_CONFIG_HOME", text(&xdg)),
        ("DOORMAN_AGENT_CONFIG", text(&elsewhere)),
    ])
    .await;
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with(&effective(&elsewhere)), "{out}");

    // None there: every command names the same file, and --config.
    let empty = dir.path().join("empty");
    let missing = empty.join("doorman/agent.toml");
    let env = [("XDG_CONFIG_HOME", text(&empty)), ("HOME", text(&home))];
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    for command in [
        vec!["settings", "show"],
        vec!["settings", "set", "--email-timeout", "60"],
        vec!["settings", "open", "--no-browser"],
        vec!["consent", "status"],
        vec!["agent"],
    ] {
        let (code, _, err) = run_in(DOORMAN, &command, &env, None).await;
        assert_eq!(code, 1, "{command:?}: {err}");
        assert!(
            err.contains(&format!(
                "cannot read settings file {}: ",
                missing.display()
            )),
            "{command:?}: {err}"
        );
        assert!(err.contains("(pass --config FILE)"), "{command:?}: {err}");
    }

    // Neither variable names a directory: say so, and --config.
    let (code, _, err) = show(vec![
        ("XDG_CONFIG_HOME", String::new()),
        ("HOME", String::new()),
    ])
    .await;
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("pass --config FILE"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
}

/// `agent join` writes the file every other command reads by default: it
/// refuses to write over the one there (before anything is sent), naming it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn join_writes_the_default_settings_file_of_every_command() {
    let dir = tempfile::tempdir().unwrap();
    let xdg = dir.path().join("xdg");
    let in_xdg = xdg.join("doorman/agent.toml");
    settings_at(&in_xdg);
    // Nothing listens there: the file is checked before the code is sent.
    let url = "http://127.0.0.1:9/join/dji_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
    let env = [("XDG_CONFIG_HOME", text(&xdg)), ("HOME", text(dir.path()))];
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let (code, _, err) = run_in(DOORMAN, &["agent", "join", url], &env, None).await;
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains(&format!("{} already exists", in_xdg.display())),
        "{err}"
    );
}
