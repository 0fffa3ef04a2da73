//! Whether a forward session may open a tunnel: only to a target the
//! session was granted and the settings as they are now still offer, and
//! sealed end to end exactly when the session is (the server, which holds
//! no key of a sealed session, cannot open one of its tunnels for itself).

use crate::session::Shared;
use crate::settings_file;
use doorman_core::AgentSettings;
use doorman_e2e::tunnel::TunnelSecret;
use std::path::Path;

/// The settings to open a tunnel to `target` with, and the session's
/// tunnel secret when it is sealed, if the forward session `session_id`
/// was granted it, is `sealed` as asked, and the settings (read afresh)
/// still offer it; none if the tunnel must be refused.
pub(super) fn permitted(
    config: &Path,
    shared: &Shared,
    session_id: &str,
    target: &str,
    sealed: bool,
) -> Option<(AgentSettings, Option<TunnelSecret>)> {
    let granted = shared.grants.lock().ok().and_then(|grants| {
        grants
            .get(session_id)
            .filter(|grant| grant.targets.iter().any(|granted| granted == target))
            .filter(|grant| grant.tunnels.is_some() == sealed)
            .map(|grant| grant.tunnels.clone())
    })?;
    // The settings as they are now must still offer the target.
    let settings = settings_file::load(config).ok().filter(|settings| {
        settings
            .services
            .forward
            .iter()
            .any(|offered| offered == target)
    });
    settings.map(|settings| (settings, granted))
}
