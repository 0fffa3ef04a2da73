//! How the agent reaches the server: a dialer for its URL and CA, and the
//! headers that authenticate it, from its settings.

use crate::error::LinkError;
use doorman_core::AgentSettings;
use doorman_proto::dial::Upgraded;
use doorman_proto::{AGENT_NAME_HEADER, Dialer};
use hyper::header::{AUTHORIZATION, HeaderName, HeaderValue};

/// The headers that authenticate this agent.
pub fn agent_headers(
    settings: &AgentSettings,
) -> Result<Vec<(HeaderName, HeaderValue)>, LinkError> {
    let name = HeaderValue::from_str(&settings.name).map_err(|_| LinkError::BadHeader("name"))?;
    let mut key = HeaderValue::from_str(&format!("Bearer {}", settings.key.expose()))
        .map_err(|_| LinkError::BadHeader("key"))?;
    key.set_sensitive(true);
    Ok(vec![
        (HeaderName::from_static(AGENT_NAME_HEADER), name),
        (AUTHORIZATION, key),
    ])
}

/// Opens `path` on the server as this agent.
pub async fn dial(settings: &AgentSettings, path: &str) -> Result<Upgraded, LinkError> {
    let dialer = Dialer::new(&settings.server, settings.ca.as_deref())?;
    let headers = agent_headers(settings)?;
    Ok(dialer.dial(path, &headers).await?)
}
