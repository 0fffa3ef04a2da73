//! A computer joining with an invitation: the URL `doorman admin agent
//! invite` prints and `doorman agent join` takes, what the server answers,
//! and the settings file the computer starts with.
//!
//! The URL is `SERVER/join/CODE`, or `SERVER/join/CODE#ca=sha256:HEX`:
//!
//! - `SERVER` is the server's public URL: `https://host[:port]`, or
//!   `http://` for a server on this machine only (loopback), since the
//!   answer carries the computer's key.
//! - `CODE` is the invitation's single-use secret: `dji_` and 43 base64url
//!   characters (256 bits from the OS random source); the server keeps only
//!   its SHA-256.
//! - `#ca=sha256:HEX`, when the server's certificate is not from a public
//!   CA, is the SHA-256 of the DER of the CA certificate the server
//!   presents (64 hex digits), as kubeadm's `--discovery-token-ca-cert-hash`:
//!   the computer trusts the server through that CA and no other. A
//!   fragment never travels to a server.
//!
//! A URL that is damaged or altered in any of these parts is refused here,
//! before anything is sent or written.

use crate::limits::DEFAULT_TIMEOUT_SECS;
use crate::names::validate_name;
use crate::secret::{AGENT_KEY_PREFIX, Secret, has_secret_form};
use crate::settings::{AgentSettings, EmailAuthorization, SettingsError};
use serde::{Deserialize, Serialize};

/// What an invitation code starts with.
pub const INVITATION_PREFIX: &str = "dji_";
/// Where the server redeems invitations: `POST /join/CODE`.
pub const JOIN_PATH_PREFIX: &str = "/join/";
/// What the fragment of a URL that pins a CA starts with.
const CA_FRAGMENT: &str = "ca=sha256:";

/// Why a join URL is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JoinUrlError {
    #[error(
        "not a join URL: it looks like https://SERVER/join/CODE, as `doorman admin agent invite` printed it"
    )]
    Shape,
    #[error("the join URL must start with https:// (http:// only for a server on this machine)")]
    Scheme,
    #[error("the join URL names no valid server host and port")]
    Host,
    #[error(
        "refusing http:// to {0}: the computer's key would cross the network in clear; a server for other machines needs https:// (plain http:// is only for a server on this machine)"
    )]
    PlainToRemote(String),
    #[error(
        "the join URL's code is damaged: after /join/ it must be dji_ and 43 letters, digits, - or _ (copy the whole line)"
    )]
    Code,
    #[error(
        "the join URL's CA hash is damaged: after # it must be ca=sha256: and 64 hex digits (copy the whole line)"
    )]
    CaHash,
    #[error("the join URL pins a CA but is http://: a pinned CA needs https://")]
    PinOnPlain,
}

/// A checked join URL. Its code is a secret: `Debug` masks it, and only
/// [`JoinUrl::expose`] writes the whole URL.
#[derive(Clone, PartialEq, Eq)]
pub struct JoinUrl {
    /// `https://host[:port]`, as the server's public URL names it.
    origin: String,
    code: Secret,
    ca_sha256: Option<[u8; 32]>,
}

impl std::fmt::Debug for JoinUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JoinUrl")
            .field("origin", &self.origin)
            .field("code", &self.code)
            .field("ca_sha256", &self.ca_sha256.map(|hash| hex(&hash)))
            .finish()
    }
}

impl JoinUrl {
    /// The URL of an invitation of the server at `origin` (its public URL),
    /// pinning the CA whose certificate hashes to `ca_sha256`, if any.
    pub fn new(
        origin: &str,
        code: &str,
        ca_sha256: Option<[u8; 32]>,
    ) -> Result<Self, JoinUrlError> {
        let mut text = format!("{}{JOIN_PATH_PREFIX}{code}", origin.trim_end_matches('/'));
        if let Some(hash) = ca_sha256 {
            text.push_str(&format!("#{CA_FRAGMENT}{}", hex(&hash)));
        }
        Self::parse(&text)
    }

    /// Checks a join URL as the user gave it.
    pub fn parse(text: &str) -> Result<Self, JoinUrlError> {
        let text = text.trim();
        let (rest, fragment) = match text.split_once('#') {
            Some((rest, fragment)) => (rest, Some(fragment)),
            None => (text, None),
        };
        let (scheme, after) = rest.split_once("://").ok_or(JoinUrlError::Shape)?;
        let tls = match scheme.to_ascii_lowercase().as_str() {
            "https" => true,
            "http" => false,
            _ => return Err(JoinUrlError::Scheme),
        };
        let (authority, path) = after.split_once('/').ok_or(JoinUrlError::Shape)?;
        let code = path
            .strip_prefix(&JOIN_PATH_PREFIX[1..])
            .ok_or(JoinUrlError::Shape)?;
        if !has_secret_form(code, INVITATION_PREFIX) {
            return Err(JoinUrlError::Code);
        }
        let host = host_of(authority).ok_or(JoinUrlError::Host)?;
        if !tls && !is_loopback(host) {
            return Err(JoinUrlError::PlainToRemote(host.to_string()));
        }
        let ca_sha256 = match fragment {
            None => None,
            Some(fragment) => Some(
                fragment
                    .strip_prefix(CA_FRAGMENT)
                    .and_then(parse_sha256)
                    .ok_or(JoinUrlError::CaHash)?,
            ),
        };
        if ca_sha256.is_some() && !tls {
            return Err(JoinUrlError::PinOnPlain);
        }
        let scheme = if tls { "https" } else { "http" };
        Ok(Self {
            origin: format!("{scheme}://{authority}"),
            code: Secret::new(code),
            ca_sha256,
        })
    }

    /// `https://host[:port]`: the server the computer joins, and dials
    /// from then on.
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// The single-use code, for the one request that redeems it.
    pub fn code(&self) -> &str {
        self.code.expose()
    }

    /// The path the code is redeemed at: `/join/CODE`.
    pub fn path(&self) -> String {
        format!("{JOIN_PATH_PREFIX}{}", self.code.expose())
    }

    /// The SHA-256 of the CA certificate the server must present, if the
    /// URL pins one.
    pub fn ca_sha256(&self) -> Option<[u8; 32]> {
        self.ca_sha256
    }

    /// The whole URL, code included: for the line the administrator gives
    /// the computer, never for a log.
    pub fn expose(&self) -> String {
        let mut text = format!("{}{}", self.origin, self.path());
        if let Some(hash) = self.ca_sha256 {
            text.push_str(&format!("#{CA_FRAGMENT}{}", hex(&hash)));
        }
        text
    }
}

/// The host of `authority` (`name`, `name:port`, `[v6]`, `[v6]:port`) if
/// it is a valid one, with a valid port if it has one.
fn host_of(authority: &str) -> Option<&str> {
    let (host, port) = match authority.strip_prefix('[') {
        Some(rest) => {
            let (v6, after) = rest.split_once(']')?;
            v6.parse::<std::net::Ipv6Addr>().ok()?;
            let port = match after {
                "" => None,
                after => Some(after.strip_prefix(':')?),
            };
            (v6, port)
        }
        None => {
            let (host, port) = match authority.split_once(':') {
                Some((host, port)) => (host, Some(port)),
                None => (authority, None),
            };
            let name = host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-');
            if host.is_empty() || !name {
                return None;
            }
            (host, port)
        }
    };
    if let Some(port) = port {
        let digits = !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit());
        if !digits || port.parse::<u16>().ok()? == 0 {
            return None;
        }
    }
    Some(host)
}

/// Whether `host` is this machine: `localhost` or a loopback address.
fn is_loopback(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// 64 hex digits as 32 bytes.
pub fn parse_sha256(text: &str) -> Option<[u8; 32]> {
    if text.len() != 64 || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let mut hash = [0u8; 32];
    for (byte, pair) in hash.iter_mut().zip(text.as_bytes().chunks(2)) {
        *byte = u8::from_str_radix(std::str::from_utf8(pair).ok()?, 16).ok()?;
    }
    Some(hash)
}

/// Bytes as lowercase hex.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// What the server answers a redeemed invitation with: its public URL, the
/// name the computer was added under, and the computer's key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Joined {
    pub server: String,
    pub name: String,
    pub key: Secret,
}

impl Joined {
    /// Whether the answer holds a valid name and an agent key.
    pub fn check(&self) -> Result<(), String> {
        validate_name(&self.name).map_err(|reason| format!("name {:?} {reason}", self.name))?;
        if !has_secret_form(self.key.expose(), AGENT_KEY_PREFIX) {
            return Err("the key is not an agent key".into());
        }
        Ok(())
    }
}

/// What `doorman agent join` asks the person at the computer: who
/// approves connections (none: email authorization stays off) and how long
/// a request waits for them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JoinAnswers {
    pub recipients: Vec<String>,
    /// Seconds.
    pub timeout: u32,
}

impl Default for JoinAnswers {
    fn default() -> Self {
        Self {
            recipients: Vec::new(),
            timeout: DEFAULT_TIMEOUT_SECS,
        }
    }
}

impl JoinAnswers {
    /// Every problem with the answers, as the settings file would have it.
    pub fn check(&self) -> Result<(), SettingsError> {
        let email = EmailAuthorization {
            require_email_authorization: !self.recipients.is_empty(),
            email_authorization_timeout: self.timeout,
            recipients: self.recipients.clone(),
            ..EmailAuthorization::default()
        };
        let problems = email.validate();
        if problems.is_empty() {
            Ok(())
        } else {
            Err(SettingsError::Invalid(problems))
        }
    }
}

/// The settings file a joined computer starts with: the server it joined,
/// its name and key, the CA file (`ca`, relative to the settings file)
/// when the URL pinned one, and email authorization on with the recipients
/// given (off without any); checked as `doorman agent` will read it.
pub fn settings_text(
    server: &str,
    joined: &Joined,
    ca: Option<&str>,
    answers: &JoinAnswers,
) -> Result<String, SettingsError> {
    let quote = |text: &str| toml_edit::Value::from(text).to_string();
    let mut text = String::from(
        "# Written by `doorman agent join`; change it with `doorman settings set` or by\n\
         # hand. The agent reads it afresh for every connection.\n",
    );
    text.push_str(&format!(
        "server = {}\nname = {}\nkey = {}\n",
        quote(server),
        quote(&joined.name),
        quote(joined.key.expose())
    ));
    if let Some(ca) = ca {
        text.push_str(&format!(
            "# The server's CA, pinned by the join URL's SHA-256.\nca = {}\n",
            quote(ca)
        ));
    }
    let recipients: toml_edit::Array = answers.recipients.iter().map(String::as_str).collect();
    text.push_str(&format!(
        "\n[desktop_sharing]\nrequire_email_authorization = {}\nemail_authorization_timeout = {}   # seconds\nrecipients = {}\n",
        !answers.recipients.is_empty(),
        answers.timeout,
        toml_edit::Value::from(recipients)
    ));
    text.push_str(
        "\n[services]\nshell = true        # commands and interactive shells\nforward = []        # host:port targets an operator may reach\n",
    );
    AgentSettings::parse(&text)?;
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    const CODE: &str = "dji_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
    const KEY: &str = "dak_BBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB";

    #[test]
    fn a_join_url_round_trips_with_and_without_a_pinned_ca() {
        let pinned = JoinUrl::new("https://doorman.example.com:8443", CODE, Some([0xab; 32]));
        let pinned = pinned.unwrap();
        let text = pinned.expose();
        assert_eq!(
            text,
            format!(
                "https://doorman.example.com:8443/join/{CODE}#ca=sha256:{}",
                "ab".repeat(32)
            )
        );
        assert_eq!(JoinUrl::parse(&text), Ok(pinned.clone()));
        assert_eq!(pinned.origin(), "https://doorman.example.com:8443");
        assert_eq!(pinned.path(), format!("/join/{CODE}"));
        assert!(!format!("{pinned:?}").contains(CODE));
        let plain = JoinUrl::parse(&format!("http://127.0.0.1:8080/join/{CODE}")).unwrap();
        assert_eq!(plain.ca_sha256(), None);
        assert_eq!(plain.code(), CODE);
        let upper = format!("https://[::1]:9/join/{CODE}#ca=sha256:{}", "AB".repeat(32));
        assert_eq!(
            JoinUrl::parse(&upper).unwrap().ca_sha256(),
            Some([0xab; 32])
        );
    }

    #[test]
    fn damaged_or_altered_urls_are_refused_naming_the_part() {
        let hash = "ab".repeat(32);
        for (text, error) in [
            (format!("ftp://x/join/{CODE}"), JoinUrlError::Scheme),
            (format!("https://x/joins/{CODE}"), JoinUrlError::Shape),
            ("https://x".to_string(), JoinUrlError::Shape),
            (format!("https://x/join/{CODE}x"), JoinUrlError::Code),
            (format!("https://x/join/{CODE}?a=b"), JoinUrlError::Code),
            (
                format!("https://x/join/{}", &CODE[..40]),
                JoinUrlError::Code,
            ),
            (
                "https://x/join/dop_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA".to_string(),
                JoinUrlError::Code,
            ),
            (format!("https://user@x/join/{CODE}"), JoinUrlError::Host),
            (format!("https://x:0/join/{CODE}"), JoinUrlError::Host),
            (format!("https://x:+1/join/{CODE}"), JoinUrlError::Host),
            (format!("https:///join/{CODE}"), JoinUrlError::Host),
            (
                format!("https://x/join/{CODE}#ca=sha256:{}", &hash[..63]),
                JoinUrlError::CaHash,
            ),
            (
                format!("https://x/join/{CODE}#ca=sha256:{}g", &hash[..63]),
                JoinUrlError::CaHash,
            ),
            (
                format!("https://x/join/{CODE}#ca=sha1:{hash}"),
                JoinUrlError::CaHash,
            ),
            (format!("https://x/join/{CODE}#"), JoinUrlError::CaHash),
            (
                format!("http://localhost/join/{CODE}#ca=sha256:{hash}"),
                JoinUrlError::PinOnPlain,
            ),
            (
                format!("http://doorman.example.com/join/{CODE}"),
                JoinUrlError::PlainToRemote("doorman.example.com".into()),
            ),
        ] {
            assert_eq!(JoinUrl::parse(&text), Err(error), "{text}");
        }
    }

    #[test]
    fn the_settings_file_holds_the_join_and_the_answers() {
        let joined = Joined {
            server: "https://doorman.example.com".into(),
            name: "lab-pc".into(),
            key: Secret::new(KEY),
        };
        let answers = JoinAnswers {
            recipients: vec!["it@example.com".into(), "not an address".into()],
            timeout: 60,
        };
        assert!(answers.check().is_err(), "an address is checked");
        let answers = JoinAnswers {
            recipients: vec!["it@example.com".into()],
            timeout: 60,
        };
        answers.check().unwrap();
        let text = settings_text(
            "https://doorman.example.com",
            &joined,
            Some("agent.ca.pem"),
            &answers,
        )
        .unwrap();
        let settings = AgentSettings::parse(&text).unwrap();
        assert_eq!(settings.key.expose(), KEY);
        assert_eq!(
            settings.ca.as_deref(),
            Some(std::path::Path::new("agent.ca.pem"))
        );
        assert!(settings.desktop_sharing.require_email_authorization);
        assert_eq!(settings.desktop_sharing.email_authorization_timeout, 60);
        let off = settings_text("http://127.0.0.1:1", &joined, None, &JoinAnswers::default());
        let off = AgentSettings::parse(&off.unwrap()).unwrap();
        assert!(!off.desktop_sharing.require_email_authorization);
        assert_eq!(off.desktop_sharing.email_authorization_timeout, 180);
        assert_eq!(off.ca, None);
        let timeout = JoinAnswers {
            recipients: Vec::new(),
            timeout: 1,
        };
        let error = timeout.check().unwrap_err().to_string();
        assert!(error.contains("email_authorization_timeout"), "{error}");
    }
}
