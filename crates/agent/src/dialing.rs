//! How the agent reaches the server: a dialer for its URL and CA, built
//! once and shared by the control connection, sessions and tunnels, and
//! the headers that authenticate it, from its settings.

use crate::error::LinkError;
use doorman_core::AgentSettings;
use doorman_relay::handover::HANDOVER_HEADER;
use doorman_wire::dial::Upgraded;
use doorman_wire::{AGENT_NAME_HEADER, DialError, Dialer};
use hyper::header::{AUTHORIZATION, HeaderName, HeaderValue};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::SystemTime;

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

/// What a dialer was built from: the settings' server and CA, and when the
/// CA file last changed (a renewed CA at the same path counts as a change).
#[derive(Debug, PartialEq, Eq)]
struct Built {
    server: String,
    ca: Option<PathBuf>,
    ca_changed: Option<SystemTime>,
}

impl Built {
    fn of(settings: &AgentSettings) -> Self {
        let ca_changed = settings
            .ca
            .as_deref()
            .and_then(|ca| std::fs::metadata(ca).and_then(|meta| meta.modified()).ok());
        Self {
            server: settings.server.clone(),
            ca: settings.ca.clone(),
            ca_changed,
        }
    }
}

/// The agent's way to the server, cheap to clone: one dialer, and so one
/// TLS client configuration (the system's roots or the CA read once), for
/// every connection while the settings name the same server and CA; its
/// session cache lets each TLS connection after the first resume. The
/// settings are read afresh for every offer: a dialer is built again when
/// they name another server or CA, or the CA file changed.
#[derive(Clone, Default)]
pub struct SharedDialer {
    current: Arc<Mutex<Option<(Built, Dialer)>>>,
}

impl SharedDialer {
    /// The dialer for `settings`: the one built before if they name the
    /// same server and CA, else a new one, kept for the next time.
    pub fn for_settings(&self, settings: &AgentSettings) -> Result<Dialer, DialError> {
        let wanted = Built::of(settings);
        let mut current = self.current.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((built, dialer)) = current.as_ref()
            && *built == wanted
        {
            return Ok(dialer.clone());
        }
        let dialer = Dialer::new(&settings.server, settings.ca.as_deref())?;
        *current = Some((wanted, dialer.clone()));
        Ok(dialer)
    }

    /// Opens `path` on the server as this agent.
    pub async fn dial(&self, settings: &AgentSettings, path: &str) -> Result<Upgraded, LinkError> {
        let dialer = self.for_settings(settings)?;
        let headers = agent_headers(settings)?;
        Ok(dialer.dial(path, &headers).await?)
    }

    /// Opens a forwarded connection's tunnel (`path`), offering to take
    /// the operator's TLS session over when the server is `https://` and
    /// `handover` allows (a sealed tunnel does not); whether the server
    /// said yes.
    pub async fn dial_tunnel(
        &self,
        settings: &AgentSettings,
        path: &str,
        handover: bool,
    ) -> Result<(Upgraded, bool), LinkError> {
        let dialer = self.for_settings(settings)?;
        let mut headers = agent_headers(settings)?;
        // Taking a session over needs the relay's engine, which is Unix's.
        let offer = handover && cfg!(unix) && settings.server.starts_with("https://");
        if offer {
            headers.push((
                HeaderName::from_static(HANDOVER_HEADER),
                HeaderValue::from_static("1"),
            ));
        }
        let (io, answer) = dialer.dial_answered(path, &headers).await?;
        Ok((io, offer && answer.contains_key(HANDOVER_HEADER)))
    }
}

#[cfg(test)]
mod tests {
    use super::SharedDialer;
    use doorman_core::AgentSettings;
    use std::path::Path;
    use std::sync::Arc;
    use std::time::Duration;

    /// A CA certificate whose key was thrown away: a trust anchor only
    /// needs to parse.
    const CA: &str = "-----BEGIN CERTIFICATE-----
MIIBijCCATGgAwIBAgIUTG1O/lcVj6nJaTehlw/vX/5YKWYwCgYIKoZIzj0EAwIw
GjEYMBYGA1UEAwwPRG9vcm1hbiB0ZXN0IENBMCAXDTI2MTIwNzA1MDQyMFoYDzIx
MjYxMTEzMDUwNDIwWjAaMRgwFgYDVQQDDA9Eb29ybWFuIHRlc3QgQ0EwWTATBgcq
hkjOPQIBBggqhkjOPQMBBwNCAATObuWjDSKysrPWEWpyQARd4tdohkSvteIBMgxx
wLbo2tdn3tn1WKxKdBH2leDSoP//23IRvNiXOyi4vTAzSDCio1MwUTAdBgNVHQ4E
FgQUdJaW4RvcKVGM3Ve0op5NyaXPeYEwHwYDVR0jBBgwFoAUdJaW4RvcKVGM3Ve0
op5NyaXPeYEwDwYDVR0TAQH/BAUwAwEB/zAKBggqhkjOPQQDAgNHADBEAiBTCuBx
Q2SjIVBwf4zbocp+R6CrhNQUZd8jPawYItXF8gIgMg0qXocbcX1SLLiEQ+Mhj09n
38mT2t7z8ZvtjBmKFy8=
-----END CERTIFICATE-----
";

    /// The settings as read for one offer: `server`, trusting `ca`.
    fn settings(server: &str, ca: &Path) -> AgentSettings {
        let mut settings = AgentSettings::parse(&format!(
            "server = \"{server}\"\nname = \"pc\"\nkey = \"dak_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\"\n"
        ))
        .expect("settings");
        settings.ca = Some(ca.to_path_buf());
        settings
    }

    /// Issue 26: the TLS client configuration was built again (its roots
    /// read again) for every session and tunnel, so that no TLS session was
    /// ever resumed. Two sessions, each with the settings read afresh, now
    /// share one, until the settings name another server or the CA file
    /// changes.
    #[test]
    fn sessions_share_one_tls_configuration_until_the_settings_change() {
        let dir = tempfile::tempdir().unwrap();
        let ca = dir.path().join("ca.pem");
        std::fs::write(&ca, CA).unwrap();
        let tls = |dialer: &doorman_wire::Dialer| Arc::clone(dialer.tls_config().expect("TLS"));
        let dialer = SharedDialer::default();
        let server = "https://localhost:8443";
        let first = tls(&dialer.for_settings(&settings(server, &ca)).unwrap());
        let second = tls(&dialer.for_settings(&settings(server, &ca)).unwrap());
        assert!(Arc::ptr_eq(&first, &second));
        // A clone of the handle (a session's) shares it too.
        let session = tls(&dialer.clone().for_settings(&settings(server, &ca)).unwrap());
        assert!(Arc::ptr_eq(&first, &session));

        // Another server: built again, and kept for the next time.
        let elsewhere = "https://127.0.0.1:8443";
        let moved = tls(&dialer.for_settings(&settings(elsewhere, &ca)).unwrap());
        assert!(!Arc::ptr_eq(&first, &moved));
        let again = tls(&dialer.for_settings(&settings(elsewhere, &ca)).unwrap());
        assert!(Arc::ptr_eq(&moved, &again));

        // The CA file at the same path replaced (a renewal): built again.
        let modified = std::fs::metadata(&ca).unwrap().modified().unwrap();
        std::fs::File::options()
            .write(true)
            .open(&ca)
            .unwrap()
            .set_modified(modified + Duration::from_secs(60))
            .unwrap();
        let renewed = tls(&dialer.for_settings(&settings(elsewhere, &ca)).unwrap());
        assert!(!Arc::ptr_eq(&again, &renewed));
    }
}
