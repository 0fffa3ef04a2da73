//! How the agent reaches the server: a dialer for its URL and CA, and the
//! headers that authenticate it, from its settings.

use crate::error::LinkError;
use doorman_core::AgentSettings;
use doorman_proto::dial::Upgraded;
use doorman_proto::handover::HANDOVER_HEADER;
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

/// Opens a forwarded connection's tunnel (`path`), offering to take the
/// operator's TLS session over when the server is `https://`; whether the
/// server said yes.
pub async fn dial_tunnel(
    settings: &AgentSettings,
    path: &str,
) -> Result<(Upgraded, bool), LinkError> {
    let dialer = Dialer::new(&settings.server, settings.ca.as_deref())?;
    let mut headers = agent_headers(settings)?;
    let offer = settings.server.starts_with("https://");
    if offer {
        headers.push((
            HeaderName::from_static(HANDOVER_HEADER),
            HeaderValue::from_static("1"),
        ));
    }
    let (io, answer) = dialer.dial_answered(path, &headers).await?;
    Ok((io, offer && answer.contains_key(HANDOVER_HEADER)))
}
