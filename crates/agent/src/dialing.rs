//! How the agent reaches the server: a dialer for its URL and CA, and the
//! headers that authenticate it, from its settings.

use doorman_core::AgentSettings;
use doorman_proto::dial::Upgraded;
use doorman_proto::{AGENT_NAME_HEADER, Dialer};
use hyper::header::{AUTHORIZATION, HeaderName, HeaderValue};

/// The headers that authenticate this agent.
pub fn agent_headers(settings: &AgentSettings) -> Result<Vec<(HeaderName, HeaderValue)>, String> {
    let name = HeaderValue::from_str(&settings.name)
        .map_err(|_| "agent name is not a valid header value".to_string())?;
    let mut key = HeaderValue::from_str(&format!("Bearer {}", settings.key.expose()))
        .map_err(|_| "agent key is not a valid header value".to_string())?;
    key.set_sensitive(true);
    Ok(vec![
        (HeaderName::from_static(AGENT_NAME_HEADER), name),
        (AUTHORIZATION, key),
    ])
}

/// Opens `path` on the server as this agent.
pub async fn dial(settings: &AgentSettings, path: &str) -> Result<Upgraded, String> {
    let dialer =
        Dialer::new(&settings.server, settings.ca.as_deref()).map_err(|e| e.to_string())?;
    let headers = agent_headers(settings)?;
    dialer.dial(path, &headers).await.map_err(|e| e.to_string())
}
