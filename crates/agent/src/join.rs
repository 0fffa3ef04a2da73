//! `doorman agent join`: a computer redeems its invitation for its key and
//! writes its settings file, with the pinned CA's certificate beside it.
//!
//! Nothing is written unless the invitation was redeemed, and nothing is
//! sent before the files are reserved: both must not exist and their
//! directory must take a file ([`reserve`]). The code then goes over TLS
//! verified as the URL says (through the CA it pins, see
//! `doorman_wire::pinned`, else the system's roots; plain `http://` only
//! to this machine), and the answer is written (0600) and put in place
//! ([`Reservation::redeem`]).

use crate::settings_file::{NewFile, SettingsFileError};
use doorman_core::join::{JoinAnswers, JoinUrl, Joined, settings_text};
use doorman_core::settings::SettingsError;
use doorman_wire::pinned::PinnedCa;
use doorman_wire::{DialError, Dialer};
use hyper::StatusCode;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The most of the server's answer that is read.
const MAX_ANSWER: usize = 16 * 1024;

/// Why a computer could not join.
#[derive(Debug, thiserror::Error)]
pub enum JoinError {
    #[error(transparent)]
    File(#[from] SettingsFileError),
    #[error(transparent)]
    Dial(#[from] DialError),
    /// The server refused the code; `message` is its one line.
    #[error("the server refused the invitation ({status}): {message}")]
    Refused { status: StatusCode, message: String },
    #[error("the server's answer is not a computer's key: {0}")]
    Answer(String),
    #[error("the settings file would be invalid: {0}")]
    Settings(#[from] SettingsError),
    #[error("the server presented no CA certificate with the pinned SHA-256")]
    NoCa,
    /// The server redeemed the invitation and added the computer, but its
    /// settings could not be written: the key in the answer, which the
    /// server keeps only as a hash, is lost with them.
    #[error(
        "the invitation is used and the server added this computer as {name:?}, but its settings were not written ({problem}), and its key is lost with them: ask the administrator for a new key (doorman admin agent rotate {name}) and write the settings by hand, or to remove {name} (doorman admin agent remove {name}) and invite it again"
    )]
    Unsaved { name: String, problem: String },
}

/// The CA file written beside the settings file `config`: `agent.toml`
/// gives `agent.ca.pem`.
pub fn ca_path(config: &Path) -> PathBuf {
    let stem = config
        .file_stem()
        .and_then(|stem| stem.to_str())
        .unwrap_or("agent");
    config.with_file_name(format!("{stem}.ca.pem"))
}

/// The files a join will write, reserved: the settings file, and the CA's
/// certificate when the URL pins one. Dropped, it leaves nothing behind.
#[derive(Debug)]
pub struct Reservation {
    settings: NewFile,
    ca: Option<NewFile>,
}

/// Reserves the settings file `config` (and the CA file beside it, for a
/// URL that pins a CA): neither may exist yet.
pub fn reserve(url: &JoinUrl, config: &Path) -> Result<Reservation, JoinError> {
    let settings = NewFile::reserve(config)?;
    let ca = match url.ca_sha256() {
        Some(_) => Some(NewFile::reserve(&ca_path(config))?),
        None => None,
    };
    Ok(Reservation { settings, ca })
}

impl Reservation {
    /// Where the settings go.
    pub fn config(&self) -> &Path {
        self.settings.path()
    }

    /// Where the CA's certificate goes, if the URL pins one.
    pub fn ca(&self) -> Option<&Path> {
        self.ca.as_ref().map(NewFile::path)
    }

    /// Redeems the invitation and writes the settings (with `answers`)
    /// and the CA's certificate; what the server answered. Once the server
    /// has redeemed it, a failure to write is [`JoinError::Unsaved`].
    pub async fn redeem(self, url: &JoinUrl, answers: &JoinAnswers) -> Result<Joined, JoinError> {
        // Checked before the code is sent: after, a refusal costs the key.
        answers.check()?;
        let pinned = url.ca_sha256().map(PinnedCa::new);
        let dialer = match &pinned {
            Some(pin) => Dialer::with_tls(url.origin(), || pin.client_config())?,
            None => Dialer::new(url.origin(), None)?,
        };
        let (status, body) = dialer.post(&url.path(), MAX_ANSWER).await?;
        if status != StatusCode::OK {
            return Err(JoinError::Refused {
                status,
                message: one_line(&body),
            });
        }
        let joined: Joined =
            serde_json::from_slice(&body).map_err(|e| JoinError::Answer(e.to_string()))?;
        joined.check().map_err(JoinError::Answer)?;
        if let Err(error) = self.write(url, &joined, answers, pinned.as_ref()) {
            return Err(JoinError::Unsaved {
                name: joined.name.clone(),
                problem: unsaved_problem(error),
            });
        }
        Ok(joined)
    }

    /// Writes the settings for `joined` and the pinned CA's certificate,
    /// both or neither.
    fn write(
        self,
        url: &JoinUrl,
        joined: &Joined,
        answers: &JoinAnswers,
        pinned: Option<&Arc<PinnedCa>>,
    ) -> Result<(), JoinError> {
        // Relative: the agent finds it beside its settings wherever both go.
        let ca_name = self
            .ca()
            .and_then(Path::file_name)
            .and_then(|name| name.to_str())
            .map(str::to_string);
        let text = settings_text(url.origin(), joined, ca_name.as_deref(), answers)?;
        let Reservation { settings, ca } = self;
        let written_ca = match (ca, pinned) {
            (Some(file), Some(pin)) => Some(write_ca(file, pin)?),
            _ => None,
        };
        if let Err(error) = settings.write(text.as_bytes()) {
            if let Some(path) = written_ca {
                let _ = std::fs::remove_file(path);
            }
            return Err(error.into());
        }
        Ok(())
    }
}

/// Why the settings were not written, once the invitation is used: a file
/// that appeared at their path since it was reserved is left alone, and
/// "pass --config for another file" would no longer help.
fn unsaved_problem(error: JoinError) -> String {
    match error {
        JoinError::File(SettingsFileError::Exists { path }) => {
            format!(
                "{} was created meanwhile, and is left as it is",
                path.display()
            )
        }
        other => other.to_string(),
    }
}

/// Writes the certificate of the CA the handshake verified the server
/// with; where it went.
fn write_ca(file: NewFile, pin: &Arc<PinnedCa>) -> Result<PathBuf, JoinError> {
    let certificate = pin.certificate().ok_or(JoinError::NoCa)?;
    let path = file.path().to_path_buf();
    file.write(pem(certificate.as_ref()).as_bytes())?;
    Ok(path)
}

/// A certificate's DER as PEM.
fn pem(der: &[u8]) -> String {
    use base64::Engine;
    let encoded = base64::engine::general_purpose::STANDARD.encode(der);
    let mut text = String::from("-----BEGIN CERTIFICATE-----\n");
    for line in encoded.as_bytes().chunks(64) {
        text.push_str(std::str::from_utf8(line).unwrap_or_default());
        text.push('\n');
    }
    text.push_str("-----END CERTIFICATE-----\n");
    text
}

/// The server's refusal as one line of at most 300 characters.
fn one_line(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let line = text.split_whitespace().collect::<Vec<_>>().join(" ");
    line.chars().take(300).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ca_goes_beside_the_settings_under_their_name() {
        assert_eq!(
            ca_path(Path::new("/etc/doorman/agent.toml")),
            Path::new("/etc/doorman/agent.ca.pem")
        );
        assert_eq!(ca_path(Path::new("lab.toml")), Path::new("lab.ca.pem"));
    }

    #[test]
    fn a_certificate_is_written_as_pem_that_reads_back() {
        use base64::Engine;
        let der: Vec<u8> = (0..200u8).collect();
        let text = pem(&der);
        assert!(text.starts_with("-----BEGIN CERTIFICATE-----\n"));
        assert!(text.ends_with("-----END CERTIFICATE-----\n"));
        assert!(text.lines().all(|line| line.len() <= 64));
        let body: String = text.lines().filter(|l| !l.starts_with("-----")).collect();
        let decoded = base64::engine::general_purpose::STANDARD.decode(body);
        assert_eq!(decoded.unwrap(), der);
    }
}
