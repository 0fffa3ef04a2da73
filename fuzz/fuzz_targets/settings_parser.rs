//! The agent's settings: any text parses or is refused with problems, never
//! panics; accepted settings validate clean; and a change applied to any
//! accepted file either yields valid settings or is refused whole.
#![no_main]

use doorman_core::settings::{AgentSettings, SettingsChange};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(settings) = AgentSettings::parse(text) {
        assert!(settings.validate().is_empty());
        let change = SettingsChange {
            require_email_authorization: Some(true),
            email_authorization_timeout: Some(60),
            recipients: Some(vec!["it@example.com".into()]),
            required_approvals: Some(1),
            ..SettingsChange::default()
        };
        if let Ok((new_text, changed)) = change.apply_to(text) {
            assert_eq!(AgentSettings::parse(&new_text).as_ref(), Ok(&changed));
            assert!(changed.desktop_sharing.require_email_authorization);
        }
    }
});
