//! Whether a forward session may open a tunnel: only to a target the
//! session was granted and the settings as they are now still offer.

use crate::session::Shared;
use crate::settings_file;
use doorman_core::AgentSettings;
use std::path::Path;

/// The settings to open a tunnel to `target` with, if the forward session
/// `session_id` was granted it and the settings (read afresh) still offer
/// it; none if the tunnel must be refused.
pub(super) fn permitted(
    config: &Path,
    shared: &Shared,
    session_id: &str,
    target: &str,
) -> Option<AgentSettings> {
    let granted = shared
        .grants
        .lock()
        .map(|grants| {
            grants
                .get(session_id)
                .is_some_and(|targets| targets.iter().any(|granted| granted == target))
        })
        .unwrap_or(false);
    // The settings as they are now must still offer the target.
    let settings = settings_file::load(config).ok().filter(|settings| {
        settings
            .services
            .forward
            .iter()
            .any(|offered| offered == target)
    });
    settings.filter(|_| granted)
}
