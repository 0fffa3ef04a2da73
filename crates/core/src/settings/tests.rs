//! The settings file's tests: parsing, validation and edits that keep the
//! owner's comments.
use super::*;

const TEST_KEY: &str = "dak_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";

const EXAMPLE: &str = r#"
# The office computer.
server = "https://doorman.example.com"
name = "office-pc"
key = "dak_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"

[desktop_sharing]
require_email_authorization = true
email_authorization_timeout = 180          # seconds
recipients = ["it@example.com", "owner@example.com"]

[services]
shell = true
forward = ["127.0.0.1:5900"]
"#;

#[test]
fn design_example_parses() {
    let settings = AgentSettings::parse(EXAMPLE).expect("valid");
    assert_eq!(settings.name, "office-pc");
    assert!(settings.desktop_sharing.require_email_authorization);
    assert_eq!(settings.desktop_sharing.recipients.len(), 2);
    assert_eq!(settings.services.forward, vec!["127.0.0.1:5900"]);
}

/// Issue 29: the keys the newest issues add, in the same file.
#[test]
fn the_identity_key_and_recording_recipients_are_read_and_checked() {
    let recipient = "age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p";
    let text = EXAMPLE.replace(
        "[desktop_sharing]",
        &format!("identity_key = \"keys/identity.key\"\nrecordings_to = [\"{recipient}\"]\n\n[desktop_sharing]"),
    );
    let settings = AgentSettings::parse(&text).expect("valid");
    assert_eq!(settings.recordings_to, [recipient]);
    assert_eq!(
        settings.identity_key.as_deref(),
        Some(std::path::Path::new("keys/identity.key"))
    );
    for bad in [
        "age1",
        "ssh-ed25519 AAAA",
        &recipient.to_uppercase(),
        &format!("{recipient}x"),
    ] {
        let text = EXAMPLE.replace(
            "[desktop_sharing]",
            &format!("recordings_to = [{bad:?}]\n\n[desktop_sharing]"),
        );
        let err = AgentSettings::parse(&text).unwrap_err().to_string();
        assert!(err.contains("recordings_to[0]"), "{bad}: {err}");
        assert!(err.contains("age-keygen"), "{bad}: {err}");
    }
}

#[test]
fn unknown_field_is_named() {
    let text = EXAMPLE.replace("shell = true", "shel = true");
    let err = AgentSettings::parse(&text).unwrap_err().to_string();
    assert!(err.contains("shel"), "{err}");
    assert!(!err.contains('\n'), "{err}");
}

#[test]
fn every_problem_is_listed_with_its_field() {
    let text = r#"
server = "ftp://x"
name = "bad name"
key = ""
[desktop_sharing]
require_email_authorization = true
email_authorization_timeout = 4
"#;
    let Err(SettingsError::Invalid(problems)) = AgentSettings::parse(text) else {
        panic!("expected invalid")
    };
    let fields: Vec<_> = problems.iter().map(|p| p.field.as_str()).collect();
    assert_eq!(
        fields,
        [
            "server",
            "name",
            "key",
            "desktop_sharing.email_authorization_timeout",
            "desktop_sharing.recipients"
        ]
    );
}

#[test]
fn recipients_must_be_mailboxes() {
    assert!(validate_recipient("it@example.com").is_ok());
    assert!(validate_recipient("IT desk <it@example.com>").is_ok());
    assert!(validate_recipient("not-an-address").is_err());
    assert!(validate_recipient("a@b\r\nBcc: evil@x").is_err());
}

#[test]
fn change_keeps_the_comment_on_the_line_it_changes() {
    let change = SettingsChange {
        email_authorization_timeout: Some(60),
        ..SettingsChange::default()
    };
    let (text, _) = change.apply_to(EXAMPLE).expect("valid change");
    assert!(
        text.contains("email_authorization_timeout = 60          # seconds"),
        "{text}"
    );
}

#[test]
fn change_keeps_comments_and_other_fields() {
    let change = SettingsChange {
        email_authorization_timeout: Some(60),
        recipients: Some(vec!["a@x.example".into(), "b@y.example".into()]),
        ..SettingsChange::default()
    };
    let (text, settings) = change.apply_to(EXAMPLE).expect("valid change");
    assert!(text.contains("# The office computer."));
    assert!(text.contains(&format!("key = \"{TEST_KEY}\"")));
    assert_eq!(settings.desktop_sharing.email_authorization_timeout, 60);
    assert_eq!(
        settings.desktop_sharing.recipients,
        vec!["a@x.example", "b@y.example"]
    );
}

#[test]
fn invalid_change_is_refused_whole() {
    let change = SettingsChange {
        email_authorization_timeout: Some(3601),
        recipients: Some(vec![]),
        ..SettingsChange::default()
    };
    let Err(SettingsError::Invalid(problems)) = change.apply_to(EXAMPLE) else {
        panic!("expected invalid")
    };
    assert_eq!(problems.len(), 2, "{problems:?}");
}

#[test]
fn change_creates_the_table_when_missing() {
    let text = "server = \"http://127.0.0.1:1\"\nname = \"pc\"\nkey = \"dak_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\"\n";
    let change = SettingsChange {
        require_email_authorization: Some(true),
        recipients: Some(split_list(" a@x.example , ")),
        ..SettingsChange::default()
    };
    let (_, settings) = change.apply_to(text).expect("valid");
    assert!(settings.desktop_sharing.require_email_authorization);
    assert_eq!(settings.desktop_sharing.email_authorization_timeout, 180);
}

#[test]
fn a_key_that_is_not_an_agent_key_is_named() {
    for bad in [
        "hello",
        "dak_short",
        "dop_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
    ] {
        let text = EXAMPLE.replace(TEST_KEY, bad);
        let Err(SettingsError::Invalid(problems)) = AgentSettings::parse(&text) else {
            panic!("{bad} accepted")
        };
        assert_eq!(problems[0].field, "key");
        assert!(
            problems[0].message.contains("doorman admin agent add"),
            "{problems:?}"
        );
    }
}

#[test]
fn required_approvals_is_bounded_by_the_recipients() {
    let set = |approvals| SettingsChange {
        required_approvals: Some(approvals),
        ..SettingsChange::default()
    };
    let (text, settings) = set(2).apply_to(EXAMPLE).expect("two of two");
    assert_eq!(settings.desktop_sharing.required_approvals, 2);
    assert!(text.contains("required_approvals = 2"));
    for bad in [0, 3] {
        let Err(SettingsError::Invalid(problems)) = set(bad).apply_to(EXAMPLE) else {
            panic!("{bad} approvals accepted")
        };
        assert_eq!(problems[0].field, "desktop_sharing.required_approvals");
    }
    // Fewer recipients than approvals is caught whichever changes.
    let fewer = SettingsChange {
        recipients: Some(vec!["a@x.example".into()]),
        ..SettingsChange::default()
    };
    let (text, _) = set(2).apply_to(EXAMPLE).unwrap();
    assert!(fewer.apply_to(&text).is_err());
    assert_eq!(
        AgentSettings::parse(EXAMPLE)
            .unwrap()
            .desktop_sharing
            .required_approvals,
        1
    );
}

#[test]
fn forward_targets_need_host_and_port() {
    assert!(validate_forward_target("127.0.0.1:5900").is_ok());
    assert!(validate_forward_target("[::1]:22").is_ok());
    assert!(validate_forward_target("localhost").is_err());
    assert!(validate_forward_target("host:0").is_err());
    assert!(validate_forward_target(":80").is_err());
}

/// A shared folder is absolute or under the home: on Unix from `/`, on
/// Windows with its drive (either separator); `..`, a whole disk and the
/// other system's form are refused.
#[test]
fn shared_folders_are_absolute_or_under_the_home_on_each_system() {
    let cases: &[(&str, bool, bool)] = &[
        // (root, on Unix, on Windows)
        ("/srv/drop", true, false),
        ("~/Shared", true, true),
        ("~", true, true),
        ("~\\Shared", false, true),
        ("C:\\Users\\Owner\\Shared", false, true),
        ("d:/drop", false, true),
        ("Z:\\tmp\\shared", false, true),
        ("Shared", false, false),
        ("C:Shared", false, false),
        ("\\Shared", false, false),
        ("/", false, false),
        ("C:\\", false, false),
        ("C:/", false, false),
        ("/srv/../etc", false, false),
        ("C:\\Users\\..\\Admin", false, false),
        ("~\\..", false, false),
    ];
    for (root, unix, windows) in cases {
        assert_eq!(
            checks::check_file_root(root, false).is_ok(),
            *unix,
            "{root:?} on Unix"
        );
        assert_eq!(
            checks::check_file_root(root, true).is_ok(),
            *windows,
            "{root:?} on Windows"
        );
    }
    let said = checks::check_file_root("Shared", true).unwrap_err();
    assert!(said.contains("with its drive"), "{said}");
    let said = checks::check_file_root("D:\\", true).unwrap_err();
    assert!(said.contains("whole drive"), "{said}");
}

#[test]
fn the_services_change_too_and_a_bad_target_is_named() {
    let change = SettingsChange {
        shell: Some(false),
        forward: Some(vec!["127.0.0.1:22".into(), "10.0.0.5:3389".into()]),
        desktop: Some(Some("127.0.0.1:5900".into())),
        ..SettingsChange::default()
    };
    let (text, settings) = change.apply_to(EXAMPLE).expect("valid change");
    assert!(!settings.services.shell);
    assert_eq!(settings.services.forward, ["127.0.0.1:22", "10.0.0.5:3389"]);
    assert_eq!(settings.services.desktop.as_deref(), Some("127.0.0.1:5900"));
    assert!(text.contains("# The office computer."), "{text}");
    let removed = SettingsChange {
        desktop: Some(None),
        ..SettingsChange::default()
    };
    let (text, settings) = removed.apply_to(&text).expect("valid change");
    assert_eq!(settings.services.desktop, None);
    assert!(!text.contains("desktop ="), "{text}");

    let bad = SettingsChange {
        desktop: Some(Some("not a target".into())),
        ..SettingsChange::default()
    };
    let Err(SettingsError::Invalid(problems)) = bad.apply_to(EXAMPLE) else {
        panic!("a bad desktop target is refused");
    };
    assert_eq!(problems[0].field, "services.desktop");
}

#[test]
fn pinned_passkeys_are_written_read_back_and_checked() {
    let key = crate::passkey::soft::SoftPasskey::new("https://doorman.example.com");
    let pinned = key.pinned("it@example.com");
    let change = SettingsChange {
        passkeys: Some(vec![pinned.clone()]),
        require_passkey: Some(true),
        ..SettingsChange::default()
    };
    let (text, settings) = change.apply_to(EXAMPLE).unwrap();
    assert!(text.contains("# The office computer."), "{text}");
    assert_eq!(
        settings.desktop_sharing.passkeys,
        std::slice::from_ref(&pinned)
    );
    assert!(settings.desktop_sharing.require_passkey);
    assert_eq!(AgentSettings::parse(&text).unwrap(), settings);

    // Two approvals, one recipient with a key: refused whole.
    let more = SettingsChange {
        required_approvals: Some(2),
        ..SettingsChange::default()
    };
    let SettingsError::Invalid(problems) = more.apply_to(&text).unwrap_err() else {
        panic!("not a validation error");
    };
    assert_eq!(problems[0].field, "desktop_sharing.require_passkey");
    assert!(
        problems[0]
            .message
            .starts_with("1 recipients have a pinned passkey, fewer than required_approvals (2)")
    );

    // A key of someone who is not a recipient.
    let stranger = SettingsChange {
        passkeys: Some(vec![key.pinned("eve@example.com")]),
        ..SettingsChange::default()
    };
    let SettingsError::Invalid(problems) = stranger.apply_to(&text).unwrap_err() else {
        panic!("not a validation error");
    };
    assert!(
        problems
            .iter()
            .any(|p| p.field == "desktop_sharing.passkeys[0].recipient")
    );
}
